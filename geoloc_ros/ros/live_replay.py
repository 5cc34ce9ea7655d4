"""Replay a rosbag2 into a running localize_node over real DDS and record what it publishes.

Why live and not only offline (tools/replay.py): the offline replay calls the Localizer
directly; only a live replay exercises what a flight does: DDS transport and QoS, the
node's latest-frame slot (frames dropped when inference is slower than the camera), the
odometry/image race, the GPS-denial rule on arrival times, and the end-to-end latency.

How:
- the node runs as its own process (`NodeProcess`, or any node already on the domain);
  this process joins the same ROS_DOMAIN_ID (localhost discovery, the fast-discovery Fast
  DDS profile) with its own rclpy context;
- start-up waits for endpoint *matching* (`get_subscription_count` /
  `get_publisher_count`), never for a fixed time; a node that exits meanwhile is reported
  with its log tail;
- the bag's messages (camera image, camera_info, odometry, GPS fix; never the ground
  truth) are published as stored CDR bytes, unchanged, paced by their own header stamps
  (`rate` = replay speed factor). GPS is published exactly as recorded: when it stops, the
  node's own rule (geoloc_ros/ros/pipeline.py) declares the denial;
- ~/fix and ~/status are recorded with their receive times on a spinning thread; the
  latency of a fix = its receive time - the publish time of the image with the same
  header stamp;
- the statuses become `evaluate.FrameRecord`s (truth from the bag interpolated at each
  stamp) so that `evaluate.summarize`, `report.markdown_report` and `plots.plot_all` report a live run
  exactly like an offline one.
"""
from __future__ import annotations

import importlib
import math
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from .. import resources
from ..localize.evaluate import FrameRecord, record_from_estimate, record_from_skip, skip_counts, summarize

#: the package's share directory (repository root in a checkout, <prefix>/share/geoloc_ros when
#: installed; see geoloc_ros.resources). Resolved at import without failing: check before use.
ROOT = resources.locate("package.xml").parent
FAST_DDS_PROFILE = resources.locate("config/fastdds_fast_discovery.xml")
PARAMS_FILE = resources.locate("config/localize.yaml")

#: bag topics replayed into the node (the ground truth stays here, for evaluation)
REPLAY_KEYS = ("image", "camera_info", "odom", "gps")
STAMP_MATCH_S = 1e-4
#: a ~/status of a frame the node skipped before the localizer (runtime.inputs.Skip.__str__)
SKIPPED_STATUS = re.compile(r"^skipped \((\w+)\): (.*)$", re.S)  # image <-> fix/status stamp matching tolerance (float seconds round trip)


class LiveReplayError(RuntimeError):
    """The live replay could not run (node died, never matched, published nothing); one line
    plus, where useful, the node's log tail."""


# ----------------------------------------------------------------------------- environment
def default_domain_id() -> int:
    """A ROS_DOMAIN_ID in 1..232 unlikely to collide with a robot's graph or a parallel run."""
    return 1 + (os.getpid() * 7 + int(time.time() * 10)) % 232


