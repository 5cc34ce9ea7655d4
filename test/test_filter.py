"""EKF: covariance consistency (NEES) on synthetic odometry + fixes, yaw-offset convergence."""
import math

import numpy as np

from geoloc_ros.localize.filter import FilterNoise, PositionYawEKF, rot2, wrap_angle


def _simulate_run(rng, noise, steps=60, meas_every=3, r_sigma=2.0):
    """Truth drawn from the filter's own model (all 7 states); NEES over the whole state."""
    ekf = PositionYawEKF(noise)
    sig = dict(pos=3.0, yaw=0.05, scale=0.03, rate=0.002, bias=0.1)
    ekf.reset(0.0, 0.0, 0.0, sig["pos"], sig["yaw"], scale_sigma=sig["scale"], rate_sigma=sig["rate"],
              bias_sigma=sig["bias"])
    truth = np.array([rng.normal(0, sig["pos"]), rng.normal(0, sig["pos"]), rng.normal(0, sig["yaw"]),
                      rng.normal(0, sig["scale"]), rng.normal(0, sig["rate"]), rng.normal(0, sig["bias"]),
                      rng.normal(0, sig["bias"])])
    nees = []
    dt = 0.5
    for k in range(steps):
        heading = 0.3 * math.sin(0.05 * k)
        d = 5.0 * np.array([math.cos(heading), math.sin(heading)])  # odometry reading (odom frame)
        q = ekf.process_noise_odom(d, dt)
        eta = rng.multivariate_normal(np.zeros(2), q)
        truth[:2] += (1 + truth[3]) * rot2(truth[2]) @ (d + eta) + truth[5:7] * dt
        truth[2] += truth[4] * dt + rng.normal(0.0, math.sqrt(noise.yaw_var_per_s * dt + noise.yaw_var_per_m * 5.0))
        truth[3] += rng.normal(0.0, math.sqrt(noise.scale_var_per_m * 5.0))
        truth[4] += rng.normal(0.0, math.sqrt(noise.rate_var_per_s * dt))
        truth[5:7] += rng.normal(0.0, math.sqrt(noise.bias_var_per_s * dt), 2)
        ekf.predict(d, dt)
        if k % meas_every == 0:
            z = truth[:2] + rng.normal(0.0, r_sigma, 2)
            ekf.update(z, np.eye(2) * r_sigma ** 2)
        err = ekf.x - truth
        err[2] = wrap_angle(err[2])
        nees.append(float(err @ np.linalg.solve(ekf.P, err)))
    return np.array(nees)


def test_nees_within_chi2_bounds():
    rng = np.random.default_rng(0)
    noise = FilterNoise(yaw_var_per_s=math.radians(0.5) ** 2, rate_var_per_s=1e-8, bias_var_per_s=1e-4)
    runs = 150
    nees = np.stack([_simulate_run(rng, noise) for _ in range(runs)])  # [runs, steps]
    mean_t = nees.mean(axis=0)
    n = PositionYawEKF.N
    # average of `runs` chi2(n) variables: mean n, std sqrt(2n/runs); 99 % band
    half = 2.576 * math.sqrt(2.0 * n / runs)
    inside = np.mean((mean_t > n - half) & (mean_t < n + half))
    assert inside >= 0.85, (inside, mean_t.round(2))
    assert abs(nees.mean() - n) < 0.5, nees.mean()


