"""Roll and pitch from odometry quaternions, and a small time buffer of them.

Why here (ROS-free): the node and the offline replay both feed `Frame.roll/pitch` from the
same odometry quaternion, so a body-fixed camera is rectified identically live and offline.
"""
from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import deque


def roll_pitch_from_quaternion(x: float, y: float, z: float, w: float) -> tuple[float, float]:
    """(roll, pitch) in radians of a quaternion, ZYX convention (REP-103). The quaternion is
    normalised first; a zero or non-finite quaternion gives (0, 0) (attitude unknown = level)."""
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(n) or n < 1e-9:
        return 0.0, 0.0
    x, y, z, w = x / n, y / n, z / n, w / n
    roll = math.atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2.0 * (w * y - z * x))))
    return roll, pitch


class AttitudeBuffer:
    """Recent (stamp, roll, pitch) samples; `at(stamp)` interpolates linearly between the two
    neighbours and holds the nearest sample outside them (thread-safe). Attitude is small and
    smooth for a multicopter camera, so plain linear interpolation of the angles is enough."""

    def __init__(self, maxlen: int = 2000) -> None:
        self._t: deque = deque(maxlen=maxlen)
        self._v: deque = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._t)

    def add(self, stamp: float, roll: float, pitch: float) -> None:
        """Append a sample; a stamp older than the newest one restarts the buffer (bag loop)."""
        with self._lock:
            if self._t and stamp < self._t[-1]:
                self._t.clear()
                self._v.clear()
            if self._t and stamp == self._t[-1]:
                self._v[-1] = (float(roll), float(pitch))
                return
            self._t.append(float(stamp))
            self._v.append((float(roll), float(pitch)))

    def clear(self) -> None:
        with self._lock:
            self._t.clear()
            self._v.clear()

    def at(self, stamp: float) -> tuple[float, float]:
        """(roll, pitch) at `stamp`; (0, 0) when no sample exists."""
        with self._lock:
            if not self._t:
                return 0.0, 0.0
            ts, vs = list(self._t), list(self._v)
        i = bisect_left(ts, stamp)
        if i == 0:
            return vs[0]
        if i == len(ts):
            return vs[-1]
        t0, t1 = ts[i - 1], ts[i]
        w = (stamp - t0) / (t1 - t0) if t1 > t0 else 1.0
        (r0, p0), (r1, p1) = vs[i - 1], vs[i]
        return r0 + w * (r1 - r0), p0 + w * (p1 - p0)
