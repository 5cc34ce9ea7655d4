"""Node health -> diagnostic_msgs/DiagnosticArray (rqt_robot_monitor, aggregators).

The node keeps counters in a `NodeStats`; `summarize()` turns them into a level, a
one-line message and key/values without touching ROS, so the rules are testable; the
last step builds the message. Level rules:
- OK: TRACKING and no recent problem;
- WARN: waiting for frames / initial fix, INITIALIZING, DEGRADED, RELOCALIZING, an input
  problem (bad image, bad odometry, missing camera_info; `NodeStats.error`) in the last
  `recent_s`, one or a few localizer steps failing in a row (`frame_failed`, fewer than
  `failed_frames_error`), or a MAVLink link error (`mavlink_update`);
- ERROR: LOST, OFF_MAP, no camera frame for `stale_after_s`, `failed_frames_error` or more
  localizer steps failed in a row with the latest failure in the last `recent_s` (a step
  that completes, `frame_ok`, ends it at once), or the worker thread died (`worker_error`).
Why "recent": a problem that has cleared must leave /diagnostics, otherwise an operator
cannot tell a node that is failing now from one that failed once an hour ago. The counters
(`input_errors.*`, `frames_failed`) keep the history.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs/DiagnosticStatus levels (bytes in the message)

STATUS_NAME = "geoloc_ros: localizer"


class LinkStatusLike(Protocol):
    """What `mavlink_update` reads (outputs.mavlink.SenderStatus has it)."""

    sent: int
    dropped: int
    last_error: str
    last_error_time: float | None


@dataclass
class NodeStats:
    """Counters and recent figures shared by the callbacks and the inference thread."""

    started: float = field(default_factory=time.monotonic)
    frames_received: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0  # overwritten in the latest-frame slot
    frames_skipped: int = 0  # not given to the localizer (bad image, no odometry, ...)
    fixes_published: int = 0
    input_errors: Counter = field(default_factory=Counter)  # kind -> count
    last_error: str = ""
    last_error_time: float = -1e18
    last_frame_time: float | None = None  # monotonic arrival of the last image
    last_camera_info_time: float | None = None  # monotonic arrival of the last CameraInfo (any)
    time_jumps: int = 0
    gps_state: str = "waiting"  # waiting | trusted | denied
    gps_denied_reason: str = ""
    seeded: bool = False
    worker_error: str = ""  # set when the inference thread itself died: ERROR until restart
    frames_failed: int = 0  # localizer steps that raised (total)
    failure_streak: int = 0  # steps that raised since the last one that completed
    last_failure: str = ""
    last_failure_time: float = -1e18
    mavlink_sent: int = 0
    mavlink_dropped: int = 0
    mavlink_error: str = ""  # the sender's last_error: '' once it writes again
    mavlink_error_time: float | None = None  # None: set directly (older callers), shown while non-empty
    estimate: Any = None  # last Estimate
    node_ms: deque = field(default_factory=lambda: deque(maxlen=200))
    queue_ms: deque = field(default_factory=lambda: deque(maxlen=200))
    model_ms: deque = field(default_factory=lambda: deque(maxlen=200))
    total_ms: deque = field(default_factory=lambda: deque(maxlen=200))
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def error(self, kind: str, text: str, now: float | None = None) -> None:
        """An input problem (bad image, odometry, ...): counted, shown with WARN for `recent_s`."""
        with self.lock:
            self.input_errors[kind] += 1
            self.last_error = text
            self.last_error_time = time.monotonic() if now is None else now

    def frame_failed(self, text: str, now: float | None = None) -> None:
        """A localizer step raised (the worker caught it): counts towards the ERROR streak."""
        with self.lock:
            self.frames_failed += 1
            self.failure_streak += 1
            self.last_failure = text
            self.last_failure_time = time.monotonic() if now is None else now

    def frame_ok(self) -> None:
        """A localizer step completed: ends a failure streak (the level is state-based again)."""
        with self.lock:
            self.failure_streak = 0

    def mavlink_update(self, status: LinkStatusLike, now: float | None = None) -> None:
        """Copy the MAVLink sender's status (call right before summarize, so it is current)."""
        with self.lock:
            self.mavlink_sent = int(status.sent)
            self.mavlink_dropped = int(status.dropped)
            self.mavlink_error = str(status.last_error or "")
            t = status.last_error_time
            if self.mavlink_error and t is None:
                t = time.monotonic() if now is None else now
            self.mavlink_error_time = t if self.mavlink_error else None


