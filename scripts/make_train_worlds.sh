#!/usr/bin/env bash
# The procedural training worlds of the weights' recipes (train_demo_weights.sh,
# train_gap_weights.sh, device_train_full.sh): seeds 101-106, 1.5 km at 0.4 m/px, both epochs,
# into runs/demo_train/worlds, made in parallel; worlds already there are kept.
# MAKE_WORLD: the command that makes one (default .venv/bin/geoloc-make-world; where no venv
# is, e.g. "python3 -m geoloc_ros.tools.make_world").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MAKE_WORLD="${MAKE_WORLD:-.venv/bin/geoloc-make-world}"
mkdir -p runs/demo_train/worlds
pids=()
for seed in 101 102 103 104 105 106; do
  if [ ! -f "runs/demo_train/worlds/world_s${seed}_e2.tif" ]; then
    $MAKE_WORLD --out "runs/demo_train/worlds/world_s${seed}.tif" --seed "$seed" --size-m 1500 --gsd 0.4 \
      --epoch both &
    pids+=($!)
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
n=$(ls runs/demo_train/worlds/world_s10[1-6]_e2.tif 2>/dev/null | wc -l)
[ "$n" -eq 6 ] || { echo "make_train_worlds: $n of 6 worlds made" >&2; exit 1; }
