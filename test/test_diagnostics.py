"""ros/diagnostics.py level rules with a fake clock (no ROS graph): problems show while they are
recent and leave when they have cleared; failing localizer steps are an ERROR."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from geoloc_ros.ros import diagnostics as dg


def tracking_stats(t: float = 100.0) -> dg.NodeStats:
    """A seeded node that received a frame at `t` and whose last estimate is TRACKING."""
    st = dg.NodeStats()
    st.last_frame_time, st.seeded = t, True
    st.estimate = SimpleNamespace(state="TRACKING", fix_valid=True, confidence=0.9, rejections=0,
                                  consecutive_rejections=0, search_size_m=100.0, message="")
    return st


def kv(st: dg.NodeStats, now: float, **kw) -> dict[str, str]:
    return dict(dg.summarize(st, now=now, **kw)[2])


def link(last_error: str = "", t: float | None = None, sent: int = 0, dropped: int = 0):
    return SimpleNamespace(sent=sent, dropped=dropped, last_error=last_error, last_error_time=t)


def test_input_problem_shows_only_while_recent():
    st = tracking_stats()
    st.error("image", "bad image: truncated", now=100.0)
    level, msg, _ = dg.summarize(st, now=102.0, recent_s=5.0)
    assert level == dg.WARN and "input problem: bad image: truncated" in msg
    assert kv(st, 102.0)["last_error"] == "bad image: truncated"
    st.last_frame_time = 105.5
    level, msg, _ = dg.summarize(st, now=105.5, recent_s=5.0)  # 5.5 s later: gone, the count stays
    assert (level, msg) == (dg.OK, "TRACKING")
    assert kv(st, 105.5)["last_error"] == "" and kv(st, 105.5)["input_errors.image"] == "1"


def test_the_issue_every_step_fails_while_the_last_estimate_says_tracking():
    st = tracking_stats()
    for k in range(5):  # e.g. MemoryError in the localizer on every frame
        st.last_frame_time = 100.0 + 0.3 * k
        st.frame_failed("MemoryError: cannot allocate", now=100.0 + 0.3 * k)
    level, msg, _ = dg.summarize(st, now=101.5)
    assert level == dg.ERROR and msg.startswith("inference failing") and "MemoryError" in msg
    assert "5 localizer steps in a row failed" in msg
    d = kv(st, 101.5)
    assert d["frames_failed"] == "5" and d["frames_failed_in_a_row"] == "5" and "MemoryError" in d["last_failure"]


def test_a_few_failures_warn_then_error_and_a_completed_step_recovers():
    st = tracking_stats()
    st.frame_failed("RuntimeError: boom", now=100.0)
    level, msg, _ = dg.summarize(st, now=100.1, failed_frames_error=3)
    assert level == dg.WARN and "1 localizer step in a row failed" in msg and msg.startswith("TRACKING")
    st.frame_failed("RuntimeError: boom", now=100.2)
    assert dg.summarize(st, now=100.3, failed_frames_error=3)[0] == dg.WARN
    st.frame_failed("RuntimeError: boom", now=100.4)
    assert dg.summarize(st, now=100.5, failed_frames_error=3)[0] == dg.ERROR
    st.frame_ok()  # the next step completed: back to the state-based level at once
    level, msg, _ = dg.summarize(st, now=100.6, failed_frames_error=3)
    assert (level, msg) == (dg.OK, "TRACKING")
    d = kv(st, 100.6)
    assert d["frames_failed"] == "3" and d["frames_failed_in_a_row"] == "0" and d["last_failure"] == ""


def test_old_failures_without_new_attempts_leave_after_recent_s():
    st = tracking_stats()
    for k in range(3):
        st.frame_failed("ValueError: x", now=100.0 + k * 0.1)
    assert dg.summarize(st, now=104.0, recent_s=5.0, stale_after_s=10.0)[0] == dg.ERROR
    level, msg, _ = dg.summarize(st, now=106.0, recent_s=5.0, stale_after_s=10.0)
    assert (level, msg) == (dg.OK, "TRACKING")


def test_failures_keep_the_state_error_and_stale_camera_wins():
    st = tracking_stats()
    st.estimate.state = "LOST"
    st.frame_failed("RuntimeError: boom", now=100.0)
    level, msg, _ = dg.summarize(st, now=100.1)
    assert level == dg.ERROR and msg.startswith("LOST") and "1 localizer step" in msg
    for _ in range(3):
        st.frame_failed("RuntimeError: boom", now=100.0)
    level, msg, _ = dg.summarize(st, now=104.0, stale_after_s=3.0)
    assert level == dg.ERROR and msg.startswith("no camera frame")


def test_worker_error_is_an_error():
    st = tracking_stats()
    st.worker_error = "thread died: SystemError"
    level, msg, _ = dg.summarize(st, now=100.1)
    assert level == dg.ERROR and "inference thread failed" in msg


def test_mavlink_error_warns_until_the_sender_writes_again():
    st = tracking_stats()
    st.mavlink_update(link("tcp:10.0.0.2:5760: cannot connect: [Errno 111] Connection refused", t=100.0, sent=7))
    level, msg, _ = dg.summarize(st, now=100.5)
    assert level == dg.WARN and "MAVLink: tcp:10.0.0.2:5760: cannot connect" in msg
    d = kv(st, 100.5)
    assert "Connection refused" in d["mavlink_error"] and d["mavlink_sent"] == "7"
    st.mavlink_update(link("", sent=9, dropped=2))  # the sender wrote again: its last_error is ''
    level, msg, _ = dg.summarize(st, now=100.6)
    assert (level, msg) == (dg.OK, "TRACKING")
    d = kv(st, 100.6)
    assert "mavlink_error" not in d and d["mavlink_sent"] == "9" and d["mavlink_dropped"] == "2"


def test_mavlink_error_nobody_retried_leaves_after_recent_s():
    st = tracking_stats()
    st.mavlink_update(link("udpout:10.0.0.2:14550: GPS_INPUT not sent: [Errno 101] Network is unreachable",
                           t=100.0))
    st.last_frame_time = 106.0
    assert dg.summarize(st, now=104.0, recent_s=5.0)[0] == dg.WARN
    assert dg.summarize(st, now=106.0, recent_s=5.0)[:2] == (dg.OK, "TRACKING")
    assert "mavlink_error" not in kv(st, 106.0, recent_s=5.0)


def test_mavlink_error_without_a_time_is_stamped_at_the_update():
    st = tracking_stats()
    st.mavlink_update(link("no peer yet"), now=100.0)
    assert st.mavlink_error_time == 100.0 and dg.summarize(st, now=100.1)[0] == dg.WARN


def test_mavlink_error_set_directly_still_shows():
    # the older node copies the sender's last_error straight into the field
    st = tracking_stats()
    st.mavlink_sent, st.mavlink_error = 3, "GPS_INPUT send failed: [Errno 5] Input/output error"
    level, msg, values = dg.summarize(st, now=100.1)
    assert level == dg.WARN and ("mavlink_error", st.mavlink_error) in values
    st.mavlink_error = ""
    assert dg.summarize(st, now=100.2)[:2] == (dg.OK, "TRACKING")


@pytest.mark.parametrize("state,level", [("INITIALIZING", dg.WARN), ("DEGRADED", dg.WARN),
                                         ("RELOCALIZING", dg.WARN), ("OFF_MAP", dg.ERROR)])
def test_state_levels_unchanged(state, level):
    st = tracking_stats()
    st.estimate.state = state
    assert dg.summarize(st, now=100.1)[0] == level


def test_camera_info_without_images_points_at_the_transport():
    """Images over a few MB can vanish in DDS while their CameraInfo arrives: say so."""
    st = dg.NodeStats()
    st.last_camera_info_time = 100.0
    level, msg, _ = dg.summarize(st, now=101.0, stale_after_s=3.0)
    assert level == dg.ERROR and "too large for the DDS transport" in msg
    st.last_frame_time = 100.5  # images do arrive: the usual rules
    level, msg, _ = dg.summarize(st, now=101.0, stale_after_s=3.0)
    assert "DDS" not in msg
