"""The localizer: one `step(frame)` per camera frame -> an `Estimate`.

Orchestration only; each idea lives in its own module:
    validate      is the frame usable at all
    tracker       EKF prediction with the odometry, heatmap evidence, covariance honesty,
                  challenger tracks (the track while it is followed)
    relocalization where to search after a loss, and when a candidate is believed
    states        the state machine: (state, event) -> state
    prepare/search/measurement/evidence   the UAV image, the windows, the heatmaps' meaning
ROS-free: the node, the replay tool and tests all call this class (through
geoloc_ros.runtime), so a bag replayed offline gives the fixes the node would publish.

Honesty rules (a wrong fix with a small covariance is the worst output a GPS substitute can
give): a fix is published (`fix_valid`) only while TRACKING, which needs a small covariance,
recent evidence, no confirmed disagreement and, after a DEGRADED stretch, `recover_frames`
agreeing updates; the track goes to relocalization when its own uncertainty exceeds
`lost_sigma_m`, not after a count of rejections; without a net no evidence is ever produced.
"""
from __future__ import annotations

import functools
import logging
import math
import time
from collections import Counter

import numpy as np

from ..data.tensors import to_tensor
from ..geo.errors import GeoError
from ..geo.frames import LocalENU
from ..timeseries import StampedSeries
from .config import LocalizerConfig, with_model_defaults
from .filter import rot2, wrap_angle
from .measurement import peak_measurement, window_modes
from .prepare import prepare_uav, uav_footprint_m
from .relocalization import SearchContext, make_relocalization
from .sat_cache import (SatFeatureCache, WindowGrid, effective_useful_frac, ladder_side_m, ladder_step,
                        window_of, windows_cat)
from .search import dither_offset, plan_tracking_windows, sat_window_side_m
from .states import Event, LocalizerState, next_state
from .tracker import Tracker
from .types import OPTIONAL_STAGES, STAGES, Estimate, Frame, TrackUpdate
from .validate import frame_problem

__all__ = ["Estimate", "Frame", "Localizer", "LocalizerConfig"]
log = logging.getLogger(__name__)


