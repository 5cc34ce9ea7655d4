"""Angles and quaternions, once: wrapping, yaw / roll / pitch from a quaternion and back.

Conventions (REP-103): ENU, radians, yaw counter-clockwise from East; ZYX Euler angles
(R = Rz(yaw) Ry(pitch) Rx(roll)); quaternions ordered (x, y, z, w) as in ROS messages.
"""
from __future__ import annotations

import math

import numpy as np


def wrap_angle(a: float) -> float:
    """Angle wrapped to [-pi, pi)."""
    return float((a + math.pi) % (2.0 * math.pi) - math.pi)


def wrap_angles(a) -> np.ndarray:
    """Array of angles wrapped to [-pi, pi)."""
    return (np.asarray(a, dtype=np.float64) + math.pi) % (2.0 * math.pi) - math.pi


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    """ENU yaw (rotation about +z) of a unit quaternion (ZYX convention)."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def roll_pitch_from_quaternion(x: float, y: float, z: float, w: float) -> tuple[float, float]:
    """(roll, pitch) of a quaternion, ZYX convention. It is normalised first; a zero or
    non-finite quaternion gives (0, 0) (attitude unknown = level)."""
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(n) or n < 1e-9:
        return 0.0, 0.0
    x, y, z, w = x / n, y / n, z / n, w / n
    roll = math.atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2.0 * (w * y - z * x))))
    return roll, pitch


def quaternion_from_euler(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of R = Rz(yaw) Ry(pitch) Rx(roll)."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy)


def quaternion_from_yaw(yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) for a pure rotation about +z."""
    return 0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)
