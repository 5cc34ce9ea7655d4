"""One-shot benchmark (tools/oneshot.py): the quick run with the packaged weights, measured
through the localizer's per-frame path; sane shares, the prior bins, and a real check: the
packaged model is far better than a random init of the same network on the same frames."""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from geoloc_ros.model.net import AMCFNet
from geoloc_ros.tools import bench, oneshot


def _parts() -> tuple:
    folder = oneshot.default_photo_dir()
    return oneshot.PARTS if folder is not None and folder.is_dir() else oneshot.PARTS[:2]


@pytest.fixture(scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; 2 threads contend badly
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("oneshot")


@pytest.fixture(scope="module")
def packaged(one_thread, work):
    net = oneshot.load_net("default")
    return net, oneshot.run_oneshot(net, oneshot.OneShotConfig.quick(parts=_parts()), work)


def test_quick_report_is_sane(packaged):
    _, rep = packaged
    cfg = oneshot.OneShotConfig.quick()
    assert list(rep["parts"]) == list(_parts())
    assert len(rep["rows"]) == cfg.frames_per_part * len(_parts())
    if len(_parts()) == 4:
        assert list(rep["gaps"]) == ["all weak", "all strong"] and rep["gaps"]["all weak"]["n"] == 16
    for name, s in [*rep["parts"].items(), *rep["gaps"].items(), ("pooled", rep["pooled"])]:
        for key in ("MA@5", "MA@10", "RDS", "confident_share"):
            assert 0.0 <= s[key] <= 1.0, (name, key)
        assert s["MA@5"] <= s["MA@10"]
        assert s["model_ms"] > 0 and s["frame_ms"] >= s["model_ms"]
        assert list(s["by_prior"]) == ["0-10 m", "10-20 m", "20-30 m"]
        assert sum(b["n"] for b in s["by_prior"].values()) == s["n"]
    for r in rep["rows"]:
        assert 0.0 <= r["prior_m"] <= cfg.max_prior_m
        assert r["valid_fraction"] == 1.0  # every window lies on its map
        assert math.isclose(r["error_m"], math.hypot(*r["error_en"]))
    # the localizer's own confidence threshold decides what counts as confident
    assert rep["min_confidence"] == pytest.approx(0.3)
    md = oneshot.to_markdown(rep)
    assert all(f"| {p} |" in md for p in _parts()) and "| pooled |" in md
    json.dumps(rep)  # the report is JSON as it is


def test_packaged_weights_beat_a_random_init(packaged, work):
    """A random-init correlation network is a fair template matcher on procedural frames (it
    often lands within 10 m there), but it is never confident and fails on the real photos."""
    net, rep = packaged
    torch.manual_seed(0)
    cfg = copy.deepcopy(net.cfg)
    cfg.pretrained_path = None
    parts = tuple(p for p in _parts() if p != "procedural/strong")
    rand = oneshot.run_oneshot(AMCFNet(cfg).eval(), oneshot.OneShotConfig.quick(parts=parts), work)
    good, bad = rep["parts"]["procedural/weak"], rand["parts"]["procedural/weak"]
    # same frames and priors: only the weights differ
    assert [r["prior_m"] for r in rand["rows"][:8]] == [r["prior_m"] for r in rep["rows"][:8]]
    assert good["median_error_m"] < bad["median_error_m"]
    assert good["confident_share"] >= 0.5 and bad["confident_share"] <= good["confident_share"] - 0.3, (good, bad)
    if "photo/weak" in parts:
        ma10 = [np.mean([r["error_m"] <= 10.0 for r in x["rows"] if r["part"].startswith("photo")]) for x in (rep, rand)]
        assert ma10[0] >= 0.6 and ma10[1] <= ma10[0] - 0.25, ma10


def test_priors_fill_the_disc_and_photos_are_held_out():
    rng = np.random.default_rng(0)
    r = np.array([math.hypot(*oneshot._prior(rng, 30.0)) for _ in range(3000)])
    assert r.max() <= 30.0 and abs(np.mean(r <= 15.0) - 0.25) < 0.03  # area-uniform
    folder = oneshot.default_photo_dir()
    if folder is None or not folder.is_dir():
        pytest.skip("shared/data/aerial_cc0 is not beside this checkout")
    held = oneshot.held_out_photos(folder, 0.1, 0)
    assert len(held) == 10 and held == oneshot.held_out_photos(folder, 0.1, 0)
    # a training run holds out these photos whatever its own seed (the photo split has its own)
    from geoloc_ros.train.amcf import build_sources
    from geoloc_ros.train.config import TrainConfig

    for run_seed in (0, 1, 7):
        cfg = TrainConfig(sources=[{"kind": "photo", "path": str(folder), "val_fraction": 0.1}], seed=run_seed)
        train, _, val, _ = build_sources(cfg, 64, 192, None)
        assert sorted(val[0].paths) == sorted(held)
        assert not set(train[0].paths) & set(held)


def test_geoloc_bench_runs_the_oneshot_section(one_thread, work, tmp_path):
    out = tmp_path / "bench.json"
    rc = bench.main(["--only", "oneshot", "--quick", "--threads", "1", "--oneshot-frames", "2",
                     "--oneshot-work", str(work), "--json", str(out)])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["oneshot"]["weights"] == "default" and rep["oneshot"]["pooled"]["n"] == 2 * len(_parts())
    assert [r["section"] for r in rep["rows"]] == ["oneshot"] and rep["rows"][0]["median_ms"] > 0
