"""Counting position discontinuities for consumers that must not low-pass a jump.

An autopilot that fuses the fix (PX4's AuxGlobalPosition.lat_lon_reset_counter, a vision
odometry reset counter) treats a change of the counter as "the position jumped on purpose:
reset to it" instead of rejecting the jump in its innovation gate. The fix jumps when
- a seed was applied (GPS, operator, the denial seed; `Session.seeds_applied`),
- a relocalization succeeded (`Localizer.counts["relocalized"]`),
- the track switched to a confirmed challenger (`Tracker.counts["track_switches"]`),
- the run restarted with a fresh localizer (`Session.restarts`: bag loop, clock reset).
ROS-free; the node reads it when it publishes.
"""
from __future__ import annotations

from typing import Any


def discontinuity_key(session: Any) -> tuple[int, ...]:
    """The counts whose change means the position may have jumped (duck-typed: a fake
    localizer without counters contributes zeros)."""
    loc = getattr(session, "localizer", None)
    counts = getattr(loc, "counts", None) or {}
    tracker = getattr(loc, "tracker", None)
    tcounts = getattr(tracker, "counts", None) or {}
    return (int(getattr(session, "restarts", 0)), int(getattr(session, "seeds_applied", 0)),
            int(counts.get("relocalized", 0)), int(tcounts.get("track_switches", 0)))


class ResetCounter:
    """A uint8 counter (wraps at 256) bumped once per change of `discontinuity_key`. The
    first value seen is the baseline (0): a counter starts at zero, whatever happened before
    the first published fix."""

    def __init__(self) -> None:
        self.value = 0
        self._key: tuple[int, ...] | None = None

    def update(self, key: tuple[int, ...]) -> int:
        if self._key is not None and key != self._key:
            self.value = (self.value + 1) % 256
        self._key = key
        return self.value
