"""localize_node's optional outputs over real Fast DDS: TF (REP-105), PX4 AuxGlobalPosition,
and the core's Python logging on /rosout.

The PyPI ROS wheels have neither tf2_ros, tf2_msgs nor px4_msgs: the module builds the two
messages it needs (test/data/interfaces: TFMessage, PX4 v1.18 AuxGlobalPosition) into a
temporary prefix the way scripts/build_msgs.sh builds geoloc_ros_msgs (test/interface_build.py),
and both the node and this process import them from there. One node process: no model,
dead reckoning from the GPS seed (as in test_node.py), so every published fix is the seed
moved by the odometry the test publishes, and the test can check each output against it.
"""
from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest

import ros_helpers as rh
from interface_build import build_interfaces

PX4_ID = 7
CORE_WARNING = "no place recognizer was given"  # localize.localizer's log.warning (relocalization: retrieval)


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    d = tmp_path_factory.mktemp("ifaces")
    px4p = build_interfaces("px4_msgs", ["AuxGlobalPosition.msg"], d / "px4")
    tf2p = build_interfaces("tf2_msgs", ["TFMessage.msg"], d / "tf2", depends=("geometry_msgs",))
    mp = pytest.MonkeyPatch()
    px4p.activate(mp)
    tf2p.activate(mp)
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from px4_msgs.msg import AuxGlobalPosition
    from rcl_interfaces.msg import Log
    from sensor_msgs.msg import NavSatFix
    from tf2_msgs.msg import TFMessage

    domain = rh.unique_domain_id(5)
    map_path = rh.write_test_map(tmp_path_factory.mktemp("map") / "map.tif")
    c = rh.RosClient(domain, "geoloc_outputs_client")
    # /rosout is transient local (depth 1000): a late subscriber still gets the start-up lines
    rosout_qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                            history=HistoryPolicy.KEEP_LAST, depth=1000)
    subs = [c.subscribe(NavSatFix, "/localize_node/fix"),
            c.subscribe(PoseWithCovarianceStamped, "/localize_node/pose"),
            c.subscribe(TFMessage, "/tf", QoSProfile(reliability=ReliabilityPolicy.RELIABLE,
                                                      history=HistoryPolicy.KEEP_LAST, depth=100)),
            c.subscribe(AuxGlobalPosition, "/fmu/in/aux_global_position", 50)]
    c.subscribe(Log, "/rosout", rosout_qos)
    node = rh.NodeProcess({
        "map": map_path, "weights": "", "gps_timeout_s": 0.0,
        "localizer.lost_sigma_m": 1e6, "localizer.coast_sigma_m": 1e6, "localizer.coast_max_s": 1e9,
        "localizer.relocalization": "retrieval",  # no retrieval model: the core warns once and sweeps
        "tf.enabled": True, "px4.enabled": True, "px4.id": PX4_ID, "px4.geoid_height_m": 10.0,
    }, domain)
    feed = rh.Feeder(c, speed=5.0)
    c.wait_matched(feed.all_publishers() + subs, timeout=60.0, proc=node)
    feed.t0 = time.time()
    feed.run(1.0, fix=True)  # GPS seeds the localizer; no GPS afterwards (gps_timeout_s 0: no denial seed)
    r = c.received
    ok = feed.run(10.0, until=lambda: len(r["/localize_node/pose"]) >= 10 and len(r["/tf"]) >= 10
                  and len(r["/fmu/in/aux_global_position"]) >= 10)
    assert ok, {k: len(v) for k, v in r.items()} | {"log": node.output()[-3000:]}
    yield SimpleNamespace(node=node, c=c, feed=feed, r=r, mp=mp, AuxGlobalPosition=AuxGlobalPosition)
    rc = node.stop()
    c.close()
    mp.undo()
    assert rc in (0, -2), node.output()[-3000:]


def _stamp(st) -> float:
    return st.sec + st.nanosec * 1e-9


