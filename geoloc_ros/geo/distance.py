"""Great-circle distances on a sphere (what the UL14 protocol and most papers use)."""
from __future__ import annotations

import numpy as np

#: Earth radius of the UL14 evaluation code (metres); the protocol must use exactly this.
UL14_EARTH_RADIUS_M = 6378137.0
#: IUGG mean Earth radius (metres), the default for everything else.
MEAN_EARTH_RADIUS_M = 6371008.8


def haversine_m(lat1, lon1, lat2, lon2, radius_m: float = MEAN_EARTH_RADIUS_M):
    """Great-circle distance in metres between points given in degrees (broadcasts)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2.0) ** 2
    d = 2.0 * radius_m * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return float(d) if np.ndim(d) == 0 else d
