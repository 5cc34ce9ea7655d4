"""The localizer: one `step(frame)` per camera frame -> an `Estimate`.

Pipeline (architecture.md): predict with odometry -> north-up UAV input at the model's
GSD -> satellite window(s) around the prediction -> AMCF-Net -> heatmap peak ->
gated EKF update -> state machine. ROS-free: the node, the replay tool and tests all call
this same class, so a bag replayed offline gives the fixes the node would publish.

Design choices that matter for honesty (a wrong fix with a small covariance is the worst
output a GPS substitute can give):
- a fix is published (`fix_valid`) only while TRACKING;
- measurements pass a confidence, a Mahalanobis and an odometry-jump test before fusion;
- after a loss, a candidate found by the sweep (or proposed by the retrieval index,
  `relocalization: retrieval`) is only accepted after k frames whose positions moved the
  way odometry says;
- without a net, no measurement is ever produced: the state decays to DEGRADED / LOST.
"""
from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from ..geo.errors import GeoError
from ..geo.frames import LocalENU
from .filter import PositionYawEKF, rot2, wrap_angle
from .gating import Gate, GateResult
from .prepare import heatmap_cov_to_enu, honest_cov, prepare_uav, to_tensor_batch
from .search import grid_offsets, plan_tracking_windows, sat_window_side_m, single_window_covers
from .config import LocalizerConfig
from .states import LocalizerState
from .validate import frame_problem

#: rejection reasons that mean "the map disagrees with the track" (not merely "no answer")
STRONG_REJECTIONS = ("mahalanobis", "odometry_jump")
STAGES = ("predict", "prepare", "crop", "model", "decode", "update", "total")
#: stages reported only on frames that ran them
OPTIONAL_STAGES = ("retrieval",)
log = logging.getLogger(__name__)


@dataclass
class Frame:
    """One camera frame with the odometry interpolated at its stamp."""

    image: np.ndarray  # (H, W, 3) uint8 RGB, nadir
    stamp: float  # seconds
    odom_xyz: np.ndarray  # (3,) metres in the odometry frame (ENU axes, z = height above take-off)
    odom_yaw: float  # ENU yaw (rad) of the camera's image-up axis in the odometry frame
    altitude_agl: float  # metres above ground (sets the ground sampling distance)
    intrinsics: object  # CameraIntrinsics (width, height, fx, fy, cx, cy)
    # optional extension: gravity-referenced attitude of a body-fixed nadir camera (rad, ZYX,
    # REP-103: roll > 0 right wing down, pitch > 0 nose down); 0 for a gimballed camera
    roll: float = 0.0
    pitch: float = 0.0


@dataclass
class Estimate:
    """The localizer's answer for one frame (see DESIGN.md)."""

    stamp: float
    lat: float
    lon: float
    alt: float
    cov_enu: np.ndarray  # 3x3 m^2
    yaw: float  # world ENU yaw (rad) = odom_yaw + estimated yaw offset
    state: LocalizerState
    fix_valid: bool  # True only while TRACKING
    confidence: float  # [0, 1], of this frame's best measurement
    accepted: bool  # this frame's measurement was fused
    rejections: int  # total rejected measurements
    consecutive_rejections: int  # frames since the last accepted measurement (rejected or none)
    search_size_m: float  # side of the ground area searched this frame
    timings_ms: dict = field(default_factory=dict)
    heatmap: np.ndarray | None = None
    message: str = ""


@dataclass
class _Measurement:
    z: np.ndarray  # (2,) ENU metres
    r: np.ndarray  # 2x2 m^2
    confidence: float
    window: int  # index into this frame's windows
    valid: bool  # the peak lies on map pixels


@dataclass
class _Hypothesis:
    z: np.ndarray
    r: np.ndarray
    confidence: float
    hits: int = 1


