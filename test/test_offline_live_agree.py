"""Offline replay and the live node must tell the same story about one bag.

Both seed the localizer at the last GPS fix with the odometry-to-world yaw from the GPS
track (localize.alignment), run the same Localizer with the packaged weights, and are
evaluated from the same stamp, so frame by frame they should take the same decisions;
they can differ only where timing does (DDS delivery, the node dropping a frame).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ros_helpers as rh
from geoloc_ros.model.weights import packaged_weights_path
from geoloc_ros.ros.live_replay import NodeProcess, replay_live
from geoloc_ros.tools.replay import replay_offline
from geoloc_ros.tools.simulate import load_scenario, run_scenario

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_bag(tmp_path_factory):
    """The first 30 s of the demo flight (GPS denied after 5 s), with a 15 deg odometry yaw
    error so that seeding without the GPS-track yaw would visibly differ."""
    d = tmp_path_factory.mktemp("agree")
    sc = load_scenario(ROOT / "config" / "scenarios" / "short_demo.yaml")
    sc.duration_s = 30.0
    sc.odometry.initial_yaw_error_deg = 15.0
    side = run_scenario(sc, d / "bag", scenario_dir=d, progress=False)
    return d / "bag", (d / "bag" / side["map_path"]).resolve()


def test_offline_and_live_replay_agree(demo_bag, tmp_path):
    bag, map_path = demo_bag
    weights = str(packaged_weights_path())
    off = replay_offline(bag, map_path=str(map_path), weights=weights, device="cpu", out_dir=tmp_path / "off",
                         plots=False, progress=False)
    domain = rh.unique_domain_id(31)
    node = NodeProcess({"map": map_path, "weights": weights, "device": "cpu"}, domain, tmp_path / "node.log")
    try:
        res = replay_live(bag, domain, rate=1.0, node_alive=node.alive, node_log=node.log_tail, startup_timeout=90)
    finally:
        rc = node.stop()
    assert rc in (0, -2), node.log_tail()
    log = (tmp_path / "node.log").read_text()
    assert "initial fix (gps-denial)" in log and "deg from the GPS track" in log, log[-2000:]
    live = res.summary()

    # the same evaluation window and a working localizer in both
    assert off["frames"] > 60 and abs(live["frames"] - off["frames"]) <= 2
    assert off["fixes"] >= 0.5 * off["frames"], off
    # availability and accuracy agree
    assert abs(live["fixes"] - off["fixes"]) <= max(3, 0.05 * off["fixes"]), (live["fixes"], off["fixes"])
    assert abs(live["time_to_first_fix_s"] - off["time_to_first_fix_s"]) <= 1.0
    assert abs(live["fix_fraction_after_first_fix"] - off["fix_fraction_after_first_fix"]) <= 0.05
    assert abs(live["error_m"]["median"] - off["error_m"]["median"]) <= 0.5
    assert abs(live["error_m"]["p95"] - off["error_m"]["p95"]) <= 1.5
    # frame by frame: the same state on almost every frame both processed
    live_state = {round(r.stamp, 3): r.state for r in res.records}
    import csv

    rows = list(csv.DictReader(open(tmp_path / "off" / "frames.csv")))
    same = [live_state[round(float(r["stamp"]), 3)] == r["state"] for r in rows
            if round(float(r["stamp"]), 3) in live_state and float(r["stamp"]) >= res.eval_start_stamp]
    assert len(same) > 60 and np.mean(same) >= 0.9, np.mean(same)
