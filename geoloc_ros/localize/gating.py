"""Measurement gating: a map fix is fused only if it is confident, statistically
compatible with the prediction, and consistent with odometry.

Why three tests: a confident but wrong peak (repetitive fields, roads) passes a confidence
test; a low-confidence peak near the prediction passes a Mahalanobis test when the filter
is uncertain; a jump that odometry cannot explain must never move the estimate. Every
rejection is counted by reason so the operator sees why no fix is published.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np


def chi2_2dof_quantile(p: float) -> float:
    """Quantile of chi-square with 2 degrees of freedom (closed form: -2 ln(1 - p))."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"gate probability must be in (0, 1), got {p}")
    return -2.0 * math.log(1.0 - p)


#: chi2(2) at 95 %: the 95 % error ellipse is {d : d^T C^-1 d <= CHI2_2_95}.
CHI2_2_95 = chi2_2dof_quantile(0.95)


@dataclass
class GateResult:
    accepted: bool
    reason: str  # "ok" or why it was rejected
    d2: float  # squared Mahalanobis distance of the innovation (nan if not computed)


@dataclass
class Gate:
    """The three tests, with their thresholds and a rejection counter."""

    min_confidence: float = 0.3
    probability: float = 0.997
    max_innovation_m: float = 60.0
    counts: Counter = field(default_factory=Counter)
    rejections: int = 0

    @property
    def threshold(self) -> float:
        return chi2_2dof_quantile(self.probability)

    def check(self, confidence: float, z_en, r_cov, x_pred, p_pred) -> GateResult:
        """Test a measurement `z_en` (cov `r_cov`) against the prediction (`x_pred`, `p_pred`
        2x2 position covariance). Does not count: `record` does, once per frame."""
        z = np.asarray(z_en, dtype=np.float64)[:2]
        if not (np.all(np.isfinite(z)) and np.all(np.isfinite(r_cov))):
            return GateResult(False, "non_finite", float("nan"))
        if confidence < self.min_confidence:
            return GateResult(False, "low_confidence", float("nan"))
        y = z - np.asarray(x_pred, dtype=np.float64)[:2]
        s = np.asarray(p_pred, dtype=np.float64)[:2, :2] + np.asarray(r_cov, dtype=np.float64)
        d2 = float(y @ np.linalg.solve(s, y))
        if d2 > self.threshold:
            return GateResult(False, "mahalanobis", d2)
        if float(np.hypot(*y)) > self.max_innovation_m:
            return GateResult(False, "odometry_jump", d2)
        return GateResult(True, "ok", d2)

    def record(self, result: GateResult) -> None:
        """Count a frame's outcome (rejections by reason)."""
        self.counts[result.reason] += 1
        if not result.accepted:
            self.rejections += 1

    def record_rejection(self, reason: str) -> None:
        self.counts[reason] += 1
        self.rejections += 1


def odometry_consistent(z_prev, z_now, d_world, tol_m: float) -> bool:
    """True if two position fixes moved by what odometry says (within `tol_m`).

    `d_world` is the odometry displacement between the two frames rotated into the world
    frame. Used to confirm relocalization candidates over several frames.
    """
    moved = np.asarray(z_now, dtype=np.float64)[:2] - np.asarray(z_prev, dtype=np.float64)[:2]
    return bool(np.hypot(*(moved - np.asarray(d_world, dtype=np.float64)[:2])) <= tol_m)
