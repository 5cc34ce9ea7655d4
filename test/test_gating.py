"""Chi-square quantiles of the gate and the 95 % error ellipse, against their definition."""
import math

import numpy as np
import pytest

from geoloc_ros.localize.gating import CHI2_2_95, chi2_2dof_quantile


def test_chi2_quantiles():
    assert math.isclose(CHI2_2_95, 5.991, abs_tol=1e-3)
    assert math.isclose(chi2_2dof_quantile(0.99), 9.210, abs_tol=1e-3)
    with pytest.raises(ValueError):
        chi2_2dof_quantile(1.0)


def test_quantile_matches_sampled_chi2():
    d2 = (np.random.default_rng(0).normal(size=(200_000, 2)) ** 2).sum(1)
    for p in (0.5, 0.95, 0.997):
        assert np.mean(d2 <= chi2_2dof_quantile(p)) == pytest.approx(p, abs=0.003)
