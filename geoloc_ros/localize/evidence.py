"""This frame's heatmaps as evidence about the position: probabilistic data association.

Why not "gate the best peak and fuse it": a heatmap is rarely one trustworthy blob. Under a
strong appearance gap the true peak is weak (confidence 0.1-0.3) and look-alike places light
up elsewhere; a confidence threshold throws the weak true peak away, and a Mahalanobis gate
lets a strong wrong peak through whenever the track is uncertain. Here every maximum of every
searched window (model.decode `modes`) is a candidate position z_k with covariance R_k (the
heatmap's shape around it) and a probability pi_k of being the true position, calibrated
from its confidence on the scenario suite's calibration set (`peak_probability`). If none
is right, the UAV is anywhere in the searched area (density 1 / area). With the track's
prior N(mu, P) the posterior is a mixture, in closed form:

    w_0 ~ (1 - sum pi_k) / area                      (every peak is wrong: the prior stays)
    w_k ~ pi_k N(z_k; mu, P + R_k)                    (peak k is right: its Kalman update)

and its mean and covariance update the EKF (`PositionYawEKF.update_to_posterior`). So a weak
peak close to the prediction still narrows the track (several of them make a fix), a strong
peak where the prior says the UAV cannot be moves nothing, and a strong peak where the prior
is wide makes the posterior bimodal: its covariance grows instead of the track jumping
(no fix until later frames decide; localize.tracker keeps such places as challengers).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Mode:
    """A heatmap maximum as a position measurement of the UAV's nadir."""

    z: np.ndarray  # (2,) ENU metres
    r: np.ndarray  # 2x2 m^2
    prob: float  # probability that this is the true position (before the prior is seen)
    window: int = 0


@dataclass
class Association:
    """The mixture posterior of the module docstring, reduced to its moments."""

    mean: np.ndarray  # (2,)
    cov: np.ndarray  # 2x2
    weights: np.ndarray  # (1 + n_modes,): "all wrong", then each mode (sum 1)
    info_nats: float  # 0.5 * log(det P / det cov): position information gained (<= 0: nothing)

    @property
    def best(self) -> int | None:
        """Index of the most probable mode, or None when "all wrong" is the most probable."""
        k = int(np.argmax(self.weights))
        return None if k == 0 else k - 1


def peak_probability(confidence: float, centre: float, width: float, top: float) -> float:
    """P(a peak of this decode confidence is the true position): a logistic in the
    confidence, at most `top` (no single heatmap is ever certain)."""
    x = (float(confidence) - centre) / max(width, 1e-6)
    return float(top / (1.0 + math.exp(-max(min(x, 50.0), -50.0))))


def _gauss(y: np.ndarray, s: np.ndarray) -> float:
    """N(y; 0, s) for a 2-vector."""
    det = float(np.linalg.det(s))
    if not det > 0:
        return 0.0
    return math.exp(-0.5 * float(y @ np.linalg.solve(s, y))) / (2.0 * math.pi * math.sqrt(det))


def associate(modes: list[Mode], area_m2: float, mean: np.ndarray, cov: np.ndarray) -> Association | None:
    """The posterior of the module docstring for prior N(mean, cov); None without modes."""
    if not modes:
        return None
    mu = np.asarray(mean, dtype=np.float64)[:2]
    p = 0.5 * (np.asarray(cov, dtype=np.float64)[:2, :2] + np.asarray(cov, dtype=np.float64)[:2, :2].T)
    total = min(sum(m.prob for m in modes), 0.999)
    w = [(1.0 - total) / max(area_m2, 1.0)]
    means, covs = [mu], [p]
    for m in modes:
        s = p + m.r
        y = m.z - mu
        w.append(m.prob * _gauss(y, s))
        k = p @ np.linalg.inv(s)
        means.append(mu + k @ y)
        covs.append((np.eye(2) - k) @ p)
    wa = np.array(w, dtype=np.float64)
    if not (wa.sum() > 0 and np.all(np.isfinite(wa))):
        return None
    wa = wa / wa.sum()
    m_all = np.array(means)
    mean_post = (wa[:, None] * m_all).sum(0)
    c = np.zeros((2, 2))
    for wi, mi, ci in zip(wa, means, covs):
        d = mi - mean_post
        c += wi * (ci + np.outer(d, d))
    c = 0.5 * (c + c.T)
    info = 0.5 * math.log(max(float(np.linalg.det(p)), 1e-300) / max(float(np.linalg.det(c)), 1e-300))
    return Association(mean=mean_post, cov=c, weights=wa, info_nats=float(info))
