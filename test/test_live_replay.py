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

TINY = rh.tiny_scenario_yaml("tiny", seed=2, duration_s=6)

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
    # the node's own rule (gps_denied_after 1 s of fix stamps), seen in ~/status.gps_denied of
    # the first frame processed after it: the frame at 1.5 s, or (live arrival order: the GPS
    # message that triggers the rule may land after that image) the one after, at 2.0 s
    period = float(np.median(np.diff(res.image_stamps)))
    assert side["start_stamp"] + 1.0 <= res.node_denial_stamp <= side["start_stamp"] + 1.0 + 2 * period + 0.1
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
    assert "missing.tif" in node.log_tail()  # readable after stop() closed the log (the no-frame error needs it)


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


def _sim_time_run(bag, map_path, rate, tmp_path, salt, sim=True):
    domain = rh.unique_domain_id(salt)
    # the GPS timeout is the rule that runs on the node's clock (gps_denied_after counts fix stamps)
    node = NodeProcess({"map": map_path, "weights": "", "gps_timeout_s": 1.0, "use_sim_time": sim,
                        **DEAD_RECKONING}, domain, tmp_path / f"node_x{rate:g}.log")
    try:
        res = replay_live(bag, domain, rate=rate, clock=sim, node_alive=node.alive, node_log=node.log_tail,
                          startup_timeout=60)
    finally:
        rc = node.stop()
    assert rc in (0, -2), node.log_tail()
    return res, node.log_path.read_text()


def test_sim_time_replay_at_1x_and_2x_agree(tiny_bag, tmp_path):
    """use_sim_time + /clock: the node's time rules run on the bag's clock, so a replay at
    twice the speed makes the same decisions on the same frames.

    Tolerances, from what DDS and the machine leave open: (1) which frame the first GPS seed
    lands on (the GPS callback and the inference thread race; the first messages after
    matching can be lost while discovery completes on the node's side), so frames in the
    first 0.5 s of the flight are not compared; (2) a loaded machine can make the node's
    latest-frame slot drop a frame (more likely at 2x), so only frames both runs processed
    are compared, and they must be at least 80 % of the later frames; on those, the same
    frames must have fixes; (3) which GPS message seeds first (the first one or a neighbour
    0.2 s later): until denial the positions may differ by one GPS step plus the fixes'
    noise, bounded here by 10 m; (4) at denial both runs seed from the same last trusted fix,
    chosen by the GPS timeout on the node's clock, and the node runs no model (a fix = seed +
    odometry): from then on the same frame has the same position to 5 cm."""
    bag, map_path, side = tiny_bag
    r1, log1 = _sim_time_run(bag, map_path, 1.0, tmp_path, 13)
    r2, log2 = _sim_time_run(bag, map_path, 2.0, tmp_path, 14)
    assert "(sim time)" in log1 and "(sim time)" in log2
    assert r2.wall_s < r1.wall_s - 1.0, (r1.wall_s, r2.wall_s)  # the 6 s flight took ~3 s less at 2x
    t0 = side["start_stamp"]
    for r in (r1, r2):
        assert r.images_published == side["frames_written"]
        # GPS stops after the message at t0 + 1.8 s; 1 s of the node's clock later (+ its 0.1 s
        # tick, + one or two 0.25 s camera frames until a status shows it) the node declares
        # denial. On wall time the 2x replay would declare it 2 s of bag time later (>= t0 + 3.8).
        assert t0 + 2.8 <= r.node_denial_stamp <= t0 + 3.3, (r.node_denial_stamp - t0, r.frames_dropped)
    for log in (log1, log2):
        assert log.count("initial fix (gps-denial)") == 1, log
    proc1 = {round(rec.stamp, 4) for rec in r1.records if rec.stamp >= t0 + 0.5}
    proc2 = {round(rec.stamp, 4) for rec in r2.records if rec.stamp >= t0 + 0.5}
    late = {round(s, 4) for s in r1.image_stamps if s >= t0 + 0.5}
    common = proc1 & proc2
    assert len(common) >= 0.8 * len(late), (len(common), len(late), r1.frames_dropped, r2.frames_dropped)
    f1 = {round(f.stamp, 4): f for f in r1.fixes}
    f2 = {round(f.stamp, 4): f for f in r2.fixes}
    assert {s for s in common if s in f1} == {s for s in common if s in f2}
    both = sorted(s for s in common if s in f1)
    assert len(both) >= 0.7 * len(late)
    from geoloc_ros.geo.frames import LocalENU

    enu = LocalENU(f1[both[0]].lat, f1[both[0]].lon, 0.0)

    def dist(s):
        a = enu.to_enu(f1[s].lat, f1[s].lon, 0.0)
        b = enu.to_enu(f2[s].lat, f2[s].lon, 0.0)
        return float(np.hypot(a[0] - b[0], a[1] - b[1]))
    denied = max(r1.node_denial_stamp, r2.node_denial_stamp) + 0.3  # the frame after the denial seed
    before = [dist(s) for s in both if s < denied]
    after = [dist(s) for s in both if s >= denied]
    assert len(after) >= 6 and max(after) < 0.05, after
    assert max(before, default=0.0) < 10.0, before