def ros_env(domain_id: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the replay and its node: own domain, localhost-only discovery, the
    repository's Fast DDS profile (fast discovery) unless FASTDDS_DEFAULT_PROFILES_FILE is
    already set (a user's own DDS tuning wins)."""
    if not 0 <= int(domain_id) <= 232:
        raise ValueError(f"ROS domain id must be in 0..232, got {domain_id}")
    env = dict(os.environ if base is None else base)
    env.update(ROS_DOMAIN_ID=str(int(domain_id)), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               RCUTILS_COLORIZED_OUTPUT="0", PYTHONUNBUFFERED="1")
    if FAST_DDS_PROFILE.is_file() and not env.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(FAST_DDS_PROFILE)
    return env


def _apply_env(domain_id: int) -> None:
    for k, v in ros_env(domain_id).items():
        if os.environ.get(k) != v:
            os.environ[k] = v


# ----------------------------------------------------------------------------- node process
def format_param(value: Any) -> str:
    """A value as `-p name:=value` text that rcl parses back to the same type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else (".nan" if math.isnan(value) else
                                                        (".inf" if value > 0 else "-.inf"))
    if value is None or value == "":
        return "''"
    text = str(value)
    if isinstance(value, str):
        from .params import rcl_scalar

        if not isinstance(rcl_scalar(text), str) or text[:1] in "'\"[{&*!|>%@`#,?:-" or ": " in text:
            return "'" + text.replace("'", "''") + "'"  # a string that would read back as a number / YAML
    return text


def node_command(params: dict[str, Any], params_file: Path | None = PARAMS_FILE) -> list[str]:
    """`python -m geoloc_ros.ros.node --ros-args [--params-file F] -p k:=v ...`."""
    cmd = [sys.executable, "-m", "geoloc_ros.ros.node", "--ros-args"]
    if params_file is not None:  # asked for: a missing file is an error, never dropped
        cmd += ["--params-file", str(resources.require_file(params_file, "node params file"))]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={format_param(v)}"]
    return cmd


class NodeProcess:
    """localize_node as a child process, its stdout+stderr in `log_path`."""

    def __init__(self, params: dict[str, Any], domain_id: int, log_path: str | Path,
                 params_file: Path | None = PARAMS_FILE) -> None:
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if params_file is not None and Path(params_file) == PARAMS_FILE:
            params_file = resources.params_file()  # the default: found now, or say where it looked
        self.command = node_command(params, params_file)
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(self.command, env=ros_env(domain_id), stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        """The last `lines` lines of the node's log (also after stop(), which closes the file)."""
        if not self._log.closed:
            self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT (the node's clean shutdown), wait, then SIGKILL; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ----------------------------------------------------------------------------- bag reading
def header_stamp_from_cdr(raw: bytes) -> float:
    """header.stamp (seconds) of a serialized message whose first field is std_msgs/Header
    (Image, CameraInfo, NavSatFix, Odometry): 4-byte encapsulation, then int32 sec, uint32 nsec."""
    if len(raw) < 12:
        raise ValueError("serialized message too short for a header")
    order = "<" if raw[1] & 1 else ">"  # CDR_LE = 0x0001, CDR_BE = 0x0000 (PL_CDR: same low bit)
    sec, nsec = struct.unpack_from(order + "iI", raw, 4)
    return sec + nsec * 1e-9


def _msg_class(msgtype: str):
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


# ----------------------------------------------------------------------------- result
@dataclass
class FixSample:
    stamp: float
    lat: float
    lon: float
    cov: np.ndarray  # 3x3 ENU m^2
    received: float  # monotonic receive time
    latency_ms: float  # receive - publish time of the image with this stamp (nan: no match)


@dataclass
class LiveResult:
    """What one live replay saw; `summary()` turns it into the offline report's dict."""

    records: list[FrameRecord]  # one per ~/status message (a processed frame), truth attached
    fixes: list[FixSample]
    images_published: int
    image_stamps: list[float]
    gps_published: int
    gps_last_stamp: float | None  # stamp of the last GPS message replayed (where GPS stops)
    node_denial_stamp: float | None  # first ~/status with gps_denied (the node's own rule)
    node_ms: list[float]  # ~/status t_node_ms (image arrival -> status publish, inside the node)
    frames_dropped: int  # the node's latest-frame slot (last status)
    node_counters: dict  # the node's last /diagnostics values (frames_received, frames_skipped, ...)
    unmatched_fixes: int  # fixes whose stamp matched no replayed image
    wall_s: float
    max_lag_s: float  # worst lateness of a publish against the schedule
    rate: float
    context: dict = field(default_factory=dict)

    @property
    def latency_ms(self) -> np.ndarray:
        return np.array([f.latency_ms for f in self.fixes if math.isfinite(f.latency_ms)])

    @property
    def eval_start_stamp(self) -> float | None:
        """Frames from here on count as "after GPS denial": the last GPS message (no GPS
        information reaches the node after it)."""
        return self.gps_last_stamp

    def summary(self) -> dict:
        """evaluate.summarize over the frames after GPS denial, plus the live-only figures."""
        start = self.eval_start_stamp
        s = summarize(self.records, start_stamp=start)
        s["skipped_all_frames"] = skip_counts(self.records)  # "skipped" counts frames after GPS denial only
        imgs_after = [t for t in self.image_stamps if start is None or t >= start - STAMP_MATCH_S]
        fixes_after = [f for f in self.fixes if start is None or f.stamp >= start - STAMP_MATCH_S]
        lat, node = self.latency_ms, np.asarray(self.node_ms, dtype=np.float64)

        def stats(x):
            x = np.asarray(x, dtype=np.float64)
            x = x[np.isfinite(x)]
            return {"n": int(x.size), "median": float(np.median(x)) if x.size else float("nan"),
                    "p95": float(np.percentile(x, 95)) if x.size else float("nan"),
                    "max": float(x.max()) if x.size else float("nan")}

        s["live"] = {
            "rate": self.rate, "wall_s": self.wall_s, "max_publish_lag_s": self.max_lag_s,
            "images_published": self.images_published, "images_after_denial": len(imgs_after),
            "frames_processed": len(self.records), "frames_dropped_by_node": self.frames_dropped,
            "fixes_received": len(self.fixes), "fixes_after_denial": len(fixes_after),
            "fix_fraction_of_images_after_denial": (len(fixes_after) / len(imgs_after)) if imgs_after else float("nan"),
            "gps_messages": self.gps_published, "gps_last_stamp": self.gps_last_stamp,
            "node_denial_stamp": self.node_denial_stamp, "eval_start_stamp": start,
            "unmatched_fixes": self.unmatched_fixes,
            "node_counters": {k: self.node_counters[k] for k in ("frames_received", "frames_processed",
                                                                 "frames_dropped", "frames_skipped", "last_error")
                              if k in self.node_counters},
            "latency_e2e_ms": stats(lat), "latency_node_ms": stats(node),
        }
        return s


def live_report_lines(summary: dict) -> list[str]:
    """Markdown bullet lines for the live-only figures (appended to report.markdown_report)."""
    lv = summary.get("live", {})
    if not lv:
        return []

    def f(x, nd=1):
        return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"

    le, ln = lv["latency_e2e_ms"], lv["latency_node_ms"]
    return ["", "## Live replay (DDS)", "",
            f"- replay speed x{f(lv['rate'], 2)}, wall time {f(lv['wall_s'])} s, worst publish lag "
            f"{f(lv['max_publish_lag_s'] * 1e3)} ms",
            f"- images published {lv['images_published']}, received by the node "
            f"{lv['node_counters'].get('frames_received', 'n/a')}, processed {lv['frames_processed']}, dropped by its "
            f"latest-frame slot {lv['frames_dropped_by_node']}, skipped {lv['node_counters'].get('frames_skipped', 'n/a')}"
            + (f" (last input problem: {lv['node_counters']['last_error']})"
               if lv['node_counters'].get('last_error') else ""),
            f"- fixes received {lv['fixes_received']}; after GPS denial {lv['fixes_after_denial']} for "
            f"{lv['images_after_denial']} images ({f(100 * lv['fix_fraction_of_images_after_denial'])} %)",
            f"- latency image publish -> ~/fix receive: median {f(le['median'])} ms, p95 {f(le['p95'])} ms, "
            f"max {f(le['max'])} ms (n = {le['n']}); inside the node (t_node_ms): median {f(ln['median'])} ms, "
            f"p95 {f(ln['p95'])} ms",
            f"- GPS: {lv['gps_messages']} messages replayed, last at stamp {f(lv['gps_last_stamp'], 2)}; the node "
            f"declared denial at stamp {f(lv['node_denial_stamp'], 2)}; statistics count frames from the last "
            f"GPS message on"]


# ----------------------------------------------------------------------------- replay
class _Recorder:
    """Receives ~/fix and ~/status on the spinning thread (receive time = callback time)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fixes: list[tuple[float, Any]] = []
        self.statuses: list[tuple[float, Any]] = []
        self.diag: tuple[float, dict] | None = None  # the node's last /diagnostics values

    def _keep(self, into: list[tuple[float, Any]], msg) -> None:
        """Messages are kept with their arrival time (the executor thread appends, the replay reads)."""
        t = time.monotonic()
        with self.lock:
            into.append((t, msg))

    def on_fix(self, msg) -> None:
        self._keep(self.fixes, msg)

    def on_status(self, msg) -> None:
        self._keep(self.statuses, msg)

    def on_diagnostics(self, msg) -> None:
        from .diagnostics import STATUS_NAME

        t = time.monotonic()
        for s in msg.status:
            if s.name == STATUS_NAME:
                with self.lock:
                    self.diag = (t, {kv.key: kv.value for kv in s.values})

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return len(self.fixes), len(self.statuses)

    def last_status(self):
        with self.lock:
            return self.statuses[-1] if self.statuses else None


def _stamp(st) -> float:
    return float(st.sec) + float(st.nanosec) * 1e-9


def _nearest(sorted_t: np.ndarray, t: float) -> int | None:
    if sorted_t.size == 0:
        return None
    i = int(np.searchsorted(sorted_t, t))
    best = min((j for j in (i - 1, i) if 0 <= j < sorted_t.size), key=lambda j: abs(sorted_t[j] - t))
    return best if abs(sorted_t[best] - t) <= STAMP_MATCH_S else None


def replay_live(bag: str | Path, domain_id: int, *, rate: float = 1.0, topics: dict | None = None,
                node_name: str = "/localize_node", max_frames: int | None = None, startup_timeout: float = 120.0,
                drain_timeout: float = 30.0, node_alive: Callable[[], bool] | None = None,
                node_log: Callable[[], str] | None = None, require_gps_match: bool | None = None,
                progress: bool | Callable[[str], None] = False, diag_wait_s: float = 2.5,
                clock: bool = False) -> LiveResult:
    """Publish the bag into a running node on `domain_id` at `rate` x real time; return what it published.

    `node_alive()` / `node_log()` (from a NodeProcess) let start-up and replay fail fast with
    the node's log tail. `diag_wait_s`: how long to wait at the end for the node's next
    /diagnostics (its frame counters; default period 1 s). `require_gps_match`: wait for the node's GPS subscription too
    (default: when the bag has GPS). `progress`: True for a tqdm bar, or a callable for lines.
    `clock`: also publish /clock (rosgraph_msgs/Clock) on the bag's timeline, like
    `ros2 bag play --clock`, for a node started with use_sim_time:=true (waits for the node's
    /clock subscription; see `_SimClock`).
    """
    if not rate > 0:
        raise ValueError(f"replay rate must be > 0, got {rate}")
    plan = _plan_replay(Path(bag), topics, require_gps_match)
    run = _LiveRun(plan, domain_id, rate=rate, node_name=node_name, node_alive=node_alive, node_log=node_log,
                   progress=progress, clock=clock)
    try:
        run.start()
        run.wait_matched(startup_timeout)
        run.publish_bag(max_frames)
        run.drain(drain_timeout, diag_wait_s)
    finally:
        run.close()
    return _build_result(run.rec, plan.truth, run.image_stamps, run.img_pub_time, run.n_gps, run.gps_last,
                         run.wall, run.max_lag, rate)



def replay_into_node(bag: str | Path, params: dict[str, Any], domain_id: int, log_path: Path,
                     params_file: Path | None = PARAMS_FILE, **replay: Any) -> tuple[LiveResult, int | None]:
    """localize_node started as a subprocess (`NodeProcess`), the bag replayed into it
    (`replay_live` with the `replay` keywords), the node stopped; returns (result, node exit code).
    LiveReplayError with the node's log tail when it processed no frame."""
    node = NodeProcess(params, domain_id, log_path, params_file)
    try:
        res = replay_live(bag, domain_id, node_alive=node.alive, node_log=node.log_tail, **replay)
    finally:
        rc = node.stop()
    if not res.records:
        raise LiveReplayError(f"localize_node processed no frame (no ~/status received); see {log_path}:\n"
                              + node.log_tail())
    return res, rc


@dataclass
class _ReplayPlan:
    """What a live replay publishes: the bag, its topics and their keys, and the ground truth."""

    bag: Path
    topics: dict
    present: dict  # topic -> (msgtype, count)
    replay_topics: dict  # topic -> key (REPLAY_KEYS)
    truth: Any
    require_gps_match: bool


def _plan_replay(bag: Path, topics: dict | None, require_gps_match: bool | None) -> _ReplayPlan:
    """Check the bag and pick the topics to replay (ValueError / FileNotFoundError / LiveReplayError)."""
    from ..bags import DEFAULT_TOPICS, replayable_topics, truth_series

    try:
        importlib.import_module("geoloc_ros_msgs.msg")  # the node's ~/status type
    except ImportError:
        raise LiveReplayError("geoloc_ros_msgs is not built (run scripts/build_msgs.sh): the node's ~/status "
                              "cannot be recorded") from None
    if not bag.exists():
        raise FileNotFoundError(f"bag not found: {bag}")
    topics = {**DEFAULT_TOPICS, **(topics or {})}
    present = replayable_topics(bag, topics)
    truth = truth_series(bag, topics["truth"])
    replay_topics = {topics[k]: k for k in REPLAY_KEYS if topics[k] in present}
    if require_gps_match is None:
        require_gps_match = topics["gps"] in present
    return _ReplayPlan(bag, topics, present, replay_topics, truth, bool(require_gps_match))


class _SimClock:
    """/clock on the bag's timeline (rosgraph_msgs/Clock), for a node with use_sim_time.

    Like `ros2 bag play --clock`: the clock runs at `rate` x wall time from the first
    message's stamp, published every `period_s` of wall time, but never ahead of the next
    message (a message is published right after the clock reached its stamp), so the node's
    clock-based rules (GPS timeout, altitude freshness) see the messages at the same clock
    values at any rate. It never goes back."""

    def __init__(self, node: Any, rate: float, period_s: float = 0.01) -> None:
        from rosgraph_msgs.msg import Clock

        from .qos import reliable

        self._msg = Clock
        self.pub = node.create_publisher(Clock, "/clock", reliable(10))
        self.rate, self.period_s = rate, period_s
        self.value: float | None = None
        self._origin: tuple[float, float] | None = None  # (stamp, wall) the clock runs from
        self._last_pub = -math.inf

    def _publish(self, t: float) -> None:
        if self.value is not None and t <= self.value:
            return
        from .convert import float_to_stamp

        self.value = t
        self.pub.publish(self._msg(clock=float_to_stamp(t)))
        self._last_pub = time.monotonic()

    def start(self, stamp: float) -> None:
        self._origin = (stamp, time.monotonic())
        self._publish(stamp)

    def tick(self, limit: float | None = None) -> None:
        """Advance with wall time (at most to `limit`); call often while waiting."""
        if self._origin is None or time.monotonic() - self._last_pub < self.period_s:
            return
        t = self._origin[0] + (time.monotonic() - self._origin[1]) * self.rate
        self._publish(t if limit is None else min(t, limit))

    def reach(self, stamp: float) -> None:
        """The clock is at least `stamp` (right before publishing a message with that stamp)."""
        self._publish(stamp)


class _LiveRun:
    """One live replay's ROS side and bookkeeping; the steps of `replay_live` in order:
    start, wait_matched, publish_bag, drain, close."""

    def __init__(self, plan: _ReplayPlan, domain_id: int, *, rate: float, node_name: str,
                 node_alive: Callable[[], bool] | None, node_log: Callable[[], str] | None,
                 progress: bool | Callable[[str], None], clock: bool) -> None:
        self.plan, self.domain_id, self.rate, self.node_name = plan, int(domain_id), rate, node_name
        self.alive = node_alive or (lambda: True)
        self.tail = node_log or (lambda: "")
        self.progress = progress
        self.say = progress if callable(progress) else None
        self.use_clock = clock
        self.rec = _Recorder()
        self.stop = threading.Event()
        self.ctx = self.node = self.executor = self.spinner = self.clock = None
        self.pubs: dict[str, Any] = {}
        self.img_pub_time: dict[float, float] = {}
        self.image_stamps: list[float] = []
        self.n_gps = 0
        self.gps_last: float | None = None
        self.max_lag = 0.0
        self.wall = 0.0
        self._t_start = time.monotonic()

    def node_died(self, when: str) -> LiveReplayError:
        return LiveReplayError(f"localize_node exited {when}; last log lines:\n{self.tail()}")

    def start(self) -> None:
        """Own rclpy context on the domain, publishers of the bag topics (+ /clock), recorders."""
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from diagnostic_msgs.msg import DiagnosticArray
        from geoloc_ros_msgs.msg import LocalizerStatus
        from sensor_msgs.msg import NavSatFix

        from .qos import reliable

        _apply_env(self.domain_id)
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=self.domain_id)
        self.node = rclpy.create_node("geoloc_live_replay", context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        for name, key in self.plan.replay_topics.items():
            depth = 50 if key == "odom" else 10
            self.pubs[name] = self.node.create_publisher(_msg_class(self.plan.present[name][0]), name,
                                                         reliable(depth))
        if self.use_clock:
            self.clock = _SimClock(self.node, self.rate)
        out_qos = reliable(100)
        ns = self.node_name.rstrip("/")
        self.sub_fix = self.node.create_subscription(NavSatFix, f"{ns}/fix", self.rec.on_fix, out_qos)
        self.sub_status = self.node.create_subscription(LocalizerStatus, f"{ns}/status", self.rec.on_status,
                                                        out_qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.rec.on_diagnostics, out_qos)

        def spin() -> None:
            while not self.stop.is_set():
                self.executor.spin_once(timeout_sec=0.02)

        self.spinner = threading.Thread(target=spin, name="live-replay-spin", daemon=True)
        self.spinner.start()

    def wait_matched(self, startup_timeout: float) -> None:
        """Discovery: every endpoint matched (the node creates its subscriptions once ready)."""
        rt = self.plan.replay_topics
        need = [p for n, p in self.pubs.items() if rt[n] != "gps" or self.plan.require_gps_match]
        if self.clock is not None:
            need.append(self.clock.pub)
        t0 = time.monotonic()
        if self.say:
            self.say(f"waiting for {self.node_name} to match {len(need)} topics + ~/fix + ~/status "
                     f"(domain {self.domain_id})")
        while True:
            missing = [p.topic_name for p in need if p.get_subscription_count() == 0]
            missing += [s.topic_name for s in (self.sub_fix, self.sub_status) if s.get_publisher_count() == 0]
            if not missing:
                break
            if not self.alive():
                raise self.node_died("during start-up")
            if time.monotonic() - t0 > startup_timeout:
                raise LiveReplayError(f"{self.node_name} did not match {', '.join(missing)} within "
                                      f"{startup_timeout:.0f} s (is it running on ROS_DOMAIN_ID {self.domain_id}?); "
                                      f"last log lines:\n{self.tail()}")
            time.sleep(0.02)
        if self.say:
            self.say(f"matched after {time.monotonic() - t0:.1f} s")

    def _wait_until(self, due: float, stamp: float, n_img: int, last_alive_check: list[float]) -> None:
        """Sleep until wall time `due`, checking the node and advancing /clock towards `stamp`."""
        while True:
            now = time.monotonic()
            if now - last_alive_check[0] > 0.2:
                last_alive_check[0] = now
                if not self.alive():
                    raise self.node_died(f"during the replay (after {n_img} images)")
            if self.clock is not None:
                self.clock.tick(limit=stamp)
            if now >= due:
                return
            time.sleep(min(due - now, 0.05 if self.clock is None else self.clock.period_s))

    def publish_bag(self, max_frames: int | None) -> None:
        """The bag's messages as stored CDR bytes, paced by their header stamps."""
        from ..bags import read_raw

        plan = self.plan
        n_images = plan.present[plan.topics["image"]][1]
        if max_frames:
            n_images = min(n_images, max_frames)
        bar = None
        if self.progress is True:
            from tqdm import tqdm
            bar = tqdm(total=n_images, unit="frame", desc="live replay", file=sys.stderr)
        n_img = 0
        stamp0 = wall0 = None
        last_alive_check = [0.0]
        self._t_start = time.monotonic()
        for topic, _mtype, _t_ns, raw in read_raw(plan.bag, list(plan.replay_topics)):
            key = plan.replay_topics[topic]
            if key == "image" and max_frames and n_img >= max_frames:
                break
            st = header_stamp_from_cdr(raw)
            if stamp0 is None:
                stamp0, wall0 = st, time.monotonic()
                if self.clock is not None:
                    self.clock.start(st)
            due = wall0 + max(st - stamp0, 0.0) / self.rate
            self._wait_until(due, st, n_img, last_alive_check)
            self.max_lag = max(self.max_lag, time.monotonic() - due)
            if self.clock is not None:
                self.clock.reach(st)
            if key == "image":
                self.img_pub_time[st] = time.monotonic()
                self.image_stamps.append(st)
                n_img += 1
                if bar is not None:
                    bar.update(1)
            elif key == "gps":
                self.n_gps += 1
                self.gps_last = st
            self.pubs[topic].publish(raw)
        if bar is not None:
            bar.close()

    def _pause(self, seconds: float = 0.02) -> None:
        if self.clock is not None:
            self.clock.tick()  # sim time goes on after the bag: the node's timers keep firing
        time.sleep(seconds)

    def drain(self, drain_timeout: float, diag_wait_s: float) -> None:
        """Until the node answered the last image (or went quiet), then its fixes and diagnostics."""
        rec = self.rec
        last_img = self.image_stamps[-1] if self.image_stamps else None
        t_end = time.monotonic()
        while time.monotonic() - t_end < drain_timeout:
            if not self.alive():
                break  # what it published is still worth reporting
            ls = rec.last_status()
            if last_img is None or (ls is not None and _stamp(ls[1].header.stamp) >= last_img - STAMP_MATCH_S):
                break
            quiet_since = max(t_end, ls[0]) if ls is not None else t_end
            if time.monotonic() - quiet_since > max(3.0, 10.0 / self.rate):
                break
            self._pause()
        # fixes travel on their own topic: give the ones the statuses announce a moment to land
        grace = time.monotonic()
        while time.monotonic() - grace < 1.0:
            with rec.lock:
                want = sum(bool(m.fix_valid) for _, m in rec.statuses)
                got = len(rec.fixes)
            if got >= want:
                break
            self._pause()
        # the node's own counters (received / skipped frames): its next /diagnostics message
        t_diag = time.monotonic()
        while self.alive() and time.monotonic() - t_diag < diag_wait_s:
            with rec.lock:
                if rec.diag is not None and rec.diag[0] > t_diag:
                    break
            self._pause()
        self.wall = time.monotonic() - self._t_start

    def close(self) -> None:
        import rclpy

        self.stop.set()
        if self.spinner is not None and self.spinner.is_alive():
            self.spinner.join(5.0)
        if self.executor is not None:
            self.executor.shutdown()
        if self.node is not None:
            self.node.destroy_node()
        if self.ctx is not None:
            rclpy.try_shutdown(context=self.ctx)


def _build_result(rec: _Recorder, truth, image_stamps, img_pub_time, n_gps, gps_last, wall, max_lag,
                  rate) -> LiveResult:
    img_t = np.array(sorted(image_stamps))
    img_wall = np.array([img_pub_time[t] for t in sorted(image_stamps)]) if image_stamps else np.zeros(0)
    fixes: list[FixSample] = []
    fix_by_stamp: dict[int, FixSample] = {}
    unmatched = 0
    for t_recv, m in rec.fixes:
        st = _stamp(m.header.stamp)
        j = _nearest(img_t, st)
        lat_ms = (t_recv - img_wall[j]) * 1e3 if j is not None else float("nan")
        unmatched += j is None
        f = FixSample(st, float(m.latitude), float(m.longitude),
                      np.asarray(m.position_covariance, dtype=np.float64).reshape(3, 3), t_recv, lat_ms)
        fixes.append(f)
        fix_by_stamp[round(st * 1e5)] = f
    records: list[FrameRecord] = []
    node_ms: list[float] = []
    denial = None
    dropped = 0
    for _t, m in rec.statuses:
        st = _stamp(m.header.stamp)
        timings = {k: float(getattr(m, f"t_{k}_ms")) for k in ("predict", "prepare", "crop", "model", "decode",
                                                               "update", "total")}
        timings = {k: v for k, v in timings.items() if v >= 0}
        f = fix_by_stamp.get(round(st * 1e5))
        cov = f.cov if f is not None else np.asarray(m.position_covariance, dtype=np.float64).reshape(3, 3)
        est = SimpleNamespace(stamp=st, state=m.state_name, fix_valid=f is not None,
                              lat=f.lat if f is not None else m.latitude, lon=f.lon if f is not None else m.longitude,
                              cov_enu=cov, confidence=m.confidence, accepted=m.accepted, rejections=m.rejections,
                              search_size_m=m.search_size_m, timings_ms=timings, message=m.message)
        try:
            tr = tuple(truth.at(st, 1.0)[:2])
        except LookupError:
            tr = None
        skipped = SKIPPED_STATUS.match(m.message)
        if skipped:
            records.append(record_from_skip(st, m.state_name, skipped.group(1), skipped.group(2), tr))
        else:
            records.append(record_from_estimate(est, tr))
        node_ms.append(float(m.t_node_ms))
        if denial is None and m.gps_denied:
            denial = st
        dropped = int(m.frames_dropped)
    return LiveResult(records=records, fixes=fixes, images_published=len(image_stamps), image_stamps=list(img_t),
                      gps_published=n_gps, gps_last_stamp=gps_last, node_denial_stamp=denial, node_ms=node_ms,
                      frames_dropped=dropped, node_counters=dict(rec.diag[1]) if rec.diag else {},
                      unmatched_fixes=unmatched, wall_s=wall, max_lag_s=max_lag, rate=rate)


# ----------------------------------------------------------------------------- report files
def write_live_report(result: LiveResult, out_dir: str | Path, *, title: str, context: dict | None = None,
                      map_path: str | Path | None = None, plots: bool = True) -> dict:
    """frames.csv, summary.json, report.md (+ trajectory/error/ellipse plots over the map):
    the offline replay's files, plus the live section. Returns the summary."""
    from ..localize.plots import plot_all
    from ..localize.report import markdown_report, write_csv, write_summary_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    summary["context"] = dict(context or {})
    write_csv(result.records, out_dir / "frames.csv")
    write_summary_json(summary, out_dir / "summary.json")
    plot_paths: list[Path] = []
    if plots and result.records:
        if map_path is not None:
            from ..geo.orthomap import OrthoMap
            with OrthoMap.open(map_path) as omap:
                plot_paths = plot_all(result.records, out_dir, omap)
        else:
            plot_paths = plot_all(result.records, out_dir)
    text = markdown_report(summary, title, summary["context"], [str(p) for p in plot_paths])
    (out_dir / "report.md").write_text(text.rstrip("\n") + "\n" + "\n".join(live_report_lines(summary)) + "\n")
    summary["out_dir"] = str(out_dir)
    return summary
