"""Simulated flights: trajectories, yaw policies, odometry with drift, GPS, ground truth.

Frames and odometry semantics (shared with geoloc-replay, the node and the localizer):
- *world*: local ENU tangent plane at the map centre (`origin`), metres; the ground is
  flat at ellipsoidal height `ground_alt_m`. Ground truth lat/lon come from it.
- *odom* (nav_msgs/Odometry, frame `odom`, child `base_link`): what a VIO/FCU reports.
  Its origin is the take-off point (x = y = 0 at t = 0) and z is the height above the
  take-off ground (flat world: = AGL, plus a small random walk). Its axes are ENU axes
  rotated by the *heading error* psi(t) = initial_yaw_error + yaw random walk + yaw
  drift rate * t (+ teleport yaw jumps): a world displacement d becomes the odometry
  displacement (1 + scale_error) * Rz(psi(t)) d, plus a position random walk, plus white
  noise on the reported pose, plus the integral of a velocity bias b(t) given in the odom
  frame (`vel_bias_mps`, optionally with a slowly varying Gauss-Markov part: VIO biases
  wander). Reported yaw = true ENU yaw + psi(t) (+ white noise). A `teleport` adds a
  sudden jump (metres, degrees) to the odometry, as a VIO reset does.
  The localizer estimates the odom -> world offset and rotation; nothing here tells it
  the errors.
- Ground truth: sensor_msgs/NavSatFix with ellipsoidal altitude (ground_alt_m + AGL);
  GPS: the same with GPS-like noise (white + Gauss-Markov bias) until `gps.denial_s`.
Yaw is ENU (REP-103): 0 = body forward / image up points East, counter-clockwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..geo.angles import wrap_angles as wrap_angle  # vectorized; imported by tools.simulate too
from .camera import AppearanceGap, Photometric
from .world import WorldConfig

TWO_PI = 2.0 * math.pi


# ----------------------------------------------------------------------------- configs
@dataclass
class TrajectoryConfig:
    """Where the UAV flies, in metres East/North of the map centre."""

    kind: str = "waypoints"            # waypoints | lawnmower | figure8 | random
    waypoints_m: tuple = ((-400.0, -300.0), (400.0, -300.0), (400.0, 300.0), (-400.0, 300.0))
    loop: bool = True                  # waypoints: close the loop and repeat
    corner_radius_m: float = 40.0      # turn radius at waypoints
    speed_mps: float = 10.0
    altitude_m: float = 120.0          # above ground
    altitude_wave_m: float = 0.0       # +- slow sinusoidal altitude change
    altitude_period_s: float = 90.0
    center_m: tuple = (0.0, 0.0)       # lawnmower / figure8 / random: centre of the pattern
    area_m: tuple = (800.0, 600.0)     # lawnmower: (along lines, across lines) extent
    line_spacing_m: float = 150.0      # lawnmower
    heading_deg: float = 0.0           # lawnmower: compass bearing of the survey lines
    radius_m: float = 250.0            # figure8: lobe radius; random: extent radius
    seed: int = 0                      # random: path seed

    def __post_init__(self) -> None:
        if self.kind not in ("waypoints", "lawnmower", "figure8", "random"):
            raise ValueError(f"trajectory kind must be waypoints|lawnmower|figure8|random, got {self.kind!r}")
        if not 0.5 <= self.speed_mps <= 60:
            raise ValueError(f"speed_mps must be in [0.5, 60], got {self.speed_mps}")
        if not self.altitude_m > 5:
            raise ValueError(f"altitude_m must be > 5, got {self.altitude_m}")
        self.waypoints_m = tuple(tuple(float(v) for v in p) for p in self.waypoints_m)
        self.center_m = tuple(float(v) for v in self.center_m)
        self.area_m = tuple(float(v) for v in self.area_m)


@dataclass
class YawConfig:
    policy: str = "along_track"        # along_track | fixed | spinning
    yaw_deg: float = 0.0               # fixed: ENU yaw; along_track: offset; spinning: start
    rate_deg_s: float = 15.0           # spinning: yaw rate (counter-clockwise positive)

    def __post_init__(self) -> None:
        if self.policy not in ("along_track", "fixed", "spinning"):
            raise ValueError(f"yaw policy must be along_track|fixed|spinning, got {self.policy!r}")


@dataclass
class OdometryConfig:
    """VIO/FCU odometry error model (see the module docstring for the semantics)."""

    rate_hz: float = 30.0
    initial_yaw_error_deg: float = 3.0
    yaw_rw_deg_per_sqrt_s: float = 0.05    # heading random walk
    yaw_drift_deg_per_min: float = 0.3     # constant heading drift rate
    scale_error: float = 0.01              # relative scale error of travelled distance
    pos_rw_m_per_sqrt_s: float = 0.05      # horizontal position random walk (per axis)
    z_rw_m_per_sqrt_s: float = 0.01
    white_pos_m: float = 0.05              # white noise of the reported position
    white_yaw_deg: float = 0.1
    teleports: tuple = ()                  # ({t_s, east_m, north_m, yaw_deg}, ...) odometry jumps
    vel_bias_mps: tuple = (0.0, 0.0)       # constant velocity bias (x, y) in the odom frame (m/s)
    vel_bias_sigma_mps: float = 0.0        # + a Gauss-Markov varying part (per axis, stationary sigma, m/s)
    vel_bias_tau_s: float = 120.0          # correlation time of the varying part (s)

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise ValueError(f"odometry rate_hz must be > 0, got {self.rate_hz}")
        if len(self.vel_bias_mps) != 2:
            raise ValueError(f"vel_bias_mps must be [bx, by] (m/s in the odom frame), got {self.vel_bias_mps!r}")
        self.vel_bias_mps = tuple(float(v) for v in self.vel_bias_mps)
        if not (self.vel_bias_sigma_mps >= 0 and self.vel_bias_tau_s > 0):
            raise ValueError(f"vel_bias_sigma_mps must be >= 0 and vel_bias_tau_s > 0, got "
                             f"{self.vel_bias_sigma_mps}, {self.vel_bias_tau_s}")
        tps = []
        for tp in self.teleports:
            tp = dict(tp)
            unknown = set(tp) - {"t_s", "east_m", "north_m", "yaw_deg"}
            if unknown or "t_s" not in tp:
                raise ValueError(f"teleport entries need t_s (+ east_m, north_m, yaw_deg), got {sorted(tp)}")
            tps.append({k: float(tp.get(k, 0.0)) for k in ("t_s", "east_m", "north_m", "yaw_deg")})
        self.teleports = tuple(tps)


@dataclass
class GpsConfig:
    rate_hz: float = 5.0
    denial_s: float | None = 5.0          # GPS messages stop after this time (None: never)
    sigma_h_m: float = 1.5                # white horizontal noise (per axis)
    sigma_v_m: float = 3.0
    bias_sigma_m: float = 1.0             # Gauss-Markov bias (per axis, stationary sigma)
    bias_tau_s: float = 60.0


@dataclass
class CameraConfig:
    width: int = 640
    height: int = 480
    hfov_deg: float = 70.0
    rate_hz: float = 10.0
    gimbal: bool = False                  # True: always nadir; False: body-fixed (banks in turns)
    wobble_deg: float = 1.0               # small pitch/roll oscillation (airframe vibration, wind)
    photometric: Photometric = field(default_factory=Photometric)  # fixed per flight
    random_photometric: float = 0.5       # + a random camera look of this strength (seeded)
    frame_noise: float = 2.0              # per-frame sensor noise sigma (0..255)

    def __post_init__(self) -> None:
        if isinstance(self.photometric, dict):
            from ..config import load_dataclass
            self.photometric = load_dataclass(Photometric, self.photometric, "camera.photometric")
        if isinstance(self.photometric.white_balance, list):
            self.photometric.white_balance = tuple(self.photometric.white_balance)
        if not self.rate_hz > 0:
            raise ValueError(f"camera rate_hz must be > 0, got {self.rate_hz}")


@dataclass
class WorldSection:
    """Which maps: a procedural world (`generate`) or existing georeferenced files."""

    map: str = ""            # existing map the localizer uses ('' = generate)
    camera_map: str = ""     # existing map the camera renders ('' = same as map / generated epoch)
    generate: WorldConfig = field(default_factory=WorldConfig)
    map_epoch: int = 1
    camera_epoch: int = 2

    def __post_init__(self) -> None:
        if self.map_epoch not in (1, 2) or self.camera_epoch not in (1, 2):
            raise ValueError("map_epoch and camera_epoch must be 1 or 2")


@dataclass
class EvalSection:
    """How geoloc-eval replays the flight (the simulator ignores it)."""

    relocalize_at: tuple = ()   # seconds after the first image at which to force a loss (~/relocalize)
    stresses: str = ""          # one line: what this flight tests (printed in the suite's scenario list)

    def __post_init__(self) -> None:
        self.relocalize_at = tuple(float(v) for v in self.relocalize_at)
        if any(not v >= 0 for v in self.relocalize_at):
            raise ValueError(f"eval.relocalize_at must be seconds >= 0, got {list(self.relocalize_at)}")


@dataclass
class ScenarioConfig:
    """One simulated flight (YAML: config/scenarios/*.yaml)."""

    name: str = "flight"
    seed: int = 0
    duration_s: float = 0.0           # 0: one pass of the trajectory (loops: one lap)
    start_time_s: float = 1.7e9       # bag clock at t = 0 (UNIX seconds)
    ground_alt_m: float = 400.0       # ellipsoidal height of the flat ground
    initial_fix_sigma_m: float = 5.0  # sidecar: the 1-sigma of the initial fix handed to the localizer
    world: WorldSection = field(default_factory=WorldSection)
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    yaw: YawConfig = field(default_factory=YawConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    odometry: OdometryConfig = field(default_factory=OdometryConfig)
    gps: GpsConfig = field(default_factory=GpsConfig)
    appearance_gap: AppearanceGap = field(default_factory=AppearanceGap)  # or a preset name: none|weak|strong
    eval: EvalSection = field(default_factory=EvalSection)

    def __post_init__(self) -> None:
        if isinstance(self.appearance_gap, str):
            self.appearance_gap = AppearanceGap(preset=self.appearance_gap)
        if not isinstance(self.appearance_gap, AppearanceGap):
            raise ValueError(f"appearance_gap must be a preset name or a mapping, got {self.appearance_gap!r}")


# ----------------------------------------------------------------------------- paths
def _fillet(pts: np.ndarray, radius: float, closed: bool, step: float = 1.0) -> np.ndarray:
    """Polyline with circular arcs of `radius` at the corners, sampled about every `step` m."""
    p = np.asarray(pts, dtype=np.float64)
    if closed:
        p = np.vstack([p, p[:1]])
    n = len(p)
    out = [p[0]] if not closed else []
    verts = range(1, n - 1) if not closed else range(n - 1)
    for i in verts:
        a, b, c = p[i - 1] if i > 0 else p[-2], p[i], p[i + 1]
        d1, d2 = b - a, c - b
        l1, l2 = np.hypot(*d1), np.hypot(*d2)
        if l1 < 1e-9 or l2 < 1e-9:
            continue
        d1, d2 = d1 / l1, d2 / l2
        turn = math.atan2(d1[0] * d2[1] - d1[1] * d2[0], float(np.dot(d1, d2)))
        if abs(turn) < 1e-3 or radius <= 0:
            out.append(b)
            continue
        t = min(radius * math.tan(abs(turn) / 2), 0.49 * l1, 0.49 * l2)
        r = t / math.tan(abs(turn) / 2)
        start = b - d1 * t
        nrm = np.array([-d1[1], d1[0]]) * math.copysign(1.0, turn)
        centre = start + nrm * r
        a0 = math.atan2(start[1] - centre[1], start[0] - centre[0])
        k = max(2, int(abs(turn) * r / step))
        for s in np.linspace(0, turn, k):
            out.append(centre + r * np.array([math.cos(a0 + s), math.sin(a0 + s)]))
    if closed:
        out.append(out[0])
    else:
        out.append(p[-1])
    return np.asarray(out)


def _densify(pts: np.ndarray, step: float = 1.0) -> np.ndarray:
    seg = np.diff(pts, axis=0)
    ln = np.hypot(seg[:, 0], seg[:, 1])
    cum = np.concatenate([[0.0], np.cumsum(ln)])
    s = np.linspace(0, cum[-1], max(2, int(cum[-1] / step) + 1))
    return np.stack([np.interp(s, cum, pts[:, 0]), np.interp(s, cum, pts[:, 1])], 1)


def path_points(cfg: TrajectoryConfig) -> tuple[np.ndarray, bool]:
    """Dense (M, 2) east/north path of a trajectory config and whether it loops."""
    c = np.asarray(cfg.center_m)
    if cfg.kind == "waypoints":
        if len(cfg.waypoints_m) < 2:
            raise ValueError("trajectory waypoints_m needs at least 2 points")
        pts = _fillet(np.asarray(cfg.waypoints_m), cfg.corner_radius_m, cfg.loop)
        return _densify(pts), cfg.loop
    if cfg.kind == "lawnmower":
        along, across = cfg.area_m
        n = max(2, int(across // cfg.line_spacing_m) + 1)
        pts = []
        for i in range(n):
            y = -across / 2 + i * cfg.line_spacing_m
            xs = (-along / 2, along / 2) if i % 2 == 0 else (along / 2, -along / 2)
            pts += [(xs[0], y), (xs[1], y)]
        pts = np.asarray(pts)
        b = math.radians(cfg.heading_deg)  # lines along compass bearing b: local x -> (sin b, cos b)
        rot = np.array([[math.sin(b), -math.cos(b)], [math.cos(b), math.sin(b)]])
        pts = pts @ rot.T + c
        return _densify(_fillet(pts, min(cfg.corner_radius_m, cfg.line_spacing_m / 2), False)), False
    if cfg.kind == "figure8":
        t = np.linspace(0, TWO_PI, 2000)
        r = cfg.radius_m
        pts = np.stack([2 * r * np.sin(t), r * np.sin(2 * t)], 1) + c  # lemniscate of Gerono
        return _densify(pts), True
    # random smooth closed path
    rng = np.random.default_rng([int(cfg.seed), 11])
    th = np.linspace(0, TWO_PI, 400, endpoint=False)
    rad = np.full_like(th, cfg.radius_m * 0.7)
    for h in range(1, 6):
        rad += cfg.radius_m * rng.uniform(0.0, 0.25) / h * np.cos(h * th + rng.uniform(0, TWO_PI))
    pts = np.stack([np.cos(th) * rad, np.sin(th) * rad], 1) + c
    return _densify(np.vstack([pts, pts[:1]])), True


@dataclass
class Truth:
    """Ground truth sampled at times `t` (world ENU metres from the map centre)."""

    t: np.ndarray
    east: np.ndarray
    north: np.ndarray
    agl: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    ve: np.ndarray
    vn: np.ndarray
    vu: np.ndarray
    yaw_rate: np.ndarray


class Trajectory:
    """Constant-speed motion along a path, with a yaw policy and a plausible attitude."""

    def __init__(self, cfg: TrajectoryConfig, yaw: YawConfig, camera: CameraConfig | None = None,
                 seed: int = 0) -> None:
        self.cfg, self.yaw_cfg = cfg, yaw
        self.cam = camera or CameraConfig()
        self.path, self.loop = path_points(cfg)
        seg = np.diff(self.path, axis=0)
        self._cum = np.concatenate([[0.0], np.cumsum(np.hypot(seg[:, 0], seg[:, 1]))])
        self.length_m = float(self._cum[-1])
        rng = np.random.default_rng([int(seed), 21])
        self._wob = rng.uniform(0, TWO_PI, 4)
        self._track = np.unwrap(np.arctan2(np.diff(self.path[:, 1]), np.diff(self.path[:, 0])))

    @property
    def one_pass_s(self) -> float:
        return self.length_m / self.cfg.speed_mps

    def _pos(self, t: np.ndarray):
        s = t * self.cfg.speed_mps
        s = np.mod(s, self.length_m) if self.loop else np.clip(s, 0, self.length_m)
        e = np.interp(s, self._cum, self.path[:, 0])
        n = np.interp(s, self._cum, self.path[:, 1])
        return e, n, s

    def sample(self, t) -> Truth:
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        c = self.cfg
        e, n, s = self._pos(t)
        h = 0.05
        e1, n1, _ = self._pos(t + h)
        e0, n0, _ = self._pos(np.maximum(t - h, 0.0) if not self.loop else t - h)
        dt_ = np.where(self.loop | (t >= h), 2 * h, h)
        ve, vn = (e1 - e0) / dt_, (n1 - n0) / dt_
        agl = c.altitude_m + c.altitude_wave_m * np.sin(TWO_PI * t / c.altitude_period_s)
        vu = c.altitude_wave_m * TWO_PI / c.altitude_period_s * np.cos(TWO_PI * t / c.altitude_period_s)
        # track angle from the path geometry (smooth, defined even when hovering at the end)
        mid = np.clip(np.searchsorted(self._cum, s, side="right") - 1, 0, len(self._track) - 1)
        track = self._track[mid]
        seg_mid = np.interp(s, 0.5 * (self._cum[1:] + self._cum[:-1]), self._track)
        track = np.where(np.isfinite(seg_mid), seg_mid, track)
        # track turn rate (rad/s) for the bank angle
        ds = 2.0
        tr_a = np.interp(np.clip(s + ds, 0, self.length_m), 0.5 * (self._cum[1:] + self._cum[:-1]), self._track)
        tr_b = np.interp(np.clip(s - ds, 0, self.length_m), 0.5 * (self._cum[1:] + self._cum[:-1]), self._track)
        turn_rate = (tr_a - tr_b) / (2 * ds) * c.speed_mps
        y = self.yaw_cfg
        if y.policy == "along_track":
            yaw = track + math.radians(y.yaw_deg)
            yaw_rate = turn_rate
        elif y.policy == "fixed":
            yaw = np.full_like(t, math.radians(y.yaw_deg))
            yaw_rate = np.zeros_like(t)
        else:
            yaw = math.radians(y.yaw_deg) + math.radians(y.rate_deg_s) * t
            yaw_rate = np.full_like(t, math.radians(y.rate_deg_s))
        if self.cam.gimbal:
            pitch = np.zeros_like(t)
            roll = np.zeros_like(t)
        else:
            # the thrust axis tilts towards the centripetal acceleration a = v * turn_rate (left of the
            # velocity for a left turn); in FLU: pitch > 0 tilts z forward, roll > 0 tilts z to the right
            bank = np.arctan(c.speed_mps * turn_rate / 9.81)
            rel = track - yaw  # velocity direction in the body frame
            w = math.radians(self.cam.wobble_deg)
            ph = self._wob
            pitch = -bank * np.sin(rel) + w * np.sin(1.3 * t + ph[0]) * np.sin(0.21 * t + ph[1])
            roll = -bank * np.cos(rel) + w * np.sin(1.7 * t + ph[2]) * np.sin(0.17 * t + ph[3])
        return Truth(t, e, n, agl, wrap_angle(yaw), pitch, roll, ve, vn, vu, yaw_rate)


# ----------------------------------------------------------------------------- odometry
@dataclass
class OdometryLog:
    t: np.ndarray
    xyz: np.ndarray          # (N, 3) odom frame
    yaw: np.ndarray          # (N,) odom-frame ENU yaw
    vel_body: np.ndarray     # (N, 3) body FLU linear velocity
    yaw_rate: np.ndarray     # (N,)
    heading_error: np.ndarray  # (N,) psi(t): odom yaw - world yaw (truth, for evaluation)
    pos_var: np.ndarray      # (N,) reported horizontal position variance (m^2)
    yaw_var: np.ndarray      # (N,) reported yaw variance (rad^2)


def simulate_odometry(truth: Truth, cfg: OdometryConfig, rng: np.random.Generator) -> OdometryLog:
    """Integrate the true motion into drifting odometry (semantics: module docstring)."""
    t = truth.t
    n = len(t)
    dt = np.diff(t, prepend=t[0])
    sq = np.sqrt(np.maximum(dt, 0.0))
    psi = (math.radians(cfg.initial_yaw_error_deg)
           + np.cumsum(rng.standard_normal(n) * math.radians(cfg.yaw_rw_deg_per_sqrt_s) * sq)
           + math.radians(cfg.yaw_drift_deg_per_min) / 60.0 * (t - t[0]))
    jump_xy = np.zeros((n, 2))
    for tp in cfg.teleports:
        after = t >= tp["t_s"]
        psi = psi + np.where(after, math.radians(tp["yaw_deg"]), 0.0)
        jump_xy[after] += (tp["east_m"], tp["north_m"])
    de = np.diff(truth.east, prepend=truth.east[0])
    dn = np.diff(truth.north, prepend=truth.north[0])
    k = 1.0 + cfg.scale_error
    c, s = np.cos(psi), np.sin(psi)
    dx = k * (c * de - s * dn)
    dy = k * (s * de + c * dn)
    rw = np.cumsum(rng.standard_normal((n, 2)) * cfg.pos_rw_m_per_sqrt_s * sq[:, None], axis=0)
    x = np.cumsum(dx) + rw[:, 0] + jump_xy[:, 0]
    y = np.cumsum(dy) + rw[:, 1] + jump_xy[:, 1]
    z = truth.agl + np.cumsum(rng.standard_normal(n) * cfg.z_rw_m_per_sqrt_s * sq)
    xyz = np.stack([x, y, z], 1) + rng.standard_normal((n, 3)) * cfg.white_pos_m
    yaw = wrap_angle(truth.yaw + psi + rng.standard_normal(n) * math.radians(cfg.white_yaw_deg))
    # body-frame velocity (what the odometry's twist carries), from the odom-frame velocity
    vx_o = k * (c * truth.ve - s * truth.vn)
    vy_o = k * (s * truth.ve + c * truth.vn)
    oy = truth.yaw + psi
    bias = velocity_bias(t, cfg, rng)
    if bias is not None:  # drawn last: flights without a bias keep their random streams
        xyz[:, :2] += np.cumsum(bias * dt[:, None], axis=0)
        vx_o, vy_o = vx_o + bias[:, 0], vy_o + bias[:, 1]
    vel_body = np.stack([np.cos(oy) * vx_o + np.sin(oy) * vy_o, -np.sin(oy) * vx_o + np.cos(oy) * vy_o, truth.vu], 1)
    el = t - t[0]
    pos_var = cfg.white_pos_m ** 2 + cfg.pos_rw_m_per_sqrt_s ** 2 * el
    yaw_var = math.radians(cfg.white_yaw_deg) ** 2 + math.radians(cfg.yaw_rw_deg_per_sqrt_s) ** 2 * el
    return OdometryLog(t, xyz, yaw, vel_body, truth.yaw_rate, wrap_angle(psi), pos_var, yaw_var)


def velocity_bias(t: np.ndarray, cfg: OdometryConfig, rng: np.random.Generator) -> np.ndarray | None:
    """(N, 2) odom-frame velocity bias at the stamps `t`, or None when the config has none.

    Constant part + a first-order Gauss-Markov process (stationary sigma, correlation time
    tau) that starts from its stationary distribution, so the bias a flight sees does not
    depend on when the log starts."""
    b0 = np.asarray(cfg.vel_bias_mps, dtype=np.float64)
    sig = float(cfg.vel_bias_sigma_mps)
    if not b0.any() and sig <= 0:
        return None
    out = np.tile(b0, (len(t), 1))
    if sig > 0 and len(t):
        dt = np.diff(t, prepend=t[0])
        a = np.exp(-dt / cfg.vel_bias_tau_s)
        q = sig * np.sqrt(1.0 - a * a)
        w = rng.standard_normal((len(t), 2))
        g = np.empty((len(t), 2))
        g[0] = w[0] * sig
        for i in range(1, len(t)):
            g[i] = a[i] * g[i - 1] + q[i] * w[i]
        out += g
    return out


# ----------------------------------------------------------------------------- GPS
@dataclass
class GpsLog:
    t: np.ndarray
    east: np.ndarray
    north: np.ndarray
    up: np.ndarray           # metres above the ground (noisy AGL)
    sigma_h: float
    sigma_v: float


def simulate_gps(traj: Trajectory, cfg: GpsConfig, duration_s: float, rng: np.random.Generator) -> GpsLog:
    """GPS fixes from t = 0 until the denial time (white noise + Gauss-Markov bias)."""
    end = duration_s if cfg.denial_s is None else min(duration_s, float(cfg.denial_s))
    t = np.arange(0.0, max(0.0, end) + 1e-9, 1.0 / cfg.rate_hz)
    if cfg.denial_s is not None:
        t = t[t < cfg.denial_s]
    tr = traj.sample(t) if len(t) else None
    n = len(t)
    bias = np.zeros((n, 3))
    if n:
        a = math.exp(-1.0 / (cfg.rate_hz * cfg.bias_tau_s))
        q = cfg.bias_sigma_m * math.sqrt(1 - a * a)
        b = rng.standard_normal(3) * cfg.bias_sigma_m
        for i in range(n):
            bias[i] = b
            b = a * b + rng.standard_normal(3) * q
    white = rng.standard_normal((n, 3)) * np.array([cfg.sigma_h_m, cfg.sigma_h_m, cfg.sigma_v_m])
    if tr is None:
        return GpsLog(t, t.copy(), t.copy(), t.copy(), cfg.sigma_h_m, cfg.sigma_v_m)
    sig_h = math.hypot(cfg.sigma_h_m, cfg.bias_sigma_m)
    sig_v = math.hypot(cfg.sigma_v_m, cfg.bias_sigma_m)
    return GpsLog(t, tr.east + bias[:, 0] + white[:, 0], tr.north + bias[:, 1] + white[:, 1],
                  tr.agl + bias[:, 2] + white[:, 2], sig_h, sig_v)


def flight_duration(sc: ScenarioConfig, traj: Trajectory) -> float:
    return float(sc.duration_s) if sc.duration_s > 0 else traj.one_pass_s