def _yaw(q) -> float:
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def test_tf_map_to_odom_maps_the_odometry_onto_the_fix(g):
    poses = {round(_stamp(p.header.stamp), 6): p for p in g.r["/localize_node/pose"]}
    tfs = [t for m in g.r["/tf"] for t in m.transforms]
    assert tfs and all(t.header.frame_id == "map" and t.child_frame_id == "odom" for t in tfs)
    checked = 0
    for t in tfs:
        st = _stamp(t.header.stamp)
        p = poses.get(round(st, 6))
        if p is None:
            continue
        # the odometry the test published at this stamp: x = speed (t - t0), y = 0, z = alt, yaw 0
        xo, yo, zo = g.feed.speed * (st - g.feed.t0), 0.0, g.feed.alt
        yc = _yaw(t.transform.rotation)
        tr = t.transform.translation
        mapped = (tr.x + math.cos(yc) * xo - math.sin(yc) * yo, tr.y + math.sin(yc) * xo + math.cos(yc) * yo,
                  tr.z + zo)
        pp = p.pose.pose.position
        assert mapped == pytest.approx((pp.x, pp.y, pp.z), abs=1e-3)
        assert yc == pytest.approx(_yaw(p.pose.pose.orientation), abs=1e-6)  # odometry yaw is 0
        checked += 1
    assert checked >= 5


def test_px4_aux_global_position_fields(g):
    fixes = {round(_stamp(f.header.stamp) * 1e6): f for f in g.r["/localize_node/fix"]}
    agp = list(g.r["/fmu/in/aux_global_position"])
    AGP = g.AuxGlobalPosition
    checked = 0
    for m in agp:
        assert m.id == PX4_ID and m.source == AGP.SOURCE_VISION == 2
        assert m.lat_lon_reset_counter == 0  # one seed, no jump since
        f = fixes.get(m.timestamp_sample)
        if f is None:
            continue
        assert (m.lat, m.lon) == (f.latitude, f.longitude)
        assert m.alt == pytest.approx(f.altitude - 10.0, abs=1e-3)  # AMSL = ellipsoidal - px4.geoid_height_m
        cov = np.array(f.position_covariance).reshape(3, 3)
        assert m.eph == pytest.approx(math.sqrt(np.linalg.eigvalsh(cov[:2, :2])[-1]), rel=1e-5)  # 1-sigma, m
        assert m.epv == pytest.approx(math.sqrt(cov[2, 2]), rel=1e-5)
        # microseconds: timestamp = the node's clock at publishing (wall here), after the sample
        assert 0 <= m.timestamp - m.timestamp_sample < 5e6
        assert abs(m.timestamp * 1e-6 - time.time()) < 60
        checked += 1
    assert checked >= 5


def test_px4_reset_counter_follows_an_operator_jump(g):
    from sensor_msgs.msg import NavSatFix

    agp = g.r["/fmu/in/aux_global_position"]
    n0 = len(agp)
    new_lat = rh.MAP_LAT + 0.0005  # ~56 m north of the seed
    pub = g.c.publisher(NavSatFix, "/localize_node/set_initial_fix")
    g.c.wait_matched([pub], proc=g.node)
    pub.publish(rh.fix_msg(time.time(), new_lat, rh.MAP_LON, 500.0, sigma_m=1.0))
    ok = g.feed.run(8.0, until=lambda: any(abs(m.lat - new_lat) < 2e-5 for m in agp[n0:]))
    assert ok, g.node.output()[-2000:]
    after = [m for m in agp[n0:] if abs(m.lat - new_lat) < 2e-5]
    before = [m for m in agp[n0:] if abs(m.lat - rh.MAP_LAT) < 2e-5]
    assert all(m.lat_lon_reset_counter == 1 for m in after)
    assert all(m.lat_lon_reset_counter == 0 for m in before)


def test_core_warning_reaches_rosout_once(g):
    logs = g.r["/rosout"]
    g.c.spin_until(lambda: any(CORE_WARNING in m.msg for m in logs), 10.0)
    hits = [m for m in logs if CORE_WARNING in m.msg]
    assert len(hits) == 1, [m.msg for m in logs]
    m = hits[0]
    assert m.level == 30 and m.name == "localize_node"  # WARN, from the node's logger
    assert "geoloc_ros.localize.localizer" in m.msg
    # and once on the console too: no second copy through Python's last-resort handler
    assert g.node.output().count(CORE_WARNING) == 1
