#!/usr/bin/env bash
# Recipes of the gap-tuned weights (issue 15, items 2-3), CPU only: the worlds of the demo
# weights' recipe (seeds 101-106, both epochs), then geoloc-train with CONFIG.
# Stages as in geoloc_ros/weights/MODEL_CARD.md (stage 1: scripts/train_demo_weights.sh).
#   scripts/train_gap_weights.sh                                  # train_gap_cpu.yaml, 800 steps (~45 min; not shipped)
#   scripts/train_gap_weights.sh config/train_gapnorm_cpu.yaml    # stage 2: standardised inputs, 64/192 (~11 min)
#   scripts/train_gap_weights.sh config/train_gapnorm96_cpu.yaml  # stage 3: from stage 2 at 96/288 (38 min)
# STEPS / MINUTES override the config's max_steps / max_minutes. The run's folder is the
# config's `out`; compare its `best` before packaging:
#   geoloc-bench --only oneshot --weights <out>/best   and   geoloc-eval calib/test --weights <out>/best
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY=.venv/bin
CONFIG="${1:-config/train_gap_cpu.yaml}"
args=(--config "$CONFIG")
[ -n "${STEPS:-}" ] && args+=(--max-steps "$STEPS")
[ -n "${MINUTES:-}" ] && args+=(--max-minutes "$MINUTES")
scripts/make_train_worlds.sh
$PY/geoloc-train "${args[@]}"
