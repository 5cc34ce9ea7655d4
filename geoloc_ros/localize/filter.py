"""EKF over [east, north, yaw_offset, scale_error] driven by odometry deltas, updated by map fixes.

Why this state: the odometry (VIO / FCU) is locally good but its frame drifts: position
error grows with distance flown, its yaw slowly rotates against the world, and its scale is
off by a few percent. Keeping the odom-to-world yaw offset and a scale correction in the
state lets map fixes taken while moving estimate both (they are observable through the
odometry displacements), so dead reckoning between fixes stays straight and the estimate
does not lag behind the truth by (scale error x step / gain). Positions are metres in a
local ENU frame anchored at the initial fix.

Prediction: p += (1 + s) R(yaw_offset) d_odom.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def rot2(theta: float) -> np.ndarray:
    """2-D rotation by `theta` radians (counter-clockwise, ENU)."""
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def wrap_angle(a: float) -> float:
    """Angle wrapped to [-pi, pi)."""
    return float((a + np.pi) % (2.0 * np.pi) - np.pi)


@dataclass
class FilterNoise:
    """Process noise of the odometry-driven prediction (all 1-sigma)."""

    scale_sigma: float = 0.02  # odometry scale error: along-track sigma per metre of step
    cross_sigma: float = 0.01  # cross-track sigma per metre of step (white heading jitter)
    drift_var_per_m: float = 0.02  # isotropic random-walk variance (m^2) added per metre flown
    pos_var_per_s: float = 0.01  # isotropic variance (m^2) added per second (hover drift)
    yaw_var_per_s: float = np.radians(0.2) ** 2  # yaw-offset random walk (rad^2 per second)
    yaw_var_per_m: float = np.radians(0.02) ** 2  # yaw-offset random walk (rad^2 per metre)
    scale_var_per_m: float = 1e-7  # scale-correction random walk (1/m): lets the scale wander slowly


class PositionYawEKF:
    """x = [e, n, yaw_offset, s]; world displacement = (1 + s) R(yaw_offset) @ odom displacement."""

    N = 4

    def __init__(self, noise: FilterNoise | None = None) -> None:
        self.noise = noise or FilterNoise()
        self.x = np.zeros(self.N)
        self.P = np.eye(self.N)

    # -- state ---------------------------------------------------------------------
    def reset(self, east: float, north: float, yaw_offset: float, pos_sigma_m: float, yaw_sigma_rad: float,
              pos_cov: np.ndarray | None = None, scale: float = 0.0, scale_sigma: float = 0.03) -> None:
        """Restart at a known position (initial fix or confirmed relocalization)."""
        self.x = np.array([east, north, wrap_angle(yaw_offset), scale], dtype=np.float64)
        self.P = np.zeros((self.N, self.N))
        self.P[:2, :2] = np.asarray(pos_cov, dtype=np.float64) if pos_cov is not None else np.eye(2) * pos_sigma_m ** 2
        self.P[2, 2] = yaw_sigma_rad ** 2
        self.P[3, 3] = scale_sigma ** 2

    @property
    def position(self) -> np.ndarray:
        return self.x[:2].copy()

    @property
    def yaw_offset(self) -> float:
        return float(self.x[2])

    @property
    def scale(self) -> float:
        """Estimated odometry scale correction s (world = (1 + s) * odom)."""
        return float(self.x[3])

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
        th, k = self.x[2], 1.0 + self.x[3]
        r = rot2(th)
        c, s = np.cos(th), np.sin(th)
        rd = r @ d
        self.x[:2] = self.x[:2] + k * rd
        f = np.eye(self.N)
        f[0, 2] = k * (-s * d[0] - c * d[1])  # d((1+s) R d)/d theta
        f[1, 2] = k * (c * d[0] - s * d[1])
        f[0, 3], f[1, 3] = rd  # d((1+s) R d)/d s
        q = np.zeros((self.N, self.N))
        q[:2, :2] = r @ self.process_noise_odom(d, dt) @ r.T
        dist = float(np.hypot(d[0], d[1]))
        q[2, 2] = self.noise.yaw_var_per_s * max(dt, 0.0) + self.noise.yaw_var_per_m * dist
        q[3, 3] = self.noise.scale_var_per_m * dist
        self.P = f @ self.P @ f.T + q
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
        self.x[2] = wrap_angle(self.x[2])
        a = np.eye(self.N) - k @ h
        self.P = a @ self.P @ a.T + k @ r_cov @ k.T
        self.P = 0.5 * (self.P + self.P.T)
        return d2
