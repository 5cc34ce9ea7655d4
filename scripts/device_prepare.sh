#!/usr/bin/env bash
# Here, before spending GPU minutes on scripts/device_train_full.sh (issue 15, item 7): the
# Python wheels the device image lacks (rasterio, pyproj and their pure-Python needs, for
# Python 3.12) into .whl/, and a carried copy of the CC0 photos, downscaled to 1000 px on the
# long side (same folders and names, so the same photos are held out) into .device_data/.
# Both folders are git-ignored; together with the repository they stay under the device
# tool's 64 MiB. Then call the device tool:
#   run(command="bash scripts/device_train_full.sh", carry=[".whl", ".device_data"], timeout_s=600)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY=.venv/bin/python
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl rasterio==1.4.4 pyproj==3.7.2 affine==3.0.1 click-plugins==1.1.1.2 cligj==0.7.2
"$PY" - <<'PYEOF'
from pathlib import Path

import cv2

src, dst = Path("../shared/data/aerial_cc0"), Path(".device_data/aerial_cc0")
n = 0
for f in sorted(src.rglob("*")):
    if f.suffix.lower() not in (".jpg", ".jpeg", ".png", ".tif", ".tiff"):
        continue
    out = dst / f.relative_to(src).with_suffix(".jpg")
    if out.is_file():
        n += 1
        continue
    img = cv2.imread(str(f), cv2.IMREAD_COLOR)
    if img is None:
        continue
    k = 1000 / max(img.shape[:2])
    if k < 1:
        img = cv2.resize(img, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    n += 1
print(f"device_prepare: {n} photos in {dst}")
PYEOF
du -sh .whl .device_data
total=$(( $(du -sb .whl | cut -f1) + $(du -sb .device_data | cut -f1) + $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) ))
echo "device_prepare: $(( total / 1048576 )) MiB travel with the repository (the device tool takes at most 64)"
