"""The localizer's input and output records, and the typed results passed between its parts."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .states import LocalizerState

#: per-frame stages, in order; `Estimate.timings_ms` has each (ms)
STAGES = ("predict", "prepare", "crop", "model", "decode", "update", "total")
#: stages reported only on frames that ran them
OPTIONAL_STAGES = ("retrieval",)


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
    confidence: float  # [0, 1], of this frame's best heatmap peak
    accepted: bool  # this frame's heatmaps moved the track (informative evidence fused)
    rejections: int  # total frames whose evidence disagreed with the track
    consecutive_rejections: int  # frames since the last informative update
    search_size_m: float  # side of the ground area searched this frame
    timings_ms: dict = field(default_factory=dict)
    heatmap: np.ndarray | None = None
    message: str = ""


@dataclass
class Peak:
    """One window's heatmap peak as a position measurement (localize.measurement)."""

    z: np.ndarray  # (2,) ENU metres of the UAV (nadir)
    r: np.ndarray  # 2x2 m^2, from the heatmap's shape, inflated when a rival peak competes
    confidence: float  # [0, 1] (model.decode)
    window: int  # index into this frame's windows
    valid: bool  # the peak lies on map pixels


@dataclass
class TrackUpdate:
    """What one frame's evidence did to the track (localize.tracker)."""

    informative: bool  # the posterior is narrower than the prior: evidence was fused
    agrees: bool  # the best confident peak is consistent with the track (or there is none)
    confidence: float  # best peak confidence
    window: int | None  # window of the best peak
    d2: float  # squared Mahalanobis distance of the best confident peak to the prior (nan: none)
    info_nats: float  # position information gained this frame
    switched: bool = False  # the track jumped to a confirmed challenger
    message: str = ""