class Localizer:
    """Map-based localizer; see the module docstring. `net` may be None (no evidence).

    `relocalization`: a strategy (localize.relocalization.Relocalization), or a place
    recognizer (an object with `candidates_multi`, e.g. retrieval.RetrievalRelocalizer) used
    when `cfg.relocalization == "retrieval"`; None: the window sweep. `relocalizer` is the
    older name of the same argument."""

    def __init__(self, cfg: LocalizerConfig | None, orthomap, net=None, device="auto", relocalizer=None,
                 relocalization=None) -> None:
        info = getattr(net, "weights_info", None) or {}
        # model-dependent settings left at 0 come from the weights (localize.config.with_model_defaults)
        self.cfg = with_model_defaults(cfg or LocalizerConfig(), info.get("inference"))
        self.map = orthomap
        self.net = net
        net_cfg = getattr(net, "cfg", None)
        self.uav_size = int(self.cfg.uav_size or getattr(net_cfg, "uav_size", 0) or 128)
        self.sat_size = int(self.cfg.sat_size or getattr(net_cfg, "sat_size", 0) or 384)
        self.device = None
        self._decode = None
        if net is not None:
            import torch  # noqa: F401  (only needed with a net)

            from ..model.decode import decode_heatmap, hanning_for_grid, scale_to_grid
            from ..model.device import pick_device

            self.device = pick_device(device) if isinstance(device, str) else device
            self.net = net.to(self.device).eval()
            # decode's pixel sizes are tuned for the 384 px UL14 output: scaled to this model's grid
            self._decode = functools.partial(
                decode_heatmap, hanning=hanning_for_grid(self.cfg.hanning, self.sat_size), window=self.cfg.decode_window,
                suppress_radius=scale_to_grid(32.0, self.sat_size), cov_radius=scale_to_grid(16.0, self.sat_size),
                mode_min_ratio=self.cfg.mode_min_ratio)
        given = relocalization if relocalization is not None else relocalizer
        self.search, self.relocalizer_error = make_relocalization(self.cfg, given)
        if self.relocalizer_error:
            log.warning("retrieval relocalization unavailable, using the window sweep: %s", self.relocalizer_error)
        self.tracker = Tracker(self.cfg)
        self.track_useful_frac = effective_useful_frac(self.cfg.useful_frac, self.cfg.window_grid_frac,
                                                       self.cfg.window_dither_frac)
        if self.track_useful_frac < 0.2:
            raise ValueError(f"useful_frac ({self.cfg.useful_frac:g}) minus window_grid_frac "
                             f"({self.cfg.window_grid_frac:g}) and twice window_dither_frac "
                             f"({self.cfg.window_dither_frac:g}) leaves {self.track_useful_frac:.2f} of a window "
                             f"trusted; it must stay at least 0.2 (lower window_grid_frac or window_dither_frac)")
        # encoded satellite windows (tracking); keys are ENU grid indices, so it is cleared with the ENU frame
        cacheable = net is not None and hasattr(net, "encode") and hasattr(net, "forward_features")
        self.sat_cache = SatFeatureCache(int(self.cfg.sat_cache_mb * 2 ** 20) if cacheable else 0)
        self._odom = StampedSeries(4, angle_columns=(3,), maxlen=512)  # x, y, z, yaw of the frames seen
        self._pending_fix: tuple | None = None
        self._reloc_after_fix = False
        self.counts: Counter = Counter()  # frames by outcome, odometry resets, ...
        self._reset_runtime()

    # ------------------------------------------------------------------ compatibility views
    @property
    def ekf(self):
        return self.tracker.ekf

    @property
    def reloc_counts(self) -> Counter:
        """Relocalization counters (cumulative): episodes, windows by source, index queries."""
        return self.search.counts

    @property
    def relocalizer(self):
        """The place recognizer of a retrieval strategy, or None."""
        return getattr(self.search, "recognizer", None)

    @property
    def odom_jumps(self) -> int:
        return self.counts["odom_jump"]

    @property
    def window_side_m(self) -> float | None:
        return getattr(self, "_window_m", None)

    # ------------------------------------------------------------------ public API
    def _reset_runtime(self) -> None:
        self.state = LocalizerState.INITIALIZING
        self.enu: LocalENU | None = None
        self._alt0 = 0.0
        self._odom_z0 = 0.0
        self._last: tuple | None = None  # (stamp, xyz, yaw) of the last processed frame
        self._last_rate = np.zeros(2)  # odometry velocity (odom frame) of the last normal step
        self._last_yaw_rate = 0.0  # odometry yaw rate (rad/s) of the last normal step
        self._reloc_frames = 0  # frames of the current relocalization episode (yaw hypotheses)
        self._reloc_hold = 0  # frames a hypothesis was held for its candidates
        self._yaw_hyp = 0.0  # this frame's heading hypothesis (rad)
        self.tracker.reset_run_state(0.0)

    def set_initial_fix(self, lat: float, lon: float, alt: float, sigma_m: float, stamp: float,
                        yaw: float | None = None, relocalize: bool = False) -> None:
        """Start (or restart) from a known position, e.g. the last GPS fix before denial.
        Applied at the next step(); the odometry at `stamp` is interpolated from the frames seen.
        `relocalize=True`: the fix is only a prior for the search (e.g. the last known position
        before a long outage, or the map centre): start in RELOCALIZING within n_sigma * sigma_m."""
        if not (np.isfinite(lat) and np.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180):
            raise ValueError(f"initial fix needs a finite lat/lon on the globe, got ({lat}, {lon})")
        if not (np.isfinite(sigma_m) and 0 < sigma_m <= self.cfg.max_initial_sigma_m):
            raise ValueError(f"initial fix 1-sigma {sigma_m} m is not in (0, max_initial_sigma_m = "
                             f"{self.cfg.max_initial_sigma_m:g}]")
        if not np.isfinite(stamp) or (yaw is not None and not np.isfinite(yaw)):
            raise ValueError(f"initial fix needs a finite stamp and heading, got stamp {stamp}, heading {yaw}")
        self._pending_fix = (float(lat), float(lon), float(alt if np.isfinite(alt) else 0.0), float(sigma_m),
                             float(stamp), None if yaw is None else float(yaw), bool(relocalize))
        self._reloc_after_fix = False  # a fix given after a relocalization request wins

    def request_relocalization(self) -> None:
        """Forget the current track and search for the position (e.g. on operator request).
        A fix set but not yet applied is applied first and then relocalized from: the later
        command wins."""
        if self._pending_fix is not None:
            self._reloc_after_fix = True
        elif self.state != LocalizerState.INITIALIZING:
            self._relocalize(self._last[0] if self._last else 0.0)

    # ------------------------------------------------------------------ helpers
    def _odom_at(self, stamp: float) -> tuple[np.ndarray, float, float]:
        """Odometry (xyz, yaw) at `stamp` from the frames seen; third value: seconds outside them."""
        first, last = self._odom.first_stamp(), self._odom.last_stamp()
        v = self._odom.at(stamp)
        gap = max(0.0, first - stamp, stamp - last)
        return v[:3], float(v[3]), gap

    def _transition(self, event: Event) -> None:
        before = self.state
        self.state = next_state(self.state, event)
        if before == LocalizerState.TRACKING and self.state != LocalizerState.TRACKING:
            self.tracker.agree_run = 0  # a fix comes back only from new agreeing evidence

    def _relocalize(self, stamp: float) -> None:
        self._transition(Event.RELOCALIZE)
        self.search.start(stamp)
        self._reloc_frames = 0
        self._reloc_hold = 0

    def _reloc_yaw_hypothesis_active(self) -> bool:
        """Heading hypotheses are tried: the yaw-offset 1-sigma exceeds `reloc_yaw_sigma_deg`."""
        cfg = self.cfg
        yaw_sigma = math.sqrt(max(float(self.tracker.ekf.P[2, 2]), 0.0))
        return cfg.reloc_yaw_step_deg > 0 and yaw_sigma > math.radians(cfg.reloc_yaw_sigma_deg)

    def _reloc_yaw_dwell(self) -> int:
        """Frames a heading hypothesis is held: enough for a candidate to be confirmed under it."""
        return max(1, self.cfg.reloc_confirm_frames + self.cfg.reloc_max_misses)

    def _reloc_yaw_hypothesis(self) -> float:
        """This relocalization frame's heading hypothesis (rad, added to the yaw-offset
        estimate): 0 unless `_reloc_yaw_hypothesis_active`; then 0, +s, 0, -s, 0, +2s, ... out
        to 2 sigma (s = `reloc_yaw_step_deg`), each held for `_reloc_yaw_dwell` frames. Why: a
        heading off by more than the model tolerates (an outage, a long relocalization on an
        extrapolated yaw rate) never matches, and only a match re-estimates the heading."""
        if not self._reloc_yaw_hypothesis_active():
            return 0.0
        step = math.radians(self.cfg.reloc_yaw_step_deg)
        reach = min(2.0 * math.sqrt(float(self.tracker.ekf.P[2, 2])), math.pi) + 1e-9
        seq = [0.0]
        k = 1
        while k * step <= reach:
            seq += [k * step, 0.0] + ([-k * step, 0.0] if k * step < math.pi - 1e-9 else [])
            k += 1
        return seq[(self._reloc_frames // self._reloc_yaw_dwell()) % len(seq)]

    def _advance_reloc_yaw(self) -> None:
        """Move on to the next heading hypothesis, unless candidates found under this one are
        being confirmed (held for at most two dwells, so look-alikes cannot stall it)."""
        if getattr(self.search, "candidates", None) and self._reloc_hold < 2 * self._reloc_yaw_dwell():
            self._reloc_hold += 1
        else:
            self._reloc_hold = 0
            self._reloc_frames += 1

    def _initialize(self, frame: Frame, fix: tuple) -> None:
        lat, lon, alt, sigma, stamp, yaw = fix[:6]
        odom_xyz, odom_yaw, gap = self._odom_at(stamp)
        cfg = self.cfg
        self.enu = LocalENU(lat, lon, alt)
        self.sat_cache.clear()
        self._alt0, self._odom_z0 = alt, float(odom_xyz[2])
        if yaw is None:
            yaw_off, yaw_sig = 0.0, math.radians(cfg.yaw_sigma_deg)
        else:
            yaw_off, yaw_sig = wrap_angle(yaw - odom_yaw), math.radians(cfg.yaw_fix_sigma_deg)
        sigma = math.hypot(sigma, cfg.max_speed_mps * min(gap, cfg.max_predict_gap_s))
        self.tracker.ekf.reset(0.0, 0.0, yaw_off, sigma, yaw_sig, scale=0.0, scale_sigma=cfg.scale_sigma,
                               rate_sigma=math.radians(cfg.yaw_rate_sigma_deg_per_min) / 60.0,
                               bias_sigma=cfg.vel_bias_sigma_mps)
        # bring the state from the fix stamp to this frame with the odometry in between
        d = np.asarray(frame.odom_xyz, dtype=np.float64)[:2] - odom_xyz[:2]
        self.tracker.ekf.predict(d, min(max(0.0, frame.stamp - stamp), cfg.max_predict_gap_s))
        self.tracker.reset_run_state(float(frame.stamp))
        self.tracker.agree_run = self.cfg.recover_frames  # a given fix counts as agreeing evidence
        self._transition(Event.SEEDED)
        if len(fix) > 6 and fix[6] and self.net is not None:
            self._transition(Event.SEEDED_AS_PRIOR)
            self.search.start(float(frame.stamp))

    def _odom_jump(self, d: np.ndarray, dyaw: float, dt: float, dz: float) -> str:
        """Detect an odometry reset (VIO re-initialisation: the odom frame jumps) and absorb it:
        a displacement or yaw change that no flight can make in `dt` is not applied as motion;
        the yaw offset is corrected so that world yaw stays continuous. Returns '' or a note."""
        cfg = self.cfg
        pos_jump = float(np.hypot(*d)) > cfg.max_speed_mps * dt + cfg.odom_jump_margin_m
        yaw_jump = abs(dyaw) > math.radians(cfg.max_yaw_rate_dps * dt + cfg.odom_jump_yaw_margin_deg)
        if not (pos_jump or yaw_jump):
            return ""
        self.counts["odom_jump"] += 1
        ekf = self.tracker.ekf
        # a reset re-anchors the odometry frame: whatever yaw change exceeds the recent yaw rate
        # is a rotation of the frame, not of the vehicle (keeps the world yaw continuous)
        frame_rot = wrap_angle(dyaw - self._last_yaw_rate * dt)
        ekf.x[2] = wrap_angle(ekf.x[2] - frame_rot)
        ekf.P[2, 2] += (0.25 * math.radians(cfg.max_yaw_rate_dps) * dt) ** 2 if yaw_jump else math.radians(2.0) ** 2
        self._odom_z0 += dz  # the height reference jumped with the frame
        return f"odometry reset absorbed ({np.hypot(*d):.1f} m, {math.degrees(dyaw):.1f} deg)"

    def _published_cov(self) -> np.ndarray:
        """3x3 ENU covariance of a published estimate: the track's position covariance plus
        the errors no number of matches averages out (`map_sigma_m`), and the altitude's."""
        cov = np.zeros((3, 3))
        cov[:2, :2] = self.tracker.ekf.pos_cov + np.eye(2) * self.cfg.map_sigma_m ** 2
        cov[2, 2] = self.cfg.alt_sigma_m ** 2
        return cov

    def _track_event(self, stamp: float) -> Event:
        """Which event the track's own numbers are (localize.states)."""
        cfg = self.cfg
        tr = self.tracker
        sig = tr.ekf.pos_sigma_major()
        if sig > cfg.lost_sigma_m:
            return Event.TOO_UNCERTAIN
        fresh = stamp - tr.t_informative <= cfg.coast_max_s
        conflict = any(c.hits >= 2 for c in tr.challengers)
        if sig <= cfg.coast_sigma_m and fresh and not conflict:
            if self.state == LocalizerState.TRACKING or tr.agree_run >= cfg.recover_frames:
                return Event.CONFIDENT
        return Event.UNCERTAIN

    def _estimate(self, frame: Frame, t0: float, timings: dict, *, accepted=False, confidence=0.0,
                  search_m=0.0, heatmap=None, message="") -> Estimate:
        timings["total"] = (time.perf_counter() - t0) * 1e3
        ekf = self.tracker.ekf
        if self.enu is None:
            lat = lon = alt = float("nan")
            cov = np.full((3, 3), np.nan)
            yaw = float(frame.odom_yaw)
        else:
            e, n = ekf.x[:2]
            lat, lon, _ = self.enu.to_geodetic(e, n, 0.0)
            alt = self._alt0 + float(frame.odom_xyz[2]) - self._odom_z0
            cov = self._published_cov()
            yaw = wrap_angle(float(frame.odom_yaw) + ekf.yaw_offset)
        st = self.state
        if self._note:
            message = f"{self._note}; {message}" if message else self._note
        return Estimate(stamp=float(frame.stamp), lat=float(lat), lon=float(lon), alt=float(alt), cov_enu=cov,
                        yaw=yaw, state=st, fix_valid=st == LocalizerState.TRACKING, confidence=float(confidence),
                        accepted=bool(accepted), rejections=self.tracker.rejections,
                        consecutive_rejections=self.tracker.misses, search_size_m=float(search_m),
                        timings_ms={k: round(float(timings.get(k, 0.0)), 3) for k in STAGES
                                    + tuple(k for k in OPTIONAL_STAGES if k in timings)},
                        heatmap=heatmap, message=message)

    def _skipped(self, frame: Frame, problem: str) -> Estimate:
        """The answer for an invalid frame: the state as it was, never a fix."""
        stamp = float(frame.stamp) if np.isfinite(getattr(frame, "stamp", np.nan)) else float("nan")
        lat = lon = alt = float("nan")
        cov = np.full((3, 3), np.nan)
        ekf = self.tracker.ekf
        if self.enu is not None:
            lat, lon, _ = self.enu.to_geodetic(ekf.x[0], ekf.x[1], 0.0)
            cov = self._published_cov()
        return Estimate(stamp=stamp, lat=float(lat), lon=float(lon), alt=alt, cov_enu=cov, yaw=float("nan"),
                        state=self.state, fix_valid=False, confidence=0.0, accepted=False,
                        rejections=self.tracker.rejections, consecutive_rejections=self.tracker.misses,
                        search_size_m=0.0, timings_ms={k: 0.0 for k in STAGES},
                        message=f"frame skipped: {problem}")

    # ------------------------------------------------------------------ the step
    def step(self, frame: Frame) -> Estimate:
        """Process one frame (see module docstring) and return the estimate for its stamp."""
        t0 = time.perf_counter()
        problem = frame_problem(frame)
        if problem:
            return self._skipped(frame, problem)
        timings: dict = {}
        self._note = ""
        odom = np.asarray(frame.odom_xyz, dtype=np.float64)
        self._odom.add(float(frame.stamp), (odom[0], odom[1], odom[2], float(frame.odom_yaw)))

        # 1. initialise or predict
        if not self._predict(frame, odom):
            self._last = (frame.stamp, odom, float(frame.odom_yaw))
            return self._estimate(frame, t0, timings, message="waiting for an initial fix")
        self._last = (frame.stamp, odom, float(frame.odom_yaw))
        timings["predict"] = (time.perf_counter() - t0) * 1e3

        # 2. map coverage
        lat, lon, _ = self.enu.to_geodetic(self.tracker.ekf.x[0], self.tracker.ekf.x[1], 0.0)
        if not self.map.contains(lat, lon):
            self._transition(Event.LEFT_MAP)
            if self.state == LocalizerState.OFF_MAP:
                self.tracker.misses += 1
                return self._estimate(frame, t0, timings, message="predicted position outside the map")
        elif self.state == LocalizerState.OFF_MAP:
            self._transition(Event.BACK_ON_MAP)  # a fix needs fresh evidence first
            self.tracker.agree_run = 0
        if self.state == LocalizerState.LOST and self.net is not None:
            self._relocalize(float(frame.stamp))

        if self.net is None:
            self.tracker.misses += 1
            self._transition(self._track_event(float(frame.stamp)))
            lost = self.state == LocalizerState.LOST
            return self._estimate(frame, t0, timings, message="no model: dead reckoning" + (" - lost" if lost else ""))
        return self._match(frame, t0, timings)

    def _predict(self, frame: Frame, odom: np.ndarray) -> bool:
        """Apply a pending fix or move the track with the odometry; False while waiting for a fix."""
        if self._pending_fix is not None:
            self._reset_runtime()
            self._initialize(frame, self._pending_fix)
            self._pending_fix = None
            if self._reloc_after_fix:
                self._reloc_after_fix = False
                self._relocalize(float(frame.stamp))
            return True
        if self.state == LocalizerState.INITIALIZING:
            if not self.cfg.initial_fix:
                return False
            f = self.cfg.initial_fix
            self._initialize(frame, (float(f[0]), float(f[1]), float(f[2]) if len(f) > 2 else 0.0,
                                     self.cfg.initial_sigma_m, float(frame.stamp), None))
            return True
        t_prev, odom_prev, yaw_prev = self._last
        # a gap longer than max_predict_gap_s counts as that long (the track is lost by then)
        dt = min(max(0.0, frame.stamp - t_prev), self.cfg.max_predict_gap_s)
        d = odom[:2] - odom_prev[:2]
        jump_msg = self._odom_jump(d, wrap_angle(float(frame.odom_yaw) - yaw_prev), dt, odom[2] - odom_prev[2])
        if jump_msg:
            self._note = jump_msg
            d = self._last_rate * dt  # motion during the reset: assume the previous velocity
        elif dt > 1e-6:
            self._last_rate = d / dt
            self._last_yaw_rate = wrap_angle(float(frame.odom_yaw) - yaw_prev) / dt
        # relocalization candidates move too, under the heading hypothesis they were found with
        self.search.shift(rot2(self._yaw_hyp) @ self.tracker.world_displacement(d))
        self.tracker.predict(d, dt)
        if jump_msg:
            self.tracker.ekf.inflate_position((0.5 * self.cfg.max_speed_mps * dt) ** 2 + self.cfg.odom_reset_sigma_m ** 2)
        return True

    def _match(self, frame: Frame, t0: float, timings: dict) -> Estimate:
        """Steps 3-6 with a model: UAV input, windows, heatmaps, evidence, state."""
        cfg = self.cfg
        ekf = self.tracker.ekf
        # 3. prepare the UAV input
        t = time.perf_counter()
        reloc = self.state == LocalizerState.RELOCALIZING
        self._yaw_hyp = self._reloc_yaw_hypothesis() if reloc else 0.0
        if reloc:
            self._advance_reloc_yaw()
        world_yaw = float(frame.odom_yaw) + ekf.yaw_offset + self._yaw_hyp
        att = (float(frame.pitch), float(frame.roll)) if cfg.use_attitude else (0.0, 0.0)
        try:
            prep, window_m = self.prepare_view(frame.image, frame.intrinsics, float(frame.altitude_agl), world_yaw,
                                               *att)
        except ValueError as exc:
            self.tracker.misses += 1
            self._transition(self._track_event(float(frame.stamp)))
            return self._estimate(frame, t0, timings, message=f"frame skipped: {exc}")
        self._window_m = window_m
        timings["prepare"] = (time.perf_counter() - t) * 1e3

        # 4. windows
        t = time.perf_counter()
        if reloc:
            def prepare(size: int):
                return prepare_uav(frame.image, frame.intrinsics, float(frame.altitude_agl), world_yaw, size,
                                   antialias=cfg.antialias, pitch=att[0], roll=att[1], footprint_m=prep.footprint_m)

            ctx = SearchContext(position=ekf.x[:2].copy(), sigma_m=ekf.pos_sigma_major(), stamp=float(frame.stamp),
                                window_m=window_m, enu=self.enu, orthomap=self.map, footprint_m=prep.footprint_m,
                                prepare=prepare, cov=ekf.pos_cov.copy())
            centers, kinds = self.search.proposals(ctx, timings)
            keys = []
            t = time.perf_counter()  # the crop time excludes the place recognizer's
        else:
            plan = plan_tracking_windows(ekf.pos_sigma_major(), window_m, cfg.min_windows, cfg.max_windows,
                                         self.track_useful_frac, cfg.window_overlap, cfg.n_sigma)
            grid = WindowGrid(window_m, cfg.window_grid_frac, ladder_step(window_m, cfg.window_scale_steps))
            shift = dither_offset(float(frame.stamp), window_m, cfg.window_dither_frac)
            centers, keys = grid.snap(ekf.x[:2] + shift + plan.offsets)
            if keys:  # two planned windows may snap to one
                first = [i for i, k in enumerate(keys) if keys.index(k) == i]
                centers, keys = centers[first], [keys[i] for i in first]
            kinds = ["track"] * len(centers)
        if not reloc and keys and self.sat_cache.enabled and cfg.window_scale_steps > 0:
            crops, keep, sat_feats, encode_ms = self._cached_windows(centers, keys)
        else:
            crops, keep = self._crops(centers)
            sat_feats, encode_ms = None, 0.0
        timings["crop"] = (time.perf_counter() - t) * 1e3 - encode_ms  # the encoding counts as model time
        search_m = _area_side(centers, window_m)
        if not crops:
            if not reloc:
                self._transition(Event.LEFT_MAP)
                self.tracker.misses += 1
                return self._estimate(frame, t0, timings, search_m=search_m,
                                      message="search window mostly outside the map")
            return self._estimate(frame, t0, timings, search_m=search_m, message="relocalizing: no window on the map")
        kinds = [kinds[i] for i in keep]
        if reloc:
            c = self.search.counts
            c["windows"] += len(kinds)
            c["retrieval_windows"] += sum(k == "cand" for k in kinds)
            c["sweep_windows"] += sum(k == "sweep" for k in kinds)

        # 5. model + decode
        t = time.perf_counter()
        if sat_feats is None:
            logits = self._run_model(prep.image, [cr.image for cr in crops])
        else:
            logits = self._run_model_cached(prep.image, sat_feats)
        timings["model"] = (time.perf_counter() - t) * 1e3 + encode_ms
        t = time.perf_counter()
        decoded = self._decode(logits, max_modes=1 if reloc else cfg.max_modes)
        if not isinstance(decoded, (list, tuple)):
            decoded = [decoded]
        offset = prep.center_offset_en
        lever_var = float(np.hypot(*offset)) ** 2 * float(ekf.P[2, 2])  # the offset was rotated with the yaw estimate
        peaks = [peak_measurement(p, cr, self.enu, i, cfg, offset, lever_var) for i, (p, cr) in
                 enumerate(zip(decoded, crops))]
        timings["decode"] = (time.perf_counter() - t) * 1e3

        # 6. update + state machine
        t = time.perf_counter()
        if reloc:
            accepted, conf, best, msg = self._relocalization_update(peaks, kinds, frame)
        else:
            modes = [m for i, (p, cr) in enumerate(zip(decoded, crops))
                     for m in window_modes(p, cr, self.enu, i, cfg, offset, lever_var)]
            area = len(crops) * (self.track_useful_frac * window_m) ** 2
            up: TrackUpdate = self.tracker.update(modes, area, peaks, float(frame.stamp))
            self._transition(self._track_event(float(frame.stamp)))
            accepted, conf, best, msg = up.informative, up.confidence, up.window, up.message
            if self.state == LocalizerState.LOST:
                msg += " - lost: the track's uncertainty exceeds lost_sigma_m"
        heat = None
        if cfg.keep_heatmap and best is not None:
            import torch

            heat = torch.sigmoid(logits[best, 0].float()).numpy().astype(np.float32)
        timings["update"] = (time.perf_counter() - t) * 1e3
        return self._estimate(frame, t0, timings, accepted=accepted, confidence=conf, search_m=search_m,
                              heatmap=heat, message=msg)

    def _crops(self, centers: np.ndarray):
        """Map crops of the windows with enough map coverage, and which windows they are."""
        crops, keep = [], []
        c_lat, c_lon, _ = self.enu.to_geodetic(centers[:, 0], centers[:, 1], np.zeros(len(centers)))
        c_lat, c_lon = np.atleast_1d(c_lat), np.atleast_1d(c_lon)
        for i in range(len(centers)):
            try:
                crop = self.map.crop((float(c_lat[i]), float(c_lon[i])), self._window_m, self.sat_size)
            except GeoError:
                continue
            if crop.valid_fraction >= self.cfg.min_valid_fraction:
                crops.append(crop)
                keep.append(i)
        return crops, keep

    def prepare_view(self, image: np.ndarray, intrinsics, altitude_m: float, world_yaw: float,
                     pitch: float = 0.0, roll: float = 0.0):
        """A frame's north-up UAV input and its satellite window side (m). The window side goes
        down its ladder (`window_scale_steps`, sat_cache) and the UAV footprint with it, so
        the ground sampling ratio is kept. ValueError for an unusable view."""
        foot = uav_footprint_m(image, intrinsics, altitude_m)
        full_m = sat_window_side_m(foot, self.uav_size, self.sat_size, self.cfg.gsd_ratio)
        window_m = ladder_side_m(full_m, self.cfg.window_scale_steps)
        prep = prepare_uav(image, intrinsics, altitude_m, world_yaw, self.uav_size, antialias=self.cfg.antialias,
                           pitch=pitch, roll=roll, footprint_m=foot * window_m / full_m)
        return prep, window_m

    def _cached_windows(self, centers: np.ndarray, keys: list):
        """Like `_crops`, through the satellite feature cache: crops and features of the
        windows seen before are reused, the new ones are cropped and encoded in one batch.
        Returns (crops, kept indices, the windows' satellite side for `forward_features` (a
        SatSide, or per-scale features [N, C_i, H_i, W_i]), encoding ms)."""
        found = [self.sat_cache.get(k) for k in keys]
        new = [i for i, f in enumerate(found) if f is None]
        encode_ms = 0.0
        if new:
            crops, keep = self._crops(centers[new])
            valid = {new[j]: crop for j, crop in zip(keep, crops)}
            t = time.perf_counter()
            side = self._encode_sat([valid[i].image for i in sorted(valid)], prepare=True) if valid else None
            encode_ms = (time.perf_counter() - t) * 1e3
            per_window = {i: window_of(side, j) for j, i in enumerate(sorted(valid))}
            for i in new:
                found[i] = self.sat_cache.put(keys[i], valid.get(i), per_window.get(i))
        keep = [i for i, f in enumerate(found) if f.crop is not None]
        if not keep:
            return [], [], None, encode_ms
        return [found[i].crop for i in keep], keep, windows_cat([found[i].feats for i in keep]), encode_ms

    def _relocalization_update(self, peaks, kinds, frame: Frame):
        """Feed the search; a confirmed candidate restarts the track there."""
        found = self.search.update(peaks, kinds)
        valid = [p for p in peaks if p.valid]
        best = max(valid or peaks, key=lambda p: p.confidence) if peaks else None
        conf = best.confidence if best is not None else 0.0
        if found is None:
            self.tracker.misses += 1
            return False, conf, best.window if best is not None else None, self.search.describe()
        ekf = self.tracker.ekf
        yaw_sigma = math.sqrt(ekf.P[2, 2])
        if self._reloc_yaw_hypothesis_active():  # the match says the heading is within the model's tolerance
            yaw_sigma = min(yaw_sigma, 0.5 * math.radians(self.cfg.reloc_yaw_step_deg))
        ekf.reset(found.z[0], found.z[1], ekf.yaw_offset + self._yaw_hyp, 0.0, yaw_sigma, pos_cov=found.r,
                  scale=ekf.scale, scale_sigma=math.sqrt(ekf.P[3, 3]), rate=ekf.yaw_rate,
                  rate_sigma=math.sqrt(ekf.P[4, 4]), bias=ekf.bias, bias_sigma=math.sqrt(max(ekf.P[5, 5], ekf.P[6, 6])))
        self.tracker.reset_run_state(float(frame.stamp))
        self.tracker.agree_run = self.cfg.recover_frames
        self._transition(Event.RELOCALIZED)
        self.counts["relocalized"] += 1
        return True, found.confidence, best.window if best is not None else None, \
            f"relocalized after {found.hits} consistent frames"

    # ------------------------------------------------------------------ model
    def _autocast(self):
        import contextlib

        import torch

        if self.device is not None and self.device.type == "cuda" and self.cfg.fp16:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _encode_sat(self, sat_imgs: list[np.ndarray], prepare: bool = False):
        """Satellite branch of a batch of windows -> per-scale features (model device); with
        `prepare`, what the cache keeps (`AMCFNet.prepare_sat`: the satellite half of the
        fusion too, when the net has one)."""
        import torch

        sat = to_tensor(sat_imgs).to(self.device)
        with torch.inference_mode(), self._autocast():
            feats = self.net.encode(sat, "sat")
            return self.net.prepare_sat(feats) if prepare and hasattr(self.net, "prepare_sat") else feats

    def _run_model_cached(self, uav_img: np.ndarray, sat_feats: list):
        """UAV branch + fusion + head against cached satellite features -> CPU logits."""
        import torch

        uav = to_tensor([uav_img]).to(self.device)
        with torch.inference_mode(), self._autocast():
            out = self.net.forward_features(self.net.encode(uav, "uav"), sat_feats, (self.sat_size, self.sat_size))
        return out.float().cpu()

    def _run_model(self, uav_img: np.ndarray, sat_imgs: list[np.ndarray]):
        """Batched forward pass; returns float32 CPU logits [B, 1, H, W]."""
        import torch

        uav = to_tensor([uav_img]).to(self.device)
        sat = to_tensor(sat_imgs).to(self.device)
        uav = uav.expand(sat.shape[0], -1, -1, -1)
        with torch.inference_mode(), self._autocast():
            out = self.net(uav, sat)
        return out.float().cpu()


def _area_side(centers: np.ndarray, window_m: float) -> float:
    """Side of the square that holds all windows (the ground area searched)."""
    if len(centers) == 0:
        return 0.0
    span = np.max(np.ptp(np.asarray(centers).reshape(-1, 2), axis=0))
    return float(span + window_m)
