"""The GPS-denial rule: when GPS fixes seed the localizer, and when GPS stops being trusted.

ROS-free so the node and the offline replay apply it identically; times are the caller's
clock (`now`: the node's clock live, bag time offline), so a replay at any rate and a
sim-time run decide the same way.

1. Fixes on the initial-fix topic are *trusted* until denial is declared. The first valid
   fix (status >= STATUS_FIX, finite lat/lon, a finite 1-sigma not above `max_sigma_m`)
   seeds the localizer (sigma from its covariance, at least `sigma_floor_m`). NO_FIX
   messages before that first fix are ignored (a receiver still acquiring).
2. While trusted, later fixes re-seed the localizer only if it is LOST or RELOCALIZING,
   at most every `reseed_interval_s` (0 = never): GPS still works, use it.
3. Denial is declared, for good, by whichever comes first: `denied_after_s` seconds of fix
   stamps after the first fix (0 = off); no fix for `timeout_s` (0 = off); a fix with status
   NO_FIX after the first good one; an explicit call (`~/declare_gps_denied`). At denial the
   localizer is seeded once more from the last trusted fix that agrees with the recent
   track (`denial_seed`): a last fix 150 m off the track (multipath just before a jammer)
   is passed over for the one before it.
4. A restart (time jumping backwards, e.g. a bag loop) resets the rule to its start.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..geo.frames import LocalENU
from .messages import FixReading


@dataclass
class Seed:
    """A position to (re)start the localizer from."""

    lat: float
    lon: float
    alt: float
    sigma_m: float
    stamp: float
    source: str  # "gps", "gps-reseed", "gps-denial", "operator"
    yaw: float | None = None  # ENU heading (rad, from east, CCW) of the UAV at `stamp`, when known
    relocalize: bool = False  # the fix is only a prior: search around it (Localizer.set_initial_fix)


@dataclass
class GpsRuleConfig:
    """The rule's knobs (node parameters gps_denied_after, gps_timeout_s, ...)."""

    denied_after_s: float = 0.0
    timeout_s: float = 2.0
    reseed_interval_s: float = 5.0
    sigma_floor_m: float = 5.0
    max_sigma_m: float = 1000.0  # a fix claiming a larger 1-sigma is not a position

    @classmethod
    def from_params(cls, p: dict) -> "GpsRuleConfig":
        """From the node parameters (ros.params names)."""
        return cls(denied_after_s=p["gps_denied_after"], timeout_s=p["gps_timeout_s"],
                   reseed_interval_s=p["gps_reseed_interval_s"], sigma_floor_m=p["initial_fix_sigma_m"],
                   max_sigma_m=p["max_fix_sigma_m"])


#: how much trusted GPS track is kept (s of fix stamps): the odometry-to-world yaw and the
#: consistency check of the denial seed use it
GPS_TRACK_WINDOW_S = 20.0


def consistent_fixes(rows: Sequence[tuple], odom_xy_at: Callable[[float], Sequence[float] | None],
                     drift_frac: float = 0.05, min_tol_m: float = 10.0) -> list[bool]:
    """For each fix (stamp, lat, lon, alt, sigma_m, ...), whether it agrees with the others:
    the distance to each other fix must match the distance odometry flew between the two
    stamps within max(3 sigma, min_tol_m) + drift_frac * distance (rotation-free, so no
    heading is needed). A fix agreeing with fewer than half of the others it can be
    compared with is an outlier. Fixes without odometry at their stamp count as agreeing."""
    n = len(rows)
    if n < 3:
        return [True] * n
    enu = LocalENU(float(rows[0][1]), float(rows[0][2]))
    e, nn, _ = enu.to_enu([float(r[1]) for r in rows], [float(r[2]) for r in rows], 0.0)
    w = np.stack([np.atleast_1d(e), np.atleast_1d(nn)], 1)
    odo = [odom_xy_at(float(r[0])) for r in rows]
    ok = []
    for i in range(n):
        if odo[i] is None:
            ok.append(True)
            continue
        votes = agree = 0
        for j in range(n):
            if j == i or odo[j] is None:
                continue
            d_odom = float(np.hypot(*(np.asarray(odo[i]) - np.asarray(odo[j]))))
            d_gps = float(np.hypot(*(w[i] - w[j])))
            tol = max(3.0 * math.hypot(float(rows[i][4]), float(rows[j][4])), min_tol_m) + drift_frac * d_odom
            votes += 1
            agree += abs(d_gps - d_odom) <= tol
        ok.append(votes < 2 or agree * 2 >= votes)
    return ok


