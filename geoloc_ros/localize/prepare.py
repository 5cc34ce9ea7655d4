"""UAV image -> model input: north-up and at the model's ground sampling distance.

The model compares a north-up satellite window with the UAV view, so the camera image is
rotated by the vehicle heading and scaled so that its central footprint square (the largest
ground square around the nadir point that survives any rotation) fills the model's UAV
input. Rotation and scale are one affine resampling (after an optional integer
area-averaging pre-reduction against aliasing when the image is much larger).

Camera convention (data/camera.py, DESIGN.md): for a nadir camera the image's up axis
points on the ground to the world ENU yaw of the camera pose; image right is that yaw
minus 90 deg (a map-like, unmirrored view).

Attitude: a body-fixed camera banks with the airframe, so its optical axis hits the ground
`altitude * tan(tilt)` away from the nadir point (20 m at 120 m and 10 deg) and the view
is perspective-distorted. With roll/pitch known (gravity-referenced, from the FCU), the
warp becomes a homography that rectifies the view to a north-up orthographic patch centred
on the optical-axis ground point; `PreparedUAV.center_offset_en` (metres, ENU) says where
that point is relative to the nadir, so the localizer can subtract it from the measurement.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..geo.angles import world_to_camera
from .search import footprint_side_m


@dataclass
class PreparedUAV:
    image: np.ndarray  # (uav_size, uav_size, 3) uint8, north-up
    footprint_m: float  # ground side covered by `image`
    gsd_m: float  # metres per output pixel
    center_offset_en: tuple = (0.0, 0.0)  # ground point at the output centre minus the nadir point (m)


def _intr(intrinsics):
    return (int(intrinsics.width), int(intrinsics.height), float(intrinsics.fx), float(intrinsics.fy),
            float(intrinsics.cx), float(intrinsics.cy))


def north_up_affine(width: int, height: int, fx: float, fy: float, cx: float, cy: float,
                    altitude_m: float, world_yaw: float, out_px: int, footprint_m: float) -> np.ndarray:
    """2x3 affine: source image (col, row) -> north-up output (col, row), integers at pixel
    centres, the principal point landing on the output centre ((N-1)/2, (N-1)/2)."""
    g = footprint_m / out_px
    ax, ay = altitude_m / fx, altitude_m / fy
    s, c = math.sin(world_yaw), math.cos(world_yaw)
    ctr = (out_px - 1) / 2.0
    # ground offset: east = r sin(yaw) + u cos(yaw), north = -r cos(yaw) + u sin(yaw),
    # with r = (x - cx) ax (image right), u = -(y - cy) ay (image up); X = ctr + E/g, Y = ctr - N/g
    a = np.array([[ax * s / g, -ay * c / g], [ax * c / g, ay * s / g]])
    t = np.array([ctr, ctr]) - a @ np.array([cx, cy])
    return np.concatenate([a, t[:, None]], axis=1)


def tilted_homography(fx: float, fy: float, cx: float, cy: float, altitude_m: float, world_yaw: float,
                      pitch: float, roll: float, out_px: int, footprint_m: float):
    """3x3 H: north-up output (col, row, 1) -> source image (u, v, 1), centred on the
    optical-axis ground point; and that point's (east, north) offset from the nadir."""
    r_cw = world_to_camera(world_yaw, pitch, roll)
    axis = r_cw.T @ np.array([0.0, 0.0, 1.0])  # optical axis in ENU
    if axis[2] > -0.2:
        raise ValueError("camera tilted too far from nadir (optical axis within 78 deg of the horizon)")
    ge, gn = altitude_m * axis[0] / -axis[2], altitude_m * axis[1] / -axis[2]
    k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    t = -r_cw @ np.array([0.0, 0.0, altitude_m])
    g2i = k @ np.column_stack([r_cw[:, 0], r_cw[:, 1], t])  # ground (e, n, 1) from nadir -> image
    g = footprint_m / out_px
    ctr = (out_px - 1) / 2.0
    o2g = np.array([[g, 0.0, ge - ctr * g], [0.0, -g, gn + ctr * g], [0.0, 0.0, 1.0]])
    return g2i @ o2g, (float(ge), float(gn))


