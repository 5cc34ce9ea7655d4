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


def body_to_world(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """R = Rz(yaw) Ry(pitch) Rx(roll): body FLU vectors -> world ENU (pitch > 0 = nose down)."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    return rz @ ry @ rx


#: body (FLU) -> camera (OpenCV) axes of the camera looking straight down, image up = forward:
#: x_cam = -y_body, y_cam = -x_body, z_cam = -z_body
R_CAM_BODY = np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])


def world_to_camera(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """3x3 rotation world ENU -> camera (OpenCV axes) of the nadir camera at this attitude:
    one definition, so that the simulator renders what the localizer undoes."""
    return R_CAM_BODY @ body_to_world(yaw, pitch, roll).T
