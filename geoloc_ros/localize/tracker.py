"""Following the track: EKF prediction, heatmap evidence, honesty checks and challenger tracks.

One frame while the track is followed (TRACKING / DEGRADED):
1. `predict`: the EKF moves the track with the odometry (the filter estimates the odometry's
   yaw offset, yaw-offset rate, scale and velocity bias; localize.filter).
2. `update` with this frame's heatmaps:
   - the best peak is compared with the prior (squared Mahalanobis distance d2). Over the
     peaks that support the track (inside the gate), an honest filter's d2 averages 2 (chi2
     with 2 degrees of freedom): a running mean above that raises the process noise
     (`q_scale`, covariance matching on the innovations, NIS monitoring) and one below lets it
     return towards the configured noise; never below it. Only gated peaks count: a wrong
     peak far away (a look-alike) says nothing about the noise, and the history a well-fed
     track has earned is never thrown away at once. Offsets larger than the gate are the
     challengers' business (below). The same innovations, whitened, should be uncorrelated
     from one frame to the next; when they are not, the track lags behind its evidence the
     same way frame after frame (a drift the model does not capture, or look-alike terrain
     biasing the matches for seconds) and the process noise grows by (1 + rho) / (1 - rho),
     rho the estimated correlation;
   - probabilistic data association (localize.evidence) weighs every window's maxima by how
     likely each is right and how well it fits the prior; the mixture posterior's moments
     update the EKF. A weak peak near the prediction counts; a peak where the prior says the
     UAV cannot be moves nothing. How likely a peak is right is calibrated per model, and
     checked per flight: when the compared peaks stop landing inside the gate (a model that
     fails on this terrain, or a track that is off), their probabilities are discounted
     (`reliability`) so that chance coincidences cannot narrow the track;
   - a posterior that would jump the track by more than `jump_d2` (prior Mahalanobis) is not
     fused: its mode becomes a challenger, as does a confident peak outside the gate.
     Challengers move with the odometry; one seen in `challenger_frames` more consistent
     frames than the track found support of its own meanwhile replaces the track (a drift
     larger than the covariance admitted, or a VIO reset), with a covariance that says the
     track just jumped. A look-alike that wins the best peak while the true place keeps a
     fused peak of its own gains nothing on the track.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

from .evidence import Mode, associate
from .filter import PositionYawEKF, rot2
from .gating import chi2_2dof_quantile
from .relocalization import Candidate
from .types import Peak, TrackUpdate

class Tracker:
    """The EKF and what judges it (module docstring). `cfg`: LocalizerConfig."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.ekf = PositionYawEKF(cfg.filter_noise())
        self.gate_d2 = chi2_2dof_quantile(cfg.gate_probability)
        self.counts: Counter = Counter()
        self.rejections = 0
        self.challengers: list[Candidate] = []
        self.reset_run_state(0.0)

    def reset_run_state(self, stamp: float) -> None:
        """Forget the evidence history (a new track starts at `stamp`)."""
        self._nis_mean, self._nis_count = 2.0, 0
        self.agreement = 1.0  # running share of compared peaks inside the gate (the seed is trusted)
        self._white_prev: tuple[float, np.ndarray] | None = None  # (stamp, whitened innovation)
        self._rho = 0.0  # estimated frame-to-frame correlation of the innovations
        self.challengers = []
        self._q_nis = 1.0
        self.ekf.q_scale = 1.0
        self.t_informative = float(stamp)  # last frame whose evidence was fused
        self.agree_run = 0  # consecutive informative frames without a confident disagreement
        self.misses = 0  # frames since the last informative one

    # ------------------------------------------------------------------ prediction
    def world_displacement(self, d_odom: np.ndarray) -> np.ndarray:
        """An odometry displacement in the world frame with the current estimates."""
        return (1.0 + self.ekf.scale) * rot2(self.ekf.yaw_offset) @ np.asarray(d_odom, dtype=np.float64)[:2]

    def predict(self, d_odom: np.ndarray, dt: float) -> None:
        d_world = self.world_displacement(d_odom)
        self.ekf.predict(d_odom, dt)
        for c in self.challengers:
            c.z = c.z + d_world

    # ------------------------------------------------------------------ honesty of the covariance
    def _nis_adapt(self, d2: float) -> str:
        """Covariance matching (module docstring): the running mean of gated d2 steers the
        process-noise multiplier; '' or a note when it moved."""
        cfg = self.cfg
        a = 1.0 / cfg.nis_window
        self._nis_mean = (1.0 - a) * self._nis_mean + a * d2
        self._nis_count += 1
        if self._nis_count < cfg.nis_window:
            return ""
        ratio = self._nis_mean / 2.0
        before = self._q_nis
        if ratio > cfg.nis_band:
            self._q_nis = min(cfg.q_scale_max, before * ratio)
        elif ratio < 1.0 / cfg.nis_band and before > 1.0:
            self._q_nis = max(1.0, before * ratio)
        else:
            return ""
        self._set_q()
        self._nis_count = 0  # let the new noise level show before the next step
        self._nis_mean = 2.0
        self.counts["process_noise_adapted"] += 1
        return f"process noise x{self.ekf.q_scale:.1f} (mean NIS {2.0 * ratio:.1f})"

    def _whiteness(self, y: np.ndarray, s: np.ndarray, stamp: float) -> None:
        """Track the frame-to-frame correlation of whitened innovations (module docstring)."""
        cfg = self.cfg
        w = np.linalg.solve(np.linalg.cholesky(s), y)
        prev = self._white_prev
        if prev is not None and 0.0 < stamp - prev[0] <= cfg.whiteness_gap_s:
            a = 1.0 / cfg.nis_window
            self._rho = (1.0 - a) * self._rho + a * float(np.clip(w @ prev[1], -10.0, 10.0)) / 2.0
        self._white_prev = (stamp, w)
        self._set_q()

    @property
    def reliability(self) -> float:
        """How far the peaks' calibrated probabilities are believed on this flight, in [0, 1]:
        1 while most compared peaks land inside the gate, 0 when hardly more do than chance
        would put there (a model that is wrong here, or a track that is): then no peak narrows
        the track until they agree again (the covariance grows meanwhile, so they will)."""
        lo, hi = self.cfg.reliability_floor, self.cfg.reliability_full
        return float(min(max((self.agreement - lo) / max(hi - lo, 1e-6), 0.0), 1.0))

    def _set_q(self) -> None:
        """The process-noise multiplier: NIS's verdict times the innovations' correlation (a
        track lagging behind its evidence the same way frame after frame needs more process
        noise, not less trust in the evidence)."""
        self.ekf.q_scale = min(self.cfg.q_scale_max, self._q_nis * self.correlation_factor)

    @property
    def correlation_factor(self) -> float:
        """How much a frame's peaks' covariance grows for correlated innovations (>= 1)."""
        rho = min(max(self._rho, 0.0), 0.9)
        return (1.0 + rho) / (1.0 - rho)

    # ------------------------------------------------------------------ challengers
    def _challenge(self, z: np.ndarray, r: np.ndarray, confidence: float, seen: list) -> None:
        """Add a disagreeing position to the challengers (one hit per challenger and frame:
        `seen` holds the ones hit in this frame already)."""
        cfg = self.cfg
        hit = next((c for c in self.challengers if float(np.hypot(*(z - c.z))) <= cfg.reloc_tol_m), None)
        if hit is None:
            hit = Candidate(z.copy(), r.copy(), confidence, 1)
            self.challengers.append(hit)
        elif not any(hit is c for c in seen):
            hit.z, hit.r, hit.confidence, hit.hits = z.copy(), r.copy(), confidence, hit.hits + 1
        seen.append(hit)
        self.challengers = sorted(self.challengers, key=lambda c: (c.hits - c.contested, c.confidence),
                                  reverse=True)[:cfg.reloc_max_hypotheses]

    def _frames_needed(self, c: Candidate) -> int:
        """Frames a challenger must win to replace the track: `challenger_frames`, plus
        `challenger_frames_per_doubling` per doubling of its distance from the track beyond
        sqrt(jump_d2) sigmas. Why: the farther a jump is in the track's own sigmas, the less
        likely the odometry made it, and a look-alike far away can win the best peak a few
        frames running while the true place shows none (the snapped windows of the satellite
        cache met that). A track that is really wrong gets no support, its covariance grows
        with the odometry's drift, and the bar falls as it does."""
        cfg = self.cfg
        need = cfg.challenger_frames
        if cfg.challenger_frames_per_doubling > 0:
            y = c.z - self.ekf.x[:2]
            d = math.sqrt(max(float(y @ np.linalg.solve(self.ekf.pos_cov + c.r, y)), 0.0))
            ratio = d / math.sqrt(cfg.jump_d2)
            if ratio > 1.0:
                need += cfg.challenger_frames_per_doubling * math.ceil(math.log2(ratio))
        return need

    def _confirmed(self) -> Candidate | None:
        """The challenger that replaces the track: seen in `_frames_needed` more frames than
        the track found support of its own since it appeared. Why the difference: a look-alike
        can win the best peak several frames running while the true place keeps a peak of its
        own near the prediction (that frame's evidence is fused); then two places compete and
        the one with the history wins. A real jump leaves the track without support."""
        for c in self.challengers:
            if c.hits - c.contested >= self._frames_needed(c):
                return c
        return None

    def _switch(self, c: Candidate, stamp: float) -> None:
        """Replace the track by a confirmed challenger: the position jumps, the covariance says
        so (the challenger's own, widened), the odometry-error estimates stay."""
        cfg = self.cfg
        pos_cov = c.r + np.eye(2) * cfg.odom_reset_sigma_m ** 2
        p_old = self.ekf.P.copy()
        self.ekf.x[:2] = c.z
        self.ekf.P[:2, :] = 0.0
        self.ekf.P[:, :2] = 0.0
        self.ekf.P[:2, :2] = pos_cov
        self.ekf.P[2:, 2:] = p_old[2:, 2:]
        self.ekf.P[2, 2] += math.radians(cfg.yaw_sigma_deg) ** 2 * 0.25  # the heading that drifted is suspect too
        self.challengers = []
        self._nis_mean, self._nis_count = 2.0, 0
        self.counts["track_switches"] += 1
        self.agree_run = 0
        self.t_informative = float(stamp)

    def _switched(self, c: Candidate, stamp: float, conf: float, window: int | None, d2: float) -> TrackUpdate:
        """A confirmed challenger takes over (`_switch`); what update() reports for that frame."""
        self._switch(c, stamp)
        self.misses = 0
        return TrackUpdate(True, False, conf, window, d2, 0.0, switched=True,
                           message=f"track replaced by a challenger confirmed over {c.hits} frames")

    # ------------------------------------------------------------------ the update
    def update(self, modes: list[Mode], area_m2: float, peaks: list[Peak], stamp: float) -> TrackUpdate:
        """Fuse one frame's evidence (module docstring): the windows' maxima `modes`, the
        searched area (m^2, the density of "every peak is wrong"), each window's best `peaks`."""
        cfg = self.cfg
        mu, p = self.ekf.x[:2].copy(), self.ekf.pos_cov
        valid = [pk for pk in peaks if pk.valid]
        best = max(valid, key=lambda pk: pk.confidence) if valid else None
        conf = best.confidence if best is not None else (max((pk.confidence for pk in peaks), default=0.0))
        d2 = float("nan")
        notes = []
        confident = best is not None and best.confidence >= cfg.strong_confidence
        supported = False
        if best is not None and best.confidence >= cfg.min_confidence:
            y = best.z - mu
            d2 = float(y @ np.linalg.solve(p + best.r, y))
            supported = d2 <= self.gate_d2
            a = 1.0 / cfg.nis_window
            self.agreement = (1.0 - a) * self.agreement + a * float(supported)
            if supported:
                self._whiteness(y, p + best.r, stamp)
                note = self._nis_adapt(d2)
                if note:
                    notes.append(note)
        disagrees = confident and d2 > self.gate_d2
        window = best.window if best is not None else None
        seen: list[Candidate] = []  # challengers hit in this frame
        if disagrees:
            self.rejections += 1
            self.counts["disagreeing_peak"] += 1
            self._challenge(best.z, best.r, best.confidence, seen)
        elif self.challengers and supported:
            self.challengers = []  # the track is supported again: challengers had one-off peaks

        # the association, with the peaks' covariances widened when frames come faster than
        # their errors decorrelate (meas_correlation_s)
        dt = stamp - self.t_informative
        corr = max(1.0, cfg.meas_correlation_s / dt) if cfg.meas_correlation_s > 0 and dt > 0 else 1.0
        rel = self.reliability
        if corr > 1.0 or rel < 1.0:
            modes = [Mode(m.z, m.r * corr, m.prob * rel, m.window) for m in modes]
        post = associate(modes, area_m2, mu, p)
        fuse = False
        ambiguous = False
        if post is not None:
            mode_w = post.weights[1:]
            # two places both carry weight: the update narrows nothing that can be trusted yet
            ambiguous = mode_w.sum() > 0 and float(mode_w.max()) < cfg.unambiguous_share * float(mode_w.sum())
            shift = post.mean - mu
            shift_d2 = float(shift @ np.linalg.solve(p, shift))
            k = post.best
            if shift_d2 > cfg.jump_d2 and k is not None:
                # evidence that moves the track too far at once is a candidate, not a fix
                self.counts["jump_held"] += 1
                self._challenge(modes[k].z, modes[k].r, modes[k].prob, seen)
                notes.append(f"evidence {math.sqrt(shift_d2):.1f} sigma away held as a challenger")
            else:
                fuse = post.info_nats >= cfg.evidence_min_info_nats
        if fuse:  # the track has support of its own in this frame: the challengers do not gain on it
            for c in self.challengers:
                c.contested += 1
        won = self._confirmed()
        if won is not None:
            return self._switched(won, stamp, conf, window, d2)
        informative = False
        info = 0.0
        if fuse:
            self.ekf.update_to_posterior(post.mean, post.cov)
            informative = True
            info = post.info_nats
        if informative:
            self.t_informative = float(stamp)
            self.misses = 0
            self.agree_run = 0 if disagrees or ambiguous else self.agree_run + 1
            self.counts["informative"] += 1
        else:
            self.misses += 1
            if disagrees:
                self.agree_run = 0
        msg = ("evidence fused" if informative else "no new evidence") + f" (peak conf {conf:.2f}" + \
              (f", d2 {d2:.1f})" if math.isfinite(d2) else ")")
        if notes:
            msg += "; " + "; ".join(notes)
        return TrackUpdate(informative, not disagrees, conf, window, d2, info, message=msg)
