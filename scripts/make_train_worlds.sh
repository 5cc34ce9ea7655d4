#!/usr/bin/env bash
# The procedural training worlds of the packaged weights' recipes (train_demo_weights.sh,
# train_gap_weights.sh): seeds 101-106, 1.5 km at 0.4 m/px, both epochs, into
# runs/demo_train/worlds; worlds already there are kept.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
mkdir -p runs/demo_train/worlds
for seed in 101 102 103 104 105 106; do
  [ -f "runs/demo_train/worlds/world_s${seed}_e2.tif" ] || \
    .venv/bin/geoloc-make-world --out "runs/demo_train/worlds/world_s${seed}.tif" --seed "$seed" \
      --size-m 1500 --gsd 0.4 --epoch both
done
