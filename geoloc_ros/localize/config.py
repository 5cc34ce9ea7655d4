"""LocalizerConfig: every knob of the localizer, with its meaning and its allowed range.

Why the ranges live beside the fields: the node declares `localizer.<field>` parameters
with these ranges (so `ros2 param describe` shows them and a bad value stops the node at
start), `geoloc-replay --set` checks against them, and the dataclass itself refuses a value
out of range, so a configuration can never reach the filter with a negative time constant
or an overlap of 1.0 (a division by zero in the window grid).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Mapping

from .filter import FilterNoise

RELOCALIZATION_MODES = ("sweep", "retrieval")
#: model-dependent fields: 0 = the value in the weights' `inference` block, or this one without it
MODEL_DEFAULTS: dict[str, float] = {"gsd_ratio": 1.0, "useful_frac": 0.8}
#: smallest value of a model-dependent field that is not 0 ("from the weights")
_MODEL_MIN = 0.05

_BIG = 1e9

@dataclass
class LocalizerConfig:
    """Every knob of the localizer (YAML section `localizer:`)."""

    # -- model geometry
    uav_size: int = 0  # model UAV input side (px); 0 = from the net's config (128 without a net)
    sat_size: int = 0  # model satellite input side (px); 0 = from the net's config (384 without a net)
    gsd_ratio: float = 0.0  # (satellite m per model px) / (UAV m per model px), as the pair generator trained; 0 = from the weights' inference block (1.0 without one)
    antialias: bool = True  # area-average large camera images before the rotate+scale warp
    use_attitude: bool = True  # rectify with Frame.roll/pitch (body-fixed camera) and correct the tilt offset
    fp16: bool = True  # autocast the model to fp16 on CUDA (CPU always runs fp32)
    hanning: int = 31  # Hanning filter size at a 384 px satellite input (scaled with sat_size; 0 = off)
    decode_window: int = 7  # soft-argmax window passed to decode_heatmap
    keep_heatmap: bool = True  # return the best window's probability map in Estimate.heatmap (debug)
    # -- initial fix
    initial_fix: tuple = ()  # (lat, lon[, alt]) used on the first frame when set_initial_fix was never called
    initial_sigma_m: float = 10.0  # 1-sigma of `initial_fix` (m)
    yaw_sigma_deg: float = 10.0  # prior 1-sigma of the odom-to-world yaw offset when no yaw is given
    yaw_fix_sigma_deg: float = 3.0  # 1-sigma of the yaw offset when the initial fix comes with a yaw
    alt_sigma_m: float = 5.0  # vertical 1-sigma reported in cov_enu (altitude from odometry/altimeter)
    map_sigma_m: float = 0.8  # 1-sigma per axis of errors no number of matches averages out (the map's georeferencing, a terrain-wide matching bias); added to the published covariance
    # -- odometry errors: estimated (prior 1-sigma) and process noise (what cannot be estimated)
    odom_scale_sigma: float = 0.03  # along-track sigma per metre of each odometry step (scale error)
    odom_cross_sigma: float = 0.02  # cross-track sigma per metre of each step (heading jitter)
    odom_drift_var_per_m: float = 0.02  # isotropic random-walk variance (m^2) per metre flown (VIO drift)
    odom_var_per_s: float = 0.02  # isotropic variance (m^2) per second (drift while hovering)
    yaw_drift_deg_per_sqrt_s: float = 0.2  # yaw-offset random walk (deg / sqrt(s))
    scale_sigma: float = 0.05  # prior 1-sigma of the odometry scale error (estimated: world = (1+s) odom)
    scale_var_per_m: float = 1e-7  # random walk of the scale error per metre flown
    yaw_rate_sigma_deg_per_min: float = 20.0  # prior 1-sigma of the odometry heading drift rate (estimated; VIO: 5-20 deg/min)
    yaw_rate_rw_deg_per_min_per_sqrt_s: float = 0.05  # random walk of that rate
    vel_bias_sigma_mps: float = 0.2  # prior 1-sigma of an odometry velocity bias (estimated, world frame)
    vel_bias_rw_mps_per_sqrt_s: float = 0.003  # random walk of that bias
    # -- evidence (localize.evidence: association of the heatmaps' maxima with the track)
    peak_prob_centre: float = 0.22  # P(peak is the true position) = peak_prob_top * logistic((confidence - this) / peak_prob_width); calibrated on the scenario suite's calibration set (scripts/heatmap_probe.py)
    peak_prob_width: float = 0.06  # see peak_prob_centre
    peak_prob_top: float = 0.98  # no single heatmap is ever certain
    max_modes: int = 4  # maxima per window taken as candidate positions (model.decode)
    mode_min_ratio: float = 0.3  # a further maximum counts from this fraction of the first's height
    evidence_min_info_nats: float = 0.02  # an update narrowing the position by less is "no new evidence"
    jump_d2: float = 16.0  # evidence moving the track by more than this (prior squared Mahalanobis) is held as a challenger; while relocalizing, a candidate this far from the lost track needs strong_confidence
    challenger_frames: int = 3  # odometry-consistent frames a challenger must be seen in beyond those in which the track found support of its own, to replace the track
    challenger_frames_per_doubling: int = 1  # a challenger farther than sqrt(jump_d2) sigmas from the track needs this many more frames per doubling of that distance (a look-alike 60 m from a 1 m track: 4 more); 0 = challenger_frames for any distance
    meas_cov_inflation: float = 0.15  # a peak's covariance = this x the heatmap's second moments; calibrated on the scenario suite's calibration set (scripts/heatmap_probe.py, geoloc-eval calib)
    meas_sigma_floor_m: float = 0.75  # lower bound on each axis 1-sigma of a peak (m)
    meas_correlation_s: float = 0.25  # heatmap errors are correlated over this long: a frame dt after the last fused one counts min(1, dt / this) (0 = off)
    # -- honesty of the covariance (covariance matching on the innovations, localize.tracker)
    min_confidence: float = 0.3  # peaks from this confidence on are compared with the track (NIS, support)
    strong_confidence: float = 0.5  # a peak this confident outside the gate disagrees with the track (challengers); relocalization candidates beyond jump_d2 of the lost track need it too
    gate_probability: float = 0.997  # chi2(2) probability of the gate around the track
    nis_window: int = 10  # running mean of the gated peaks' d2 over about this many peaks
    nis_band: float = 1.5  # the process noise moves when that mean leaves [2 / this, 2 * this]
    whiteness_gap_s: float = 1.5  # consecutive gated peaks at most this far apart enter the innovation-whiteness estimate (correlated innovations raise the process noise; 0 = off)
    q_scale_max: float = 30.0  # largest process-noise multiplier
    reliability_floor: float = 0.2  # share of compared peaks inside the gate at which peaks are no longer believed at all
    reliability_full: float = 0.6  # ... and from which they are believed as calibrated (linear between)
    unambiguous_share: float = 0.8  # an update counts towards recovery only if one place has this share of the peaks' weight
    # -- search windows
    n_sigma: float = 3.0  # the search covers n_sigma of the position uncertainty
    useful_frac: float = 0.0  # central fraction of a window where the model finds the UAV (below the trained spread, 0.85); 0 = from the weights' inference block (0.8 without one)
    window_overlap: float = 0.1  # minimum overlap of adjacent windows' useful parts
    min_windows: int = 1  # windows per frame while tracking (more = robustness, batched)
    max_windows: int = 9  # cap on windows per frame while tracking / degraded
    min_valid_fraction: float = 0.5  # a window with less map coverage is skipped; the best one: OFF_MAP
    window_grid_frac: float = 0.125  # > 0: tracking windows snap to an ENU grid of this fraction of their side, so consecutive frames reuse cached satellite windows (sat_cache_mb; the trusted central part shrinks by as much); 0 = centred on the prediction, every window cropped and encoded every frame
    window_dither_frac: float = 0.04  # tracking windows shift by a pseudo-random offset of up to this fraction of their side on each axis (seeded by the frame stamp, so replays repeat): the part of the model's error that depends on where in the window the UAV is then changes every frame and averages out (demo median 1.2 -> 0.8 m; the trusted central part shrinks by twice as much); 0 = centred on the prediction
    window_scale_steps: int = 16  # > 0: window sides snap down to 2^(k/this) m (the UAV footprint shrinks with them, the ground sampling ratio is kept); 0 = continuous. The cache needs both this and window_grid_frac
    sat_cache_mb: float = 128.0  # memory for cached satellite windows (MB, on the model's device): features and the fusion's satellite half, ~23 MB per window for the packaged weights at 160/480; 0 = every window is cropped and encoded every frame
    # -- state machine (localize.states)
    coast_sigma_m: float = 4.0  # a fix is published only while the position 1-sigma (major axis, m) is below this
    coast_max_s: float = 10.0  # ... and evidence was fused within this long (s)
    lost_sigma_m: float = 60.0  # position 1-sigma (major axis) above this -> LOST -> RELOCALIZING
    recover_frames: int = 2  # DEGRADED -> TRACKING needs this many informative frames without a confident disagreement
    # -- relocalization
    max_speed_mps: float = 25.0  # fastest flight (m/s): sweep radius growth after a loss, odometry-reset test
    max_predict_gap_s: float = 60.0  # a longer gap between frames (or since a pending fix) drifts by time (velocity bias, yaw rate) as if it were this long; the distance flown counts in full. Past it the rate estimates are guesses: 600 s of an extrapolated yaw rate turned the image 37 deg and the track never came back; absurd stamps (5e152 s) overflowed the filter
    max_yaw_rate_dps: float = 90.0  # fastest yaw rate (deg/s): faster odometry yaw changes are resets
    odom_jump_margin_m: float = 5.0  # odometry step longer than max_speed * dt + this: a reset, not motion
    odom_jump_yaw_margin_deg: float = 5.0  # same for yaw: max_yaw_rate * dt + this
    odom_reset_sigma_m: float = 2.0  # position 1-sigma added when a reset is absorbed (motion during it is taken from the previous velocity)
    reloc_min_radius_m: float = 100.0  # initial sweep radius around the dead-reckoned position
    reloc_max_radius_m: float = 3000.0  # sweep radius bound (the map bounds it too)
    reloc_batch: int = 16  # sweep windows per frame (one batched forward pass)
    reloc_min_confidence: float = 0.35  # candidate peaks below this are ignored (a candidate still needs reloc_confirm_frames odometry-consistent frames; beyond jump_d2 of the lost track, strong_confidence)
    reloc_confirm_frames: int = 3  # consecutive odometry-consistent frames to accept a candidate
    reloc_max_misses: int = 1  # frames in a row a candidate may go without a consistent peak before it is dropped
    reloc_yaw_sigma_deg: float = 20.0  # while relocalizing with a yaw-offset 1-sigma above this, frames try yaw hypotheses (the north-up image cannot match when its heading is off by more than the model tolerates, and without a match nothing re-estimates the heading)
    reloc_yaw_step_deg: float = 15.0  # spacing of those hypotheses (within the model's rotation tolerance of ~+-8 deg), out to 2 sigma; each is held for reloc_confirm_frames + reloc_max_misses frames, every other one is the estimate itself; 0 = off
    reloc_tol_m: float = 8.0  # max disagreement between candidate motion and odometry (m per frame)
    reloc_max_hypotheses: int = 4  # candidates tracked at once (best confidence kept)
    max_sweep_windows: int = 4096  # bound on the windows of one relocalization sweep (checked before the grid is built; nearest kept)
    max_initial_sigma_m: float = 5000.0  # an initial fix / seed with a larger 1-sigma is refused (an implausible covariance)
    relocalization: str = "sweep"  # sweep: windows over the whole uncertainty area; retrieval: top-k index tiles first, sweep as fallback
    retrieval_index: str = ""  # retrieval index (.json of geoloc-prepare-map --index); '' = <map stem>.retrieval.json next to the map
    retrieval_model: str = ""  # retrieval weights (<path>.safetensors + .json) the index was built with
    retrieval_top_k: int = 8  # candidate places asked from the index per relocalizing frame (one heatmap window each)
    retrieval_frames: int = 3  # average the query descriptor over up to this many consecutive frames
    retrieval_max_shift_frac: float = 0.25  # only frames taken within this fraction of the UAV footprint of the current position enter the average
    retrieval_min_score: float = 0.0  # index candidates with a lower cosine score are ignored
    retrieval_patience: int = 10  # relocalizing frames with index candidates only; then the window sweep joins them

    #: inclusive (low, high) of every numeric field; checked in __post_init__
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "uav_size": (0, 2048), "sat_size": (0, 4096), "gsd_ratio": (0.0, 20.0), "hanning": (0, 255),
        "decode_window": (1, 63), "initial_sigma_m": (0.01, 1e5), "yaw_sigma_deg": (0.0, 180.0),
        "yaw_fix_sigma_deg": (0.0, 180.0), "alt_sigma_m": (0.0, 1e4), "map_sigma_m": (0.0, 1e3), "odom_scale_sigma": (0.0, 1.0),
        "odom_cross_sigma": (0.0, 1.0), "odom_drift_var_per_m": (0.0, 100.0), "odom_var_per_s": (0.0, 1e4),
        "yaw_drift_deg_per_sqrt_s": (0.0, 90.0), "scale_sigma": (0.0, 0.5), "scale_var_per_m": (0.0, 1.0),
        "meas_cov_inflation": (1e-3, 1e3), "meas_sigma_floor_m": (0.0, 1e3), "meas_correlation_s": (0.0, 60.0),
        "min_confidence": (0.0, 1.0), "gate_probability": (1e-6, 1.0 - 1e-12),
        "n_sigma": (0.1, 10.0), "useful_frac": (0.0, 1.0), "window_overlap": (0.0, 0.9), "min_windows": (1, 256),
        "max_windows": (1, 256), "min_valid_fraction": (0.0, 1.0), "window_grid_frac": (0.0, 0.5), "window_dither_frac": (0.0, 0.25),
        "window_scale_steps": (0, 256), "sat_cache_mb": (0.0, 65536.0),
        "strong_confidence": (0.0, 1.0), "coast_sigma_m": (0.01, 1e6), "coast_max_s": (0.0, _BIG),
        "lost_sigma_m": (0.1, 1e7),
        "recover_frames": (1, 1000),
        "max_speed_mps": (0.1, 1000.0), "max_predict_gap_s": (1.0, 1e6), "max_yaw_rate_dps": (1.0, 3600.0), "odom_jump_margin_m": (0.0, 1e4),
        "odom_jump_yaw_margin_deg": (0.0, 360.0), "odom_reset_sigma_m": (0.0, 1e4),
        "reloc_min_radius_m": (0.0, 1e5), "reloc_max_radius_m": (1.0, 1e6), "reloc_batch": (1, 1024),
        "reloc_min_confidence": (0.0, 1.0), "reloc_confirm_frames": (1, 100), "reloc_tol_m": (0.1, 1e4),
        "reloc_max_misses": (0, 100), "reloc_yaw_sigma_deg": (0.0, 180.0), "reloc_yaw_step_deg": (0.0, 90.0),
        "reloc_max_hypotheses": (1, 256), "max_sweep_windows": (1, 1_000_000), "max_initial_sigma_m": (1.0, 1e6),
        "retrieval_top_k": (1, 1024), "retrieval_frames": (1, 100), "retrieval_max_shift_frac": (0.0, 10.0),
        "retrieval_min_score": (-1.0, 1.0), "retrieval_patience": (0, 100000),
        "yaw_rate_sigma_deg_per_min": (0.0, 600.0), "yaw_rate_rw_deg_per_min_per_sqrt_s": (0.0, 60.0),
        "vel_bias_sigma_mps": (0.0, 10.0), "vel_bias_rw_mps_per_sqrt_s": (0.0, 1.0), "peak_prob_centre": (-1.0, 2.0),
        "peak_prob_width": (1e-4, 10.0), "peak_prob_top": (0.0, 0.999), "max_modes": (1, 16), "mode_min_ratio": (0.0, 1.0),
        "evidence_min_info_nats": (0.0, 10.0), "jump_d2": (1.0, 1e6),
        "challenger_frames": (1, 100), "challenger_frames_per_doubling": (0, 100),
        "q_scale_max": (1.0, 1e6), "nis_window": (1, 1000),
        "nis_band": (1.0, 100.0), "whiteness_gap_s": (0.0, 60.0), "unambiguous_share": (0.0, 1.0),
        "reliability_floor": (0.0, 1.0), "reliability_full": (0.0, 1.0),

    }

    def __post_init__(self) -> None:
        if self.initial_fix and len(self.initial_fix) not in (2, 3):
            raise ValueError(f"initial_fix must be (lat, lon) or (lat, lon, alt), got {self.initial_fix!r}")
        for f in fields(self):
            v = getattr(self, f.name)
            want = type(getattr(type(self), f.name, None)) if f.name != "initial_fix" else tuple
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
                setattr(self, f.name, v)
            if want in (bool, int, float, str) and type(v) is not want:
                raise ValueError(f"{f.name} must be {_TYPE_WORDS[want]}, got {v!r}")
            lim = self.RANGES.get(f.name)
            if lim is not None and not (lim[0] <= v <= lim[1]):  # also refuses NaN
                raise ValueError(f"{f.name} must be in [{lim[0]:g}, {lim[1]:g}], got {v!r}")
        for name in MODEL_DEFAULTS:
            v = getattr(self, name)
            if 0 < v < _MODEL_MIN:
                raise ValueError(f"{name} must be 0 (from the weights) or at least {_MODEL_MIN:g}, got {v!r}")
        if self.relocalization not in RELOCALIZATION_MODES:
            raise ValueError(f"relocalization must be one of {', '.join(RELOCALIZATION_MODES)}, "
                             f"got {self.relocalization!r}")
        if self.max_windows < self.min_windows:
            raise ValueError(f"max_windows ({self.max_windows}) must be >= min_windows ({self.min_windows})")
        if self.reloc_max_radius_m < self.reloc_min_radius_m:
            raise ValueError(f"reloc_max_radius_m ({self.reloc_max_radius_m}) must be >= reloc_min_radius_m "
                             f"({self.reloc_min_radius_m})")

    @classmethod
    def field_type(cls, name: str) -> type:
        """The Python type of a scalar field (bool, int, float or str); KeyError for others."""
        default = getattr(cls, name)
        if type(default) not in (bool, int, float, str):
            raise KeyError(name)
        return type(default)

    def filter_noise(self) -> FilterNoise:
        return FilterNoise(scale_sigma=self.odom_scale_sigma, cross_sigma=self.odom_cross_sigma,
                           drift_var_per_m=self.odom_drift_var_per_m, pos_var_per_s=self.odom_var_per_s,
                           yaw_var_per_s=math.radians(self.yaw_drift_deg_per_sqrt_s) ** 2, yaw_var_per_m=0.0,
                           scale_var_per_m=self.scale_var_per_m,
                           rate_var_per_s=(math.radians(self.yaw_rate_rw_deg_per_min_per_sqrt_s) / 60.0) ** 2,
                           bias_var_per_s=self.vel_bias_rw_mps_per_sqrt_s ** 2)


def with_model_defaults(cfg: LocalizerConfig, inference: Mapping[str, Any] | None) -> LocalizerConfig:
    """`cfg` with every model-dependent field left at 0 taken from the weights' `inference` block.

    Why: the geometry a network was trained with (the gsd ratio of its pairs, how far from the
    window centre the positions were spread) belongs to its weights file, so a configuration
    does not have to repeat it by hand. A value the user set (non-zero: YAML, --set, a ROS
    parameter) wins; without a block (or without a net) the MODEL_DEFAULTS values apply.
    """
    block = dict(inference or {})
    changes = {name: float(block.get(name, builtin)) for name, builtin in MODEL_DEFAULTS.items()
               if getattr(cfg, name) == 0}
    if not changes:
        return cfg
    try:
        return dataclasses.replace(cfg, **changes)
    except ValueError as exc:
        raise ValueError(f"the weights' inference block: {exc}") from None


_TYPE_WORDS = {bool: "a bool", int: "an integer", float: "a number", str: "a string"}
