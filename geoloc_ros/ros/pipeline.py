"""The node's logic that is not ROS glue: latest-frame slot, odometry buffer, GPS rule.

Kept ROS-free so each rule is tested without a DDS graph (test/test_node.py), and so the
node file stays a thin adapter.

GPS-denial rule (the initial fix), `InitialFixPolicy`:
1. Fixes on `initial_fix_topic` are *trusted* until denial is declared. The first valid
   fix (status >= STATUS_FIX, finite lat/lon) seeds the localizer
   (`set_initial_fix`, sigma from its covariance, at least `initial_fix_sigma_m`).
   NO_FIX messages before that first fix are ignored (a receiver still acquiring).
2. While trusted, later fixes re-seed the localizer only if it is LOST or RELOCALIZING,
   at most every `gps_reseed_interval_s` (0 = never): GPS still works, use it.
3. Denial is declared, for good, by whichever comes first: `gps_denied_after` seconds
   of fix stamps after the first fix (0 = off); no fix for `gps_timeout_s` (arrival
   time, 0 = off); a fix with status NO_FIX after the first good one; the
   `~/declare_gps_denied` service. At denial the localizer is seeded once more from the
   last good fix, if it arrived within `gps_timeout_s` + 1 s (`denial_seed`): the best
   position there is. After denial the topic is ignored; only `~/set_initial_fix` (an
   explicit operator fix) seeds the localizer.
4. A restart (time jumping backwards, e.g. a bag loop) resets the rule to its start.
5. GPS seeds carry the odometry-to-world yaw when the last `GPS_YAW_WINDOW_S` of trusted
   fixes show enough travel (localize.alignment, the same rule as the offline replay).
"""
from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np


