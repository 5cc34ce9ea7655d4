"""One stamped, thread-safe time series with interpolation (odometry, attitude, ground truth).

Why one type: image and odometry arrive on separate topics at different rates, so every
consumer needs "the value at this image's stamp". Doing that in one place means the node
and the offline replay interpolate identically (linear per column; angle columns on the
circle), and apply the same age limit.
"""
from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import deque
from typing import Sequence

import numpy as np


class StampedSeries:
    """Samples (stamp, values) with strictly increasing stamps, at most `maxlen` kept.

    `angle_columns`: indices of columns that are angles (radians): interpolated along the
    shorter arc and returned wrapped to [-pi, pi)."""

    def __init__(self, n_columns: int, angle_columns: Sequence[int] = (), maxlen: int = 2000) -> None:
        self.n_columns = int(n_columns)
        self._angles = tuple(int(i) for i in angle_columns)
        self._t: deque = deque(maxlen=maxlen)
        self._v: deque = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._newer = threading.Condition(self._lock)

    def __len__(self) -> int:
        with self._lock:
            return len(self._t)

    def add(self, stamp: float, values: Sequence[float]) -> bool:
        """Append a sample; a sample at the newest stamp replaces it. False (nothing stored)
        for a stamp older than the newest one: the caller decides what that means."""
        v = tuple(float(x) for x in values)
        if len(v) != self.n_columns:
            raise ValueError(f"expected {self.n_columns} values, got {len(v)}")
        with self._lock:
            if self._t and stamp < self._t[-1]:
                return False
            if self._t and stamp == self._t[-1]:
                self._v[-1] = v
                return True
            self._t.append(float(stamp))
            self._v.append(v)
            self._newer.notify_all()
            return True

    def replace(self, samples: Sequence[tuple[float, Sequence[float]]]) -> None:
        """Drop everything and hold `samples` (sorted by stamp) instead: a restart."""
        with self._lock:
            self._t.clear()
            self._v.clear()
            for t, v in samples:
                self._t.append(float(t))
                self._v.append(tuple(float(x) for x in v))
            self._newer.notify_all()

    def clear(self) -> None:
        self.replace(())

    def first_stamp(self) -> float | None:
        with self._lock:
            return self._t[0] if self._t else None

    def last_stamp(self) -> float | None:
        with self._lock:
            return self._t[-1] if self._t else None

    def wait_for(self, stamp: float, timeout: float) -> bool:
        """Wait up to `timeout` s until a sample at or after `stamp` exists."""
        with self._newer:
            return self._newer.wait_for(lambda: bool(self._t) and self._t[-1] >= stamp, timeout)

    def at(self, stamp: float, max_age_s: float = math.inf) -> np.ndarray:
        """Values at `stamp`: linear between the two neighbours; the nearest sample when
        `stamp` lies outside the series by at most `max_age_s`; a gap between neighbours
        longer than 2 * max_age_s with the stamp more than max_age_s from both also fails.
        Raises LookupError (with the reason) when there is no usable sample."""
        with self._lock:
            if not self._t:
                raise LookupError("no sample received yet")
            ts, vs = list(self._t), list(self._v)
        i = bisect_left(ts, stamp)
        if i < len(ts) and ts[i] == stamp:
            return np.array(vs[i])
        if i == 0 or i == len(ts):
            j = 0 if i == 0 else len(ts) - 1
            gap = abs(ts[j] - stamp)
            if not gap <= max_age_s:
                side = "before the first" if i == 0 else "after the last"
                raise LookupError(f"stamp {gap:.2f} s {side} sample (max age {max_age_s:g} s)")
            return np.array(vs[j])
        t0, t1 = ts[i - 1], ts[i]
        if t1 - t0 > 2 * max_age_s and min(stamp - t0, t1 - stamp) > max_age_s:
            raise LookupError(f"gap of {t1 - t0:.2f} s between samples around the stamp")
        w = (stamp - t0) / (t1 - t0)
        a, b = np.array(vs[i - 1]), np.array(vs[i])
        out = a * (1.0 - w) + b * w
        for k in self._angles:
            d = math.atan2(math.sin(b[k] - a[k]), math.cos(b[k] - a[k]))
            out[k] = math.atan2(math.sin(a[k] + w * d), math.cos(a[k] + w * d))
        return out

    def samples(self) -> list[tuple[float, tuple]]:
        """A copy of the (stamp, values) samples, oldest first."""
        with self._lock:
            return list(zip(self._t, self._v))
