"""Image files -> (H, W, 3) uint8 RGB arrays: the one reader of photos and dataset images.

Why one reader: OpenCV decodes to BGR and returns None (no exception) on a bad file, so
every copy has to remember the colour swap and the check; here both happen once, with a
`GeolocError` that names the file. `np.fromfile` + `imdecode` also reads non-ASCII paths.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from geoloc_ros.errors import GeolocError


#: file suffixes (lower case) that count as images when a folder is listed
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ImageReadError(GeolocError):
    """An image file that is missing or cannot be decoded (the message names it)."""


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; a missing or undecodable file raises ImageReadError."""
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"missing image file: {p}")
    data = np.fromfile(str(p), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ImageReadError(f"cannot decode image file (corrupted?): {p}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
