"""Input messages -> plain, validated values: the one decoding path of the node and the replays.

Every function takes a message duck-typed: an rclpy message (the node, the live replay's
recorder) or a `rosbags` message (the offline replay) has the same field names, so one
function decodes both and the node and `geoloc-replay` skip, refuse and accept exactly the
same inputs. Everything that can be wrong with an input raises an `InputError` subclass
whose message says what is wrong in one line; nothing here raises anything else for a
malformed message (test/test_fuzz_inputs.py holds that property).

Conventions (REP-103/105, docs/DESIGN.md): images become (H, W, 3) uint8 RGB, honouring
`step` (row padding) and `is_bigendian`; stamps are float seconds; odometry is ENU with
yaw counter-clockwise from East.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import GeolocError
from ..geo.angles import roll_pitch_from_quaternion, yaw_from_quaternion
from ..localize.validate import MAX_HFOV_DEG, MAX_IMAGE_PIXELS, MIN_HFOV_DEG  # the localizer's own limits


class InputError(GeolocError):
    """A message that cannot be used; the text says why in one line."""


class ImageConversionError(InputError):
    """A sensor_msgs/Image that cannot be turned into an RGB array."""


class CameraInfoError(InputError):
    """A CameraInfo without usable intrinsics (zero size, non-positive or non-finite K,
    implausible field of view)."""


class OdometryError(InputError):
    """An Odometry message with non-finite or degenerate pose values."""


class StampError(InputError):
    """A header stamp that is not a finite, non-negative time."""


class FixError(InputError):
    """A NavSatFix that cannot serve as a position (no fix, non-finite, off the globe)."""


@dataclass(frozen=True)
class _Enc:
    channels: int
    dtype: str  # numpy base dtype of one channel: "u1" or "u2"
    to_rgb: str  # how to get RGB: "rgb", "bgr", "rgba", "bgra", "mono", "uyvy", "yuyv", "bayer_*"


# Encodings we read. 8UC1/8UC3/8UC4/16UC1 are OpenCV type names without colour meaning;
# like OpenCV (and cv_bridge's default for 3-channel data) we read 8UC3 as BGR. Bayer
# mosaics are demosaiced with OpenCV (whose pattern names refer to the second row).
ENCODINGS: dict[str, _Enc] = {
    "rgb8": _Enc(3, "u1", "rgb"),
    "bgr8": _Enc(3, "u1", "bgr"),
    "rgba8": _Enc(4, "u1", "rgba"),
    "bgra8": _Enc(4, "u1", "bgra"),
    "mono8": _Enc(1, "u1", "mono"),
    "8UC1": _Enc(1, "u1", "mono"),
    "8UC3": _Enc(3, "u1", "bgr"),
    "8UC4": _Enc(4, "u1", "bgra"),
    "mono16": _Enc(1, "u2", "mono"),
    "16UC1": _Enc(1, "u2", "mono"),
    "rgb16": _Enc(3, "u2", "rgb"),
    "bgr16": _Enc(3, "u2", "bgr"),
    # ROS "yuv422" is UYVY byte order; "yuv422_yuy2"/"yuyv" is YUYV. 2 bytes per pixel.
    "yuv422": _Enc(2, "u1", "uyvy"),
    "uyvy": _Enc(2, "u1", "uyvy"),
    "yuv422_yuy2": _Enc(2, "u1", "yuyv"),
    "yuyv": _Enc(2, "u1", "yuyv"),
    "bayer_rggb8": _Enc(1, "u1", "bayer_rggb"),
    "bayer_bggr8": _Enc(1, "u1", "bayer_bggr"),
    "bayer_gbrg8": _Enc(1, "u1", "bayer_gbrg"),
    "bayer_grbg8": _Enc(1, "u1", "bayer_grbg"),
}


def encoding_info(name: str) -> _Enc:
    enc = ENCODINGS.get(name)
    if enc is None:
        raise ImageConversionError(
            f"unsupported image encoding {name!r} (supported: {', '.join(sorted(ENCODINGS))})")
    return enc


def _raw_bytes(data: Any) -> np.ndarray:
    """Message data (bytes, array.array('B'), list of ints, numpy) as a flat uint8 array."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.astype(np.uint8).reshape(-1)
    if isinstance(data, (list, tuple)):
        try:
            return np.asarray(data, dtype=np.uint8)
        except (OverflowError, ValueError, TypeError):
            raise ImageConversionError("image data holds values that are not bytes") from None
    try:
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError:
        raise ImageConversionError(f"image data of type {type(data).__name__} is not a byte buffer") from None


