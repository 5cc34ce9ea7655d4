"""Flights: trajectories, yaw policies, odometry drift statistics, GPS."""
from __future__ import annotations

import math

import numpy as np
import pytest

from geoloc_ros.data.flight import (GpsConfig, OdometryConfig, Trajectory, TrajectoryConfig, Truth, YawConfig,
                                    simulate_gps, simulate_odometry, wrap_angle)

QUIET = dict(initial_yaw_error_deg=0.0, yaw_rw_deg_per_sqrt_s=0.0, yaw_drift_deg_per_min=0.0, scale_error=0.0,
             pos_rw_m_per_sqrt_s=0.0, z_rw_m_per_sqrt_s=0.0, white_pos_m=0.0, white_yaw_deg=0.0)


def _still(t):
    z = np.zeros_like(t)
    return Truth(t, z, z, z + 100, z, z, z, z, z, z, z)


def _line(t, v=10.0, heading=0.3):
    return Truth(t, v * t * math.cos(heading), v * t * math.sin(heading), np.full_like(t, 100.0),
                 np.full_like(t, heading), 0 * t, 0 * t, np.full_like(t, v * math.cos(heading)),
                 np.full_like(t, v * math.sin(heading)), 0 * t, 0 * t)


def test_position_random_walk_variance_grows_linearly():
    t = np.arange(0, 100.0, 0.1)
    sigma = 0.2
    cfg = OdometryConfig(**{**QUIET, "pos_rw_m_per_sqrt_s": sigma})
    rng = np.random.default_rng(0)
    ends = np.array([simulate_odometry(_still(t), cfg, rng).xyz[[249, 999], :2] for _ in range(400)])
    for k, tt in ((0, 25.0), (1, 100.0)):
        var = ends[:, k, :].var(axis=0).mean()
        assert var == pytest.approx(sigma ** 2 * tt, rel=0.15)


def test_yaw_random_walk_and_drift_rate():
    t = np.arange(0, 60.0, 0.1)
    cfg = OdometryConfig(**{**QUIET, "yaw_rw_deg_per_sqrt_s": 0.5, "yaw_drift_deg_per_min": 2.0})
    rng = np.random.default_rng(1)
    errs = np.array([simulate_odometry(_still(t), cfg, rng).heading_error[-1] for _ in range(400)])
    assert math.degrees(errs.mean()) == pytest.approx(2.0 * t[-1] / 60.0, abs=0.25)
    assert math.degrees(errs.std()) == pytest.approx(0.5 * math.sqrt(t[-1]), rel=0.15)


def test_scale_error_and_initial_yaw_error_rotate_and_stretch_displacement():
    t = np.arange(0, 30.0, 1 / 30)
    cfg = OdometryConfig(**{**QUIET, "scale_error": 0.03, "initial_yaw_error_deg": 7.0})
    log = simulate_odometry(_line(t), cfg, np.random.default_rng(2))
    d = log.xyz[-1, :2] - log.xyz[0, :2]
    travelled = 10.0 * (t[-1] - t[0])
    assert np.hypot(*d) == pytest.approx(1.03 * travelled, rel=1e-6)
    assert math.degrees(math.atan2(d[1], d[0]) - 0.3) == pytest.approx(7.0, abs=1e-6)
    assert math.degrees(wrap_angle(log.yaw[-1] - 0.3)) == pytest.approx(7.0, abs=1e-6)
    # body-frame velocity is forward motion at the scaled speed
    np.testing.assert_allclose(log.vel_body[:, 0], 10.3, rtol=1e-9)
    np.testing.assert_allclose(log.vel_body[:, 1], 0.0, atol=1e-9)


def test_teleport_jumps_position_and_yaw():
    t = np.arange(0, 20.0, 0.1)
    cfg = OdometryConfig(**{**QUIET, "teleports": [{"t_s": 10.0, "east_m": 50.0, "north_m": -20.0, "yaw_deg": 30}]})
    log = simulate_odometry(_still(t), cfg, np.random.default_rng(3))
    i = int(np.searchsorted(t, 10.0))
    np.testing.assert_allclose(log.xyz[i - 1, :2], 0.0, atol=1e-9)
    np.testing.assert_allclose(log.xyz[i, :2], [50.0, -20.0], atol=1e-9)
    assert math.degrees(log.yaw[i] - log.yaw[i - 1]) == pytest.approx(30.0)
    with pytest.raises(ValueError):
        OdometryConfig(teleports=[{"east_m": 3}])


@pytest.mark.parametrize("kind", ["waypoints", "lawnmower", "figure8", "random"])
def test_trajectories_constant_speed_and_continuous(kind):
    traj = Trajectory(TrajectoryConfig(kind=kind, speed_mps=12.0), YawConfig())
    t = np.arange(0, traj.one_pass_s * 0.98, 0.05)
    tr = traj.sample(t)
    step = np.hypot(np.diff(tr.east), np.diff(tr.north))
    assert np.all(step < 12.0 * 0.05 * 1.01) and np.median(step) == pytest.approx(0.6, rel=0.02)
    # along-track yaw follows the velocity direction
    vel_yaw = np.arctan2(tr.vn, tr.ve)
    assert np.max(np.abs(wrap_angle(tr.yaw - vel_yaw))) < math.radians(3)
    assert np.max(np.abs(np.degrees(tr.roll))) < 35


