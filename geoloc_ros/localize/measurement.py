"""Heatmaps of one frame -> what the tracker and the relocalization read from them.

Two views of the same heatmap: its maxima as `Mode`s (candidate positions with a probability
of being right, for the association of localize.evidence) and its best peak as a `Peak`
(for the covariance-honesty statistics, challenger tracks and relocalization candidates).
Both refer to the UAV's nadir: the heatmap marks the ground point under the UAV image's
centre, which a tilted camera sees `offset_en` metres from the nadir.
"""
from __future__ import annotations

import numpy as np

from .prepare import heatmap_cov_to_enu, honest_cov
from .types import Peak


def _nadir(crop, enu, row: float, col: float, offset_en) -> np.ndarray:
    lat, lon = crop.pixel_to_latlon(row, col)
    e, n, _ = enu.to_enu(lat, lon, 0.0)
    return np.array([float(e) - offset_en[0], float(n) - offset_en[1]])


def _cov(cov_px, crop, cfg, lever_var: float) -> np.ndarray:
    r = honest_cov(heatmap_cov_to_enu(np.asarray(cov_px), crop.gsd_m), cfg.meas_cov_inflation, cfg.meas_sigma_floor_m)
    return r + np.eye(2) * lever_var


def window_modes(peak, crop, enu, index: int, cfg, offset_en=(0.0, 0.0), lever_var: float = 0.0) -> list:
    """The window's maxima as evidence.Mode: the first with the probability its decode
    confidence is calibrated to, each further one with the confidence scaled by its height."""
    from .evidence import Mode, peak_probability

    modes = getattr(peak, "modes", None) or []
    out = []
    h1 = modes[0].height if modes else 1.0
    for m in modes:
        ri = int(np.clip(round(m.row_sub), 0, crop.valid.shape[0] - 1))
        ci = int(np.clip(round(m.col_sub), 0, crop.valid.shape[1] - 1))
        if not crop.valid[ri, ci]:
            continue
        c = float(peak.confidence) * (m.height / h1 if h1 > 0 else 0.0)
        prob = peak_probability(c, cfg.peak_prob_centre, cfg.peak_prob_width, cfg.peak_prob_top)
        out.append(Mode(z=_nadir(crop, enu, m.row_sub, m.col_sub, offset_en), r=_cov(m.cov_px, crop, cfg, lever_var),
                        prob=prob, window=index))
    return out


def peak_measurement(peak, crop, enu, index: int, cfg, offset_en=(0.0, 0.0), lever_var: float = 0.0) -> Peak:
    """Heatmap peak -> UAV position (ENU) and covariance. The tilt offset was rotated with the
    estimated yaw, so its error adds `lever_var` (m^2)."""
    row, col = float(peak.row_sub), float(peak.col_sub)
    z = _nadir(crop, enu, row, col, offset_en)
    r = _cov(peak.cov_px, crop, cfg, lever_var)
    ri = int(np.clip(round(row), 0, crop.valid.shape[0] - 1))
    ci = int(np.clip(round(col), 0, crop.valid.shape[1] - 1))
    return Peak(z=z, r=r, confidence=float(peak.confidence), window=index, valid=bool(crop.valid[ri, ci]))