class InitialFixPolicy:
    """The GPS-denial rule of the module docstring; the caller feeds it fixes and ticks."""

    RESEED_STATES = ("LOST", "RELOCALIZING")

    def __init__(self, cfg: GpsRuleConfig | None = None) -> None:
        self.cfg = cfg or GpsRuleConfig()
        self._lock = threading.Lock()
        self._init_state()

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

    def on_fix(self, fix: FixReading, now: float, localizer_state: str = "") -> Seed | None:
        """A fix arrived on the initial-fix topic at `now`; a Seed when the localizer must be seeded."""
        with self._lock:
            if self.denied:
                self.ignored += 1
                return None
            if fix.ok and fix.sigma_m > self.cfg.max_sigma_m:
                self.ignored += 1  # a "fix" with a 1e6 m sigma says nothing about the position
                return None
            if not fix.ok:
                if self._first_stamp is not None:
                    self.denied, self.denied_reason = True, "GPS reported no fix"
                return None
            self._last_arrival = now
            sigma = max(fix.sigma_m, self.cfg.sigma_floor_m)
            if self._history and fix.stamp <= self._history[-1][0]:
                self._history.clear()  # stamps went back: an old track says nothing about this one
            self._history.append((fix.stamp, fix.lat, fix.lon, fix.alt, sigma, now))
            while self._history and self._history[0][0] < fix.stamp - GPS_TRACK_WINDOW_S:
                self._history.popleft()
            if self._first_stamp is None:
                self._first_stamp = fix.stamp
                self._last_seed_arrival = now
                return Seed(fix.lat, fix.lon, fix.alt, sigma, fix.stamp, "gps")
            if self.cfg.denied_after_s > 0 and fix.stamp - self._first_stamp >= self.cfg.denied_after_s:
                self.denied, self.denied_reason = True, f"gps_denied_after {self.cfg.denied_after_s:g} s"
                return None
            if (self.cfg.reseed_interval_s > 0 and localizer_state in self.RESEED_STATES
                    and now - self._last_seed_arrival >= self.cfg.reseed_interval_s):
                self._last_seed_arrival = now
                return Seed(fix.lat, fix.lon, fix.alt, sigma, fix.stamp, "gps-reseed")
            return None

    def track(self) -> list[tuple]:
        """The trusted fixes of the last GPS_TRACK_WINDOW_S: (stamp, lat, lon, alt, sigma_m, arrival)."""
        with self._lock:
            return list(self._history)

    def denial_seed(self, now: float, odom_xy_at: Callable[[float], Sequence[float] | None]
                    = lambda t: None) -> tuple[Seed | None, str]:
        """(seed, note) to apply when denial has just been declared: the newest trusted fix
        that agrees with the recent track (`consistent_fixes`), when the newest fix arrived
        at most `timeout_s` + 1 s before `now` (a stale fix would pull a localizer that has
        been tracking without GPS backwards). The note says when fixes were passed over."""
        with self._lock:
            rows = list(self._history)
            if not self.denied or not rows:
                return None, ""
            if now - rows[-1][5] > max(self.cfg.timeout_s, 0.0) + 1.0:
                return None, "last fix too old to seed from"
        ok = consistent_fixes(rows, odom_xy_at)
        good = [r for r, g in zip(rows, ok) if g]
        if not good:
            return None, "no GPS fix agrees with the recent track: not seeding at denial"
        st, lat, lon, alt, sigma, _ = good[-1]
        skipped = sum(1 for r, g in zip(rows, ok) if not g and r[0] > st)
        note = f"{skipped} last fix(es) disagree with the track and were passed over" if skipped else ""
        return Seed(lat, lon, alt, sigma, st, "gps-denial"), note

    def tick(self, now: float) -> bool:
        """Check the timeout; True when this call declared denial."""
        with self._lock:
            if self.denied or self._last_arrival is None or self.cfg.timeout_s <= 0:
                return False
            if now - self._last_arrival > self.cfg.timeout_s:
                self.denied, self.denied_reason = True, f"no fix for {self.cfg.timeout_s:g} s"
                return True
            return False
