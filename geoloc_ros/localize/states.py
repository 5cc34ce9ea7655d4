"""The localizer's states: what a consumer may do with an estimate depends on them.

Only TRACKING publishes a fix; every other state says why not (waiting for an initial
fix, recent rejections, lost, searching the map, outside the map).
"""
from __future__ import annotations

from enum import Enum


class LocalizerState(str, Enum):
    INITIALIZING = "INITIALIZING"  # no initial fix yet: nothing to propagate
    TRACKING = "TRACKING"  # recent measurements accepted: the fix is valid
    DEGRADED = "DEGRADED"  # several rejections / no measurements: search widened, no fix
    LOST = "LOST"  # covariance over bound or too many rejections: no fix
    RELOCALIZING = "RELOCALIZING"  # sweeping the reachable area, confirming candidates
    OFF_MAP = "OFF_MAP"  # predicted position outside the map coverage: no fix

    def __str__(self) -> str:  # "TRACKING", not "LocalizerState.TRACKING", in logs and CSV
        return self.value
