"""geoloc-eval: the scenario suite's sets, appearance-gap presets, suite metrics, and the CI
subset end to end (simulate + replay with the packaged weights + one table)."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from geoloc_ros.data.camera import AppearanceGap, CameraIntrinsics, CameraPose, Photometric, render_view
from geoloc_ros.data.world import small_world_config
from geoloc_ros.geo.orthomap import OrthoMap
from geoloc_ros.localize.evaluate import FrameRecord, dead_reckoning_errors, denial_metrics, pooled_denial_metrics
from geoloc_ros.localize.report import read_csv, write_csv
from geoloc_ros.tools import eval_suite
from geoloc_ros.tools.simulate import changed_world_file, world_files


# ----------------------------------------------------------------------------- the suite's files
@pytest.fixture(scope="module")
def suite():
    return {s: eval_suite.load_flights([s]) for s in eval_suite.SETS}


def test_sets_never_share_a_world_and_deny_gps_after_5_s(suite):
    keys = {s: {f.scenario.world.generate.cache_key() for f in fl} for s, fl in suite.items()}
    assert not keys["calib"] & keys["test"] and not keys["ci"] & (keys["calib"] | keys["test"])
    seeds = {f.scenario.world.generate.seed for fl in suite.values() for f in fl}
    assert not seeds & (set(range(1, 8)) | set(range(101, 107)))  # older scenarios' and training worlds
    for fl in suite.values():
        for f in fl:
            sc = f.scenario
            assert sc.gps.denial_s == 5.0 and not sc.world.map, f.name
            assert sc.duration_s <= 600 and f.scenario.eval.stresses, f.name
    assert len(suite["ci"]) in (1, 2) and all(f.scenario.duration_s <= 60 for f in suite["ci"])


def test_test_set_covers_what_the_team_asked_for(suite):
    t = {f.name.split("/")[1]: f.scenario for f in suite["test"]}
    assert {"mild_60s", "vio_150s", "vio_150s_strong_gap"} <= set(t)
    vio, strong = t["vio_150s"], t["vio_150s_strong_gap"]
    assert vio.duration_s == 150 and vio.odometry.scale_error == pytest.approx(0.04)
    assert vio.odometry.yaw_drift_deg_per_min * vio.duration_s / 60 == pytest.approx(30.0)
    assert strong.appearance_gap.preset == "strong" and vio.appearance_gap.preset == "none"
    assert strong.world == vio.world and strong.trajectory == vio.trajectory and strong.odometry == vio.odometry
    scs = list(t.values())
    assert any(s.duration_s == 600 for s in scs)
    assert {1.0, 10.0} <= {s.camera.rate_hz for s in scs}
    assert any(s.odometry.teleports for s in scs) and any(s.eval.relocalize_at for s in scs)
    assert any(s.trajectory.altitude_wave_m >= 50 for s in scs)
    assert any(s.world.generate.field_uniformity > 0.5 for s in scs)
    assert any(s.world.generate.forest_fraction >= 0.4 and s.world.generate.lake_probability == 1 for s in scs)
    assert any(any(s.odometry.vel_bias_mps) for s in scs)
    assert {"weak", "strong"} <= {s.appearance_gap.preset for s in scs}
    for s in scs:
        assert 0.0 <= abs(s.odometry.scale_error) <= 0.05 and abs(s.odometry.yaw_drift_deg_per_min) <= 20


def test_scenario_key_follows_the_scenario_not_its_eval_section(suite, tmp_path):
    f = suite["ci"][0]
    k = eval_suite.scenario_key(f)
    f.scenario.eval.relocalize_at = (1.0, 2.0)
    assert eval_suite.scenario_key(f) == k
    f.scenario.odometry.scale_error += 0.01
    assert eval_suite.scenario_key(f) != k


def test_bag_cache_reuses_and_never_deletes_a_bag_in_use(suite, tmp_path, monkeypatch):
    import copy

    from geoloc_ros.tools import simulate

    calls = []

    def fake_run(sc, out, **kw):  # the cache logic only: no rendering
        calls.append(out)
        out.mkdir()
        (out / "metadata.yaml").write_text("fake")

    monkeypatch.setattr(simulate, "run_scenario", fake_run)
    f = copy.deepcopy(suite["ci"][0])
    with eval_suite.cached_bag(f, tmp_path) as (bag, sim_s, cached):
        assert not cached and bag.is_dir()
    with eval_suite.cached_bag(f, tmp_path) as (again, _, cached):
        assert cached and again == bag and len(calls) == 1
    g = copy.deepcopy(f)
    g.scenario.odometry.scale_error += 0.01
    with eval_suite.cached_bag(f, tmp_path) as (old, _, _):  # someone is replaying the old version
        with eval_suite.cached_bag(g, tmp_path) as (new, _, cached):
            assert not cached and new != old
        assert old.is_dir()
    h = copy.deepcopy(f)
    h.scenario.odometry.scale_error += 0.02
    with eval_suite.cached_bag(h, tmp_path) as (newest, _, _):
        pass
    assert not old.exists() and not new.exists() and newest.is_dir()  # unused old versions go
    with eval_suite.cached_bag(h, tmp_path, resimulate=True) as (_, _, cached):
        assert not cached and len(calls) == 4


def test_cli_error_is_one_line(capsys):
    assert eval_suite.main(["no_such_set_or_file"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


# ----------------------------------------------------------------------------- appearance gap
def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64)
    b = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def _gap_views(directory, preset: str, poses, intr, cfg, files) -> list[np.ndarray]:
    gap = AppearanceGap(preset=preset)
    cam = files[2]
    if gap.world_changes(3).active:
        cam = changed_world_file(files[2], gap.world_changes(3), directory, world=cfg, epoch=2, verbose=False)
    with OrthoMap.open(cam) as m:
        return [render_view(m, p, intr, gap.photometric(Photometric()), np.random.default_rng(0)) for p in poses]


def test_gap_presets_lower_the_match_with_the_map_and_are_deterministic(tmp_path):
    cfg = small_world_config(seed=3, size_m=400, gsd_m=0.4)
    files = world_files(cfg, tmp_path, (1, 2), verbose=False)
    intr = CameraIntrinsics.from_fov(320, 240, 70)
    rng = np.random.default_rng(1)
    with OrthoMap.open(files[1]) as m1:
        lat0, lon0 = m1.center_latlon
        poses = [CameraPose(lat0 + dy, lon0 + dx, 80.0, float(rng.uniform(-3, 3)))
                 for dy, dx in rng.uniform(-0.0008, 0.0008, (12, 2))]
        maps = [render_view(m1, p, intr) for p in poses]
    corr = {}
    for preset in ("none", "weak", "strong"):
        views = _gap_views(tmp_path, preset, poses, intr, cfg, files)
        corr[preset] = float(np.mean([_ncc(a, b) for a, b in zip(maps, views)]))
    assert corr["none"] > corr["weak"] + 0.02 and corr["weak"] > corr["strong"] + 0.1, corr
    again = tmp_path / "again"
    again.mkdir()
    files2 = world_files(cfg, again, (1, 2), verbose=False)
    for a, b in zip(_gap_views(tmp_path, "strong", poses, intr, cfg, files),
                    _gap_views(again, "strong", poses, intr, cfg, files2)):
        assert np.array_equal(a, b)


def test_gap_overrides_and_composition():
    g = AppearanceGap(preset="weak", haze=0.5, jpeg_quality=0)
    assert g.value("haze") == 0.5 and g.value("blur_px") > 0 and g.active
    assert not AppearanceGap().active and AppearanceGap().photometric(Photometric(haze=0.1)) == Photometric(haze=0.1)
    p = AppearanceGap(preset="strong").photometric(Photometric(jpeg_quality=90, exposure=0.5))
    assert p.jpeg_quality == 45 and p.exposure == pytest.approx(0.5 * 1.22) and p.detail_loss == 2.5
    with pytest.raises(ValueError):
        AppearanceGap(preset="medium")


# ----------------------------------------------------------------------------- suite metrics
def _rec(stamp, state, fix, err=float("nan"), d2=float("nan")):
    return FrameRecord(stamp=stamp, state=state, fix_valid=fix, lat=47.0, lon=8.0, cov_ee=1.0, cov_en=0.0, cov_nn=1.0,
                       confidence=0.5, accepted=fix, rejections=0, search_size_m=100.0, error_m=err, d2=d2)


def test_denial_metrics_count_every_frame_after_denial(tmp_path):
    recs = [_rec(0.0, "TRACKING", True, 0.5, 0.1)]  # before denial: ignored
    errs = [1.0, 4.0, 7.0, 12.0]
    recs += [_rec(10.0 + i, "TRACKING", True, e, d) for i, (e, d) in enumerate(zip(errs, (1.0, 3.0, 7.0, 20.0)))]
    recs += [_rec(14.0 + i, "RELOCALIZING", False) for i in range(4)]
    recs += [_rec(18.0 + i, "DEGRADED", False, 3.0) for i in range(2)]
    m = denial_metrics(recs, 10.0)
    assert m["frames"] == 10 and m["duration_s"] == pytest.approx(10.0)
    assert m["within_5m"] == pytest.approx(0.2) and m["within_10m"] == pytest.approx(0.3)
    assert m["availability"] == pytest.approx(0.4)
    assert m["error_m"]["median"] == pytest.approx(5.5) and m["error_m"]["max"] == 12.0
    assert m["ellipse95_coverage"] == pytest.approx(0.5) and m["nees_mean"] == pytest.approx(31 / 4)
    assert m["relocalizing_s"] == pytest.approx(4.0) and m["relocalizing_fraction"] == pytest.approx(0.4)
    p = pooled_denial_metrics([(recs, 10.0), (recs, 10.0)])
    assert p["frames"] == 20 and p["within_10m"] == pytest.approx(0.3) and p["relocalizing_s"] == pytest.approx(8.0)
    back = read_csv(write_csv(recs, tmp_path / "frames.csv"))
    assert denial_metrics(back, 10.0) == m
    assert [r.state for r in back] == [r.state for r in recs] and back[1].fix_valid and not back[6].fix_valid


def test_dead_reckoning_errors_exact():
    th = math.radians(30.0)
    rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    odom = np.array([[3.0, 4.0], [13.0, 4.0], [13.0, 24.0]])
    truth = (odom - odom[0]) @ rot.T + [100.0, -50.0]
    np.testing.assert_allclose(dead_reckoning_errors(odom, truth, odom[0], (100.0, -50.0), th), 0.0, atol=1e-12)
    # a 10 % scale error the baseline does not know about: error = 10 % of the distance flown
    np.testing.assert_allclose(dead_reckoning_errors(odom * 1.1, truth, odom[0] * 1.1, (100.0, -50.0), th),
                               [0.0, 1.0, np.hypot(10, 20) * 0.1], atol=1e-12)


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_ci_subset_simulates_replays_and_prints_one_table(tmp_path, capsys):
    out = tmp_path / "out"
    assert eval_suite.main(["ci", "--out", str(out), "--work", str(tmp_path / "work"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    table = (out / "table.md").read_text()
    head = "| " + " | ".join(eval_suite.COLUMNS) + " |"
    assert head in table and head in printed
    s = json.loads((out / "summary.json").read_text())
    assert len(s["flights"]) == len(eval_suite.load_flights(["ci"]))
    for f in s["flights"]:
        assert f["name"].startswith("ci/") and f["name"] in table
        assert f["frames"] == pytest.approx(3 * 35, abs=3)  # 3 Hz, 40 s, GPS denied at 5 s
        assert 0.0 <= f["within_5m"] <= f["within_10m"] <= f["availability"] <= 1.0
        # The frames without a fix are the forced relocalization's own. The localizer before the
        # association / yaw-rate / covariance-matching rework reached 86 % within 10 m here with a
        # 5.0 s recovery; the stage-1 weights 92 % / 2.7 s; the packaged (96/288) weights 88 % /
        # 4.3 s: the loss lands on ground where their peaks are weak (confidence 0.05-0.34 from
        # 20 to 23 s). Relocalizing from peaks of 0.30 was faster there but picked a look-alike
        # 120 m away, so the bound that matters is that no published fix is wrong. The 160/480
        # weights see that look-alike at 0.32-0.43 and nothing near the truth: they relocalized
        # onto it (75 %, 118 m fixes for 7 s) until a candidate beyond the lost track's jump gate
        # had to reach strong_confidence (now 89 % / 4.0 s; localize.relocalization).
        assert f["within_10m"] >= 0.85 and f["availability"] >= 0.85 and f["error_m"]["median"] < 3.0
        assert f["error_m"]["max"] < 10.0
        assert 0.85 <= f["ellipse95_coverage"] <= 1.0 and f["nees_mean"] > 0
        assert all(ev["recovered"] and ev["recovery_s"] < 5.0 for ev in f["events"]), f["events"]
        assert 0.0 <= f["odometry_only"]["within_10m"] <= 1.0
        assert 0.0 <= f["relocalizing_s"] <= 40.0
        assert len(f["events"]) == len(eval_suite.load_flights(["ci"])[0].scenario.eval.relocalize_at)
        assert not f["bag_cached"] and f["simulate_s"] > 0 and f["replay_s"] > 0
    # a second run reuses the cached bag
    assert eval_suite.main(["ci", "--out", str(tmp_path / "out2"), "--work", str(tmp_path / "work"), "--quiet",
                            "--simulate-only"]) == 0
    assert "cached" in capsys.readouterr().out
