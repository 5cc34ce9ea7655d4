"""geoloc-bench: report structure on a tiny model (figures are printed, never asserted as targets)."""
from __future__ import annotations

import json
import math
import types

import pytest
import yaml

from geoloc_ros.model.net import AMCFConfig
from geoloc_ros.tools import bench

TINY = dict(backbone_kwargs={"embed_dim": 16, "depths": [1, 1, 1, 1]}, uav_size=32, sat_size=96,
            proj_dim=16, head_dims=[8])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    cfg = tmp / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    out = tmp / "bench.json"
    rc = bench.main(["--model", str(cfg), "--quick", "--only", "model,crop,reloc", "--no-compile",
                     "--repeats", "2", "--warmup", "1", "--crop-px", "512", "--crops", "3", "--json", str(out)])
    return rc, json.loads(out.read_text()) if out.is_file() else None


def test_quick_report_fields(report, capsys):
    rc, rep = report
    assert rc == 0 and rep is not None
    hw = rep["hardware"]
    assert hw["cpu"] and hw["cores"] >= 1 and hw["torch_threads"] == 2 and "gpu" in hw
    rows = {(r["section"], r["case"], r["backend"]): r for r in rep["rows"]}
    for key in [("model", "full pair", "eager"), ("model", "full pair", "onnxruntime"),
                ("model", "tracking per frame (sat cached)", "eager"), ("model", "satellite encode per window", "eager"),
                ("model", "full pair, batched", "eager")]:
        r = rows[key]
        assert r["median_ms"] > 0 and r["p95_ms"] >= r["median_ms"] and r["repeats"] >= 2, key
    assert rows[("model", "full pair", "eager")]["target_ms"] == 180.0
    assert isinstance(rows[("model", "full pair", "eager")]["pass"], bool)
    assert "skipped" in rows[("model", "full pair", "torch.compile")]["note"]
    crops = [r for r in rep["rows"] if r["section"] == "crop"]
    assert len(crops) == 3 and all(r["median_ms"] > 0 for r in crops)
    reloc = [r for r in rep["rows"] if r["section"] == "reloc"]
    assert len(reloc) == 1 and reloc[0]["windows"] >= 1
    best = min(r["median_ms"] for r in rep["rows"] if r["section"] == "model" and r["case"].startswith("full pair")
               and "median_ms" in r)
    cold_crop = next(r["median_ms"] for r in crops if "random" in r["case"])
    assert reloc[0]["median_ms"] == pytest.approx(reloc[0]["windows"] * (best + cold_crop))
    assert {t["target"] for t in rep["targets"]} == set(bench.TARGETS)
    assert next(t for t in rep["targets"] if t["target"] == "gpu_pair")["status"] in ("n/a", "pass", "FAIL")
    assert rep["model_facts"]["params"] > 0 and rep["model_facts"]["gflops"] > 0


def test_reloc_geometry_covers_the_area():
    cfg = AMCFConfig(uav_size=128, sat_size=384)
    g1 = bench.reloc_geometry(cfg, 1.0)
    g4 = bench.reloc_geometry(cfg, 4.0)
    assert g4["windows"] > g1["windows"] > 1
    useful = g1["useful_frac"] * g1["window_m"]
    side = math.isqrt(g1["windows"])
    assert side * side == g1["windows"]  # a square grid
    assert (side - 1) * useful * (1 - g1["overlap"]) + useful >= 1000.0  # covers 1 km
    assert g1["window_m"] == pytest.approx(3 * g1["footprint_m"])  # 384 / 128 at gsd ratio 1


def test_compile_timeout_is_reported_not_fatal():
    args = types.SimpleNamespace(repeats=1, warmup=0, model_config=None, weights=None, compile_timeout=0.3)
    row = bench._compile_row(args, 2)
    assert "median_ms" not in row and "compile + timing took > 0.3 s" in row["note"]


def test_bad_section_is_an_error(capsys):
    assert bench.main(["--only", "model,gpu"]) == 2
    assert capsys.readouterr().err.startswith("error: --only")
