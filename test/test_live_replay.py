"""Live replay: a tiny simulated bag published into a real localize_node over DDS.

The node runs without a model and with the dead-reckoning settings of test_node.py (the
fix stays TRACKING on odometry from the GPS seed), so the fixes it publishes must follow
the bag's ground truth to within the odometry drift: that checks stamps, pacing, topic
wiring, the GPS-denial bookkeeping, latency matching and the FrameRecord conversion.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

import ros_helpers as rh
from geoloc_ros.ros.live_replay import (LiveReplayError, NodeProcess, format_param, header_stamp_from_cdr,
                                        replay_live, write_live_report)
from geoloc_ros.tools import replay
from geoloc_ros.tools.simulate import load_scenario, run_scenario

TINY = """
name: tiny
seed: 2
duration_s: 6
world:
  generate: {seed: 2, size_m: 300, gsd_m: 0.5, town_density_per_km2: 8, town_radius_m: [125, 140],
             farm_cell_m: 110, lake_probability: 0, river_probability: 0, main_roads: 1}
trajectory: {kind: figure8, radius_m: 50, speed_mps: 10, altitude_m: 80}
camera: {width: 160, height: 120, hfov_deg: 70, rate_hz: 4}
odometry: {rate_hz: 20, initial_yaw_error_deg: 1}
gps: {rate_hz: 5, denial_s: 2}
"""

DEAD_RECKONING = {"localizer.lost_sigma_m": 1e6, "localizer.coast_sigma_m": 1e6, "localizer.coast_max_s": 1e9}


@pytest.fixture(scope="module")
def tiny_bag(tmp_path_factory):
    d = tmp_path_factory.mktemp("live")
    (d / "tiny.yaml").write_text(TINY)
    side = run_scenario(load_scenario(d / "tiny.yaml"), d / "bag", scenario_dir=d, progress=False)
    return d / "bag", (d / "bag" / side["map_path"]).resolve(), side


def test_header_stamp_and_param_text(tiny_bag):
    from geoloc_ros.bags import TOPIC_IMAGE, TOPIC_ODOM, read_raw

    bag, _, _ = tiny_bag
    for topic, _mt, t_ns, raw in read_raw(bag, [TOPIC_IMAGE, TOPIC_ODOM]):
        assert header_stamp_from_cdr(raw) == pytest.approx(t_ns * 1e-9, abs=1e-6)
    assert [format_param(v) for v in (True, 2, 2.0, 1e6, "", "a.tif")] == ["true", "2", "2.0", "1000000.0", "''",
                                                                            "a.tif"]


def test_live_replay_into_real_node(tiny_bag, tmp_path):
    bag, map_path, side = tiny_bag
    domain = rh.unique_domain_id(11)
    node = NodeProcess({"map": map_path, "weights": "", "gps_denied_after": 1.0, **DEAD_RECKONING}, domain,
                       tmp_path / "node.log")
    try:
        res = replay_live(bag, domain, rate=2.0, node_alive=node.alive, node_log=node.log_tail, startup_timeout=60)
    finally:
        rc = node.stop()
    assert rc in (0, -2), node.log_tail()
    n_img = side["frames_written"]
    assert res.images_published == n_img and res.gps_published > 0
    assert res.gps_last_stamp == pytest.approx(side["start_stamp"] + 1.8, abs=0.01)  # 5 Hz GPS, denial at 2 s
    # the node's own rule (gps_denied_after 1 s of fix stamps), seen in ~/status.gps_denied
    assert side["start_stamp"] + 1.0 <= res.node_denial_stamp <= side["start_stamp"] + 1.6
    assert len(res.records) >= 0.8 * n_img and res.unmatched_fixes == 0
    assert int(res.node_counters["frames_received"]) >= 0.9 * n_img
    s = res.summary()
    lv = s["live"]
    # dead reckoning from the GPS seed along the simulated odometry: metres, not tens of metres
    assert s["fixes"] >= 10 and s["error_m"]["median"] < 8.0 and s["error_m"]["max"] < 20.0
    assert lv["fix_fraction_of_images_after_denial"] > 0.7
    lat = res.latency_ms
    assert lat.size == len(res.fixes) and np.all(lat > 0) and np.median(lat) < 2000
    assert all(math.isfinite(r.truth_lat) for r in res.records)
    # stamps of fixes are image stamps, in order
    st = [f.stamp for f in res.fixes]
    assert st == sorted(st) and set(np.round(st, 4)) <= set(np.round(res.image_stamps, 4))
    s2 = write_live_report(res, tmp_path / "rep", title="t", map_path=map_path, plots=False)
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "## Live replay (DDS)" in text and "| fixes | mean | median |" in text
    assert s2["fixes"] == s["fixes"] and (tmp_path / "rep" / "frames.csv").stat().st_size > 0


def test_live_replay_reports_a_node_that_dies(tiny_bag, tmp_path):
    bag, _, _ = tiny_bag
    domain = rh.unique_domain_id(12)
    node = NodeProcess({"map": str(tmp_path / "missing.tif")}, domain, tmp_path / "node.log")
    t0 = time.monotonic()
    with pytest.raises(LiveReplayError, match="exited during start-up(.|\n)*missing.tif"):
        replay_live(bag, domain, node_alive=node.alive, node_log=node.log_tail, startup_timeout=60)
    assert time.monotonic() - t0 < 30
    node.stop()


def test_replay_live_cli_errors(tmp_path, capsys, tiny_bag):
    assert replay.main([str(tmp_path / "no_bag"), "--live"]) == 2
    assert capsys.readouterr().err.startswith("error: bag not found")
    bag, _, _ = tiny_bag
    assert replay.main([str(bag), "--live", "--initial-fix", "47,8"]) == 2
    assert "offline" in capsys.readouterr().err
    assert replay.main([str(bag), "--live", "--node-param", "no_such=1"]) == 2
    assert "unknown node parameter" in capsys.readouterr().err
    assert replay.main([str(bag), "--live", "--rate", "0"]) == 2
    assert "--rate" in capsys.readouterr().err
