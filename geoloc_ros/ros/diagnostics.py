"""Node health -> diagnostic_msgs/DiagnosticArray (rqt_robot_monitor, aggregators).

The node keeps counters in a `NodeStats`; `summarize()` turns them into a level, a
one-line message and key/values without touching ROS, so the rules are testable; the
last step builds the message. Level rules:
- OK: TRACKING and no recent input problem;
- WARN: waiting for frames / initial fix, INITIALIZING, DEGRADED, RELOCALIZING, or an
  input problem (bad image, bad odometry, missing camera_info) in the last `recent_s`;
- ERROR: LOST, OFF_MAP, no camera frame for `stale_after_s`, or the worker failed.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs/DiagnosticStatus levels (bytes in the message)

STATUS_NAME = "geoloc_ros: localizer"


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
    time_jumps: int = 0
    gps_state: str = "waiting"  # waiting | trusted | denied
    gps_denied_reason: str = ""
    seeded: bool = False
    worker_error: str = ""
    mavlink_sent: int = 0
    mavlink_error: str = ""
    estimate: Any = None  # last Estimate
    node_ms: deque = field(default_factory=lambda: deque(maxlen=200))
    queue_ms: deque = field(default_factory=lambda: deque(maxlen=200))
    model_ms: deque = field(default_factory=lambda: deque(maxlen=200))
    total_ms: deque = field(default_factory=lambda: deque(maxlen=200))
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def error(self, kind: str, text: str, now: float | None = None) -> None:
        with self.lock:
            self.input_errors[kind] += 1
            self.last_error = text
            self.last_error_time = time.monotonic() if now is None else now


def _pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def summarize(st: NodeStats, now: float | None = None, *, stale_after_s: float = 3.0,
              recent_s: float = 5.0) -> tuple[int, str, list[tuple[str, str]]]:
    """(level, message, [(key, value)]) for the node's current health."""
    now = time.monotonic() if now is None else now
    with st.lock:
        est = st.estimate
        state = str(getattr(est, "state", "")) if est is not None else "NO_ESTIMATE"
        level, msg = OK, state
        if st.worker_error:
            level, msg = ERROR, f"inference thread failed: {st.worker_error}"
        elif st.last_frame_time is None:
            level, msg = WARN, "waiting for camera frames"
        elif now - st.last_frame_time > stale_after_s:
            level, msg = ERROR, f"no camera frame for {now - st.last_frame_time:.1f} s"
        elif not st.seeded and state in ("INITIALIZING", "NO_ESTIMATE"):
            level, msg = WARN, "waiting for an initial fix"
        elif state in ("LOST", "OFF_MAP"):
            level, msg = ERROR, state + (f": {est.message}" if est is not None and est.message else "")
        elif state != "TRACKING":
            level, msg = WARN, state + (f": {est.message}" if est is not None and est.message else "")
        recent = now - st.last_error_time <= recent_s
        if recent and level < WARN:
            level = WARN
        if recent and st.last_error and not st.worker_error:
            msg = f"{msg}; input problem: {st.last_error}"
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
            ("fixes_published", str(st.fixes_published)),
            ("time_jumps", str(st.time_jumps)),
            ("latency_node_median_ms", f"{_pct(st.node_ms, 50):.1f}"),
            ("latency_node_p95_ms", f"{_pct(st.node_ms, 95):.1f}"),
            ("latency_queue_median_ms", f"{_pct(st.queue_ms, 50):.1f}"),
            ("latency_model_median_ms", f"{_pct(st.model_ms, 50):.1f}"),
            ("latency_localizer_median_ms", f"{_pct(st.total_ms, 50):.1f}"),
            ("mavlink_sent", str(st.mavlink_sent)),
            ("last_error", st.last_error),
            ("message", str(getattr(est, "message", "")) if est is not None else ""),
        ]
        kv += [(f"input_errors.{k}", str(v)) for k, v in sorted(st.input_errors.items())]
        if st.mavlink_error:
            kv.append(("mavlink_error", st.mavlink_error))
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
