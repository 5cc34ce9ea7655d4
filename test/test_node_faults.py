"""localize_node under bad inputs: it keeps running, publishes no bad fix, and says what is
wrong in /diagnostics. One node process for the whole module; tests run in file order."""
from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest

import ros_helpers as rh


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import NavSatFix

    from geoloc_ros_msgs.msg import LocalizerStatus

    domain = rh.unique_domain_id(2)
    map_path = rh.write_test_map(tmp_path_factory.mktemp("map") / "map.tif")
    node = rh.NodeProcess({
        "map": map_path, "weights": "", "diagnostics_period_s": 0.2, "gps_timeout_s": 0.0,
        "localizer.lost_sigma_m": 1e6,
        "localizer.coast_sigma_m": 1e6, "localizer.coast_max_s": 1e9,
    }, domain)
    c = rh.RosClient(domain, "geoloc_fault_client")
    subs = [c.subscribe(NavSatFix, "/localize_node/fix"), c.subscribe(DiagnosticArray, "/diagnostics"),
            c.subscribe(LocalizerStatus, "/localize_node/status")]
    feed = rh.Feeder(c, speed=2.0)
    c.wait_matched(feed.all_publishers() + subs, timeout=30.0, proc=node)
    yield SimpleNamespace(node=node, c=c, feed=feed, fixes=c.received["/localize_node/fix"],
                          diags=c.received["/diagnostics"], status=c.received["/localize_node/status"])
    rc = node.stop()
    c.close()
    assert rc in (0, -2), node.output()[-3000:]


def latest_diag(g) -> dict:
    return rh.diag_values(g.diags[-1]) if g.diags else {}


def wait_diag(g, pred, timeout=8.0, **feed_kw) -> dict:
    ok = g.feed.run(timeout, until=lambda: bool(g.diags) and pred(latest_diag(g)), **feed_kw)
    assert ok, f"diagnostics never matched; last: {latest_diag(g)}\n" + g.node.output()[-2000:]
    assert g.node.alive()
    return latest_diag(g)


def assert_fixes_sane(g):
    for f in g.fixes:
        assert f.status.status == 0 and math.isfinite(f.latitude) and math.isfinite(f.longitude)
        assert np.all(np.isfinite(f.position_covariance)) and f.position_covariance[0] > 0


def test_camera_info_missing(g):
    d = wait_diag(g, lambda d: int(d.get("input_errors.camera_info", 0)) >= 3, info=False, fix=True)
    assert "CameraInfo" in d["last_error"] and int(d["level"]) >= 1
    assert not g.fixes  # nothing processed without intrinsics


def test_gps_seed_then_tracking(g):
    g.feed.run(8.0, until=lambda: len(g.fixes) >= 3, fix=True)
    assert len(g.fixes) >= 3, g.node.output()[-2000:]
    assert_fixes_sane(g)


def _bad_images(stamp):
    from sensor_msgs.msg import Image

    from geoloc_ros.ros.convert import float_to_stamp

    def mk(h, w, enc, step, n):
        m = Image()
        m.header.stamp = float_to_stamp(stamp)
        m.height, m.width, m.encoding, m.step = h, w, enc, step
        m.data = bytes(n)
        return m
    return [mk(120, 160, "rgb8", 100, 100 * 120),  # step shorter than a row
            mk(120, 160, "rgb9", 480, 480 * 120),  # unknown encoding
            mk(120, 160, "rgb8", 480, 480 * 60),  # truncated
            mk(0, 0, "rgb8", 0, 0)]  # zero size


def test_malformed_images(g):
    before = int(latest_diag(g).get("input_errors.image", 0))
    n_fix = len(g.fixes)
    for bad in _bad_images(time.time()):
        g.feed.step(image_msg_=bad)
        g.c.spin_for(0.15)  # one bad frame per slot take
    d = wait_diag(g, lambda d: int(d.get("input_errors.image", 0)) >= before + 4, timeout=5.0, image=False)
    assert "bad image" in d["last_error"]
    # and good frames still produce sane fixes
    g.feed.run(5.0, until=lambda: len(g.fixes) >= n_fix + 3)
    assert len(g.fixes) >= n_fix + 3
    assert_fixes_sane(g)


def test_nan_and_inf_odometry(g):
    before = int(latest_diag(g).get("input_errors.odometry", 0))
    for v in (float("nan"), float("inf")):
        g.feed.pub_odom.publish(rh.odom_msg(time.time(), v, 0.0, 60.0))
        m = rh.odom_msg(time.time(), 0.0, 0.0, 60.0)
        m.pose.pose.orientation.z = v
        g.feed.pub_odom.publish(m)
    d = wait_diag(g, lambda d: int(d.get("input_errors.odometry", 0)) >= before + 4)
    assert "not finite" in d["last_error"]
    assert_fixes_sane(g)
    assert g.status[-1].state_name == "TRACKING"


