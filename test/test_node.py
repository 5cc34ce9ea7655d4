"""localize_node: pipeline rules (no DDS) and the node as a subprocess over real Fast DDS.

The integration test runs the real Localizer without a model (weights ''), configured so
that dead reckoning from the GPS seed stays TRACKING: that exercises every output path
(NavSatFix with covariance, pose, odometry, status, diagnostics, MAVLink GPS_INPUT)
with numbers the test can predict from the odometry it publishes.
"""
from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from geoloc_ros.ros import diagnostics, params
from geoloc_ros.ros.pipeline import LatestSlot

import ros_helpers as rh


# ----------------------------------------------------------------------------- pipeline rules


def test_latest_slot_newest_wins_and_never_blocks():
    slot = LatestSlot()
    assert slot.take(timeout=0.01) is None
    assert slot.put(1) is False and slot.put(2) is True and slot.put(3) is True
    assert slot.dropped == 2 and slot.take(0) == 3 and slot.take(0.01) is None
    # a slow consumer always gets the newest item: latency does not accumulate
    got, stop = [], threading.Event()

    def consumer():
        while not stop.is_set():
            item = slot.take(0.05)
            if item is not None:
                got.append((item, time.monotonic()))
                time.sleep(0.02)  # "inference"

    th = threading.Thread(target=consumer)
    th.start()
    t_put = {}
    for i in range(200):
        t_put[i] = time.monotonic()
        slot.put(i)
        time.sleep(0.001)
    time.sleep(0.1)
    stop.set()
    th.join()
    assert got[-1][0] == 199
    waits = [t - t_put[i] for i, t in got]
    assert max(waits) < 0.5 and len(got) < 150  # items skipped, none waited long


def test_diagnostics_levels():
    st = diagnostics.NodeStats()
    level, msg, _ = diagnostics.summarize(st, now=0.0)
    assert level == diagnostics.WARN and "waiting for camera" in msg
    st.last_frame_time, st.seeded = 10.0, True
    st.estimate = SimpleNamespace(state="TRACKING", fix_valid=True, confidence=0.9, rejections=0,
                                  consecutive_rejections=0, search_size_m=100.0, message="")
    assert diagnostics.summarize(st, now=10.5)[0] == diagnostics.OK
    st.error("image", "bad image: truncated", now=10.6)
    level, msg, kv = diagnostics.summarize(st, now=11.0)
    assert level == diagnostics.WARN and "truncated" in msg and ("input_errors.image", "1") in kv
    assert diagnostics.summarize(st, now=20.0)[0] == diagnostics.ERROR  # stale camera
    st.last_frame_time = 19.9
    st.estimate.state = "OFF_MAP"
    assert diagnostics.summarize(st, now=20.0)[0] == diagnostics.ERROR


def test_parameter_table_is_complete():
    names = [s.name for s in params.all_param_specs()]
    assert len(names) == len(set(names))
    table = params.markdown_table()
    assert all(f"`{n}`" in table for n in names)
    for s in params.NODE_PARAMS:
        assert s.description and (s.lo is None) == (s.hi is None)


# ----------------------------------------------------------------------------- integration


def _free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    from pymavlink import mavutil  # noqa: F401  (MAVLINK20 set by geoloc_ros.outputs.mavlink)

    import geoloc_ros.outputs.mavlink  # noqa: F401

    domain = rh.unique_domain_id(1)
    map_path = rh.write_test_map(tmp_path_factory.mktemp("map") / "map.tif")
    port = _free_udp_port()
    rx = mavutil.mavlink_connection(f"udpin:127.0.0.1:{port}")
    node = rh.NodeProcess({
        "map": map_path, "weights": "", "gps_timeout_s": 1.0, "hardware_id": "geoloc_test",
        "localizer.lost_sigma_m": 1e6,
        "localizer.coast_sigma_m": 1e6, "localizer.coast_max_s": 1e9,
        "mavlink.enabled": True, "mavlink.url": f"udpout:127.0.0.1:{port}", "mavlink.rate_hz": 20.0,
        "diagnostics_period_s": 0.5,
    }, domain)
    client = rh.RosClient(domain)
    yield SimpleNamespace(node=node, client=client, rx=rx, domain=domain)
    rc = node.stop()
    client.close()
    rx.close()
    assert rc in (0, -2), node.output()[-3000:]


