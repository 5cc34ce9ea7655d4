#!/usr/bin/env bash
# Recipe of the shipped demo weights (geoloc_ros/weights/amcf_small_demo.*), CPU only.
#   1. six procedural worlds (seeds 101-106, 1.5 km at 0.4 m/px), both epochs, into runs/demo_train/worlds
#   2. geoloc-train with config/train_demo_cpu.yaml (+ the CC0 aerial photos of ../shared/data)
#   3. scripts/package_weights.py: best checkpoint -> fp16 safetensors + JSON in geoloc_ros/weights
# The demo flies over world seed 3, which is not a training world. ~20-30 min on 2 CPU cores.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY=.venv/bin
STEPS="${STEPS:-2500}"
scripts/make_train_worlds.sh
$PY/geoloc-train --config config/train_demo_cpu.yaml --out runs/demo_train/run --max-steps "$STEPS"
$PY/python scripts/package_weights.py runs/demo_train/run/best --out geoloc_ros/weights/amcf_small_demo
