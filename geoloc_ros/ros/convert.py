"""ROS messages <-> plain numpy / core dataclasses, without cv_bridge.

Why by hand: ROS 2's cv_bridge is not on PyPI (the PyPI `cv-bridge` is a ROS 1 copy that
breaks with numpy 2 / OpenCV 5), and the conversions the localizer needs are small. Every
function here takes messages duck-typed (any object with the message's fields), so the
core and the tests can use them without a ROS graph; output messages are built from the
real `sensor_msgs` / `geometry_msgs` / `nav_msgs` classes (imported lazily).

Conventions (REP-103/105, docs/DESIGN.md):
- Images in the core are (H, W, 3) uint8 RGB; `image_to_rgb` turns every supported
  encoding into that, honouring `step` (row padding) and `is_bigendian` (16-bit).
- Covariances are ENU [m^2]. NavSatFix.position_covariance is row-major E, N, U with
  COVARIANCE_TYPE_KNOWN; altitude is copied from the Estimate, whose datum is the datum
  of the initial fix (NavSatFix defines it as height above the WGS84 ellipsoid; MAVROS'
  global_position/global follows that).
- Poses are in a local ENU world frame (`map`) anchored at the first initial fix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

try:  # cv_bridge exists only in real ROS 2 installs; nothing here depends on it.
    from cv_bridge import CvBridge as _CvBridge  # type: ignore
except Exception:  # noqa: BLE001 - any import failure (missing, ABI-broken) means "not available"
    _CvBridge = None

HAVE_CV_BRIDGE = _CvBridge is not None


class ImageConversionError(ValueError):
    """A sensor_msgs/Image that cannot be turned into an array; the message says why in one line."""


class OdometryError(ValueError):
    """An Odometry message with non-finite or degenerate pose values."""


class CameraInfoError(ValueError):
    """A CameraInfo without usable intrinsics (zero size, non-positive or non-finite K)."""


@dataclass(frozen=True)
class _Enc:
    channels: int
    dtype: str  # numpy base dtype of one channel: "u1" or "u2"
    to_rgb: str  # how to get RGB: "rgb", "bgr", "rgba", "bgra", "mono", "uyvy", "yuyv"


# Encodings we read. 8UC1/8UC3/8UC4/16UC1 are OpenCV type names without colour meaning;
# like OpenCV (and cv_bridge's default for 3-channel data) we read 8UC3 as BGR.
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
}


def _encoding(name: str) -> _Enc:
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


def image_to_numpy(msg: Any) -> np.ndarray:
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
    enc = _encoding(str(msg.encoding))
    if h <= 0 or w <= 0:
        raise ImageConversionError(f"image has zero size ({w}x{h})")
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


def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB, the core's image convention.

    16-bit data is scaled to 8 bits over the full 16-bit range (value / 257); alpha is
    dropped; mono is replicated to three channels.
    """
    enc = _encoding(str(msg.encoding))
    arr = image_to_numpy(msg)
    kind = enc.to_rgb
    if kind in ("uyvy", "yuyv"):
        return _yuv_to_rgb(arr, kind)
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


def image_to_rgb_any(msg: Any) -> np.ndarray:
    """Like image_to_rgb, falling back to cv_bridge (when installed) for encodings we do not read."""
    if str(msg.encoding) in ENCODINGS or _CvBridge is None:
        return image_to_rgb(msg)
    try:
        out = _CvBridge().imgmsg_to_cv2(msg, desired_encoding="rgb8")
    except Exception as exc:  # noqa: BLE001 - cv_bridge raises its own error types
        raise ImageConversionError(f"cv_bridge could not convert {msg.encoding!r}: {exc}") from None
    return np.ascontiguousarray(out, dtype=np.uint8)


def numpy_to_image(arr: np.ndarray, encoding: str | None = None, *, stamp: float | None = None,
                   frame_id: str = "", msg: Any = None):
    """numpy -> sensor_msgs/Image (tight rows, little-endian). The encoding defaults to
    mono8/mono16 for 2-D and rgb8/rgba8 for 3/4-channel uint8 input."""
    arr = np.asarray(arr)
    if encoding is None:
        if arr.ndim == 2:
            encoding = "mono16" if arr.dtype == np.uint16 else "mono8"
        elif arr.ndim == 3 and arr.shape[2] in (3, 4) and arr.dtype == np.uint8:
            encoding = "rgb8" if arr.shape[2] == 3 else "rgba8"
        else:
            raise ImageConversionError(f"cannot guess an encoding for shape {arr.shape} {arr.dtype}")
    enc = _encoding(encoding)
    want_dtype = np.uint16 if enc.dtype == "u2" else np.uint8
    shape_ok = (arr.ndim == 2 and enc.channels == 1) or (arr.ndim == 3 and arr.shape[2] == enc.channels)
    if not shape_ok or arr.dtype != want_dtype:
        raise ImageConversionError(f"array {arr.shape} {arr.dtype} does not fit encoding {encoding!r}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageConversionError(f"image has zero size ({arr.shape[1]}x{arr.shape[0]})")
    if msg is None:
        from sensor_msgs.msg import Image
        msg = Image()
    h, w = arr.shape[:2]
    data = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False))
    msg.height, msg.width, msg.encoding = h, w, encoding
    msg.is_bigendian = 0
    msg.step = w * enc.channels * data.dtype.itemsize
    msg.data = data.tobytes()
    if stamp is not None:
        msg.header.stamp = float_to_stamp(stamp)
    msg.header.frame_id = frame_id
    return msg


