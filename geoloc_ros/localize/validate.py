"""What a `Frame` must satisfy before the localizer touches its state.

Why here and not only at the message boundary (geoloc_ros.runtime): the Localizer is a
public API (tests, scripts, other front ends); one NaN in odometry used to leave it in
OFF_MAP with a NaN latitude for good, and a focal length of 1e7 px used to make a window
grid of 31149 x 31149. A frame that fails any check is skipped with the reason; the filter
state is not changed and no fix is given for it.
"""
from __future__ import annotations

import math

import numpy as np

#: physical limits (not tuning knobs): beyond them the input is broken, not unusual
MAX_IMAGE_PIXELS = 40_000_000
MAX_ALTITUDE_M = 100_000.0
MIN_HFOV_DEG, MAX_HFOV_DEG = 1.0, 170.0
MAX_TILT_RAD = math.radians(70.0)


def _finite(*values) -> bool:
    try:
        return all(math.isfinite(float(v)) for v in values)
    except (TypeError, ValueError):
        return False


def frame_problem(frame) -> str:
    """'' when `frame` can be processed, else why not (one line)."""
    img = getattr(frame, "image", None)
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        shape = getattr(img, "shape", None)
        return f"image must be an (H, W, 3) uint8 array, got {type(img).__name__} {shape}"
    if img.shape[0] < 2 or img.shape[1] < 2 or img.shape[0] * img.shape[1] > MAX_IMAGE_PIXELS:
        return f"image size {img.shape[1]}x{img.shape[0]} is outside [2 px, {MAX_IMAGE_PIXELS} px]"
    if not _finite(frame.stamp) or float(frame.stamp) < 0:
        return f"stamp {frame.stamp} is not a finite, non-negative time"
    odom = np.asarray(frame.odom_xyz, dtype=np.float64).reshape(-1)
    if odom.size != 3 or not np.all(np.isfinite(odom)) or not _finite(frame.odom_yaw):
        return f"odometry is not finite (xyz {odom.tolist()}, yaw {frame.odom_yaw})"
    if not _finite(frame.altitude_agl) or not 0.0 < float(frame.altitude_agl) <= MAX_ALTITUDE_M:
        return f"height above ground {frame.altitude_agl} m is outside (0, {MAX_ALTITUDE_M:g}]"
    if not _finite(frame.roll, frame.pitch) or max(abs(float(frame.roll)), abs(float(frame.pitch))) > MAX_TILT_RAD:
        return f"roll/pitch ({frame.roll}, {frame.pitch}) rad are not finite or beyond 70 deg"
    intr = frame.intrinsics
    try:
        w, h, fx, fy = int(intr.width), int(intr.height), float(intr.fx), float(intr.fy)
    except (AttributeError, TypeError, ValueError):
        return "intrinsics are missing or not numeric"
    if w <= 0 or h <= 0 or not (_finite(fx, fy) and fx > 0 and fy > 0):
        return f"intrinsics {w}x{h}, fx {fx}, fy {fy} are not positive"
    scale = img.shape[1] / w  # the localizer rescales intrinsics to the image size
    hfov = math.degrees(2.0 * math.atan(img.shape[1] / (2.0 * fx * scale)))
    if not MIN_HFOV_DEG <= hfov <= MAX_HFOV_DEG:
        return f"field of view {hfov:.3g} deg (fx {fx:g}) is outside [{MIN_HFOV_DEG:g}, {MAX_HFOV_DEG:g}] deg"
    return ""