def test_time_going_backwards_restarts(g):
    back = time.time() - 3600.0  # a bag loop: stamps jump back an hour
    g.feed.retime(back)
    t = back
    for _ in range(5):
        t += 0.1
        g.feed.step(stamp=t)
        g.c.spin_for(0.1)
    d = wait_diag(g, lambda d: int(d.get("time_jumps", 0)) >= 1, timeout=5.0, image=False, odom=False)
    assert d["seeded"] == "False" or "time" in d["last_error"]
    # the restarted localizer waits for a new fix, then tracks again on the new timeline
    n = len(g.fixes)
    g.feed.retime(time.time())  # back to the wall clock (another jump, forward this time)
    ok = g.feed.run(8.0, until=lambda: len(g.fixes) >= n + 3, fix=True)
    assert ok, g.node.output()[-2000:]
    assert_fixes_sane(g)


def test_flying_off_the_map(g):
    """An operator fix 230 m east of the centre of the 512 m map, then 20 m/s east: OFF_MAP."""
    from sensor_msgs.msg import NavSatFix

    from geoloc_ros.geo.frames import LocalENU

    pub = g.c.publisher(NavSatFix, "/localize_node/set_initial_fix")
    g.c.wait_matched([pub], proc=g.node)
    lat, lon, _ = LocalENU(rh.MAP_LAT, rh.MAP_LON, 0.0).to_geodetic(230.0, 0.0, 0.0)
    g.feed.retime(time.time(), speed=20.0)
    pub.publish(rh.fix_msg(time.time(), lat, lon, 500.0, sigma_m=2.0))
    d = wait_diag(g, lambda d: d.get("state") == "OFF_MAP", timeout=10.0)
    assert int(d["level"]) == 2 and "OFF_MAP" in d["message"]
    n = len(g.fixes)
    g.feed.run(1.0)
    assert len(g.fixes) == n, "a fix was published while OFF_MAP"
    assert g.status[-1].state_name == "OFF_MAP" and not g.status[-1].fix_valid
    assert_fixes_sane(g)
    assert g.node.alive()


def test_set_initial_fix_service(g):
    """The operator's service: a fix off the map is refused with a reason; a good one with a
    heading seeds the localizer, whose world yaw is then that heading (odometry yaw is 0)."""
    from geoloc_ros_msgs.srv import SetInitialFix

    from geoloc_ros.geo.frames import LocalENU

    def request(east_m: float, heading=None, relocalize=False):
        lat, lon, _ = LocalENU(rh.MAP_LAT, rh.MAP_LON, 0.0).to_geodetic(east_m, 0.0, 0.0)
        req = SetInitialFix.Request()
        req.fix = rh.fix_msg(0.0, lat, lon, 500.0, sigma_m=2.0)
        req.relocalize = relocalize
        req.heading_known = heading is not None
        req.heading_enu_rad = float(heading or 0.0)
        return req

    bad = g.c.call(SetInitialFix, "/localize_node/set_initial_fix", request=request(5000.0))
    assert not bad.success and "outside the map" in bad.message
    nan = g.c.call(SetInitialFix, "/localize_node/set_initial_fix", request=request(0.0, heading=float("nan")))
    assert not nan.success and "not finite" in nan.message
    g.feed.retime(time.time(), speed=5.0)
    ok = g.c.call(SetInitialFix, "/localize_node/set_initial_fix", request=request(-100.0, heading=0.5))
    assert ok.success, ok.message
    assert g.feed.run(6.0, until=lambda: bool(g.status) and g.status[-1].state_name == "TRACKING")
    s = g.status[-1]
    assert abs(math.atan2(math.sin(s.yaw - 0.5), math.cos(s.yaw - 0.5))) < 0.05, s.yaw
    assert_fixes_sane(g)


@pytest.mark.parametrize("params,needle", [
    ({"map": "/nonexistent/map.tif"}, "file not found"),
    ({"map": str(rh.ROOT / "config" / "localize.yaml"), "gps_timeout_s": 3}, "must be a double"),
    ({"map": str(rh.ROOT / "config" / "localize.yaml"), "mavlink.rate_hz": 500.0}, "out of range"),
    ({"map": str(rh.ROOT / "config" / "localize.yaml"), "altitude_source": "baro"}, "must be one of"),
    ({"map": str(rh.ROOT / "config" / "localize.yaml"), "image_topic": "bad topic!"}, "not a valid topic name"),
    ({"map": str(rh.ROOT / "config" / "localize.yaml"), "localizer.uav_size": -64}, "out of range"),
    ({"map": str(rh.ROOT / "config" / "localize.yaml"), "localizer.window_overlap": 1.0}, "out of range"),
    ({"map": str(rh.ROOT / "config" / "localize.yaml"), "localizer.coast_max_s": -1.0}, "out of range"),
])
def test_bad_parameters_stop_with_one_line(params, needle):
    r = rh.run_node_once(params, rh.unique_domain_id(3))
    assert r.returncode == 2, r.stdout + r.stderr
    err = r.stderr.strip()
    assert "Traceback" not in err and needle in err and err.startswith("error: "), err
    assert len(err.splitlines()) == 1, err