def test_node_publishes_fix_pose_status_diagnostics_and_gps_input(graph):
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import NavSatFix, NavSatStatus
    from geoloc_ros_msgs.msg import LocalizerStatus
    from std_srvs.srv import Trigger

    from geoloc_ros.runtime.messages import stamp_to_float

    c, node = graph.client, graph.node
    subs = [c.subscribe(NavSatFix, "/localize_node/fix"), c.subscribe(LocalizerStatus, "/localize_node/status"),
            c.subscribe(PoseWithCovarianceStamped, "/localize_node/pose"),
            c.subscribe(Odometry, "/localize_node/odometry"), c.subscribe(DiagnosticArray, "/diagnostics")]
    feed = rh.Feeder(c, speed=5.0)
    c.wait_matched(feed.all_publishers() + subs, timeout=30.0, proc=node)
    fixes, poses = c.received["/localize_node/fix"], c.received["/localize_node/pose"]
    statuses = c.received["/localize_node/status"]
    # GPS for ~1 s, then denial: the node keeps tracking from the seed with odometry
    feed.t0 = time.time()  # odometry x = 0 when the first fix is sent
    feed.run(1.0, fix=True)
    ok = feed.run(8.0, until=lambda: len(fixes) >= 15 and len(poses) >= 15)
    assert ok, f"{len(fixes)} fixes, {len(statuses)} status\n" + node.output()[-3000:]

    f = fixes[-1]
    assert f.status.status == NavSatStatus.STATUS_FIX
    assert f.position_covariance_type == NavSatFix.COVARIANCE_TYPE_KNOWN
    cov = np.array(f.position_covariance).reshape(3, 3)
    assert np.all(np.diag(cov) > 0) and np.allclose(cov, cov.T)
    assert abs(f.latitude - rh.MAP_LAT) < 0.01 and abs(f.longitude - rh.MAP_LON) < 0.01
    # dead reckoning from the seed (one of the fixes of the first second, x in [0, 5] m):
    # east offset = odometry x at the pose stamp - x at the seed
    p = poses[-1]
    seed_x = p.pose.pose.position.x - feed.speed * (stamp_to_float(p.header.stamp) - feed.t0)
    xs = [q.pose.pose.position.x - feed.speed * (stamp_to_float(q.header.stamp) - feed.t0) for q in poses[-10:]]
    assert np.ptp(xs) < 0.05, xs  # every pose = odometry + one constant (the seed)
    assert -5.5 < seed_x < 0.5 and abs(p.pose.pose.position.y) < 0.05
    assert p.header.frame_id == "map"
    s = statuses[-1]
    assert s.state_name == "TRACKING" and s.state == LocalizerStatus.STATE_TRACKING and s.fix_valid
    assert s.t_total_ms >= 0 and s.t_node_ms >= s.t_queue_ms >= 0
    od = c.received["/localize_node/odometry"][-1]
    assert od.child_frame_id == "base_link"

    # diagnostics: hardware id, counters, GPS denied after the fixes stopped
    assert c.spin_until(lambda: any(rh.diag_values(a).get("gps", "").startswith("denied")
                                    for a in c.received["/diagnostics"]), 10.0), node.output()[-2000:]
    d = rh.diag_values(c.received["/diagnostics"][-1])
    assert d["hardware_id"] == "geoloc_test" and int(d["frames_processed"]) > 10 and d["state"] == "TRACKING"
    assert float(d["latency_node_median_ms"]) >= 0 and int(d["fixes_published"]) >= 15

    # MAVLink GPS_INPUT from the node: 3D fix with the published position
    m = None
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5.0:
        got = graph.rx.recv_match(type="GPS_INPUT", blocking=True, timeout=0.2)
        if got is not None and got.fix_type == 3:
            m = got
            break
        c.spin_for(0.01)
    assert m is not None, "no GPS_INPUT with a 3D fix"
    assert abs(m.lat / 1e7 - rh.MAP_LAT) < 0.01 and m.horiz_accuracy > 0 and m.satellites_visible == 10

    # relocalize: without a model the localizer cannot confirm a position: no more fixes
    res = c.call(Trigger, "/localize_node/relocalize")
    assert res.success, res.message
    feed.run(5.0, until=lambda: statuses[-1].state_name == "RELOCALIZING")
    assert statuses[-1].state_name == "RELOCALIZING" and not statuses[-1].fix_valid
    n = len(fixes)
    feed.run(1.0)
    assert len(fixes) == n, "a fix was published while RELOCALIZING"
    assert graph.node.alive()


