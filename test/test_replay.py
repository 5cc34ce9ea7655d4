"""geoloc-replay offline on tiny simulated bags (MCAP and sqlite3): report files and figures."""
from __future__ import annotations

import csv
import json

import pytest

from geoloc_ros.data.flight import CameraConfig, GpsConfig, OdometryConfig, ScenarioConfig, TrajectoryConfig, \
    WorldSection
from geoloc_ros.localize import LocalizerConfig
from geoloc_ros.localize.evaluate import FrameRecord, summarize
from geoloc_ros.tools import replay
from geoloc_ros.tools.simulate import run_scenario
from test_localizer import OracleNet, make_texture_map


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    d = tmp_path_factory.mktemp("replay")
    mp = make_texture_map(d / "texture.tif")
    out = {}
    for storage in ("mcap", "sqlite3"):
        sc = ScenarioConfig(
            name="tiny", seed=1, duration_s=22, world=WorldSection(map=str(mp)),
            trajectory=TrajectoryConfig(kind="waypoints", waypoints_m=((-150, -100), (100, -100), (100, 100)),
                                        loop=False, speed_mps=12, altitude_m=80),
            camera=CameraConfig(width=160, height=120, hfov_deg=70, rate_hz=2, random_photometric=0.2),
            odometry=OdometryConfig(rate_hz=10, scale_error=0.02, initial_yaw_error_deg=4.0),
            gps=GpsConfig(denial_s=4))
        run_scenario(sc, d / f"bag_{storage}", storage=storage, progress=False)
        out[storage] = d / f"bag_{storage}"
    return out


def test_replay_with_oracle_tracks_and_writes_report(bags, tmp_path):
    s = replay.replay_offline(bags["mcap"], net=OracleNet(), cfg=LocalizerConfig(uav_size=64, sat_size=192),
                              out_dir=tmp_path / "out", progress=False)
    assert s["frames"] >= 30
    assert s["fix_fraction_after_first_fix"] > 0.95
    assert s["error_m"]["median"] < 3.0 and s["error_m"]["p95"] < 10.0
    assert s["MA"]["MA@10"] > 0.95
    assert 0.8 <= s["ellipse95_coverage"] <= 1.0
    # seeded by the node's GPS rule: the first fix, then at denial with the GPS-track heading
    assert s["context"]["seeds"].startswith("gps: heading") and "gps-denial: heading from the GPS track" in \
        s["context"]["seeds"]
    for name in ("frames.csv", "summary.json", "report.md", "trajectory.png", "error.png", "ellipse.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    rows = list(csv.DictReader((tmp_path / "out" / "frames.csv").open()))
    assert len(rows) >= s["frames"] and {"state", "error_m", "d2", "t_model_ms"} <= set(rows[0])
    assert "| fixes | mean | median | p95 |" in (tmp_path / "out" / "report.md").read_text()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["fixes"] == s["fixes"]


def test_cli_without_model_on_sqlite3(bags, tmp_path, capsys):
    rc = replay.main([str(bags["sqlite3"]), "--weights", "none", "--max-frames", "12", "--out", str(tmp_path / "o"),
                      "--no-progress", "--no-plots", "--set", "lost_sigma_m=3.0", "--initial-fix", "46.95,7.449"])
    assert rc == 0
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["frames"] == 12 and s["context"]["initial fix"] == "--initial-fix"
    assert s["state_fractions"]["LOST"] > 0  # no model: it decays, never pretends
    assert "report.md" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert replay.main([str(tmp_path / "missing_bag")]) == 2
    assert capsys.readouterr().err.startswith("error: bag not found")
    assert replay.main([str(tmp_path), "--set", "no_such_field=1"]) == 2
    assert "unknown key" in capsys.readouterr().err


def test_summary_loss_and_recovery_times():
    def rec(t, fix, state="TRACKING"):
        return FrameRecord(stamp=t, state=state, fix_valid=fix, lat=0, lon=0, cov_ee=1, cov_en=0, cov_nn=1,
                           confidence=1, accepted=fix, rejections=0, search_size_m=1, error_m=1.0, d2=1.0,
                           timings_ms={"total": 10.0})
    recs = [rec(0, False, "INITIALIZING"), rec(1, True), rec(2, False, "LOST"), rec(3, False, "RELOCALIZING"),
            rec(4, True), rec(5, True)]
    s = summarize(recs)
    assert s["time_to_first_fix_s"] == 1.0
    assert s["fix_fraction_after_first_fix"] == 0.6
    assert s["loss_episodes"] == 1 and s["recovery_s"]["max"] == 3.0
    assert s["relocalizations"]["episodes"] == 1
    assert s["nees_mean"] == 1.0 and s["cov_scale_for_95"] == pytest.approx(1.0 / 5.991, rel=1e-3)


def test_event_recovery_definition():
    from geoloc_ros.localize.evaluate import EVENT_STABLE_FRAMES, event_recovery

    def recs(pattern, err=1.0):
        return [FrameRecord(stamp=0.1 * i, state="TRACKING" if f else "DEGRADED", fix_valid=bool(f), lat=0, lon=0,
                            cov_ee=1, cov_en=0, cov_nn=1, confidence=1, accepted=bool(f), rejections=0,
                            search_size_m=1, error_m=err if f else float("nan"), d2=1.0, timings_ms={})
                for i, f in enumerate(pattern)]
    n = EVENT_STABLE_FRAMES
    through = event_recovery(recs([1] * 40), [("t", 1.0)])[0]
    assert through["recovered"] and through["recovery_s"] == 0.0 and through["max_error_after_m"] == 1.0
    # event at frame 10; a 3-frame flicker of fixes does not count; the stable run starts at frame 20
    pattern = [1] * 10 + [0] * 5 + [1] * 3 + [0] * 2 + [1] * (n + 5)
    ev = event_recovery(recs(pattern, err=4.0), [("teleport", 1.0)])[0]
    assert ev["recovered"] and ev["recovery_s"] == pytest.approx(1.0) and ev["max_error_after_m"] == 4.0
    never = event_recovery(recs([1] * 10 + [0] * 30), [("loss", 1.0)])[0]
    assert not never["recovered"] and never["recovery_s"] != never["recovery_s"]  # nan


def test_forced_relocalization_is_reported(bags, tmp_path):
    s = replay.replay_offline(bags["mcap"], net=OracleNet(), cfg=LocalizerConfig(uav_size=64, sat_size=192),
                              out_dir=tmp_path / "out", progress=False, plots=False, relocalize_at=[9.0])
    (ev,) = s["events"]
    assert ev["event"].startswith("forced relocalization")
    # the oracle finds the UAV again: a few confirmation frames at 2 Hz, and no wrong fix meanwhile
    assert ev["recovered"] and 0.0 < ev["recovery_s"] < 5.0, ev
    assert ev["max_error_after_m"] < 10.0
    assert s["relocalizations"]["episodes"] >= 1
    assert "forced relocalization (t = 9 s)" in (tmp_path / "out" / "report.md").read_text()
