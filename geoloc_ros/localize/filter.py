"""EKF over the UAV position and the errors of its odometry, driven by odometry deltas.

Why this state: odometry (VIO / FCU) is locally good but its frame drifts against the world,
and the drift is not white noise: its heading error grows at a rate (5-20 deg/min for VIO),
its scale is off by a few percent, and its velocity can carry a bias. A filter that models
these as random walks of the position is right on one drift level and overconfident on the
next. So the state holds what can be estimated from map fixes taken while moving:

    x = [east, north, yaw_offset, scale_error, yaw_rate, bias_east, bias_north]

    world displacement = (1 + scale_error) R(yaw_offset) d_odom + bias * dt
    yaw_offset        += yaw_rate * dt

(positions in metres in a local ENU frame anchored at the initial fix; yaw in radians; rate
in rad/s; bias in m/s, world frame). What cannot be estimated stays process noise
(`FilterNoise`), multiplied by an adaptive factor `q_scale` that the caller raises when the
innovations say the filter is overconfident (covariance matching, see localize.tracker).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geo.angles import wrap_angle  # noqa: F401  (re-exported: localize code uses filter.wrap_angle)

E, N, YAW, SCALE, RATE, BE, BN = range(7)


def rot2(theta: float) -> np.ndarray:
    """2-D rotation by `theta` radians (counter-clockwise, ENU)."""
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


@dataclass
class FilterNoise:
    """Process noise of the odometry-driven prediction (all 1-sigma unless said)."""

    scale_sigma: float = 0.02  # odometry scale error: along-track sigma per metre of step
    cross_sigma: float = 0.01  # cross-track sigma per metre of step (white heading jitter)
    drift_var_per_m: float = 0.02  # isotropic random-walk variance (m^2) added per metre flown
    pos_var_per_s: float = 0.01  # isotropic variance (m^2) added per second (hover drift)
    yaw_var_per_s: float = np.radians(0.2) ** 2  # yaw-offset random walk (rad^2 per second)
    yaw_var_per_m: float = np.radians(0.02) ** 2  # yaw-offset random walk (rad^2 per metre)
    scale_var_per_m: float = 1e-7  # scale-correction random walk (1/m): lets the scale wander slowly
    rate_var_per_s: float = 1e-9  # yaw-rate random walk ((rad/s)^2 per second)
    bias_var_per_s: float = 1e-5  # velocity-bias random walk ((m/s)^2 per second)


class PositionYawEKF:
    """x = [e, n, yaw_offset, s, yaw_rate, b_e, b_n] (module docstring)."""

    N = 7

    def __init__(self, noise: FilterNoise | None = None) -> None:
        self.noise = noise or FilterNoise()
        self.x = np.zeros(self.N)
        self.P = np.eye(self.N)
        self.q_scale = 1.0  # adaptive multiplier of the process noise (>= 1)

    # -- state ---------------------------------------------------------------------
    def reset(self, east: float, north: float, yaw_offset: float, pos_sigma_m: float, yaw_sigma_rad: float,
              pos_cov: np.ndarray | None = None, scale: float = 0.0, scale_sigma: float = 0.03,
              rate: float = 0.0, rate_sigma: float = 0.0, bias=(0.0, 0.0), bias_sigma: float = 0.0) -> None:
        """Restart at a known position (initial fix or confirmed relocalization)."""
        self.x = np.array([east, north, wrap_angle(yaw_offset), scale, rate, bias[0], bias[1]], dtype=np.float64)
        self.P = np.zeros((self.N, self.N))
        self.P[:2, :2] = np.asarray(pos_cov, dtype=np.float64) if pos_cov is not None else np.eye(2) * pos_sigma_m ** 2
        self.P[YAW, YAW] = yaw_sigma_rad ** 2
        self.P[SCALE, SCALE] = scale_sigma ** 2
        self.P[RATE, RATE] = rate_sigma ** 2
        self.P[BE, BE] = self.P[BN, BN] = bias_sigma ** 2

    @property
    def position(self) -> np.ndarray:
        return self.x[:2].copy()

    @property
    def yaw_offset(self) -> float:
        return float(self.x[YAW])

    @property
    def scale(self) -> float:
        """Estimated odometry scale correction s (world = (1 + s) * odom)."""
        return float(self.x[SCALE])

    @property
    def yaw_rate(self) -> float:
        return float(self.x[RATE])

    @property
    def bias(self) -> np.ndarray:
        return self.x[BE:BN + 1].copy()

    @property
    def pos_cov(self) -> np.ndarray:
        return self.P[:2, :2].copy()

    def pos_sigma_major(self) -> float:
        """Square root of the largest eigenvalue of the position covariance (m)."""
        return float(np.sqrt(max(0.0, np.linalg.eigvalsh(self.P[:2, :2])[-1])))

    # -- propagation -------------------------------------------------------------------
    def process_noise_odom(self, d_odom_xy: np.ndarray, dt: float) -> np.ndarray:
        """2x2 covariance (odom frame) of the odometry displacement error for one step."""
        d = np.asarray(d_odom_xy, dtype=np.float64)
        dist = float(np.hypot(d[0], d[1]))
        nz = self.noise
        q = np.eye(2) * (nz.drift_var_per_m * dist + nz.pos_var_per_s * max(dt, 0.0))
        if dist > 1e-9:
            u = d / dist
            v = np.array([-u[1], u[0]])
            q += (nz.scale_sigma * dist) ** 2 * np.outer(u, u) + (nz.cross_sigma * dist) ** 2 * np.outer(v, v)
        return q

    def predict(self, d_odom_xy, dt: float) -> None:
        """Propagate with the odometry displacement (odom frame, metres) over `dt` seconds."""
        d = np.asarray(d_odom_xy, dtype=np.float64)[:2]
        dt = max(float(dt), 0.0)
        th, k = self.x[YAW], 1.0 + self.x[SCALE]
        r = rot2(th)
        c, s = np.cos(th), np.sin(th)
        rd = r @ d
        self.x[:2] = self.x[:2] + k * rd + self.x[BE:BN + 1] * dt
        self.x[YAW] = wrap_angle(self.x[YAW] + self.x[RATE] * dt)
        f = np.eye(self.N)
        f[0, YAW] = k * (-s * d[0] - c * d[1])  # d((1+s) R d)/d theta
        f[1, YAW] = k * (c * d[0] - s * d[1])
        f[0, SCALE], f[1, SCALE] = rd  # d((1+s) R d)/d s
        f[YAW, RATE] = dt
        f[0, BE] = f[1, BN] = dt
        q = np.zeros((self.N, self.N))
        q[:2, :2] = r @ self.process_noise_odom(d, dt) @ r.T
        dist = float(np.hypot(d[0], d[1]))
        q[YAW, YAW] = self.noise.yaw_var_per_s * dt + self.noise.yaw_var_per_m * dist
        q[SCALE, SCALE] = self.noise.scale_var_per_m * dist
        q[RATE, RATE] = self.noise.rate_var_per_s * dt
        q[BE, BE] = q[BN, BN] = self.noise.bias_var_per_s * dt
        self.P = f @ self.P @ f.T + self.q_scale * q
        self.P = 0.5 * (self.P + self.P.T)

    def inflate_position(self, var_m2: float) -> None:
        """Add isotropic position variance (e.g. unmodelled motion while relocalizing)."""
        self.P[0, 0] += var_m2
        self.P[1, 1] += var_m2

    # -- measurement ---------------------------------------------------------------------
    def innovation(self, z_en, r_cov) -> tuple[np.ndarray, np.ndarray]:
        """(y, S): innovation and its covariance for a position measurement."""
        y = np.asarray(z_en, dtype=np.float64)[:2] - self.x[:2]
        s = self.P[:2, :2] + np.asarray(r_cov, dtype=np.float64)
        return y, s

    def mahalanobis2(self, z_en, r_cov) -> float:
        """Squared Mahalanobis distance of a position measurement (chi2 with 2 dof)."""
        y, s = self.innovation(z_en, r_cov)
        return float(y @ np.linalg.solve(s, y))

    def update(self, z_en, r_cov) -> float:
        """Fuse a position measurement (Joseph form); returns its squared Mahalanobis distance."""
        r_cov = np.asarray(r_cov, dtype=np.float64)
        y, s = self.innovation(z_en, r_cov)
        d2 = float(y @ np.linalg.solve(s, y))
        h = np.zeros((2, self.N))
        h[0, 0] = h[1, 1] = 1.0
        k = self.P @ h.T @ np.linalg.inv(s)
        self.x = self.x + k @ y
        self.x[YAW] = wrap_angle(self.x[YAW])
        a = np.eye(self.N) - k @ h
        self.P = a @ self.P @ a.T + k @ r_cov @ k.T
        self.P = 0.5 * (self.P + self.P.T)
        return d2

    def update_to_posterior(self, mean_en, cov_en, min_gain: float = 1e-6) -> float | None:
        """Make the position marginal equal a given posterior (mean, covariance) by the
        equivalent linear measurement, so the other states follow through their correlations.

        The posterior comes from a non-Gaussian update (localize.evidence: prior x heatmap
        likelihood on a grid). Information it adds is J = C^-1 - P^-1 (position block); a
        direction where the posterior is wider than the prior (a bimodal posterior) carries
        no information and instead widens the prior first. Returns the squared Mahalanobis
        distance of the equivalent measurement, or None when it adds nothing."""
        p = self.P[:2, :2]
        c = 0.5 * (np.asarray(cov_en, dtype=np.float64) + np.asarray(cov_en, dtype=np.float64).T)
        # widen first where the posterior is wider than the prior
        w, v = np.linalg.eigh(c - p)
        if w[-1] > 0:
            self.P[:2, :2] += (v * np.maximum(w, 0.0)) @ v.T
            p = self.P[:2, :2]
        p_inv = np.linalg.inv(p)
        j = np.linalg.inv(c) - p_inv
        w, v = np.linalg.eigh(0.5 * (j + j.T))
        if w[-1] <= min_gain:
            return None
        r_inv_diag = np.maximum(w, 0.0)
        r = (v * np.where(r_inv_diag > min_gain, 1.0 / np.maximum(r_inv_diag, min_gain), 1e12)) @ v.T
        mu = self.x[:2]
        z = mu + (p + r) @ p_inv @ (np.asarray(mean_en, dtype=np.float64) - mu)
        return self.update(z, r)