class LatestSlot:
    """A one-item mailbox where the newest item wins: `put` never blocks and replaces an
    item nobody has taken yet (so latency never accumulates); `take` waits for one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._has = False
        self._closed = False
        self.dropped = 0

    def put(self, item: Any) -> bool:
        """Store `item`; True when it replaced an untaken one (a dropped frame)."""
        with self._cond:
            replaced = self._has
            if replaced:
                self.dropped += 1
            self._item, self._has = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> Any:
        """The newest item, or None after `timeout` seconds / when closed."""
        with self._cond:
            if not self._has and not self._closed:
                self._cond.wait(timeout)
            if not self._has:
                return None
            item, self._item, self._has = self._item, None, False
            return item

    def clear(self) -> None:
        with self._cond:
            self._item, self._has = None, False

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class OdometryBuffer:
    """Recent odometry samples for interpolation at image stamps (thread-safe)."""

    def __init__(self, maxlen: int = 2000) -> None:
        self._t: deque = deque(maxlen=maxlen)
        self._v: deque = deque(maxlen=maxlen)  # (x, y, z, yaw)
        self._lock = threading.Lock()
        self._newer = threading.Condition(self._lock)

    def __len__(self) -> int:
        return len(self._t)

    def add(self, stamp: float, xyz: np.ndarray, yaw: float) -> bool:
        """Append a sample; False (and nothing stored) for a stamp older than the last one:
        the caller decides whether that is a restart (see `clear`)."""
        with self._lock:
            if self._t and stamp < self._t[-1]:
                return False
            if self._t and stamp == self._t[-1]:
                self._v[-1] = (float(xyz[0]), float(xyz[1]), float(xyz[2]), float(yaw))
                return True
            self._t.append(float(stamp))
            self._v.append((float(xyz[0]), float(xyz[1]), float(xyz[2]), float(yaw)))
            self._newer.notify_all()
            return True

    def wait_for(self, stamp: float, timeout: float) -> bool:
        """Wait up to `timeout` s until a sample at or after `stamp` exists (image and
        odometry travel on separate topics; the image may arrive first)."""
        with self._newer:
            return self._newer.wait_for(lambda: bool(self._t) and self._t[-1] >= stamp, timeout)

    def last_stamp(self) -> float | None:
        with self._lock:
            return self._t[-1] if self._t else None

    def clear(self) -> None:
        with self._lock:
            self._t.clear()
            self._v.clear()

    def at(self, stamp: float, max_age_s: float) -> tuple[np.ndarray, float]:
        """(xyz, yaw) at `stamp`: linear between the two neighbours (yaw on the circle);
        the nearest sample when `stamp` is outside but within `max_age_s`; LookupError otherwise."""
        with self._lock:
            if not self._t:
                raise LookupError("no odometry received yet")
            ts = list(self._t)
            vs = list(self._v)
        i = bisect_left(ts, stamp)
        if i < len(ts) and ts[i] == stamp:
            v = vs[i]
            return np.array(v[:3]), v[3]
        if i == 0 or i == len(ts):
            j = 0 if i == 0 else len(ts) - 1
            gap = abs(ts[j] - stamp)
            if gap > max_age_s:
                side = "before the first" if i == 0 else "after the last"
                raise LookupError(f"image stamp {gap:.2f} s {side} odometry sample (odom_max_age_s {max_age_s:g})")
            v = vs[j]
            return np.array(v[:3]), v[3]
        t0, t1 = ts[i - 1], ts[i]
        if t1 - t0 > 2 * max_age_s and min(stamp - t0, t1 - stamp) > max_age_s:
            raise LookupError(f"odometry gap of {t1 - t0:.2f} s around the image stamp")
        w = (stamp - t0) / (t1 - t0)
        a, b = np.array(vs[i - 1]), np.array(vs[i])
        xyz = a[:3] * (1 - w) + b[:3] * w
        dyaw = math.atan2(math.sin(b[3] - a[3]), math.cos(b[3] - a[3]))
        yaw = a[3] + w * dyaw
        return xyz, math.atan2(math.sin(yaw), math.cos(yaw))


@dataclass
class Seed:
    lat: float
    lon: float
    alt: float
    sigma_m: float
    stamp: float
    source: str  # "gps", "gps-reseed", "gps-denial", "operator"
    yaw: float | None = None  # ENU heading (rad, from east, CCW) of the UAV at `stamp`, when known
    relocalize: bool = False  # the fix is only a prior: search around it (Localizer.set_initial_fix)


def fix_sigma_m(position_covariance, covariance_type: int, floor_m: float) -> float:
    """1-sigma horizontal radius of a NavSatFix: sqrt of the larger E/N variance when the
    covariance is known (type > 0), else `floor_m`; never below `floor_m`."""
    if covariance_type and covariance_type > 0:
        c = [float(v) for v in position_covariance]
        if len(c) == 9 and all(math.isfinite(v) for v in (c[0], c[4])) and max(c[0], c[4]) > 0:
            return max(math.sqrt(max(c[0], c[4])), floor_m)
    return floor_m


class InitialFixPolicy:
    """The GPS-denial rule of the module docstring; the node feeds it fixes and ticks."""

    RESEED_STATES = ("LOST", "RELOCALIZING")

    def __init__(self, denied_after_s: float = 0.0, timeout_s: float = 2.0, reseed_interval_s: float = 5.0,
                 sigma_floor_m: float = 5.0) -> None:
        self.denied_after_s = denied_after_s
        self.timeout_s = timeout_s
        self.reseed_interval_s = reseed_interval_s
        self.sigma_floor_m = sigma_floor_m
        self._lock = threading.Lock()
        self._init_state()

    #: how much trusted GPS track is kept for the odometry-to-world yaw (s of fix stamps)
    GPS_YAW_WINDOW_S = 20.0

    def _init_state(self) -> None:
        self._first_stamp: float | None = None
        self._last_arrival: float | None = None
        self._last_seed_arrival = -math.inf
        self.denied = False
        self.denied_reason = ""
        self.ignored = 0
        self._history: deque = deque()  # trusted fixes: (stamp, lat, lon, alt, sigma_m, arrival)

    def reset(self) -> None:
        """Back to the start (a restart of the data: bag loop, clock reset)."""
        with self._lock:
            self._init_state()

    @property
    def state(self) -> str:
        if self.denied:
            return "denied"
        return "trusted" if self._first_stamp is not None else "waiting"

    def deny(self, reason: str) -> bool:
        """Declare GPS denial (idempotent); True when this call changed the state."""
        with self._lock:
            if self.denied:
                return False
            self.denied, self.denied_reason = True, reason
            return True

    def on_fix(self, *, ok: bool, lat: float, lon: float, alt: float, sigma_m: float, stamp: float,
               arrival: float, localizer_state: str = "") -> Seed | None:
        """A fix arrived on the initial-fix topic; returns a Seed when the localizer must be seeded."""
        with self._lock:
            if self.denied:
                self.ignored += 1
                return None
            ok = ok and math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180
            if not ok:
                if self._first_stamp is not None:
                    self.denied, self.denied_reason = True, "GPS reported no fix"
                return None
            self._last_arrival = arrival
            alt = alt if math.isfinite(alt) else 0.0
            sigma = max(sigma_m, self.sigma_floor_m)
            if self._history and stamp <= self._history[-1][0]:
                self._history.clear()  # stamps went back: an old track says nothing about this one
            self._history.append((stamp, lat, lon, alt, sigma, arrival))
            while self._history and self._history[0][0] < stamp - self.GPS_YAW_WINDOW_S:
                self._history.popleft()
            if self._first_stamp is None:
                self._first_stamp = stamp
                self._last_seed_arrival = arrival
                return Seed(lat, lon, alt, sigma, stamp, "gps")
            if self.denied_after_s > 0 and stamp - self._first_stamp >= self.denied_after_s:
                self.denied, self.denied_reason = True, f"gps_denied_after {self.denied_after_s:g} s"
                return None
            if (self.reseed_interval_s > 0 and localizer_state in self.RESEED_STATES
                    and arrival - self._last_seed_arrival >= self.reseed_interval_s):
                self._last_seed_arrival = arrival
                return Seed(lat, lon, alt, sigma, stamp, "gps-reseed")
            return None

    def track(self) -> list[tuple]:
        """The trusted fixes of the last GPS_YAW_WINDOW_S: (stamp, lat, lon, alt, sigma_m, arrival)."""
        with self._lock:
            return list(self._history)

    def denial_seed(self, now: float) -> Seed | None:
        """The seed to apply when denial has just been declared: the last trusted fix, when
        it arrived at most `timeout_s` + 1 s before `now` (monotonic); None otherwise (a
        stale fix would pull a localizer that has been tracking without GPS backwards)."""
        with self._lock:
            if not self.denied or not self._history:
                return None
            st, lat, lon, alt, sigma, arrival = self._history[-1]
            if now - arrival > max(self.timeout_s, 0.0) + 1.0:
                return None
            return Seed(lat, lon, alt, sigma, st, "gps-denial")

    def tick(self, now: float) -> bool:
        """Check the timeout; True when this call declared denial."""
        with self._lock:
            if self.denied or self._last_arrival is None or self.timeout_s <= 0:
                return False
            if now - self._last_arrival > self.timeout_s:
                self.denied, self.denied_reason = True, f"no fix for {self.timeout_s:g} s"
                return True
            return False

