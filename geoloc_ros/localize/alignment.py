"""Odometry-to-world heading from the GPS track flown before denial.

Odometry (VIO, wheel/IMU dead reckoning) lives in its own frame whose yaw relative to
ENU is unknown; a localizer seeded with only a position has to learn that yaw from its
first matches, and until then every odometry step points the wrong way. While GPS still
works we can measure the yaw directly: the 2-D rotation that best maps the odometry
displacements onto the GPS displacements over the last seconds (Procrustes without
scale). The node and the offline replay both call this, so they seed identically.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ..geo.frames import LocalENU


def odom_yaw_offset(
    gps: Sequence[tuple],
    odom_xy_at: Callable[[float], Sequence[float] | None],
    *,
    window_s: float = 20.0,
    min_travel_m: float = 20.0,
) -> float | None:
    """Yaw (rad) to add to an odometry heading to get the ENU heading, or None.

    `gps`: (stamp, lat, lon, ...) rows, oldest first; only the last `window_s` seconds
    are used. `odom_xy_at(stamp)`: odometry (x, y) at that stamp, or None where the
    odometry does not cover it (those GPS rows are skipped). None when fewer than three
    rows remain or the UAV moved less than `min_travel_m` across them (hovering: the
    rotation is not observable).
    """
    if len(gps) < 3:
        return None
    t_end = float(gps[-1][0])
    w_rows, o_rows = [], []
    for r in gps:
        if float(r[0]) < t_end - window_s:
            continue
        xy = odom_xy_at(float(r[0]))
        if xy is None:
            continue
        w_rows.append((float(r[1]), float(r[2])))
        o_rows.append((float(xy[0]), float(xy[1])))
    if len(w_rows) < 3:
        return None
    enu = LocalENU(*w_rows[0])
    e, n, _ = enu.to_enu([r[0] for r in w_rows], [r[1] for r in w_rows], 0.0)
    w = np.stack([np.atleast_1d(e), np.atleast_1d(n)], axis=1)
    o = np.asarray(o_rows, dtype=np.float64)
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(o))):
        return None
    w, o = w - w.mean(0), o - o.mean(0)
    if np.sqrt((o ** 2).sum(1)).max() * 2 < min_travel_m:
        return None
    cross = float(np.sum(o[:, 0] * w[:, 1] - o[:, 1] * w[:, 0]))
    dot = float(np.sum(o[:, 0] * w[:, 0] + o[:, 1] * w[:, 1]))
    return math.atan2(cross, dot)
