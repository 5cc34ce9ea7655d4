"""The fix as a REP-105 transform on /tf.

Two modes (parameter `tf.mode`):
- map_odom (default): world_frame_id -> tf.odom_frame_id, the correction that puts the
  odometry on the fix. With the odometry's pose (x, y, z, yaw) at the fix's stamp and the
  fix's pose in the map (e, n, u, yaw_map), the correction is a yaw rotation
  yaw_c = yaw_map - yaw and a translation t = p_map - R(yaw_c) p_odom, so that
  map->odom * odom->base_link = the fix (roll and pitch stay the odometry's: both frames are
  gravity-aligned ENU). The odometry source keeps broadcasting odom -> base_link.
- map_base: world_frame_id -> base_frame_id (the pose of ~/pose), for systems without an
  odometry TF.
The transform carries the image stamp of the fix. tf2_ros's TransformBroadcaster is used
when importable; otherwise the node publishes tf2_msgs/TFMessage on /tf itself with the
broadcaster's QoS (reliable, volatile, keep last 100), which is all a TF listener reads.
"""
from __future__ import annotations

import math
from typing import Any

from ..geo.angles import quaternion_from_yaw, wrap_angle

try:
    from tf2_ros import TransformBroadcaster  # type: ignore
except ImportError:  # the PyPI ROS wheels do not ship tf2_ros
    TransformBroadcaster = None
try:
    from tf2_msgs.msg import TFMessage  # type: ignore
except ImportError:
    TFMessage = None

TF_MODES = ("map_odom", "map_base")


def available() -> str:
    """'' when transforms can be sent, else why not (one line)."""
    if TransformBroadcaster is None and TFMessage is None:
        return "neither tf2_ros nor tf2_msgs is installed"
    return ""


def map_to_odom(p_map: tuple[float, float, float], yaw_map: float, p_odom: tuple[float, float, float],
                yaw_odom: float) -> tuple[tuple[float, float, float], float]:
    """(translation, yaw) of map -> odom such that it maps the odometry pose onto the map pose."""
    yaw_c = wrap_angle(yaw_map - yaw_odom)
    c, s = math.cos(yaw_c), math.sin(yaw_c)
    x, y, z = p_odom
    t = (p_map[0] - (c * x - s * y), p_map[1] - (s * x + c * y), p_map[2] - z)
    return t, yaw_c


def transform_msg(stamp: Any, parent: str, child: str, t: tuple[float, float, float], yaw: float):
    """geometry_msgs/TransformStamped (rotation about z only)."""
    from geometry_msgs.msg import TransformStamped

    m = TransformStamped()
    m.header.stamp = stamp
    m.header.frame_id, m.child_frame_id = parent, child
    m.transform.translation.x, m.transform.translation.y, m.transform.translation.z = (float(v) for v in t)
    q = m.transform.rotation
    q.x, q.y, q.z, q.w = quaternion_from_yaw(float(yaw))
    return m


class TfOutput:
    """Sends the fix's transform (see the module docstring); `send(est, enu, odom_pose)`."""

    def __init__(self, node: Any, mode: str, map_frame: str, odom_frame: str, base_frame: str) -> None:
        if mode not in TF_MODES:
            raise ValueError(f"tf.mode must be one of {', '.join(TF_MODES)}, got {mode!r}")
        why = available()
        if why:
            raise RuntimeError(why)
        self.mode, self.map_frame, self.odom_frame, self.base_frame = mode, map_frame, odom_frame, base_frame
        if TransformBroadcaster is not None:
            self._broadcaster = TransformBroadcaster(node)
            self._pub = None
        else:
            from .qos import reliable

            self._broadcaster = None
            self._pub = node.create_publisher(TFMessage, "/tf", reliable(100))
        self.sent = 0

    def make(self, est: Any, enu: Any, odom_pose: tuple[float, ...] | None):
        """The TransformStamped for an estimate, or None (map_odom without odometry at its stamp)."""
        from .convert import float_to_stamp

        e, n, u = enu.to_enu(est.lat, est.lon, est.alt)
        yaw = float(est.yaw) if math.isfinite(float(est.yaw)) else 0.0
        stamp = float_to_stamp(est.stamp)
        if self.mode == "map_base":
            return transform_msg(stamp, self.map_frame, self.base_frame, (e, n, u), yaw)
        if odom_pose is None:
            return None
        x, y, z, yaw_odom = (float(v) for v in odom_pose[:4])
        t, yaw_c = map_to_odom((e, n, u), yaw, (x, y, z), yaw_odom)
        return transform_msg(stamp, self.map_frame, self.odom_frame, t, yaw_c)

    def send(self, est: Any, enu: Any, odom_pose: tuple[float, ...] | None) -> bool:
        m = self.make(est, enu, odom_pose)
        if m is None:
            return False
        if self._broadcaster is not None:
            self._broadcaster.sendTransform(m)
        else:
            self._pub.publish(TFMessage(transforms=[m]))
        self.sent += 1
        return True
