"""msg/ -> geoloc_ros_msgs: builds from pip wheels (scripts/build_msgs.sh), imports,
round-trips through rclpy serialization, and keeps one definition per message."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_build_script_is_idempotent_and_fast():
    env = dict(os.environ, VIRTUAL_ENV=str(Path(os.sys.prefix)))
    t = time.monotonic()
    r = subprocess.run([str(ROOT / "scripts" / "build_msgs.sh")], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    t = time.monotonic()
    r = subprocess.run([str(ROOT / "scripts" / "build_msgs.sh")], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "up to date" in r.stdout, r.stdout + r.stderr
    assert time.monotonic() - t < 5.0


def test_status_message_roundtrip():
    from rclpy.serialization import deserialize_message, serialize_message

    from geoloc_ros_msgs.msg import LocalizerStatus

    m = LocalizerStatus()
    m.header.frame_id = "map"
    m.header.stamp.sec, m.header.stamp.nanosec = 1700000000, 250_000_000
    m.state, m.state_name = LocalizerStatus.STATE_DEGRADED, "DEGRADED"
    m.confidence, m.search_size_m, m.rejections = 0.25, 312.5, 7
    m.latitude, m.longitude, m.altitude = 47.3977419, 8.5455938, 488.25
    m.position_covariance = [4.0, 0.5, 0.0, 0.5, 9.0, 0.0, 0.0, 0.0, 25.0]
    m.t_model_ms, m.message = 123.5, "rejected: low_confidence"
    back = deserialize_message(serialize_message(m), LocalizerStatus)
    for f in ("state", "state_name", "rejections", "latitude", "longitude", "altitude", "message",
              "t_model_ms", "confidence", "search_size_m"):
        assert getattr(back, f) == getattr(m, f), f
    assert np.array_equal(back.position_covariance, m.position_covariance)
    assert back.header.stamp.nanosec == 250_000_000 and back.header.frame_id == "map"


def test_state_constants_match_localizer_states():
    from geoloc_ros_msgs.msg import LocalizerStatus

    from geoloc_ros.localize.states import LocalizerState

    for i, s in enumerate(LocalizerState):
        assert getattr(LocalizerStatus, f"STATE_{s.value}") == i


def test_installed_definition_is_the_repository_file():
    share = Path(os.sys.prefix) / "share" / "geoloc_ros_msgs" / "msg" / "LocalizerStatus.msg"
    assert share.read_text() == (ROOT / "msg" / "LocalizerStatus.msg").read_text()
    srv = Path(os.sys.prefix) / "share" / "geoloc_ros_msgs" / "srv" / "SetInitialFix.srv"
    assert srv.read_text() == (ROOT / "msg" / "srv" / "SetInitialFix.srv").read_text()
    cm = (ROOT / "interfaces" / "geoloc_ros_msgs" / "CMakeLists.txt").read_text()
    assert "rosidl_generate_interfaces" in cm and "../.." in cm


def test_set_initial_fix_service_fields():
    from geoloc_ros_msgs.srv import SetInitialFix
    from sensor_msgs.msg import NavSatFix

    req = SetInitialFix.Request()
    assert isinstance(req.fix, NavSatFix) and req.relocalize is False and req.heading_known is False
    res = SetInitialFix.Response()
    assert res.success is False and res.message == ""