# --------------------------------------------------------------------------- time


def stamp_to_float(stamp: Any) -> float:
    """builtin_interfaces/Time -> float seconds."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def float_to_stamp(t: float, msg: Any = None):
    """float seconds -> builtin_interfaces/Time (nanoseconds rounded, carry handled)."""
    if msg is None:
        from builtin_interfaces.msg import Time
        msg = Time()
    ns = int(round(float(t) * 1e9))
    msg.sec, msg.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
    return msg


# --------------------------------------------------------------------------- inputs


def camera_info_to_intrinsics(msg: Any):
    """sensor_msgs/CameraInfo -> data.camera.CameraIntrinsics (pinhole K only).

    Distortion is not applied (the localizer works on the raw image; rectify upstream with
    image_proc for strong lenses). Binning divides the focal lengths and centre.
    """
    from geoloc_ros.data.camera import CameraIntrinsics

    k = [float(v) for v in msg.k]
    w, h = int(msg.width), int(msg.height)
    bx = max(int(getattr(msg, "binning_x", 0) or 1), 1)
    by = max(int(getattr(msg, "binning_y", 0) or 1), 1)
    if w <= 0 or h <= 0:
        raise CameraInfoError(f"camera_info has zero size ({w}x{h})")
    if len(k) != 9 or not all(math.isfinite(v) for v in k):
        raise CameraInfoError("camera_info K is not 9 finite numbers")
    fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    if fx <= 0 or fy <= 0:
        raise CameraInfoError(f"camera_info has non-positive focal length (fx={fx}, fy={fy})")
    return CameraIntrinsics(width=w // bx, height=h // by, fx=fx / bx, fy=fy / by, cx=cx / bx, cy=cy / by)


def scale_intrinsics(intr: Any, width: int, height: int):
    """Intrinsics for an image of another size (resized stream vs. calibration size)."""
    if intr.width == width and intr.height == height:
        return intr
    sx, sy = width / intr.width, height / intr.height
    return type(intr)(width=width, height=height, fx=intr.fx * sx, fy=intr.fy * sy,
                      cx=(intr.cx + 0.5) * sx - 0.5, cy=(intr.cy + 0.5) * sy - 0.5)


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    """ENU yaw (rotation about +z, counter-clockwise from East) of a unit quaternion."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def quaternion_from_yaw(yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) for a pure rotation about +z."""
    return 0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)


def odometry_to_pose(msg: Any) -> tuple[np.ndarray, float]:
    """nav_msgs/Odometry -> (xyz (3,) metres, yaw radians ENU). Rejects NaN/inf and a
    zero quaternion with OdometryError: a bad odometry sample must never reach the filter."""
    p = msg.pose.pose.position
    q = msg.pose.pose.orientation
    xyz = np.array([p.x, p.y, p.z], dtype=np.float64)
    quat = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    if not np.all(np.isfinite(xyz)):
        raise OdometryError(f"odometry position is not finite: {xyz.tolist()}")
    if not np.all(np.isfinite(quat)):
        raise OdometryError(f"odometry orientation is not finite: {quat.tolist()}")
    n = float(np.linalg.norm(quat))
    if n < 1e-6:
        raise OdometryError("odometry orientation is a zero quaternion")
    x, y, z, w = quat / n
    return xyz, yaw_from_quaternion(x, y, z, w)


# --------------------------------------------------------------------------- outputs


def estimate_is_publishable(est: Any) -> bool:
    """A fix may leave the node only when the localizer says so (fix_valid, i.e. TRACKING)
    and the numbers are sane: finite position, finite symmetric covariance with positive
    diagonal. The second half is a last guard against publishing garbage."""
    if not bool(getattr(est, "fix_valid", False)):
        return False
    vals = (est.lat, est.lon, est.alt)
    if not all(math.isfinite(float(v)) for v in vals):
        return False
    if not (-90.0 <= est.lat <= 90.0 and -180.0 <= est.lon <= 180.0):
        return False
    cov = np.asarray(est.cov_enu, dtype=np.float64)
    if cov.shape != (3, 3) or not np.all(np.isfinite(cov)):
        return False
    return bool(np.all(np.diag(cov) > 0.0))


