"""QoS profiles of the node, in one place (architecture.md: sensor data in, reliable out).

Inputs subscribe best effort: a best-effort subscription matches both best-effort
publishers (camera drivers, MAVROS) and reliable ones (rosbag2 play, ros2 topic pub),
and a late frame is worth nothing to a localizer anyway. Outputs are reliable so that
robot_localization, loggers and `ros2 topic echo` (all reliable by default) receive them.
"""
from __future__ import annotations

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)


def sensor_in(depth: int = 5) -> QoSProfile:
    """Best effort, volatile, keep last `depth` (qos_profile_sensor_data with another depth)."""
    q = QoSProfile(**{k: getattr(qos_profile_sensor_data, k) for k in ("reliability", "durability", "history")},
                   depth=depth)
    return q


def reliable(depth: int) -> QoSProfile:
    """Reliable, volatile, keep last `depth`: what a default ROS reader or writer matches."""
    return QoSProfile(reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
                      history=HistoryPolicy.KEEP_LAST, depth=depth)


IMAGE_IN = sensor_in(2)  # the latest-frame slot keeps one; DDS needs no deeper queue
CAMERA_INFO_IN = sensor_in(2)
ODOM_IN = sensor_in(50)  # high rate; buffered by the node for interpolation
ALTITUDE_IN = sensor_in(10)
FIX_IN = sensor_in(10)

COMMAND_IN = reliable(5)
OUTPUT = reliable(10)
DEBUG_IMAGE = reliable(1)
DIAGNOSTICS = OUTPUT
# PX4's uXRCE-DDS bridge reads /fmu/in/* best effort in some versions and reliable in others:
# a reliable writer matches both (a best-effort one would miss a reliable reader)
PX4_IN = reliable(5)