def _image_intrinsics(image: np.ndarray, intrinsics) -> tuple:
    """(w, h, fx, fy, cx, cy) of `image`: intrinsics given for another resolution (CameraInfo
    vs. a resized image) are scaled to it."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"UAV image must be (H, W, 3), got {image.shape}")
    w, h, fx, fy, cx, cy = _intr(intrinsics)
    if image.shape[0] != h or image.shape[1] != w:
        sx, sy = image.shape[1] / w, image.shape[0] / h
        fx, cx, fy, cy = fx * sx, (cx + 0.5) * sx - 0.5, fy * sy, (cy + 0.5) * sy - 0.5
        w, h = image.shape[1], image.shape[0]
    return w, h, fx, fy, cx, cy


def uav_footprint_m(image: np.ndarray, intrinsics, altitude_m: float) -> float:
    """The largest footprint (m) `prepare_uav` can fill from this image at this altitude."""
    w, h, fx, fy, cx, cy = _image_intrinsics(image, intrinsics)
    return footprint_side_m(w, h, fx, fy, cx, cy, altitude_m)


def prepare_uav(image: np.ndarray, intrinsics, altitude_m: float, world_yaw: float, out_px: int,
                antialias: bool = True, pitch: float = 0.0, roll: float = 0.0,
                footprint_m: float | None = None) -> PreparedUAV:
    """North-up, model-GSD UAV input (see module docstring); with roll/pitch, rectified.

    `footprint_m`: a smaller ground side than the largest the image allows (the localizer
    snaps window sizes to a ladder so cached satellite features can be reused); None = the
    largest (`uav_footprint_m`)."""
    w, h, fx, fy, cx, cy = _image_intrinsics(image, intrinsics)
    foot = footprint_side_m(w, h, fx, fy, cx, cy, altitude_m)
    if footprint_m is not None:
        if not (0.0 < footprint_m <= foot * (1.0 + 1e-9)):
            raise ValueError(f"footprint {footprint_m:.2f} m is not in (0, {foot:.2f}] m, the most this image "
                             f"covers at {altitude_m:.1f} m")
        foot = float(footprint_m)
    src = image
    if antialias:
        k = int(math.floor((foot / (altitude_m / max(fx, fy))) / out_px))  # source px per output px
        if k >= 2:
            nw, nh = w // k, h // k
            src = cv2.resize(image[: nh * k, : nw * k], (nw, nh), interpolation=cv2.INTER_AREA)
            fx, fy = fx / k, fy / k
            cx, cy = (cx + 0.5) / k - 0.5, (cy + 0.5) / k - 0.5
            w, h = nw, nh
    if abs(pitch) < 1e-6 and abs(roll) < 1e-6:
        m = north_up_affine(w, h, fx, fy, cx, cy, altitude_m, world_yaw, out_px, foot)
        out = cv2.warpAffine(np.ascontiguousarray(src), m, (out_px, out_px), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT101)
        return PreparedUAV(out, foot, foot / out_px)
    hmg, off = tilted_homography(fx, fy, cx, cy, altitude_m, world_yaw, pitch, roll, out_px, foot)
    out = cv2.warpPerspective(np.ascontiguousarray(src), hmg, (out_px, out_px),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT101)
    return PreparedUAV(out, foot, foot / out_px, off)


def heatmap_cov_to_enu(cov_px: np.ndarray, gsd_m: float) -> np.ndarray:
    """Pixel (row, col) covariance of a north-up crop -> (east, north) covariance in m^2.
    east = col * g, north = -row * g."""
    j = np.array([[0.0, gsd_m], [-gsd_m, 0.0]])
    return j @ np.asarray(cov_px, dtype=np.float64) @ j.T


def honest_cov(cov_en: np.ndarray, inflation: float, floor_m: float) -> np.ndarray:
    """Inflate a measurement covariance and clamp its eigenvalues to at least floor_m^2."""
    c = 0.5 * (cov_en + cov_en.T) * inflation
    if not np.all(np.isfinite(c)):
        return np.eye(2) * floor_m ** 2
    w, v = np.linalg.eigh(c)
    w = np.maximum(w, floor_m ** 2)
    return (v * w) @ v.T
