"""Localization metrics: the UL14 protocol (bit for bit) and trajectory error statistics.

UL14 (shared/spec/ul14_protocol.md section 4): the decision (sigmoid -> 31x31 Hanning
filter -> first argmax, row-major -> (S_X row, S_Y column) on the model's output grid) is
`model.decode.ul14_peak`, the one place that filters heatmaps; from there on this module:
geographic position from the crop corners (row -> North, column -> East) -> haversine
error with R = 6378.137 km -> MA@K and RDS. The UL14 label convention (integer rows/cols
scaled to the output grid) exists only here, in data/ul14.py and in tools/eval_ul14.py.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from geoloc_ros.geo.distance import UL14_EARTH_RADIUS_M, haversine_m

#: Thresholds (metres) that UL14 logs; papers tabulate 3/5/10/20.
UL14_MA_THRESHOLDS_M = (1, 3, 5, 10, 20, 30, 50, 100)
#: Satellite map sizes of the 12 test images per UAV image (image k has 700 + 100 k).
UL14_MAP_SIZES = tuple(700 + 100 * i for i in range(12))
UL14_HEIGHTS = (80, 90, 100)


def ul14_pixel_to_latlon(s_x, s_y, tl_n, tl_e, br_n, br_e, size: int = 384):
    """Row S_X -> North, column S_Y -> East, linearly between the crop box corners."""
    s_x, s_y = np.asarray(s_x, dtype=np.float64), np.asarray(s_y, dtype=np.float64)
    n = tl_n - (tl_n - br_n) * s_x / size
    e = tl_e + (br_e - tl_e) * s_y / size
    return n, e


def ul14_scale_label(x: int, y: int, stored_size: int = 768, size: int = 384) -> tuple[int, int]:
    """labels.json (row, col) in the stored image -> integer (row, col) on the output grid: int(X/768*384)."""
    return int(x / stored_size * size), int(y / stored_size * size)


def ul14_rds(s_x, s_y, x, y, size: int = 384):
    """Relative distance score per pair: exp(-10 * sqrt((dx^2 + dy^2) / 2)), d = offsets / size."""
    dx = (np.asarray(s_x, dtype=np.float64) - np.asarray(x, dtype=np.float64)) / size
    dy = (np.asarray(s_y, dtype=np.float64) - np.asarray(y, dtype=np.float64)) / size
    return np.exp(-10.0 * np.sqrt((dx * dx + dy * dy) / 2.0))


def ul14_error_m(uav_n, uav_e, pred_n, pred_e):
    """Haversine error in metres with the UL14 Earth radius (6378.137 km)."""
    return haversine_m(uav_n, uav_e, pred_n, pred_e, radius_m=UL14_EARTH_RADIUS_M)


def ma_at_k(errors: Sequence[float] | np.ndarray, ks: Iterable[float] = UL14_MA_THRESHOLDS_M) -> dict[str, float]:
    """Fraction of samples with error <= K for each K, keyed 'MA@K' (empty input -> NaN)."""
    e = np.asarray(errors, dtype=np.float64).ravel()
    out = {}
    for k in ks:
        key = f"MA@{k:g}"
        out[key] = float(np.mean(e <= k)) if e.size else float("nan")
    return out


def ul14_summary(errors_m, rds, ks: Iterable[float] = UL14_MA_THRESHOLDS_M) -> dict[str, float]:
    """MA@K fractions, mean RDS and mean/median error for one group of pairs."""
    e = np.asarray(errors_m, dtype=np.float64)
    r = np.asarray(rds, dtype=np.float64)
    out: dict[str, float] = {"n": int(e.size)}
    out.update(ma_at_k(e, ks))
    out["RDS"] = float(r.mean()) if r.size else float("nan")
    out["mean_error_m"] = float(e.mean()) if e.size else float("nan")
    out["median_error_m"] = float(np.median(e)) if e.size else float("nan")
    return out


def error_stats(errors_m, ks: Iterable[float] = (5, 10, 20, 50)) -> dict[str, float]:
    """Trajectory error statistics (metres): mean, median, p95, max, RMSE and MA@K."""
    e = np.asarray(errors_m, dtype=np.float64).ravel()
    e = e[np.isfinite(e)]
    if e.size == 0:
        nan = float("nan")
        out = {"n": 0, "mean": nan, "median": nan, "p95": nan, "max": nan, "rmse": nan}
    else:
        out = {"n": int(e.size), "mean": float(e.mean()), "median": float(np.median(e)),
               "p95": float(np.percentile(e, 95)), "max": float(e.max()),
               "rmse": float(math.sqrt(float(np.mean(e * e))))}
    out.update(ma_at_k(e, ks))
    return out


def pixel_metrics(pred_rc: np.ndarray, true_rc: np.ndarray, size: int,
                  ks_px: Iterable[float] = (3, 5, 10, 20)) -> dict[str, float]:
    """Validation metrics on the model grid: mean/median pixel error, fraction within K px, RDS."""
    pred = np.asarray(pred_rc, dtype=np.float64).reshape(-1, 2)
    true = np.asarray(true_rc, dtype=np.float64).reshape(-1, 2)
    d = np.hypot(pred[:, 0] - true[:, 0], pred[:, 1] - true[:, 1])
    out = {"mean_px": float(d.mean()) if d.size else float("nan"),
           "median_px": float(np.median(d)) if d.size else float("nan")}
    for k in ks_px:
        out[f"within{k:g}px"] = float(np.mean(d <= k)) if d.size else float("nan")
    out["RDS"] = float(ul14_rds(pred[:, 0], pred[:, 1], true[:, 0], true[:, 1], size).mean()) if d.size else float("nan")
    return out
