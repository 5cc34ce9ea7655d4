"""Search-window geometry: how large a satellite window is, and where to put several.

The window side is fixed by the model, not by the uncertainty: the UAV image and the
satellite crop must have the ground sampling ratio the model was trained on, so a wider
search means MORE windows of the same size (batched in one forward pass), never a larger
window. The model was trained with the UAV anywhere in the central ~85 % of a window; we
ask that the 3-sigma region stays inside the central `useful_frac` (0.8 = +-0.4 S).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def footprint_side_m(width: int, height: int, fx: float, fy: float, cx: float, cy: float,
                     altitude_m: float) -> float:
    """Side (m) of the largest ground square centred on the nadir (principal) point that
    stays inside the image for ANY rotation: the square inscribed in the largest circle
    around the principal point, i.e. sqrt(2) * (distance to the nearest image edge)."""
    if not (altitude_m > 0 and fx > 0 and fy > 0):
        raise ValueError(f"footprint needs altitude > 0 and fx, fy > 0, got alt={altitude_m}, fx={fx}, fy={fy}")
    # pixel edges are at -0.5 and W-0.5 (integers at pixel centres)
    r_px_x = min(cx + 0.5, width - 0.5 - cx)
    r_px_y = min(cy + 0.5, height - 0.5 - cy)
    r_m = min(r_px_x * altitude_m / fx, r_px_y * altitude_m / fy)
    if r_m <= 0:
        raise ValueError(f"principal point ({cx}, {cy}) lies outside the {width}x{height} image")
    return math.sqrt(2.0) * r_m


def sat_window_side_m(footprint_m: float, uav_size: int, sat_size: int, gsd_ratio: float = 1.0) -> float:
    """Satellite window side S so that (sat m/px) / (uav m/px) = gsd_ratio."""
    return footprint_m * (sat_size / uav_size) * gsd_ratio


def single_window_covers(sigma_major_m: float, window_m: float, useful_frac: float = 0.8,
                         n_sigma: float = 3.0) -> bool:
    """True if n_sigma of the position uncertainty fits in the central useful part."""
    return n_sigma * sigma_major_m <= 0.5 * useful_frac * window_m


def grid_offsets(radius_m: float, window_m: float, useful_frac: float = 0.8,
                 min_overlap: float = 0.1, max_count: int = 4096) -> np.ndarray:
    """(N, 2) east/north offsets of windows whose useful parts cover the square
    [-radius, radius]^2 with at least `min_overlap` (fraction of the useful side) overlap,
    nearest first. One window (offset 0) when its useful part already covers the square.

    At most `max_count` windows: the count is known before anything is allocated, and a
    grid that would be larger keeps only its central k x k windows (same spacing), so an
    absurd input (a covariance of 1e12, a window of millimetres) costs nothing."""
    if not (math.isfinite(radius_m) and math.isfinite(window_m) and window_m > 0 and 0 <= min_overlap < 1):
        raise ValueError(f"grid needs finite radius, window > 0 and overlap in [0, 1), got {radius_m}, {window_m}, "
                         f"{min_overlap}")
    useful = useful_frac * window_m
    if 2.0 * radius_m <= useful or max_count < 1:
        return np.zeros((1, 2))
    step = useful * (1.0 - min_overlap)
    span = 2.0 * radius_m - useful  # distance between the first and last centre
    n = math.ceil(span / step) + 1
    n += 1 - n % 2  # odd: one window sits on the prediction itself
    spacing = span / (n - 1)
    k = min(n, max(1, math.isqrt(max_count)))
    k -= 1 - k % 2  # odd, centred
    t = spacing * (np.arange(k) - (k - 1) / 2.0)
    e, nn = np.meshgrid(t, t[::-1])
    off = np.stack([e.ravel(), nn.ravel()], axis=1)
    # nearest first: when a budget truncates the list, the likeliest windows survive
    order = np.argsort(np.hypot(off[:, 0], off[:, 1]), kind="stable")
    return off[order]


def grid_count(radius_m: float, window_m: float, useful_frac: float = 0.8, min_overlap: float = 0.1) -> int:
    """How many windows grid_offsets would need without a cap (a float for huge grids)."""
    useful = useful_frac * window_m
    if 2.0 * radius_m <= useful:
        return 1
    n = math.ceil((2.0 * radius_m - useful) / (useful * (1.0 - min_overlap))) + 1
    n += 1 - n % 2
    return n * n


@dataclass
class WindowPlan:
    """Where to crop this frame: offsets (m, ENU) from the predicted position."""

    offsets: np.ndarray  # (N, 2)
    window_m: float
    radius_m: float  # half-side of the area meant to be covered
    truncated: bool  # the budget did not allow covering all of it


def plan_tracking_windows(sigma_major_m: float, window_m: float, min_windows: int, max_windows: int,
                          useful_frac: float = 0.8, min_overlap: float = 0.1, n_sigma: float = 3.0) -> WindowPlan:
    """Windows around the prediction covering n_sigma (one while tracking, more when the
    uncertainty grows: DEGRADED widening), at most `max_windows` (nearest kept)."""
    radius = n_sigma * sigma_major_m
    cap = max(max_windows, min_windows, 1)
    off = grid_offsets(radius, window_m, useful_frac, min_overlap, max_count=9 * cap)
    if len(off) < min_windows:
        # widen the grid until the minimum count is reached (cheap robustness when batched)
        r = max(radius, 0.5 * useful_frac * window_m)
        while len(off) < min_windows:
            r *= 1.25
            off = grid_offsets(r, window_m, useful_frac, min_overlap, max_count=9 * cap)
        off = off[:max(min_windows, 1)]
    truncated = grid_count(radius, window_m, useful_frac, min_overlap) > max_windows
    return WindowPlan(off[:max_windows], window_m, radius, truncated)


def dither_offset(stamp: float, window_m: float, frac: float) -> np.ndarray:
    """A frame's window shift (east, north; m), uniform in +-frac x window_m per axis.

    Why: the model's error depends on the ground it sees AND on where in the window the UAV
    is. With windows centred on the prediction the second never changes and the first
    changes slowly, so consecutive measurements share their error for seconds, which the
    filter (independent measurement errors) cannot average out; a pull toward the window
    centre would even agree with the prediction. A shift that changes every frame
    decorrelates them. Seeded by the stamp (ns), so a replay repeats exactly.
    """
    if frac <= 0 or not math.isfinite(stamp):
        return np.zeros(2)
    rng = np.random.default_rng(int(round(stamp * 1e9)) % (2 ** 63))
    return rng.uniform(-frac, frac, 2) * float(window_m)
