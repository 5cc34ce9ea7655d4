"""Messages -> `localize.Frame`, or the reason a camera frame is skipped.

The `FrameAssembler` keeps what a frame needs besides its image (odometry and attitude
interpolated at the image stamp, the latest camera intrinsics, an altitude) and applies
every input rule once, for the node and for both replays:
- the image decodes (messages.image_to_rgb) and is not larger than `max_image_pixels`;
- its stamp is newer than the last frame's; a stamp going back by more than
  `time_jump_reset_s` restarts the run only when the odometry went back too (a bag loop,
  a clock reset): one image stamped zero or in the past is skipped, never a restart;
- odometry covers the stamp within `odom_max_age_s`;
- the height above ground lies in [`min_altitude_m`, `max_altitude_m`] (VIO started in the
  air reads ~0 until `ground_offset_m` is set: skipped with that reason, not a 25 GiB grid).
A skipped frame is a `Skip(reason, text)`: `reason` is one of SKIP_REASONS, counted by the
node's diagnostics and the replay reports.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..timeseries import StampedSeries
from .messages import (MAX_IMAGE_PIXELS, ImageConversionError, InputError, OdometryError,
                       StampError, camera_info_to_intrinsics, image_to_rgb, odometry_sample, scale_intrinsics,
                       stamp_to_float)

#: why a frame did not reach the localizer
SKIP_REASONS = ("stamp", "out_of_order", "image", "camera_info", "odometry", "altitude")

ALTITUDE_SOURCES = ("odom", "range", "float64")


@dataclass
class InputConfig:
    """The input rules (node parameters of the same names)."""

    ground_offset_m: float = 0.0  # AGL = odometry z - this (altitude_source 'odom')
    min_altitude_m: float = 2.0  # frames below this height above ground are skipped
    max_altitude_m: float = 3000.0  # frames above this height above ground are skipped
    altitude_source: str = "odom"  # odom | range | float64
    altitude_max_age_s: float = 1.0  # an external altitude older than this is not used
    odom_max_age_s: float = 0.5  # largest gap between an image stamp and the odometry
    default_hfov_deg: float = 0.0  # intrinsics while no CameraInfo arrived (0 = wait)
    time_jump_reset_s: float = 1.0  # stamps going back this far (images and odometry): a restart
    max_image_pixels: int = MAX_IMAGE_PIXELS  # larger images are skipped

    def __post_init__(self) -> None:
        if self.altitude_source not in ALTITUDE_SOURCES:
            raise ValueError(f"altitude_source must be one of {', '.join(ALTITUDE_SOURCES)}, "
                             f"got {self.altitude_source!r}")
        if not 0.0 <= self.min_altitude_m < self.max_altitude_m:
            raise ValueError(f"need 0 <= min_altitude_m < max_altitude_m, got {self.min_altitude_m}, "
                             f"{self.max_altitude_m}")
        for name in ("altitude_max_age_s", "odom_max_age_s", "time_jump_reset_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    @classmethod
    def from_params(cls, values: dict[str, Any]) -> "InputConfig":
        """The fields found in a node parameter dict (ros.params names); others default."""
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass(frozen=True)
class Skip:
    """A camera frame that did not reach the localizer, and why."""

    reason: str  # one of SKIP_REASONS
    text: str

    def __str__(self) -> str:
        return f"skipped ({self.reason}): {self.text}"


@dataclass
class Assembled:
    """What `FrameAssembler.assemble` made of an image message."""

    frame: Any = None  # localize.Frame, or None when skipped
    skip: Skip | None = None
    restarted: bool = False  # the data restarted (bag loop): reset the localizer before this frame


#: consecutive odometry samples that must agree on a new, earlier timeline before the
#: odometry counts as restarted (one sample with a bad stamp is not a restart)
RESTART_CONFIRM = 3


class FrameAssembler:
    """See the module docstring. Odometry and camera_info may arrive on another thread than
    `assemble` (the node's callbacks vs its inference thread): the buffers are thread-safe."""

    def __init__(self, cfg: InputConfig | None = None) -> None:
        self.cfg = cfg or InputConfig()
        self.odom = StampedSeries(6, angle_columns=(3, 4, 5))  # x, y, z, yaw, roll, pitch
        self._intrinsics = None
        self.intrinsics_ready = threading.Event()  # set by the first valid CameraInfo
        self._altitude: tuple[float, float] | None = None  # (arrival time, metres AGL)
        self._last_image_stamp: float | None = None
        self._pending: list[tuple[float, tuple]] = []  # odometry samples of a possible restart
        self._odom_restarted = False  # odometry restarted since the last frame
        self.odom_restarts = 0

    # ------------------------------------------------------------------ side inputs
    def on_camera_info(self, msg: Any) -> None:
        """Keep the intrinsics of a valid CameraInfo; CameraInfoError otherwise (old ones stay)."""
        self._intrinsics = camera_info_to_intrinsics(msg)
        self.intrinsics_ready.set()

    def on_odometry(self, msg: Any) -> str:
        """Store an odometry sample; '' or a note ("odometry restarted"). InputError for a bad
        message; a sample slightly older than the newest one raises OdometryError (ignored)."""
        s = odometry_sample(msg)
        row = (*s.xyz, s.yaw, s.roll, s.pitch)
        last = self.odom.last_stamp()
        if last is None or s.stamp >= last:
            self._pending.clear()  # newer than everything: any earlier "restart" was a glitch
            self.odom.add(s.stamp, row)
            return ""
        back = last - s.stamp
        if back <= self.cfg.time_jump_reset_s:
            raise OdometryError(f"odometry stamp went back {back:.3f} s: sample ignored")
        if self._pending and s.stamp <= self._pending[-1][0]:
            self._pending.clear()  # the candidate timeline is not monotonic either
        self._pending.append((s.stamp, row))
        if len(self._pending) < RESTART_CONFIRM:
            return ""
        self.odom.replace(self._pending)
        self._pending.clear()
        self._odom_restarted = True
        self.odom_restarts += 1
        return f"odometry restarted ({back:.2f} s back)"

    def on_altitude(self, metres: float, now: float) -> None:
        """An external height above ground (Range / Float64 topic)."""
        v = float(metres)
        if not math.isfinite(v):
            raise InputError(f"altitude {v} is not finite")
        self._altitude = (float(now), v)

    @property
    def intrinsics(self):
        return self._intrinsics

    # ------------------------------------------------------------------ frames
    def _time_rule(self, stamp: float) -> tuple[Skip | None, bool]:
        """(skip, restarted) for an image stamp against the last frame's."""
        last = self._last_image_stamp
        if last is None:
            self._odom_restarted = False
            return None, False
        back = last - stamp
        if back > self.cfg.time_jump_reset_s:
            odom_last = self.odom.last_stamp()
            if self._odom_restarted and odom_last is not None and odom_last < last - self.cfg.time_jump_reset_s:
                self._odom_restarted = False
                return None, True
            return Skip("stamp", f"image stamp {back:.2f} s before the last frame's while the odometry did not go "
                                 f"back: frame skipped"), False
        if back >= 0:
            return Skip("out_of_order", f"image stamp not newer than the last frame's ({back:.3f} s older)"), False
        return None, False

    def frame_intrinsics(self, width: int, height: int):
        """Intrinsics for an image of this size (CameraInfo scaled, or default_hfov_deg)."""
        intr = self._intrinsics
        if intr is None and self.cfg.default_hfov_deg > 0:
            from ..data.camera import CameraIntrinsics
            intr = CameraIntrinsics.from_fov(width, height, self.cfg.default_hfov_deg)
        if intr is None:
            return None
        return scale_intrinsics(intr, width, height)

    def altitude_agl(self, odom_z: float, now: float) -> tuple[float | None, str]:
        """(height above ground, '') or (None, why not)."""
        if self.cfg.altitude_source == "odom":
            return float(odom_z) - self.cfg.ground_offset_m, ""
        alt = self._altitude
        if alt is None:
            return None, f"no altitude received ({self.cfg.altitude_source})"
        if now - alt[0] > self.cfg.altitude_max_age_s:
            return None, f"altitude is {now - alt[0]:.1f} s old (altitude_max_age_s {self.cfg.altitude_max_age_s:g})"
        return alt[1], ""

    def assemble(self, msg: Any, now: float) -> Assembled:
        """The Frame for an image message (odometry interpolated at its stamp), or a Skip.
        `now`: the caller's clock (node clock live, bag time offline) for altitude freshness."""
        from ..localize import Frame

        cfg = self.cfg
        try:
            stamp = stamp_to_float(msg.header.stamp)
        except (StampError, AttributeError) as exc:
            return Assembled(skip=Skip("stamp", str(exc)))
        skip, restarted = self._time_rule(stamp)
        if skip is not None:
            return Assembled(skip=skip)
        if restarted:
            self._last_image_stamp = None
        try:
            image = image_to_rgb(msg, cfg.max_image_pixels)
        except (ImageConversionError, AttributeError) as exc:
            return Assembled(skip=Skip("image", f"bad image: {exc}"), restarted=restarted)
        intr = self.frame_intrinsics(image.shape[1], image.shape[0])
        if intr is None:
            return Assembled(skip=Skip("camera_info", "no valid CameraInfo yet (set default_hfov_deg to run "
                                                      "without it)"), restarted=restarted)
        try:
            x, y, z, yaw, roll, pitch = self.odom.at(stamp, cfg.odom_max_age_s)
        except LookupError as exc:
            return Assembled(skip=Skip("odometry", f"no odometry for the frame: {exc}"), restarted=restarted)
        agl, why = self.altitude_agl(z, now)
        if agl is None:
            return Assembled(skip=Skip("altitude", why), restarted=restarted)
        if not cfg.min_altitude_m <= agl <= cfg.max_altitude_m:
            bound = "below min_altitude_m" if agl < cfg.min_altitude_m else "above max_altitude_m"
            limit = cfg.min_altitude_m if agl < cfg.min_altitude_m else cfg.max_altitude_m
            return Assembled(skip=Skip("altitude", f"height above ground {agl:.1f} m {bound} {limit:g}"),
                             restarted=restarted)
        self._last_image_stamp = stamp
        frame = Frame(image=image, stamp=stamp, odom_xyz=np.array([x, y, z], dtype=np.float64), odom_yaw=float(yaw),
                      altitude_agl=float(agl), intrinsics=intr, roll=float(roll), pitch=float(pitch))
        return Assembled(frame=frame, restarted=restarted)
