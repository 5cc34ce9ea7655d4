#!/usr/bin/env bash
# Recipe of the gap-tuned weights (issue 15, item 3), CPU only: the worlds of the demo weights'
# recipe (seeds 101-106, both epochs), then geoloc-train with config/train_gap_cpu.yaml, which
# starts from the packaged amcf_small_demo weights and adds the appearance-gap augmentation.
#   STEPS=800 scripts/train_gap_weights.sh        # ~45 min on 2 idle CPU cores
# The result is in runs/gap_train/run/best; compare it before packaging:
#   geoloc-bench --only oneshot --weights runs/gap_train/run/best   and   geoloc-eval calib/test
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY=.venv/bin
STEPS="${STEPS:-800}"
scripts/make_train_worlds.sh
$PY/geoloc-train --config config/train_gap_cpu.yaml --out runs/gap_train/run --max-steps "$STEPS"
