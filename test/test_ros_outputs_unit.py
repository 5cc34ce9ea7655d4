"""The rules behind the node's optional outputs, without DDS (test_node_outputs.py runs them
over DDS): the map -> odom correction, AuxGlobalPosition fields, the reset counter, the
logging bridge, and the size rule for functions of geoloc_ros/ros."""
from __future__ import annotations

import ast
import logging
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from geoloc_ros.ros import logbridge, px4, tf_out
from geoloc_ros.runtime.resets import ResetCounter, discontinuity_key

ROS_DIR = Path(__file__).resolve().parents[1] / "geoloc_ros" / "ros"


def _apply(t, yaw, p):
    c, s = math.cos(yaw), math.sin(yaw)
    return (t[0] + c * p[0] - s * p[1], t[1] + s * p[0] + c * p[1], t[2] + p[2])


@pytest.mark.parametrize("yaw_map,yaw_odom", [(0.0, 0.0), (0.3, -1.2), (3.0, -3.0), (-2.5, 2.9)])
def test_map_to_odom_maps_the_odometry_pose_onto_the_fix(yaw_map, yaw_odom):
    p_map, p_odom = (120.0, -40.0, 75.0), (33.0, 12.5, 80.0)
    t, yc = tf_out.map_to_odom(p_map, yaw_map, p_odom, yaw_odom)
    assert _apply(t, yc, p_odom) == pytest.approx(p_map, abs=1e-9)
    d = yc - (yaw_map - yaw_odom)
    assert math.isclose(math.cos(d), 1.0, abs_tol=1e-12) and -math.pi <= yc <= math.pi


class _Enu:
    def to_enu(self, lat, lon, alt):
        return (lon * 1000.0, lat * 1000.0, alt)


def _est(**kw):
    base = dict(stamp=12.5, lat=0.01, lon=0.02, alt=80.0, yaw=0.5, cov_enu=np.diag([4.0, 1.0, 9.0]))
    base.update(kw)
    return SimpleNamespace(**base)


def _yaw(q):
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def test_tf_messages_for_both_modes():
    out_map_base = object.__new__(tf_out.TfOutput)  # make() needs no node (nor tf2_msgs)
    out_map_base.mode, out_map_base.map_frame, out_map_base.odom_frame, out_map_base.base_frame = \
        "map_base", "map", "odom", "base_link"
    m = out_map_base.make(_est(), _Enu(), None)
    assert (m.header.frame_id, m.child_frame_id) == ("map", "base_link")
    tr = m.transform.translation
    assert (tr.x, tr.y, tr.z) == pytest.approx((20.0, 10.0, 80.0))
    assert _yaw(m.transform.rotation) == pytest.approx(0.5)
    assert (m.header.stamp.sec, m.header.stamp.nanosec) == (12, 500000000)

    out = object.__new__(tf_out.TfOutput)
    out.mode, out.map_frame, out.odom_frame, out.base_frame = "map_odom", "world", "vio", "fcu"
    assert out.make(_est(), _Enu(), None) is None  # no odometry at the stamp: nothing to send
    m = out.make(_est(), _Enu(), (5.0, 1.0, 78.0, 0.2))
    assert (m.header.frame_id, m.child_frame_id) == ("world", "vio")
    tr = m.transform.translation
    yc = _yaw(m.transform.rotation)
    assert yc == pytest.approx(0.3)
    assert _apply((tr.x, tr.y, tr.z), yc, (5.0, 1.0, 78.0)) == pytest.approx((20.0, 10.0, 80.0), abs=1e-9)


def test_aux_global_position_fields():
    cov = np.array([[4.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 9.0]])
    f = px4.aux_global_position_fields(_est(cov_enu=cov, stamp=1700000000.123456), agp_id=300, reset_counter=257,
                                       now_s=1700000000.2, geoid_height_m=48.0)
    assert f["timestamp"] == 1700000000200000 and f["timestamp_sample"] == 1700000000123456  # microseconds
    assert f["id"] == 300 & 0xFF and f["lat_lon_reset_counter"] == 1 and f["source"] == px4.SOURCE_VISION == 2
    assert f["eph"] == pytest.approx(math.sqrt(np.linalg.eigvalsh(cov[:2, :2])[-1]))  # 1-sigma, major axis
    assert f["epv"] == pytest.approx(3.0)
    assert f["alt"] == pytest.approx(32.0) and (f["lat"], f["lon"]) == (0.01, 0.02)


def test_reset_counter_counts_discontinuities():
    loc = SimpleNamespace(counts={}, tracker=SimpleNamespace(counts={}))
    session = SimpleNamespace(localizer=loc, restarts=0, seeds_applied=1)
    rc = ResetCounter()
    assert rc.update(discontinuity_key(session)) == 0  # the baseline, whatever happened before
    assert rc.update(discontinuity_key(session)) == 0
    session.seeds_applied = 2
    assert rc.update(discontinuity_key(session)) == 1
    loc.counts["relocalized"] = 1
    assert rc.update(discontinuity_key(session)) == 2
    loc.tracker.counts["track_switches"] = 1
    assert rc.update(discontinuity_key(session)) == 3
    session.restarts, session.localizer = 1, SimpleNamespace()  # a fresh localizer without counters
    assert rc.update(discontinuity_key(session)) == 4
    rc.value = 255
    session.seeds_applied = 3
    assert rc.update(discontinuity_key(session)) == 0  # uint8


class _FakeRosLogger:
    def __init__(self, level=20):
        self.level, self.lines = level, []

    def get_effective_level(self):
        return self.level

    def debug(self, m):
        self.lines.append(("debug", m))

    def info(self, m):
        self.lines.append(("info", m))

    def warning(self, m):
        self.lines.append(("warning", m))

    def error(self, m):
        self.lines.append(("error", m))

    def fatal(self, m):
        self.lines.append(("fatal", m))


def test_log_bridge_forwards_with_the_same_severity_once(capsys):
    ros = _FakeRosLogger(level=20)
    bridge = logbridge.LogBridge(ros)
    core = logging.getLogger("geoloc_ros.localize.something")
    try:
        core.debug("d")  # below the node's level (info)
        core.info("i %d", 1)
        core.warning("w")
        core.error("e")
        core.critical("c")
        assert ros.lines == [("info", "[geoloc_ros.localize.something] i 1"),
                             ("warning", "[geoloc_ros.localize.something] w"),
                             ("error", "[geoloc_ros.localize.something] e"),
                             ("fatal", "[geoloc_ros.localize.something] c")]
        assert capsys.readouterr().err == ""  # no second copy through the root logger / lastResort
    finally:
        bridge.detach()
    core.warning("after detach")
    assert len(ros.lines) == 4 and logging.getLogger("geoloc_ros").propagate


def test_no_function_in_the_ros_layer_is_over_100_lines():
    long = []
    for path in sorted(ROS_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 100:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long