def image_to_numpy(msg: Any, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """sensor_msgs/Image -> array in the message's own layout, a fresh copy.

    Returns (H, W) for one channel, (H, W, C) otherwise; dtype uint8 or native-endian
    uint16. YUV 4:2:2 comes back as (H, W, 2) raw bytes. Raises ImageConversionError for
    zero size, unknown encoding, a step shorter than a row, or data that does not match
    step * height.
    """
    try:
        h, w, step = int(msg.height), int(msg.width), int(msg.step)
    except (TypeError, ValueError, AttributeError):
        raise ImageConversionError("image height/width/step are not integers") from None
    enc = encoding_info(str(msg.encoding))
    if h <= 0 or w <= 0:
        raise ImageConversionError(f"image has zero size ({w}x{h})")
    if h * w > max_pixels:
        raise ImageConversionError(f"image of {w}x{h} px exceeds the {max_pixels} px limit")
    if enc.to_rgb.startswith("bayer") and (h < 2 or w < 2):
        raise ImageConversionError(f"{msg.encoding} needs at least 2x2 px, got {w}x{h}")
    itemsize = 2 if enc.dtype == "u2" else 1
    row_bytes = w * enc.channels * itemsize
    if enc.to_rgb in ("uyvy", "yuyv") and w % 2:
        raise ImageConversionError(f"{msg.encoding} needs an even width, got {w}")
    if step < row_bytes:
        raise ImageConversionError(
            f"image step {step} is shorter than one row ({w} px x {enc.channels * itemsize} B = {row_bytes} B)")
    raw = _raw_bytes(msg.data)
    need = step * h
    if raw.size < need:
        raise ImageConversionError(f"image data truncated: {raw.size} B, expected step*height = {need} B")
    if raw.size > need:
        raise ImageConversionError(f"image data too long: {raw.size} B, expected step*height = {need} B")
    rows = raw.reshape(h, step)[:, :row_bytes]
    rows = np.ascontiguousarray(rows)
    if itemsize == 2:
        big = bool(getattr(msg, "is_bigendian", False))
        arr = rows.view(">u2" if big else "<u2").astype(np.uint16)  # native order, own memory
    else:
        arr = rows
    if enc.channels == 1:
        return arr.reshape(h, w)
    return arr.reshape(h, w, enc.channels)


def _yuv_to_rgb(arr: np.ndarray, order: str) -> np.ndarray:
    import cv2

    code = cv2.COLOR_YUV2RGB_UYVY if order == "uyvy" else cv2.COLOR_YUV2RGB_YUYV
    return cv2.cvtColor(np.ascontiguousarray(arr), code)


#: ROS Bayer pattern -> OpenCV demosaicing code name (OpenCV names the second row's pattern)
_BAYER_CODES = {"bayer_rggb": "COLOR_BayerBG2RGB", "bayer_bggr": "COLOR_BayerRG2RGB",
                "bayer_gbrg": "COLOR_BayerGR2RGB", "bayer_grbg": "COLOR_BayerGB2RGB"}


def _bayer_to_rgb(arr: np.ndarray, kind: str) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(arr), getattr(cv2, _BAYER_CODES[kind]))