def _pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def summarize(st: NodeStats, now: float | None = None, *, stale_after_s: float = 3.0,
              recent_s: float = 5.0, failed_frames_error: int = 3) -> tuple[int, str, list[tuple[str, str]]]:
    """(level, message, [(key, value)]) for the node's current health (rules: module docstring)."""
    now = time.monotonic() if now is None else now
    with st.lock:
        est = st.estimate
        state = str(getattr(est, "state", "")) if est is not None else "NO_ESTIMATE"
        recent_input = bool(st.last_error) and now - st.last_error_time <= recent_s
        failing = st.failure_streak > 0 and now - st.last_failure_time <= recent_s
        mav_error = st.mavlink_error if st.mavlink_error and (
            st.mavlink_error_time is None or now - st.mavlink_error_time <= recent_s) else ""
        plural = "s" if st.failure_streak > 1 else ""
        failure_text = f"{st.failure_streak} localizer step{plural} in a row failed (last: {st.last_failure})"
        failure_shown = False
        level, msg = OK, state
        if st.worker_error:
            level, msg = ERROR, f"inference thread failed: {st.worker_error}"
        elif (st.last_camera_info_time is not None and now - st.last_camera_info_time <= stale_after_s
              and (st.last_frame_time is None or now - st.last_frame_time > stale_after_s)):
            # CameraInfo (small) arrives, its images (large) do not: the transport drops them
            level, msg = ERROR, ("CameraInfo arrives but no camera image: images may be too large for the DDS "
                                 "transport (shared-memory segment / UDP fragments; see the Fast DDS profile)")
        elif st.last_frame_time is None:
            level, msg = WARN, "waiting for camera frames"
        elif now - st.last_frame_time > stale_after_s:
            level, msg = ERROR, f"no camera frame for {now - st.last_frame_time:.1f} s"
        elif failing and st.failure_streak >= failed_frames_error:
            level, msg, failure_shown = ERROR, f"inference failing: {failure_text}", True
        elif not st.seeded and state in ("INITIALIZING", "NO_ESTIMATE"):
            level, msg = WARN, "waiting for an initial fix"
        elif state in ("LOST", "OFF_MAP"):
            level, msg = ERROR, state + (f": {est.message}" if est is not None and est.message else "")
        elif state != "TRACKING":
            level, msg = WARN, state + (f": {est.message}" if est is not None and est.message else "")
        if failing and not failure_shown and not st.worker_error:
            level, msg = max(level, WARN), f"{msg}; {failure_text}"
        if recent_input:
            level = max(level, WARN)
            if not st.worker_error:
                msg = f"{msg}; input problem: {st.last_error}"
        if mav_error:
            level, msg = max(level, WARN), f"{msg}; MAVLink: {mav_error}"
        kv = [
            ("state", state),
            ("fix_valid", str(bool(getattr(est, "fix_valid", False)))),
            ("confidence", f"{getattr(est, 'confidence', float('nan')):.3f}"),
            ("rejections", str(getattr(est, "rejections", 0))),
            ("consecutive_rejections", str(getattr(est, "consecutive_rejections", 0))),
            ("search_size_m", f"{getattr(est, 'search_size_m', float('nan')):.1f}"),
            ("gps", st.gps_state + (f" ({st.gps_denied_reason})" if st.gps_denied_reason else "")),
            ("seeded", str(st.seeded)),
            ("frames_received", str(st.frames_received)),
            ("frames_processed", str(st.frames_processed)),
            ("frames_dropped", str(st.frames_dropped)),
            ("frames_skipped", str(st.frames_skipped)),
            ("frames_failed", str(st.frames_failed)),
            ("frames_failed_in_a_row", str(st.failure_streak if failing else 0)),
            ("fixes_published", str(st.fixes_published)),
            ("time_jumps", str(st.time_jumps)),
            ("latency_node_median_ms", f"{_pct(st.node_ms, 50):.1f}"),
            ("latency_node_p95_ms", f"{_pct(st.node_ms, 95):.1f}"),
            ("latency_queue_median_ms", f"{_pct(st.queue_ms, 50):.1f}"),
            ("latency_model_median_ms", f"{_pct(st.model_ms, 50):.1f}"),
            ("latency_localizer_median_ms", f"{_pct(st.total_ms, 50):.1f}"),
            ("mavlink_sent", str(st.mavlink_sent)),
            ("mavlink_dropped", str(st.mavlink_dropped)),
            ("last_error", st.last_error if recent_input else ""),
            ("last_failure", st.last_failure if failing else ""),
            ("message", str(getattr(est, "message", "")) if est is not None else ""),
        ]
        kv += [(f"input_errors.{k}", str(v)) for k, v in sorted(st.input_errors.items())]
        if mav_error:
            kv.append(("mavlink_error", mav_error))
    return level, msg, kv


def to_diagnostic_array(level: int, message: str, values: list[tuple[str, str]], hardware_id: str, stamp):
    """Build the DiagnosticArray message (stamp: builtin_interfaces/Time)."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    arr = DiagnosticArray()
    arr.header.stamp = stamp
    s = DiagnosticStatus()
    s.level = bytes([level])
    s.name = STATUS_NAME
    s.message = message[:500]
    s.hardware_id = hardware_id
    s.values = [KeyValue(key=k, value=v) for k, v in values]
    arr.status = [s]
    return arr