class Localizer:
    """Map-based localizer; see the module docstring. `net` may be None (no measurements).

    `relocalizer`: coarse stage for RELOCALIZING (an object with `add_frame(img, position)`,
    `candidates_multi(k, footprint_m, position, max_shift_m, within)`, `reset()` and `img_size`,
    e.g. `retrieval.RetrievalRelocalizer`). When None and `cfg.relocalization == "retrieval"`,
    it is built from `cfg.retrieval_index` / `cfg.retrieval_model`; if that fails the
    localizer logs why and relocalizes with the window sweep."""

    def __init__(self, cfg: LocalizerConfig | None, orthomap, net=None, device="auto", relocalizer=None) -> None:
        self.cfg = cfg or LocalizerConfig()
        self.map = orthomap
        self.net = net
        net_cfg = getattr(net, "cfg", None)
        self.uav_size = int(self.cfg.uav_size or getattr(net_cfg, "uav_size", 0) or 128)
        self.sat_size = int(self.cfg.sat_size or getattr(net_cfg, "sat_size", 0) or 384)
        self.device = None
        self._decode = None
        if net is not None:
            import torch  # noqa: F401  (only needed with a net)

            from ..model.decode import decode_heatmap
            from ..model.device import pick_device

            self.device = pick_device(device) if isinstance(device, str) else device
            self.net = net.to(self.device).eval()
            self._decode = decode_heatmap
        self.gate = Gate(self.cfg.min_confidence, self.cfg.gate_probability, self.cfg.max_innovation_m)
        self.ekf = PositionYawEKF(self.cfg.filter_noise())
        self._odom_hist: deque = deque(maxlen=512)  # (stamp, x, y, z, yaw)
        self._pending_fix: tuple | None = None
        self._reloc_after_fix = False
        #: relocalization counters (cumulative): windows evaluated by source, index queries, fallbacks
        self.reloc_counts: Counter = Counter()
        self.relocalizer = relocalizer
        self.relocalizer_error = ""
        if relocalizer is None and self.cfg.relocalization == "retrieval":
            self.relocalizer, self.relocalizer_error = self._build_relocalizer()
            if self.relocalizer_error:
                log.warning("retrieval relocalization unavailable, using the window sweep: %s", self.relocalizer_error)
        self._frame_dts: deque = deque(maxlen=15)  # recent camera frame intervals (s), kept across restarts
        self._reset_runtime()

    def _build_relocalizer(self):
        """(RetrievalRelocalizer | None, why not) from the config's index/model paths."""
        cfg = self.cfg
        if not cfg.retrieval_model:
            return None, "localizer.retrieval_model is not set"
        try:
            from ..retrieval.index import default_index_prefix
            from ..retrieval.relocalizer import RetrievalRelocalizer

            index = cfg.retrieval_index or str(default_index_prefix(self.map.path)) + ".json"
            dev = self.device if self.device is not None else "cpu"
            return RetrievalRelocalizer.from_files(index, cfg.retrieval_model, device=dev,
                                                   history=cfg.retrieval_frames), ""
        except (ValueError, OSError, KeyError) as exc:  # MapIndexError / WeightsFileError are ValueErrors
            return None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    # ------------------------------------------------------------------ public API
    def _reset_runtime(self) -> None:
        self.state = LocalizerState.INITIALIZING
        self.enu: LocalENU | None = None
        self._alt0 = 0.0
        self._odom_z0 = 0.0
        self._last: tuple | None = None  # (stamp, xyz, yaw) of the last processed frame
        self._misses = 0
        self._strong = 0  # consecutive confident rejections
        self._stamp = 0.0  # stamp of the frame being processed
        self._t_accepted = 0.0  # stamp of the last accepted measurement (or fix)
        self._accepted_run = self._weak_agree = 0
        self._t_lost = 0.0
        self._before_offmap = LocalizerState.TRACKING
        self._hyps: list[_Hypothesis] = []
        self._sweep: np.ndarray | None = None
        self._sweep_idx = 0
        self._reloc_frames = 0  # frames spent in the current relocalization
        self._last_rate = np.zeros(2)  # odometry velocity (odom frame) of the last normal step
        self._last_yaw_rate = 0.0  # odometry yaw rate (rad/s) of the last normal step
        self.odom_jumps = 0

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
        """Forget the current track and sweep for the position (e.g. on operator request).
        A fix set but not yet applied is applied first and then relocalized from: the later
        command wins."""
        if self._pending_fix is not None:
            self._reloc_after_fix = True
        elif self.state != LocalizerState.INITIALIZING:
            self._enter_relocalization(self._last[0] if self._last else 0.0)

    @property
    def window_side_m(self) -> float | None:
        return getattr(self, "_window_m", None)

    # ------------------------------------------------------------------ helpers
    def _odom_at(self, stamp: float) -> tuple[np.ndarray, float, float]:
        """Odometry (xyz, yaw) at `stamp` from the history; third value: seconds outside it."""
        h = self._odom_hist
        ts = np.array([r[0] for r in h])
        if stamp <= ts[0] or len(h) == 1:
            r = h[0]
            return np.array(r[1:4]), r[4], max(0.0, ts[0] - stamp)
        if stamp >= ts[-1]:
            r = h[-1]
            return np.array(r[1:4]), r[4], stamp - ts[-1]
        i = int(np.searchsorted(ts, stamp))
        a, b = h[i - 1], h[i]
        w = (stamp - a[0]) / max(b[0] - a[0], 1e-9)
        xyz = np.array(a[1:4]) * (1 - w) + np.array(b[1:4]) * w
        yaw = a[4] + w * wrap_angle(b[4] - a[4])
        return xyz, yaw, 0.0

    def _initialize(self, frame: Frame, fix: tuple) -> None:
        lat, lon, alt, sigma, stamp, yaw = fix[:6]
        odom_xyz, odom_yaw, gap = self._odom_at(stamp)
        self.enu = LocalENU(lat, lon, alt)
        self._alt0, self._odom_z0 = alt, float(odom_xyz[2])
        if yaw is None:
            yaw_off, yaw_sig = 0.0, math.radians(self.cfg.yaw_sigma_deg)
        else:
            yaw_off, yaw_sig = wrap_angle(yaw - odom_yaw), math.radians(self.cfg.yaw_fix_sigma_deg)
        sigma = math.hypot(sigma, self.cfg.max_speed_mps * gap)
        self.ekf.reset(0.0, 0.0, yaw_off, sigma, yaw_sig, scale=0.0, scale_sigma=self.cfg.scale_sigma)
        # bring the state from the fix stamp to this frame with the odometry in between
        d = np.asarray(frame.odom_xyz, dtype=np.float64)[:2] - odom_xyz[:2]
        self.ekf.predict(d, max(0.0, frame.stamp - stamp))
        self.state = LocalizerState.TRACKING
        self._misses = self._strong = 0
        self._accepted_run = self._weak_agree = 0
        self._t_accepted = float(frame.stamp)
        self._hyps, self._sweep = [], None
        if len(fix) > 6 and fix[6] and self.net is not None:
            self._enter_relocalization(float(frame.stamp))

    def _odom_jump(self, d: np.ndarray, dyaw: float, dt: float, dz: float) -> str:
        """Detect an odometry reset (VIO re-initialisation: the odom frame jumps) and absorb it:
        a displacement or yaw change that no flight can make in `dt` is not applied as motion;
        the yaw offset is corrected so that world yaw stays continuous. Returns '' or a note."""
        cfg = self.cfg
        pos_jump = float(np.hypot(*d)) > cfg.max_speed_mps * dt + cfg.odom_jump_margin_m
        yaw_jump = abs(dyaw) > math.radians(cfg.max_yaw_rate_dps * dt + cfg.odom_jump_yaw_margin_deg)
        if not (pos_jump or yaw_jump):
            return ""
        self.odom_jumps += 1
        self.gate.counts["odom_jump"] += 1
        # a reset re-anchors the odometry frame: whatever yaw change exceeds the recent yaw rate
        # is a rotation of the frame, not of the vehicle (keeps the world yaw continuous)
        frame_rot = wrap_angle(dyaw - self._last_yaw_rate * dt)
        self.ekf.x[2] = wrap_angle(self.ekf.x[2] - frame_rot)
        self.ekf.P[2, 2] += (0.25 * math.radians(cfg.max_yaw_rate_dps) * dt) ** 2 if yaw_jump else math.radians(2.0) ** 2
        self._odom_z0 += dz  # the height reference jumped with the frame
        return f"odometry reset absorbed ({np.hypot(*d):.1f} m, {math.degrees(dyaw):.1f} deg)"

    def _enter_relocalization(self, stamp: float) -> None:
        self.state = LocalizerState.RELOCALIZING
        self._t_lost = stamp
        self._hyps, self._sweep, self._sweep_idx = [], None, 0
        self._reloc_frames = 0
        self.reloc_counts["episodes"] += 1
        if self.relocalizer is not None:
            self.relocalizer.reset()

    def _estimate(self, frame: Frame, t0: float, timings: dict, *, accepted=False, confidence=0.0,
                  search_m=0.0, heatmap=None, message="") -> Estimate:
        timings["total"] = (time.perf_counter() - t0) * 1e3
        if self.enu is None:
            lat = lon = alt = float("nan")
            cov = np.full((3, 3), np.nan)
            yaw = float(frame.odom_yaw)
        else:
            e, n = self.ekf.x[:2]
            lat, lon, _ = self.enu.to_geodetic(e, n, 0.0)
            alt = self._alt0 + float(frame.odom_xyz[2]) - self._odom_z0
            cov = np.zeros((3, 3))
            cov[:2, :2] = self.ekf.pos_cov
            cov[2, 2] = self.cfg.alt_sigma_m ** 2
            yaw = wrap_angle(float(frame.odom_yaw) + self.ekf.yaw_offset)
        st = self.state
        if getattr(self, "_note", ""):
            message = f"{self._note}; {message}" if message else self._note
        return Estimate(stamp=float(frame.stamp), lat=float(lat), lon=float(lon), alt=float(alt), cov_enu=cov,
                        yaw=yaw, state=st, fix_valid=st == LocalizerState.TRACKING, confidence=float(confidence),
                        accepted=bool(accepted), rejections=self.gate.rejections,
                        consecutive_rejections=self._misses, search_size_m=float(search_m),
                        timings_ms={k: round(float(timings.get(k, 0.0)), 3) for k in STAGES
                                    + tuple(k for k in OPTIONAL_STAGES if k in timings)},
                        heatmap=heatmap, message=message)

    def _skipped(self, frame: Frame, problem: str) -> Estimate:
        """The answer for an invalid frame: the state as it was, never a fix."""
        stamp = float(frame.stamp) if np.isfinite(getattr(frame, "stamp", np.nan)) else float("nan")
        lat = lon = alt = float("nan")
        cov = np.full((3, 3), np.nan)
        if self.enu is not None:
            lat, lon, _ = self.enu.to_geodetic(self.ekf.x[0], self.ekf.x[1], 0.0)
            cov = np.zeros((3, 3))
            cov[:2, :2] = self.ekf.pos_cov
            cov[2, 2] = self.cfg.alt_sigma_m ** 2
        return Estimate(stamp=stamp, lat=float(lat), lon=float(lon), alt=alt, cov_enu=cov, yaw=float("nan"),
                        state=self.state, fix_valid=False, confidence=0.0, accepted=False,
                        rejections=self.gate.rejections, consecutive_rejections=self._misses, search_size_m=0.0,
                        timings_ms={k: 0.0 for k in STAGES}, message=f"frame skipped: {problem}")

    def _miss(self, reason: str, count_rejection: bool, confidence: float = 0.0) -> None:
        """A frame without an accepted measurement: count it and degrade the state.

        Weak misses (low confidence, no model, bad window) only let the covariance grow: the
        fix stays valid while it is small (coasting on odometry). Confident rejections
        (Mahalanobis / odometry jump with confidence >= strong_confidence) mean the map and the
        track disagree: a few in a row degrade."""
        if count_rejection:
            self.gate.record_rejection(reason)
        self._misses += 1
        strong = reason in STRONG_REJECTIONS and confidence >= self.cfg.strong_confidence
        if strong:  # evidence against the track; a frame the model could not match is none
            self._accepted_run = self._weak_agree = 0
        self._strong = self._strong + 1 if strong else self._strong
        coasted = self._stamp - self._t_accepted
        if self.state == LocalizerState.TRACKING and (
                self._strong >= self._frames_for(self.cfg.degraded_after_s, 2)
                or self.ekf.pos_sigma_major() > self.cfg.coast_sigma_m
                or coasted > self.cfg.coast_max_s):
            self._degrade()

    def _degrade(self) -> None:
        """TRACKING -> DEGRADED; recovery (`_recovered`) counts its evidence from here."""
        self.state = LocalizerState.DEGRADED
        self._accepted_run = self._weak_agree = 0

    def _recovered(self) -> bool:
        """DEGRADED -> TRACKING: `recover_frames` confident matches fused, or one plus
        `recover_weak_frames` weak matches that landed within the tight `recover_weak_d2` gate
        of the track (a weak peak anywhere else in a 250 m window rarely does), with no
        confident rejection since, and an uncertainty small enough to publish."""
        if self.ekf.pos_sigma_major() > self.cfg.coast_sigma_m:
            return False
        return self._accepted_run >= self.cfg.recover_frames or (
            self._accepted_run >= 1 and self.cfg.recover_weak_frames > 0
            and self._weak_agree >= self.cfg.recover_weak_frames)

    def _frames_for(self, seconds: float, minimum: int) -> int:
        """A duration as a frame count at the camera's rate (so the same flight degrades the
        same way at 1 Hz and at 30 Hz), never fewer than `minimum` frames."""
        dt = float(np.median(self._frame_dts)) if self._frame_dts else 1.0 / 3.0  # 3 Hz until measured
        return max(minimum, int(round(seconds / dt)))

    def _check_lost(self, stamp: float) -> bool:
        if self.state not in (LocalizerState.TRACKING, LocalizerState.DEGRADED):
            return False
        if (self._strong >= self._frames_for(self.cfg.lost_after_s, 3)
                or self._misses >= self._frames_for(self.cfg.lost_after_miss_s, 3)
                or self.ekf.pos_sigma_major() > self.cfg.lost_sigma_m):
            self.state = LocalizerState.LOST
            self._t_lost = stamp
            self._hyps, self._sweep = [], None
            return True
        return False

    # ------------------------------------------------------------------ the step
    def step(self, frame: Frame) -> Estimate:
        """Process one frame (see module docstring) and return the estimate for its stamp."""
        t0 = time.perf_counter()
        problem = frame_problem(frame)
        if problem:
            return self._skipped(frame, problem)
        timings: dict = {}
        self._note = ""
        self._stamp = float(frame.stamp)
        odom = np.asarray(frame.odom_xyz, dtype=np.float64)
        self._odom_hist.append((float(frame.stamp), float(odom[0]), float(odom[1]), float(odom[2]),
                                float(frame.odom_yaw)))

        # 1. initialise or predict
        if self._pending_fix is not None:
            self._reset_runtime()
            self._initialize(frame, self._pending_fix)
            self._pending_fix = None
            if self._reloc_after_fix:
                self._reloc_after_fix = False
                self._enter_relocalization(float(frame.stamp))
        elif self.state == LocalizerState.INITIALIZING:
            if not self.cfg.initial_fix:
                self._last = (frame.stamp, odom, float(frame.odom_yaw))
                return self._estimate(frame, t0, timings, message="waiting for an initial fix")
            f = self.cfg.initial_fix
            self._initialize(frame, (float(f[0]), float(f[1]), float(f[2]) if len(f) > 2 else 0.0,
                                     self.cfg.initial_sigma_m, float(frame.stamp), None))
        else:
            t_prev, odom_prev, yaw_prev = self._last
            dt = max(0.0, frame.stamp - t_prev)
            if 1e-3 < dt < 10.0:
                self._frame_dts.append(dt)
            d = odom[:2] - odom_prev[:2]
            jump_msg = self._odom_jump(d, wrap_angle(float(frame.odom_yaw) - yaw_prev), dt, odom[2] - odom_prev[2])
            if jump_msg:
                self._note = jump_msg
                d = self._last_rate * dt  # motion during the reset: assume the previous velocity
            elif dt > 1e-6:
                self._last_rate = d / dt
                self._last_yaw_rate = wrap_angle(float(frame.odom_yaw) - yaw_prev) / dt
            self.ekf.predict(d, dt)
            if jump_msg:
                self.ekf.inflate_position((0.5 * self.cfg.max_speed_mps * dt) ** 2 + self.cfg.odom_reset_sigma_m ** 2)
            if self._hyps:  # relocalization candidates move with the odometry too
                shift = (1.0 + self.ekf.scale) * rot2(self.ekf.yaw_offset) @ d
                for h in self._hyps:
                    h.z = h.z + shift
        self._last = (frame.stamp, odom, float(frame.odom_yaw))
        timings["predict"] = (time.perf_counter() - t0) * 1e3

        # 2. map coverage
        lat, lon, _ = self.enu.to_geodetic(self.ekf.x[0], self.ekf.x[1], 0.0)
        if not self.map.contains(lat, lon):
            if self.state != LocalizerState.OFF_MAP:
                self._before_offmap = self.state
            self.state = LocalizerState.OFF_MAP
            self._misses += 1
            return self._estimate(frame, t0, timings, message="predicted position outside the map")
        if self.state == LocalizerState.OFF_MAP:
            # back over the map: resume, but a fix needs fresh measurements first; frames spent
            # off the map are not matcher failures, so they do not push the track to LOST
            prev = self._before_offmap
            self.state = LocalizerState.DEGRADED if prev == LocalizerState.TRACKING else prev
            self._misses, self._strong, self._accepted_run, self._weak_agree = 0, 0, 0, 0
        if self.state == LocalizerState.LOST and self.net is not None:
            self._enter_relocalization(self._t_lost)

        if self.net is None:
            self._miss("no_model", count_rejection=False)
            lost = self._check_lost(frame.stamp)
            msg = "no model: dead reckoning" + (" - lost" if lost else "")
            return self._estimate(frame, t0, timings, message=msg)

        # 3. prepare the UAV input
        t = time.perf_counter()
        world_yaw = float(frame.odom_yaw) + self.ekf.yaw_offset
        try:
            att = (float(frame.pitch), float(frame.roll)) if self.cfg.use_attitude else (0.0, 0.0)
            prep = prepare_uav(frame.image, frame.intrinsics, float(frame.altitude_agl), world_yaw,
                               self.uav_size, antialias=self.cfg.antialias, pitch=att[0], roll=att[1])
        except ValueError as exc:
            self._miss("bad_frame", count_rejection=False)
            self._check_lost(frame.stamp)
            return self._estimate(frame, t0, timings, message=f"frame skipped: {exc}")
        window_m = sat_window_side_m(prep.footprint_m, self.uav_size, self.sat_size, self.cfg.gsd_ratio)
        self._window_m = window_m
        timings["prepare"] = (time.perf_counter() - t) * 1e3

        # 4. windows
        t = time.perf_counter()
        reloc = self.state == LocalizerState.RELOCALIZING
        if reloc:
            self._reloc_frames += 1
            cand = self._retrieval_candidates(frame, world_yaw, window_m, timings)
            t = time.perf_counter()
            centers, kinds = self._reloc_windows(frame.stamp, window_m, cand)
        else:
            plan = plan_tracking_windows(self.ekf.pos_sigma_major(), window_m, self.cfg.min_windows,
                                         self.cfg.max_windows, self.cfg.useful_frac, self.cfg.window_overlap,
                                         self.cfg.n_sigma)
            centers = self.ekf.x[:2] + plan.offsets
            kinds = ["track"] * len(centers)
        crops, keep = [], []
        c_lat, c_lon, _ = self.enu.to_geodetic(centers[:, 0], centers[:, 1], np.zeros(len(centers)))
        c_lat, c_lon = np.atleast_1d(c_lat), np.atleast_1d(c_lon)
        for i in range(len(centers)):
            try:
                crop = self.map.crop((float(c_lat[i]), float(c_lon[i])), window_m, self.sat_size)
            except GeoError:
                continue
            if crop.valid_fraction >= self.cfg.min_valid_fraction:
                crops.append(crop)
                keep.append(i)
        timings["crop"] = (time.perf_counter() - t) * 1e3
        search_m = _area_side(centers, window_m)
        if not crops:
            if not reloc:
                if self.state != LocalizerState.OFF_MAP:
                    self._before_offmap = self.state
                self.state = LocalizerState.OFF_MAP
                self._misses += 1
                return self._estimate(frame, t0, timings, search_m=search_m,
                                      message="search window mostly outside the map")
            return self._estimate(frame, t0, timings, search_m=search_m, message="relocalizing: no window on the map")
        centers = centers[keep]
        kinds = [kinds[i] for i in keep]
        if reloc:
            self.reloc_counts["windows"] += len(kinds)
            self.reloc_counts["retrieval_windows"] += sum(k == "cand" for k in kinds)
            self.reloc_counts["sweep_windows"] += sum(k == "sweep" for k in kinds)

        # 5. model + decode
        t = time.perf_counter()
        logits = self._run_model(prep.image, [c.image for c in crops])
        timings["model"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        k = self.sat_size / 384.0  # decode's pixel radii are tuned for the 384 px UL14 output
        hann = int(round(self.cfg.hanning * k)) | 1 if self.cfg.hanning > 1 else 0
        peaks = self._decode(logits, hanning=hann, window=self.cfg.decode_window, suppress_radius=32.0 * k,
                             cov_radius=16.0 * k)
        if not isinstance(peaks, (list, tuple)):
            peaks = [peaks]
        meas = [self._to_measurement(p, crop, i, prep.center_offset_en) for i, (p, crop) in enumerate(zip(peaks, crops))]
        timings["decode"] = (time.perf_counter() - t) * 1e3

        # 6. update + state machine
        t = time.perf_counter()
        if reloc:
            accepted, conf, best, msg = self._reloc_update(meas, kinds, centers, frame)
        else:
            accepted, conf, best, msg = self._track_update(meas, frame.stamp)
        heat = None
        if self.cfg.keep_heatmap and best is not None:
            import torch

            heat = torch.sigmoid(logits[best, 0].float()).numpy().astype(np.float32)
        timings["update"] = (time.perf_counter() - t) * 1e3
        return self._estimate(frame, t0, timings, accepted=accepted, confidence=conf, search_m=search_m,
                              heatmap=heat, message=msg)

    # ------------------------------------------------------------------ model
    def _run_model(self, uav_img: np.ndarray, sat_imgs: list[np.ndarray]):
        """Batched forward pass; returns float32 CPU logits [B, 1, H, W]."""
        import torch

        uav = to_tensor_batch([uav_img]).to(self.device)
        sat = to_tensor_batch(sat_imgs).to(self.device)
        uav = uav.expand(sat.shape[0], -1, -1, -1)
        cuda = self.device is not None and self.device.type == "cuda"
        with torch.inference_mode():
            if cuda and self.cfg.fp16:
                with torch.autocast("cuda", dtype=torch.float16):
                    out = self.net(uav, sat)
            else:
                out = self.net(uav, sat)
        return out.float().cpu()

    def _to_measurement(self, peak, crop, index: int, offset_en=(0.0, 0.0)) -> _Measurement:
        """Heatmap peak -> UAV position (ENU) and covariance. The peak marks the ground point at
        the UAV input's centre; `offset_en` (tilted camera) is that point minus the nadir."""
        row, col = float(peak.row_sub), float(peak.col_sub)
        lat, lon = crop.pixel_to_latlon(row, col)
        e, n, _ = self.enu.to_enu(lat, lon, 0.0)
        e, n = e - offset_en[0], n - offset_en[1]
        r = honest_cov(heatmap_cov_to_enu(np.asarray(peak.cov_px), crop.gsd_m), self.cfg.meas_cov_inflation,
                       self.cfg.meas_sigma_floor_m)
        lever = float(np.hypot(*offset_en))
        if lever > 0:  # the offset was rotated with the estimated yaw: its error adds here
            r = r + np.eye(2) * (lever ** 2 * self.ekf.P[2, 2])
        ri = int(np.clip(round(row), 0, crop.valid.shape[0] - 1))
        ci = int(np.clip(round(col), 0, crop.valid.shape[1] - 1))
        return _Measurement(np.array([e, n]), r, float(peak.confidence), index, bool(crop.valid[ri, ci]))

    # ------------------------------------------------------------------ tracking update
    def _track_update(self, meas: list[_Measurement], stamp: float):
        """Gate every window's peak; fuse the most confident one that passes."""
        x, p = self.ekf.x[:2], self.ekf.pos_cov
        results: list[tuple[_Measurement, GateResult]] = []
        for m in meas:
            res = GateResult(False, "invalid_area", float("nan")) if not m.valid else \
                self.gate.check(m.confidence, m.z, m.r, x, p)
            results.append((m, res))
        ok = [(m, r) for m, r in results if r.accepted]
        if self.state == LocalizerState.DEGRADED:
            # Trust is regained only from confident matches: the gate is wide while degraded,
            # and weak peaks inside it pulled the track onto wrong places (teleport replay).
            weak = [(m, GateResult(False, "weak_while_degraded", r.d2)) for m, r in ok
                    if m.confidence < self.cfg.strong_confidence]
            if any(r.d2 <= self.cfg.recover_weak_d2 for _, r in weak):
                self._weak_agree += 1  # not fused, but evidence that the track is where it says
            if weak:
                ok = [(m, r) for m, r in ok if m.confidence >= self.cfg.strong_confidence]
                results = [(m, r) for m, r in results if not r.accepted] + weak + ok
        if ok:
            m, res = max(ok, key=lambda mr: mr[0].confidence)
            dt = stamp - self._t_accepted
            corr = max(1.0, self.cfg.meas_correlation_s / dt) if self.cfg.meas_correlation_s > 0 and dt > 0 else 1.0
            self.ekf.update(m.z, m.r * corr)  # gated with the per-frame R above, fused with the correlated one
            self.gate.record(res)
            self._misses = self._strong = 0
            self._accepted_run += 1
            self._t_accepted = stamp
            if self.state == LocalizerState.DEGRADED and self._recovered():
                self.state = LocalizerState.TRACKING
            widened = not single_window_covers(self.ekf.pos_sigma_major(), self._window_m, self.cfg.useful_frac,
                                               self.cfg.n_sigma)
            if widened and self.state == LocalizerState.TRACKING:
                self._degrade()
            return True, m.confidence, m.window, f"accepted (conf {m.confidence:.2f}, d2 {res.d2:.1f})"
        m, res = max(results, key=lambda mr: mr[0].confidence)
        self._miss(res.reason, count_rejection=True, confidence=m.confidence)
        if self.state == LocalizerState.DEGRADED and self._recovered():
            self.state = LocalizerState.TRACKING  # a fix again, from the confident match(es) already fused
        if not single_window_covers(self.ekf.pos_sigma_major(), self._window_m, self.cfg.useful_frac,
                                    self.cfg.n_sigma) and self.state == LocalizerState.TRACKING:
            self._degrade()
        lost = self._check_lost(stamp)
        msg = f"rejected: {res.reason} (conf {m.confidence:.2f}" + (f", d2 {res.d2:.1f})" if np.isfinite(res.d2) else ")")
        return False, m.confidence, m.window, msg + (" - lost" if lost else "")

    # ------------------------------------------------------------------ relocalization
    def _reloc_radius(self, stamp: float) -> float:
        """Half-side (m) of the area the UAV can be in: n_sigma of the track's uncertainty (at
        least reloc_min_radius_m), grown with the fastest flight since the loss, bounded."""
        cfg = self.cfg
        radius = max(cfg.n_sigma * self.ekf.pos_sigma_major(), cfg.reloc_min_radius_m)
        return min(radius + cfg.max_speed_mps * max(0.0, stamp - self._t_lost), cfg.reloc_max_radius_m)

    def _retrieval_candidates(self, frame: Frame, world_yaw: float, window_m: float, timings: dict):
        """ENU centres (N, 2) of the index's best places for this frame, or None when the coarse
        stage is off, failed or found nothing (the sweep then takes over)."""
        if self.relocalizer is None:
            return None
        cfg = self.cfg
        t = time.perf_counter()
        try:
            att = (float(frame.pitch), float(frame.roll)) if cfg.use_attitude else (0.0, 0.0)
            q = prepare_uav(frame.image, frame.intrinsics, float(frame.altitude_agl), world_yaw,
                            int(self.relocalizer.img_size), antialias=cfg.antialias, pitch=att[0], roll=att[1])
            pos = self.ekf.x[:2].copy()  # dead-reckoned: moves with the odometry, like the frames do
            self.relocalizer.add_frame(q.image, pos)
            lat, lon, _ = self.enu.to_geodetic(pos[0], pos[1], 0.0)
            # a square of half-side r is reachable; the circle through its corners holds it
            within = (float(lat), float(lon), math.sqrt(2.0) * self._reloc_radius(frame.stamp))
            found = self.relocalizer.candidates_multi(cfg.retrieval_top_k, footprint_m=q.footprint_m, position=pos,
                                                      max_shift_m=cfg.retrieval_max_shift_frac * q.footprint_m,
                                                      within=within)
        except Exception as exc:  # noqa: BLE001  (a failing coarse stage must never stop the localizer)
            self.reloc_counts["retrieval_failures"] += 1
            if self.reloc_counts["retrieval_failures"] == 1:
                log.warning("retrieval query failed, sweeping instead: %s", exc)
            timings["retrieval"] = (time.perf_counter() - t) * 1e3
            return None
        self.reloc_counts["retrieval_queries"] += 1
        found = [c for c in found if c[2] >= cfg.retrieval_min_score]
        timings["retrieval"] = (time.perf_counter() - t) * 1e3
        if not found:
            return None
        e, n, _ = self.enu.to_enu(np.array([c[0] for c in found]), np.array([c[1] for c in found]),
                                  np.zeros(len(found)))
        # the tile centre shows the ground under the image centre; the UAV (nadir) is offset
        # from it by the tilt offset, as in _to_measurement
        cen = np.stack([np.atleast_1d(e), np.atleast_1d(n)], 1) - np.asarray(q.center_offset_en)[None, :2]
        # a hypothesis window already looks there: do not spend a window twice
        near = 0.25 * cfg.useful_frac * window_m
        keep = [c for c in cen if all(np.hypot(*(c - h.z)) > near for h in self._hyps)]
        return np.array(keep).reshape(-1, 2)

    def _reloc_windows(self, stamp: float, window_m: float, cand: np.ndarray | None = None):
        """Hypothesis windows (confirmation) + retrieval candidates + the next chunk of the sweep,
        as ENU centres. The sweep runs when there are no candidates (no index, failed query,
        nothing found) or after `retrieval_patience` frames without a confirmed candidate."""
        cfg = self.cfg
        x = self.ekf.x[:2]
        centers = [h.z.copy() for h in self._hyps]
        kinds = [f"hyp{i}" for i in range(len(self._hyps))]
        if cand is not None and len(cand):
            cand = cand[:max(0, cfg.reloc_batch - len(centers))] if self.relocalizer is not None else cand
            centers += [c for c in cand]
            kinds += ["cand"] * len(cand)
        retrieval_only = (self.relocalizer is not None and cand is not None
                          and self._reloc_frames <= cfg.retrieval_patience)
        if retrieval_only:
            return np.array(centers, dtype=np.float64).reshape(-1, 2), kinds
        if self.relocalizer is not None:
            self.reloc_counts["fallback_frames"] += 1
        if self._sweep is None or self._sweep_idx >= len(self._sweep):
            radius = self._reloc_radius(stamp)
            off = grid_offsets(radius, window_m, cfg.useful_frac, cfg.window_overlap, max_count=cfg.max_sweep_windows)
            lat, lon, _ = self.enu.to_geodetic(x[0] + off[:, 0], x[1] + off[:, 1], np.zeros(len(off)))
            lat, lon = np.atleast_1d(lat), np.atleast_1d(lon)
            on_map = [self.map.coverage_fraction((float(a), float(b)), window_m) >= cfg.min_valid_fraction
                      for a, b in zip(lat, lon)]
            self._sweep = off[np.array(on_map, dtype=bool)] if any(on_map) else off[:1]
            self._sweep_idx = 0
        n = max(1, cfg.reloc_batch - len(centers))
        chunk = self._sweep[self._sweep_idx:self._sweep_idx + n]
        self._sweep_idx += n
        centers += [x + o for o in chunk]
        kinds += ["sweep"] * len(chunk)
        return np.array(centers, dtype=np.float64).reshape(-1, 2), kinds

    def _reloc_update(self, meas: list[_Measurement], kinds: list[str], centers: np.ndarray, frame: Frame):
        cfg = self.cfg
        by_kind = {k: m for k, m in zip(kinds, meas)}
        survivors: list[_Hypothesis] = []
        best_conf, best_win = 0.0, None
        for i, h in enumerate(self._hyps):
            m = by_kind.get(f"hyp{i}")
            if m is None or not m.valid or m.confidence < cfg.reloc_min_confidence:
                continue
            if float(np.hypot(*(m.z - h.z))) > cfg.reloc_tol_m:
                continue  # moved differently from what odometry says: drop the candidate
            survivors.append(_Hypothesis(m.z, m.r, m.confidence, h.hits + 1))
            if m.confidence > best_conf:
                best_conf, best_win = m.confidence, m.window
        for k, m in zip(kinds, meas):
            if k not in ("sweep", "cand") or not m.valid or m.confidence < cfg.reloc_min_confidence:
                continue
            if m.confidence > best_conf:
                best_conf, best_win = m.confidence, m.window
            if any(np.hypot(*(m.z - h.z)) <= cfg.reloc_tol_m for h in survivors):
                continue
            survivors.append(_Hypothesis(m.z, m.r, m.confidence, 1))
        survivors.sort(key=lambda h: (h.hits, h.confidence), reverse=True)
        self._hyps = survivors[:cfg.reloc_max_hypotheses]
        if best_win is None and meas:
            best_win = max(meas, key=lambda m: m.confidence).window
            best_conf = max(m.confidence for m in meas)
        confirmed = [h for h in self._hyps if h.hits >= cfg.reloc_confirm_frames]
        if confirmed:
            h = confirmed[0]
            self.ekf.reset(h.z[0], h.z[1], self.ekf.yaw_offset, 0.0, math.sqrt(self.ekf.P[2, 2]), pos_cov=h.r,
                           scale=self.ekf.scale, scale_sigma=math.sqrt(self.ekf.P[3, 3]))
            self.state = LocalizerState.TRACKING
            self._misses, self._strong, self._accepted_run, self._weak_agree = 0, 0, 1, 0
            self._t_accepted = float(frame.stamp)
            self._hyps, self._sweep = [], None
            self.gate.counts["relocalized"] += 1
            return True, h.confidence, best_win, f"relocalized after {h.hits} consistent frames"
        self._misses += 1
        return False, best_conf, best_win, (f"relocalizing: {len(self._hyps)} candidate(s), best "
                                            f"{max((h.hits for h in self._hyps), default=0)}/{cfg.reloc_confirm_frames}")


def _area_side(centers: np.ndarray, window_m: float) -> float:
    """Side of the square that holds all windows (the ground area searched)."""
    if len(centers) == 0:
        return 0.0
    span = np.max(np.ptp(np.asarray(centers).reshape(-1, 2), axis=0))
    return float(span + window_m)
