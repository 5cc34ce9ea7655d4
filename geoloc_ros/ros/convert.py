"""Estimates -> ROS messages (NavSatFix, pose, odometry, images), without cv_bridge.

The input side (Image / CameraInfo / Odometry / NavSatFix -> validated values) lives in
geoloc_ros/runtime/messages.py, shared with the offline replay; this module builds the
messages the node publishes, from the real `sensor_msgs` / `geometry_msgs` / `nav_msgs`
classes (imported lazily).

Conventions (REP-103/105, docs/DESIGN.md):
- Covariances are ENU [m^2]. NavSatFix.position_covariance is row-major E, N, U with
  COVARIANCE_TYPE_KNOWN; altitude is copied from the Estimate, whose datum is the datum
  of the initial fix (NavSatFix defines it as height above the WGS84 ellipsoid; MAVROS'
  global_position/global follows that).
- Poses are in a local ENU world frame (`map`) anchored at the first initial fix.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..geo.angles import quaternion_from_yaw
from ..runtime.messages import ImageConversionError, encoding_info


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
    enc = encoding_info(encoding)
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


def float_to_stamp(t: float, msg: Any = None):
    """float seconds -> builtin_interfaces/Time (nanoseconds rounded, carry handled)."""
    if msg is None:
        from builtin_interfaces.msg import Time
        msg = Time()
    ns = int(round(float(t) * 1e9))
    msg.sec, msg.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
    return msg


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
