"""One localization run driven by messages: what the node does, without ROS.

The node's callbacks and its inference thread call a `Session`; the offline replay calls
the same Session with the bag's messages in order, and the live replay sends the same
messages to a node. So all three decode, skip, seed and restart identically:
- side inputs (`on_odometry`, `on_camera_info`, `on_altitude`, `on_gps_fix`) may come from
  any thread and never block; problems are reported through `report(kind, text)`;
- commands (seeds from GPS or an operator, relocalization requests) are queued and applied
  on the frame thread just before the next frame;
- `step(image_msg, now)` turns an image into a Frame (runtime.inputs) and runs the
  Localizer, or says why the frame was skipped; a data restart (bag loop) restarts the
  localizer and the GPS rule.
`now` is the caller's clock in seconds: the node's clock live (wall or /clock), the
message's bag time offline.
"""
from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable

from ..geo.angles import wrap_angle
from .gps import GpsRuleConfig, InitialFixPolicy, Seed, consistent_fixes
from .inputs import Assembled, FrameAssembler, InputConfig, Skip
from .messages import InputError, navsatfix_reading, stamp_to_float

#: the node's longest wait for odometry to reach an image's stamp (image and odometry
#: travel on separate topics; the image may arrive first)
ODOM_WAIT_S = 0.05


@dataclass
class StepResult:
    """What one camera frame gave: an estimate, or the reason it was skipped."""

    stamp: float
    estimate: Any = None  # localize.Estimate
    skip: Skip | None = None
    restarted: bool = False


def _no_report(kind: str, text: str) -> None:
    pass