def estimate_to_navsatfix(est: Any, frame_id: str = "base_link", msg: Any = None):
    """Estimate -> sensor_msgs/NavSatFix. STATUS_FIX only when fix_valid, else NO_FIX;
    covariance ENU m^2, row-major, COVARIANCE_TYPE_KNOWN; service 0 (not a GNSS)."""
    from sensor_msgs.msg import NavSatFix, NavSatStatus

    msg = msg or NavSatFix()
    msg.header.stamp = float_to_stamp(est.stamp)
    msg.header.frame_id = frame_id
    valid = estimate_is_publishable(est)
    msg.status.status = NavSatStatus.STATUS_FIX if valid else NavSatStatus.STATUS_NO_FIX
    msg.status.service = 0
    msg.latitude, msg.longitude, msg.altitude = float(est.lat), float(est.lon), float(est.alt)
    cov = np.asarray(est.cov_enu, dtype=np.float64).reshape(3, 3)
    cov = 0.5 * (cov + cov.T)
    msg.position_covariance = [float(v) for v in cov.reshape(-1)]
    msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_KNOWN
    return msg


# Orientation and twist are not estimated by the localizer: their covariance is this large
# so that fusers (robot_localization) give them no weight.
UNKNOWN_VARIANCE = 1e6


def _pose_covariance(est: Any) -> list[float]:
    cov6 = np.zeros((6, 6))
    cov = np.asarray(est.cov_enu, dtype=np.float64).reshape(3, 3)
    cov6[:3, :3] = 0.5 * (cov + cov.T)
    cov6[3, 3] = cov6[4, 4] = cov6[5, 5] = UNKNOWN_VARIANCE
    return [float(v) for v in cov6.reshape(-1)]


def estimate_to_pose(est: Any, enu: Any, frame_id: str = "map", msg: Any = None):
    """Estimate -> geometry_msgs/PoseWithCovarianceStamped in the local ENU frame `enu`
    (geo.frames.LocalENU anchored at the first initial fix); orientation = world yaw."""
    from geometry_msgs.msg import PoseWithCovarianceStamped

    msg = msg or PoseWithCovarianceStamped()
    msg.header.stamp = float_to_stamp(est.stamp)
    msg.header.frame_id = frame_id
    _fill_pose(msg.pose, est, enu)
    return msg


def _fill_pose(pose_cov: Any, est: Any, enu: Any) -> None:
    e, n, u = enu.to_enu(est.lat, est.lon, est.alt)
    pose_cov.pose.position.x, pose_cov.pose.position.y, pose_cov.pose.position.z = float(e), float(n), float(u)
    yaw = float(est.yaw) if math.isfinite(float(est.yaw)) else 0.0
    q = pose_cov.pose.orientation
    q.x, q.y, q.z, q.w = quaternion_from_yaw(yaw)
    pose_cov.covariance = _pose_covariance(est)


def estimate_to_odometry(est: Any, enu: Any, frame_id: str = "map", child_frame_id: str = "base_link",
                         msg: Any = None):
    """Estimate -> nav_msgs/Odometry (pose as estimate_to_pose; twist zero with UNKNOWN_VARIANCE)."""
    from nav_msgs.msg import Odometry

    msg = msg or Odometry()
    msg.header.stamp = float_to_stamp(est.stamp)
    msg.header.frame_id = frame_id
    msg.child_frame_id = child_frame_id
    _fill_pose(msg.pose, est, enu)
    msg.twist.covariance = [UNKNOWN_VARIANCE if i % 7 == 0 else 0.0 for i in range(36)]
    return msg


try:  # geographic_msgs is not on PyPI; publish GeoPoseStamped only where it exists.
    from geographic_msgs.msg import GeoPoseStamped as _GeoPoseStamped  # type: ignore
except Exception:  # noqa: BLE001
    _GeoPoseStamped = None

HAVE_GEOGRAPHIC_MSGS = _GeoPoseStamped is not None


def estimate_to_geopose(est: Any, frame_id: str = "base_link"):
    """Estimate -> geographic_msgs/GeoPoseStamped, or None where geographic_msgs is missing."""
    if _GeoPoseStamped is None:
        return None
    msg = _GeoPoseStamped()
    msg.header.stamp = float_to_stamp(est.stamp)
    msg.header.frame_id = frame_id
    msg.pose.position.latitude, msg.pose.position.longitude = float(est.lat), float(est.lon)
    msg.pose.position.altitude = float(est.alt)
    q = msg.pose.orientation
    q.x, q.y, q.z, q.w = quaternion_from_yaw(float(est.yaw) if math.isfinite(float(est.yaw)) else 0.0)
    return msg


def heatmap_to_image(heatmap: np.ndarray, *, stamp: float | None = None, frame_id: str = ""):
    """Debug heatmap (H, W) float -> mono8 Image, min..max stretched to 0..255."""
    h = np.asarray(heatmap, dtype=np.float32)
    if h.ndim > 2:
        h = h.reshape(h.shape[-2:])
    h = np.nan_to_num(h, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(h.min()), float(h.max())
    scaled = np.zeros(h.shape, np.uint8) if hi <= lo else ((h - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    return numpy_to_image(scaled, "mono8", stamp=stamp, frame_id=frame_id)