def test_waypoint_loop_passes_near_waypoints_and_closes():
    wps = ((0.0, 0.0), (400.0, 0.0), (400.0, 300.0), (0.0, 300.0))  # right-angle corners
    traj = Trajectory(TrajectoryConfig(waypoints_m=wps, corner_radius_m=20.0), YawConfig())
    tr = traj.sample(np.arange(0, traj.one_pass_s, 0.05))
    for w in wps:
        d = np.min(np.hypot(tr.east - w[0], tr.north - w[1]))
        assert d == pytest.approx(20.0 * (math.sqrt(2) - 1), abs=0.5)  # vertex to fillet arc
    end = traj.sample([traj.one_pass_s])
    start = traj.sample([0.0])
    assert math.hypot(end.east[0] - start.east[0], end.north[0] - start.north[0]) < 1.0


def test_yaw_policies():
    cfg = TrajectoryConfig(kind="figure8", speed_mps=8.0)
    fixed = Trajectory(cfg, YawConfig(policy="fixed", yaw_deg=45.0)).sample(np.arange(0, 30, 0.5))
    np.testing.assert_allclose(fixed.yaw, math.radians(45.0))
    spin = Trajectory(cfg, YawConfig(policy="spinning", rate_deg_s=20.0)).sample(np.arange(0, 30, 0.5))
    rate = np.degrees(np.diff(np.unwrap(spin.yaw))) / 0.5
    np.testing.assert_allclose(rate, 20.0, atol=1e-6)
    with pytest.raises(ValueError):
        YawConfig(policy="wobbly")


def test_gps_noise_and_denial():
    traj = Trajectory(TrajectoryConfig(kind="figure8"), YawConfig())
    g = simulate_gps(traj, GpsConfig(rate_hz=10, denial_s=50.0, sigma_h_m=2.0, bias_sigma_m=0.0), 120.0,
                     np.random.default_rng(4))
    assert g.t.max() < 50.0 and len(g.t) == 500
    tr = traj.sample(g.t)
    err = np.concatenate([g.east - tr.east, g.north - tr.north])
    assert err.std() == pytest.approx(2.0, rel=0.1) and abs(err.mean()) < 0.3
    never = simulate_gps(traj, GpsConfig(rate_hz=1, denial_s=None), 20.0, np.random.default_rng(5))
    assert len(never.t) == 21


def test_velocity_bias_integrates_exactly():
    t = np.arange(0, 60.0, 0.05)
    cfg = OdometryConfig(**{**QUIET, "vel_bias_mps": (0.2, -0.1)})
    log = simulate_odometry(_still(t), cfg, np.random.default_rng(6))
    np.testing.assert_allclose(log.xyz[:, 0], 0.2 * t, atol=1e-9)
    np.testing.assert_allclose(log.xyz[:, 1], -0.1 * t, atol=1e-9)
    np.testing.assert_allclose(log.vel_body[:, :2], np.tile([0.2, -0.1], (len(t), 1)), atol=1e-12)  # yaw 0
    with pytest.raises(ValueError):
        OdometryConfig(vel_bias_mps=(1.0,))


def test_vio_like_drift_gives_the_configured_error_on_a_straight_line():
    """4 % scale, 3 deg initial + 12 deg/min yaw drift (30 deg in 150 s) and a velocity bias:
    the odometry equals the closed-form integral of the model."""
    dt, v, h = 0.01, 10.0, 0.3
    t = np.arange(0, 150.0 + dt / 2, dt)
    k, psi0, rate, b = 1.04, math.radians(3.0), math.radians(12.0) / 60.0, np.array([0.12, -0.08])
    cfg = OdometryConfig(**{**QUIET, "scale_error": 0.04, "initial_yaw_error_deg": 3.0, "yaw_drift_deg_per_min": 12.0,
                            "vel_bias_mps": tuple(b)})
    log = simulate_odometry(_line(t, v, h), cfg, np.random.default_rng(7))
    assert math.degrees(log.heading_error[-1]) == pytest.approx(33.0, abs=1e-9)
    ang = h + psi0 + rate * t  # odometry displacement direction at time t
    want = (k * v / rate) * np.stack([np.sin(ang) - math.sin(h + psi0), math.cos(h + psi0) - np.cos(ang)], 1)
    want += b[None, :] * t[:, None]
    np.testing.assert_allclose(log.xyz[:, :2], want, atol=k * v * rate * dt * t[-1])  # Riemann sum vs integral
    world_end = v * t[-1] * np.array([math.cos(h), math.sin(h)])
    err_end = np.hypot(*(log.xyz[-1, :2] - world_end))
    assert err_end > 0.04 * v * t[-1]  # far beyond the scale error alone: the yaw drift bends the track


def test_velocity_bias_gauss_markov_statistics():
    from geoloc_ros.data.flight import velocity_bias

    t = np.arange(0, 120.0, 0.5)
    cfg = OdometryConfig(**{**QUIET, "vel_bias_mps": (0.1, 0.0), "vel_bias_sigma_mps": 0.05, "vel_bias_tau_s": 30.0})
    runs = np.array([velocity_bias(t, cfg, np.random.default_rng(i)) for i in range(600)])
    assert runs[:, :, 0].mean() == pytest.approx(0.1, abs=0.005)
    varying = runs - np.array([0.1, 0.0])
    assert varying[:, [0, -1], :].std() == pytest.approx(0.05, rel=0.08)  # stationary from the first sample on
    lag = int(30.0 / 0.5)
    g = runs[:, :, 1]
    corr = np.mean(g[:, :-lag] * g[:, lag:]) / np.mean(g * g)
    assert corr == pytest.approx(math.exp(-1.0), abs=0.06)
    assert velocity_bias(t, OdometryConfig(**QUIET), np.random.default_rng(0)) is None  # draws nothing
