"""Gating: outliers rejected, inliers accepted, every rejection counted by reason."""
import math

import numpy as np
import pytest

from geoloc_ros.localize.gating import CHI2_2_95, Gate, chi2_2dof_quantile, odometry_consistent


def test_chi2_quantiles():
    assert math.isclose(CHI2_2_95, 5.991, abs_tol=1e-3)
    assert math.isclose(chi2_2dof_quantile(0.99), 9.210, abs_tol=1e-3)
    with pytest.raises(ValueError):
        chi2_2dof_quantile(1.0)


def test_inliers_accepted_outliers_rejected_and_counted():
    rng = np.random.default_rng(0)
    gate = Gate(min_confidence=0.3, probability=0.997, max_innovation_m=50.0)
    x, p, r = np.zeros(2), np.eye(2) * 9.0, np.eye(2) * 4.0  # innovation sigma sqrt(13)
    n_in = 0
    for _ in range(500):
        z = rng.multivariate_normal(np.zeros(2), p + r)
        res = gate.check(0.9, z, r, x, p)
        gate.record(res)
        n_in += res.accepted
    assert n_in >= 480  # 99.7 % gate
    before = gate.rejections
    for ang in np.linspace(0, 2 * np.pi, 10, endpoint=False):
        res = gate.check(0.9, 30.0 * np.array([np.cos(ang), np.sin(ang)]), r, x, p)  # ~8 sigma
        assert not res.accepted and res.reason == "mahalanobis"
        gate.record(res)
    assert gate.rejections == before + 10
    assert gate.counts["mahalanobis"] >= 10
    assert gate.counts["ok"] == n_in


def test_low_confidence_and_jump_rejected():
    gate = Gate(min_confidence=0.4, probability=0.99, max_innovation_m=40.0)
    res = gate.check(0.2, [0.0, 0.0], np.eye(2), [0.0, 0.0], np.eye(2))
    assert not res.accepted and res.reason == "low_confidence"
    # huge covariance: Mahalanobis passes, but the jump exceeds what odometry can explain
    res = gate.check(0.9, [100.0, 0.0], np.eye(2), [0.0, 0.0], np.eye(2) * 1e6)
    assert not res.accepted and res.reason == "odometry_jump"
    res = gate.check(0.9, [np.nan, 0.0], np.eye(2), [0.0, 0.0], np.eye(2))
    assert not res.accepted and res.reason == "non_finite"
    gate.record_rejection("no_model")
    assert gate.rejections == 1 and gate.counts["no_model"] == 1


def test_odometry_consistency():
    assert odometry_consistent([0, 0], [10, 1], [10, 0], tol_m=2.0)
    assert not odometry_consistent([0, 0], [10, 5], [10, 0], tol_m=2.0)
