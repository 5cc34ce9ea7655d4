#!/usr/bin/env bash
# On the lent GPU, in one call (issue 15, item 7; ~9 of the 10 minutes a command may run):
#   1. the procedural training worlds (scripts/make_train_worlds.sh: seeds 101-106, both epochs);
#   2. geoloc-train with config/train_full_gpu.yaml for MINUTES (default 5.5) of wall clock;
#   3. the best checkpoint packaged as fp16 safetensors + JSON (scripts/package_weights.py);
#   4. the model's speed on that GPU (geoloc-bench --only model: ms per pair at batch 1 and batched);
#   5. weights, logs and figures into $OUT (they come back; evaluate them here on the CPU:
#      geoloc-bench --only oneshot --weights <w>, geoloc-eval calib/test --weights <w>).
# Prepare here first (scripts/device_prepare.sh), then call the device tool with
#   run(command="bash scripts/device_train_full.sh", carry=[".whl", ".device_data"], timeout_s=600)
# Rehearse on the CPU:  PY=.venv/bin/python MINUTES=0.5 DEVICE=cpu BATCH=4 WORKERS=2 bash scripts/device_train_full.sh
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PY:-python3}"
MINUTES="${MINUTES:-5.5}"
DEVICE="${DEVICE:-auto}"
OUT="${OUT:-runs/full_gpu/out}"
WORK=runs/full_gpu
mkdir -p "$OUT" "$WORK"
exec > >(tee "$OUT/device_log.txt") 2>&1
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PY" -c "import rasterio, pyproj" 2>/dev/null; then
  [ -d .whl ] || { echo "no rasterio/pyproj and no .whl/: run scripts/device_prepare.sh here and carry .whl"; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 2
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

stamp "worlds"
MAKE_WORLD="$PY -m geoloc_ros.tools.make_world" bash scripts/make_train_worlds.sh || { echo "world generation failed"; exit 1; }

stamp "config"
PHOTOS="${PHOTOS:-../shared/data/aerial_cc0}"
[ -d "$PHOTOS" ] || PHOTOS=.device_data/aerial_cc0
"$PY" - "$PHOTOS" <<'PYEOF'
import sys
from pathlib import Path

import yaml

cfg = yaml.safe_load(Path("config/train_full_gpu.yaml").read_text())
photos = Path(sys.argv[1]).resolve()
for s in cfg["sources"]:
    if s["kind"] == "photo":
        s["path"] = str(photos)
    else:
        s["path"] = [str(Path("config", p).resolve()) for p in s["path"]]
        s["uav_path"] = [str(Path("config", p).resolve()) for p in s["uav_path"]]
cfg["model"] = str(Path("config/model_amcf.yaml").resolve())
Path("runs/full_gpu/train.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
print("photos:", photos, "exists:", photos.is_dir())
PYEOF

stamp "train (${MINUTES} min)"
extra=()
[ -n "${BATCH:-}" ] && extra+=(--batch-size "$BATCH")
[ -n "${WORKERS:-}" ] && extra+=(--workers "$WORKERS")
"$PY" -m geoloc_ros.tools.train --config "$WORK/train.yaml" --out "$WORK/run" --max-minutes "$MINUTES" \
  --device "$DEVICE" --quiet "${extra[@]}" || { echo "training failed"; exit 1; }
cp "$WORK/run/train.csv" "$WORK/run/val.csv" "$OUT/" 2>/dev/null

stamp "package fp16"
"$PY" scripts/package_weights.py "$WORK/run/best" --out "$OUT/amcf_full" \
  --note "full-size AMCF-Net, ${MINUTES} min on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)" \
  || { echo "packaging failed"; exit 1; }
ls -la "$OUT"/amcf_full.*

stamp "speed"
"$PY" -m geoloc_ros.tools.bench --only model --weights "$OUT/amcf_full" \
  --device "${BENCH_DEVICE:-auto}" --no-onnx --json "$OUT/bench_model.json" ${BENCH_ARGS:---no-compile}
stamp "done"