def image_to_rgb(msg: Any, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB, the core's image convention.

    16-bit data is scaled to 8 bits over the full 16-bit range (value / 257); alpha is
    dropped; mono is replicated to three channels.
    """
    enc = encoding_info(str(msg.encoding))
    arr = image_to_numpy(msg, max_pixels)
    kind = enc.to_rgb
    if kind in ("uyvy", "yuyv"):
        return _yuv_to_rgb(arr, kind)
    if kind.startswith("bayer"):
        return _bayer_to_rgb(arr, kind)
    if arr.dtype == np.uint16:
        arr = ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if kind == "mono":
        return np.repeat(arr[:, :, None], 3, axis=2)
    if kind == "rgb":
        return np.ascontiguousarray(arr)
    if kind == "bgr":
        return np.ascontiguousarray(arr[:, :, ::-1])
    if kind == "rgba":
        return np.ascontiguousarray(arr[:, :, :3])
    if kind == "bgra":
        return np.ascontiguousarray(arr[:, :, 2::-1])
    raise ImageConversionError(f"no RGB conversion for {msg.encoding!r}")  # pragma: no cover




# --------------------------------------------------------------------------- time
def stamp_to_float(stamp: Any) -> float:
    """builtin_interfaces/Time -> float seconds; StampError for a non-finite or negative time."""
    try:
        t = float(stamp.sec) + float(stamp.nanosec) * 1e-9
    except (TypeError, ValueError, AttributeError):
        raise StampError("header stamp is not a time (sec, nanosec)") from None
    if not (math.isfinite(t) and t >= 0.0):
        raise StampError(f"header stamp {t} is not a finite, non-negative time")
    return t


# --------------------------------------------------------------------------- camera
def camera_info_to_intrinsics(msg: Any):
    """sensor_msgs/CameraInfo -> data.camera.CameraIntrinsics (pinhole K only).

    Distortion is not applied (the localizer works on the raw image; rectify upstream with
    image_proc for strong lenses). Binning divides the focal lengths and centre. Refused:
    zero size, a K that is not 9 finite numbers, non-positive focal lengths, a principal
    point outside the image, and a field of view outside [MIN_HFOV_DEG, MAX_HFOV_DEG] (an
    fx of 1e7 px would make the ground footprint a few millimetres wide)."""
    from ..data.camera import CameraIntrinsics

    try:
        k = [float(v) for v in msg.k]
        w, h = int(msg.width), int(msg.height)
        bx = max(int(getattr(msg, "binning_x", 0) or 1), 1)
        by = max(int(getattr(msg, "binning_y", 0) or 1), 1)
    except (TypeError, ValueError, AttributeError, OverflowError):
        raise CameraInfoError("camera_info width/height/K/binning are not numbers") from None
    if w <= 0 or h <= 0:
        raise CameraInfoError(f"camera_info has zero size ({w}x{h})")
    if w * h > MAX_IMAGE_PIXELS or bx > w or by > h:
        raise CameraInfoError(f"camera_info size {w}x{h} (binning {bx}x{by}) is implausible")
    if len(k) != 9 or not all(math.isfinite(v) for v in k):
        raise CameraInfoError("camera_info K is not 9 finite numbers")
    fx, fy, cx, cy = k[0] / bx, k[4] / by, k[2] / bx, k[5] / by
    w, h = w // bx, h // by
    if fx <= 0 or fy <= 0:
        raise CameraInfoError(f"camera_info has non-positive focal length (fx={fx}, fy={fy})")
    if not (-0.5 <= cx <= w - 0.5 and -0.5 <= cy <= h - 0.5):
        raise CameraInfoError(f"camera_info principal point ({cx:.1f}, {cy:.1f}) lies outside the {w}x{h} image")
    hfov = math.degrees(2.0 * math.atan(w / (2.0 * fx)))
    vfov = math.degrees(2.0 * math.atan(h / (2.0 * fy)))
    if not (MIN_HFOV_DEG <= hfov <= MAX_HFOV_DEG and MIN_HFOV_DEG / 4 <= vfov <= MAX_HFOV_DEG):
        raise CameraInfoError(f"camera_info field of view {hfov:.3g} x {vfov:.3g} deg (fx={fx:g}, fy={fy:g}) is "
                              f"implausible (horizontal must be in [{MIN_HFOV_DEG:g}, {MAX_HFOV_DEG:g}] deg)")
    return CameraIntrinsics(width=w, height=h, fx=fx, fy=fy, cx=cx, cy=cy)


def scale_intrinsics(intr: Any, width: int, height: int):
    """Intrinsics for an image of another size (resized stream vs. calibration size)."""
    if intr.width == width and intr.height == height:
        return intr
    sx, sy = width / intr.width, height / intr.height
    return type(intr)(width=width, height=height, fx=intr.fx * sx, fy=intr.fy * sy,
                      cx=(intr.cx + 0.5) * sx - 0.5, cy=(intr.cy + 0.5) * sy - 0.5)


# --------------------------------------------------------------------------- odometry
@dataclass(frozen=True)
class OdometrySample:
    """One validated odometry pose: position (odom frame, m), yaw/roll/pitch (rad, ENU)."""

    stamp: float
    xyz: np.ndarray
    yaw: float
    roll: float
    pitch: float


#: a quaternion whose norm is further from 1 than this is a broken message, not rounding
QUATERNION_NORM_TOLERANCE = 0.1


def odometry_sample(msg: Any) -> OdometrySample:
    """nav_msgs/Odometry -> OdometrySample. OdometryError for NaN/inf, a zero or far from
    unit quaternion, and StampError for a bad stamp: a bad odometry sample must never
    reach the filter."""
    stamp = stamp_to_float(msg.header.stamp)
    try:
        p = msg.pose.pose.position
        q = msg.pose.pose.orientation
        xyz = np.array([float(p.x), float(p.y), float(p.z)], dtype=np.float64)
        quat = np.array([float(q.x), float(q.y), float(q.z), float(q.w)], dtype=np.float64)
    except (TypeError, ValueError, AttributeError):
        raise OdometryError("odometry pose is not numeric") from None
    if not np.all(np.isfinite(xyz)):
        raise OdometryError(f"odometry position is not finite: {xyz.tolist()}")
    if not np.all(np.isfinite(quat)):
        raise OdometryError(f"odometry orientation is not finite: {quat.tolist()}")
    n = float(np.linalg.norm(quat))
    if abs(n - 1.0) > QUATERNION_NORM_TOLERANCE:
        raise OdometryError(f"odometry orientation quaternion has norm {n:.3g}, not 1")
    x, y, z, w = quat / n
    roll, pitch = roll_pitch_from_quaternion(x, y, z, w)
    return OdometrySample(stamp, xyz, yaw_from_quaternion(x, y, z, w), roll, pitch)


# --------------------------------------------------------------------------- GNSS
STATUS_FIX = 0  # sensor_msgs/NavSatStatus.STATUS_FIX


@dataclass(frozen=True)
class FixReading:
    """A NavSatFix as plain values; `ok` False for a receiver without a usable fix."""

    stamp: float
    ok: bool
    lat: float
    lon: float
    alt: float
    sigma_m: float  # 1-sigma horizontal (m), from the covariance or the floor


def fix_sigma_m(position_covariance: Any, covariance_type: int, floor_m: float) -> float:
    """1-sigma horizontal radius of a NavSatFix: sqrt of the larger E/N variance when the
    covariance is known (type > 0), else `floor_m`; never below `floor_m`; inf for a
    covariance that is not finite."""
    if covariance_type and covariance_type > 0:
        c = [float(v) for v in position_covariance]
        if len(c) == 9:
            v = max(c[0], c[4])
            if not math.isfinite(v):
                return math.inf
            if v > 0:
                return max(math.sqrt(v), floor_m)
    return floor_m


def navsatfix_reading(msg: Any, sigma_floor_m: float) -> FixReading:
    """sensor_msgs/NavSatFix -> FixReading. `ok` needs status >= STATUS_FIX, finite lat/lon
    on the globe and a finite covariance; StampError for a bad stamp."""
    stamp = stamp_to_float(msg.header.stamp)
    try:
        status = int(msg.status.status)
        lat, lon, alt = float(msg.latitude), float(msg.longitude), float(msg.altitude)
        sigma = fix_sigma_m(msg.position_covariance, int(msg.position_covariance_type), sigma_floor_m)
    except (TypeError, ValueError, AttributeError, OverflowError):
        raise FixError("NavSatFix fields are not numbers") from None
    ok = (status >= STATUS_FIX and math.isfinite(lat) and math.isfinite(lon) and -90.0 <= lat <= 90.0
          and -180.0 <= lon <= 180.0 and math.isfinite(sigma))
    return FixReading(stamp, ok, lat, lon, alt if math.isfinite(alt) else 0.0, sigma)