class Session:
    """See the module docstring. `make_localizer()` builds a fresh Localizer (at start and
    at every data restart); `report(kind, text)` receives input problems and notes
    (kinds: odometry, camera_info, altitude, gps, initial_fix, time_jump, ...);
    `log(level, text)` receives what an operator should read (levels: info, warning)."""

    def __init__(self, make_localizer: Callable[[], Any], inputs: InputConfig | None = None,
                 gps: GpsRuleConfig | None = None, *, report: Callable[[str, str], None] = _no_report,
                 log: Callable[[str, str], None] = lambda level, text: None) -> None:
        self._make_localizer = make_localizer
        self.localizer = make_localizer()
        self.assembler = FrameAssembler(inputs)
        self.policy = InitialFixPolicy(gps)
        self.report = report
        self.log = log
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.enu = None  # world frame origin (LocalENU) at the first seed
        self.seeded = False
        self.localizer_state = "INITIALIZING"
        self.restarts = 0
        self.seeds_applied = 0  # seeds the localizer accepted (runtime.resets counts position jumps)
        self.seed_log: list[str] = []  # "<source>: heading <how>" of every seed, for reports

    @property
    def inputs(self) -> InputConfig:
        return self.assembler.cfg

    # ------------------------------------------------------------------ side inputs (any thread)
    def on_odometry(self, msg: Any) -> None:
        try:
            note = self.assembler.on_odometry(msg)
        except InputError as exc:
            self.report("odometry", str(exc))
            return
        if note:
            self.log("warning", note)

    def on_camera_info(self, msg: Any) -> None:
        try:
            self.assembler.on_camera_info(msg)
        except InputError as exc:
            self.report("camera_info", str(exc))

    def on_altitude(self, metres: float, now: float) -> None:
        try:
            self.assembler.on_altitude(metres, now)
        except InputError as exc:
            self.report("altitude", str(exc))

    def on_gps_fix(self, msg: Any, now: float) -> None:
        """A NavSatFix on the initial-fix topic (the GPS rule decides what it means)."""
        try:
            fix = navsatfix_reading(msg, self.policy.cfg.sigma_floor_m)
        except InputError as exc:
            self.report("gps", str(exc))
            return
        was = self.policy.state
        seed = self.policy.on_fix(fix, now, self.localizer_state)
        if seed is not None:
            self._seed(seed)
        if was != "denied" and self.policy.state == "denied":
            self._on_denied(now)

    def tick(self, now: float) -> None:
        """Time passing (GPS timeout): call often (the node: a timer; offline: every message)."""
        if self.policy.tick(now):
            self._on_denied(now)

    def declare_gps_denied(self, reason: str, now: float) -> bool:
        """Stop trusting GPS now (operator); True when this changed the state."""
        changed = self.policy.deny(reason)
        if changed:
            self._on_denied(now)
        return changed

    def operator_fix(self, msg: Any, *, relocalize: bool = False, yaw: float | None = None,
                     contains: Callable[[float, float], bool] | None = None) -> str:
        """Seed from an operator's NavSatFix; '' or why it was refused (one line)."""
        try:
            fix = navsatfix_reading(msg, self.policy.cfg.sigma_floor_m)
        except InputError as exc:
            return f"set_initial_fix refused: {exc}"
        if not (math.isfinite(fix.lat) and math.isfinite(fix.lon) and abs(fix.lat) <= 90 and abs(fix.lon) <= 180):
            return f"set_initial_fix with invalid position ({fix.lat}, {fix.lon}) refused"
        if not math.isfinite(fix.sigma_m) or fix.sigma_m > self.localizer.cfg.max_initial_sigma_m:
            return (f"set_initial_fix refused: 1-sigma {fix.sigma_m:g} m exceeds localizer.max_initial_sigma_m "
                    f"{self.localizer.cfg.max_initial_sigma_m:g}")
        if yaw is not None and not math.isfinite(yaw):
            return f"set_initial_fix refused: heading {yaw} is not finite"
        if contains is not None and not relocalize and not contains(fix.lat, fix.lon):
            return f"set_initial_fix at ({fix.lat:.6f}, {fix.lon:.6f}) is outside the map: refused"
        stamp = fix.stamp
        last = self.assembler.odom.last_stamp()
        if stamp == 0.0 and last is not None:
            stamp = last  # an unstamped operator fix means "now"
        self._seed(Seed(fix.lat, fix.lon, fix.alt, fix.sigma_m, stamp, "operator", yaw=yaw, relocalize=relocalize))
        return ""

    def seed(self, seed: Seed) -> None:
        """Queue a seed built by the caller (e.g. the replay's --initial-fix)."""
        self._seed(seed)

    def request_relocalization(self) -> str:
        """Queue a relocalization; '' or why not."""
        if not self.seeded:
            return "no initial fix yet: nothing to relocalize from"
        self._commands.put(("reloc", None))
        return ""

    # ------------------------------------------------------------------ GPS helpers
    def _odom_xy_at(self, t: float):
        try:
            return self.assembler.odom.at(t, self.inputs.odom_max_age_s)[:2]
        except LookupError:
            return None

    def _gps_track_yaw(self, stamp: float, rows: list[tuple]) -> float | None:
        """ENU heading at `stamp` from the trusted GPS track vs odometry (localize.alignment)."""
        from ..localize.alignment import odom_yaw_offset

        rows = [r for r in rows if r[0] <= stamp]
        ok = consistent_fixes(rows, self._odom_xy_at)
        offset = odom_yaw_offset([r for r, g in zip(rows, ok) if g], self._odom_xy_at)
        if offset is None:
            return None
        try:
            odom_yaw = float(self.assembler.odom.at(stamp, self.inputs.odom_max_age_s)[3])
        except LookupError:
            return None
        return wrap_angle(odom_yaw + offset)

    def _on_denied(self, now: float) -> None:
        self.log("warning", f"GPS denial declared: {self.policy.denied_reason}; the initial-fix topic is ignored "
                            f"from now on")
        seed, note = self.policy.denial_seed(now, self._odom_xy_at)
        if note:
            self.log("warning", f"denial seed: {note}")
            self.report("gps", note)
        if seed is not None:
            self._seed(seed)

    def _seed(self, seed: Seed) -> None:
        from ..geo.frames import LocalENU

        yaw_from = "given"
        if seed.source.startswith("gps") and seed.yaw is None:
            seed.yaw = self._gps_track_yaw(seed.stamp, self.policy.track())
            yaw_from = "from the GPS track"
        with self._lock:
            if self.enu is None:
                self.enu = LocalENU(seed.lat, seed.lon, seed.alt)
        self._commands.put(("seed", seed))
        yaw = "unknown" if seed.yaw is None else f"{math.degrees(seed.yaw):.1f} deg {yaw_from}"
        self.seed_log.append(f"{seed.source}: heading " + ("unknown" if seed.yaw is None else yaw_from))
        self.log("info", f"initial fix ({seed.source}): {seed.lat:.7f}, {seed.lon:.7f}, alt {seed.alt:.1f} m, "
                         f"sigma {seed.sigma_m:.1f} m, heading {yaw}")

    # ------------------------------------------------------------------ the frame thread
    def apply_commands(self) -> None:
        """Seeds and relocalization requests queued since the last frame."""
        while True:
            try:
                kind, arg = self._commands.get_nowait()
            except queue.Empty:
                return
            if kind == "seed":
                try:
                    self.localizer.set_initial_fix(arg.lat, arg.lon, arg.alt, arg.sigma_m, arg.stamp, yaw=arg.yaw,
                                                   relocalize=arg.relocalize)
                except ValueError as exc:
                    self.report("initial_fix", f"initial fix refused: {exc}")
                    continue
                self.seeded = True
                self.seeds_applied += 1
            elif kind == "reloc":
                self.localizer.request_relocalization()

    def _restart(self, reason: str) -> None:
        """The data restarted (bag loop, clock reset): fresh localizer, GPS rule from the start."""
        self.log("warning", f"{reason}: restarting the localizer and the GPS rule")
        while True:  # commands of the old run (a denial seed, a relocalization) end with it
            try:
                self._commands.get_nowait()
            except queue.Empty:
                break
        self.localizer = self._make_localizer()
        self.policy.reset()
        self.seeded = False
        self.localizer_state = "INITIALIZING"
        self.restarts += 1
        self.report("time_jump", reason)

    def step(self, msg: Any, now: float, odom_wait_s: float = 0.0) -> StepResult:
        """One camera image: apply queued commands, assemble the frame, run the localizer."""
        try:
            stamp = stamp_to_float(msg.header.stamp)
        except (InputError, AttributeError):
            stamp = float("nan")
        if odom_wait_s > 0 and math.isfinite(stamp):
            self.assembler.odom.wait_for(stamp, odom_wait_s)
            if self.inputs.default_hfov_deg <= 0:  # the first CameraInfo may travel with this very image
                self.assembler.intrinsics_ready.wait(odom_wait_s)
        got: Assembled = self.assembler.assemble(msg, now)
        if got.restarted:
            self._restart("image and odometry time went back together")
        self.apply_commands()
        if got.skip is not None:
            self.report(got.skip.reason, got.skip.text)
            return StepResult(stamp, skip=got.skip, restarted=got.restarted)
        est = self.localizer.step(got.frame)
        self.localizer_state = str(est.state)
        return StepResult(stamp, estimate=est, restarted=got.restarted)