def test_posterior_update_matches_a_kalman_update_and_widens_for_bimodal_posteriors():
    """update_to_posterior with a Gaussian measurement's posterior is that measurement's
    Kalman update (the other states follow through their correlations); a posterior wider
    than the prior widens the position covariance instead of inventing information."""
    a, b = PositionYawEKF(), PositionYawEKF()
    for f in (a, b):
        f.reset(0.0, 0.0, 0.1, 4.0, 0.05, scale_sigma=0.03, rate_sigma=0.002, bias_sigma=0.1)
        f.predict(np.array([30.0, 5.0]), 2.0)  # correlate position with yaw, scale, bias
    z, r = np.array([3.0, -2.0]), np.diag([2.0, 5.0])
    p = a.pos_cov
    k = p @ np.linalg.inv(p + r)
    a.update(z, r)
    b.update_to_posterior(b.x[:2] + k @ (z - b.x[:2]), (np.eye(2) - k) @ p)
    np.testing.assert_allclose(b.x, a.x, atol=1e-9)
    np.testing.assert_allclose(b.P, a.P, atol=1e-9)
    c = PositionYawEKF()
    c.reset(0.0, 0.0, 0.0, 2.0, 0.05)
    before = c.pos_cov
    assert c.update_to_posterior(np.zeros(2), np.diag([9.0, 1.0])) is not None  # wider in east, narrower north
    assert c.P[0, 0] >= 9.0 - 1e-9 and c.P[1, 1] < before[1, 1]


def test_overconfident_filter_fails_nees():
    """The NEES test above can fail: a filter with far too little process noise is caught."""
    rng = np.random.default_rng(1)
    true_noise = FilterNoise(scale_sigma=0.1, cross_sigma=0.1)
    ekf_noise = FilterNoise(scale_sigma=0.001, cross_sigma=0.001, drift_var_per_m=1e-4)
    nees = []
    for _ in range(40):
        ekf = PositionYawEKF(ekf_noise)
        ekf.reset(0, 0, 0, 1.0, 0.01, scale_sigma=0.0)
        truth = np.zeros(3)
        for k in range(40):
            d = np.array([5.0, 0.0])
            truth[:2] += d + rng.multivariate_normal(np.zeros(2), PositionYawEKF(true_noise).process_noise_odom(d, 0.5))
            ekf.predict(d, 0.5)
        err = ekf.x[:2] - truth[:2]
        nees.append(err @ np.linalg.solve(ekf.P[:2, :2], err))
    assert np.mean(nees) > 10.0


def test_yaw_offset_and_scale_converge():
    rng = np.random.default_rng(2)
    true_yaw, true_scale = math.radians(8.0), 0.04
    ekf = PositionYawEKF(FilterNoise())
    ekf.reset(0.0, 0.0, 0.0, 2.0, math.radians(10.0), scale_sigma=0.05)
    p = np.zeros(2)
    for k in range(120):
        heading = 0.0 if k < 60 else math.pi / 2  # straight east, then north
        d = 4.0 * np.array([math.cos(heading), math.sin(heading)])
        p += (1 + true_scale) * rot2(true_yaw) @ d
        ekf.predict(d, 0.5)
        if k % 2 == 0:
            ekf.update(p + rng.normal(0, 2.0, 2), np.eye(2) * 4.0)
    assert abs(math.degrees(ekf.yaw_offset) - 8.0) < 1.0, math.degrees(ekf.yaw_offset)
    assert math.degrees(math.sqrt(ekf.P[2, 2])) < 2.0
    assert abs(ekf.scale - true_scale) < 0.01 and math.sqrt(ekf.P[3, 3]) < 0.02
    assert np.hypot(*(ekf.position - p)) < 3.0


def test_prediction_jacobian_matches_finite_difference():
    ekf = PositionYawEKF(FilterNoise(scale_sigma=0, cross_sigma=0, drift_var_per_m=0, pos_var_per_s=0,
                                     yaw_var_per_s=0, yaw_var_per_m=0, scale_var_per_m=0))
    ekf.reset(0, 0, 0.3, 1e-6, 1e-3, scale_sigma=0.0)
    ekf.predict(np.array([10.0, 5.0]), 0.1)  # yaw rate and bias have zero prior: no contribution
    # position variance from a yaw sigma of 1e-3 over an 11.2 m lever arm: (11.18e-3)^2
    lever = math.hypot(10.0, 5.0)
    assert math.isclose(np.trace(ekf.P[:2, :2]), (lever * 1e-3) ** 2 + 2e-12, rel_tol=1e-3)
    expected = rot2(0.3) @ np.array([10.0, 5.0])
    assert np.allclose(ekf.position, expected)
