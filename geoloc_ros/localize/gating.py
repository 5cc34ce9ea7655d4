"""The chi-square quantiles the tracker and the reports use for gates and ellipses.

A peak is compared with the track by its squared Mahalanobis distance d2, which for an
honest filter is chi-square distributed with 2 degrees of freedom; the gate and the 95 %
error ellipse are quantiles of that distribution.
"""
from __future__ import annotations

import math


def chi2_2dof_quantile(p: float) -> float:
    """Quantile of chi-square with 2 degrees of freedom (closed form: -2 ln(1 - p))."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"gate probability must be in (0, 1), got {p}")
    return -2.0 * math.log(1.0 - p)


#: chi2(2) at 95 %: the 95 % error ellipse is {d : d^T C^-1 d <= CHI2_2_95}.
CHI2_2_95 = chi2_2dof_quantile(0.95)
