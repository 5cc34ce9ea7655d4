"""geoloc-export: ONNX round trip against PyTorch with ONNX Runtime, sidecar, error paths."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from geoloc_ros.model.net import AMCFConfig, AMCFNet
from geoloc_ros.model.weights import load_weights, save_weights
from geoloc_ros.tools import export as ex

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TINY = dict(backbone_kwargs={"embed_dim": 16, "depths": [1, 1, 1, 1]}, uav_size=32, sat_size=96,
            proj_dim=16, head_dims=(8,))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny trained-looking model saved as weights, exported through the CLI (fixed batch 1)."""
    tmp = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = AMCFNet(AMCFConfig(**TINY)).eval()
    with torch.no_grad():  # a non-trivial head, so a wrong graph would show in the heatmap
        model.head.last.weight.normal_(0, 0.5)
    w = save_weights(model, model.cfg, tmp / "tiny")
    out = tmp / "tiny.onnx"
    rc = ex.main([str(w), "-o", str(out)])
    return rc, w, out


def test_cli_round_trip_matches_pytorch(exported, capsys):
    rc, w, out = exported
    assert rc == 0 and out.is_file()
    side = json.loads((out.parent / "tiny.onnx.json").read_text())
    assert side["opset"] >= 17 and side["batch"] == 1
    assert side["inputs"]["uav"]["shape"] == [1, 3, 32, 32]
    assert side["inputs"]["sat"]["shape"] == [1, 3, 96, 96]
    assert side["outputs"]["heatmap"]["shape"] == [1, 1, 96, 96]
    assert side["inputs"]["sat"]["range"] == [0.0, 1.0] and "no mean/std" in side["inputs"]["sat"]["normalisation"]
    assert side["check"]["ok"] and {c["kind"] for c in side["check"]["cases"]} == {"random", "real-looking"}
    assert side["config"]["sat_size"] == 96

    # independent of the tool's own check: our session, a fresh pair, the reloaded weights
    model = load_weights(w)
    u, s, _ = ex.realistic_pairs(1, 32, 96, seed=42)
    with torch.inference_mode():
        ref = model(u, s).numpy()
    got = ex.ort_session(out).run(["heatmap"], {"uav": u.numpy(), "sat": s.numpy()})[0]
    assert got.shape == (1, 1, 96, 96)
    assert np.abs(got - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())
    assert got.argmax() == ref.argmax()


def test_check_detects_a_different_model(exported):
    _, w, out = exported
    model = load_weights(w)
    with torch.no_grad():  # perturb the satellite projection: the heatmap changes shape
        model.fusion.proj_sat[0].weight.add_(torch.randn_like(model.fusion.proj_sat[0].weight))
    check = ex.check_onnx(model, out, (1,))
    assert not check["ok"]
    assert max(c["max_abs_diff"] for c in check["cases"]) > max(c["tolerance"] for c in check["cases"])


def test_fixed_batch_graph_rejects_another_batch(exported):
    _, w, out = exported
    check = ex.check_onnx(load_weights(w), out, (2,), n_real=0)
    assert not check["ok"] and "error" in check["cases"][0]


def test_compare_heatmaps_peaks_and_ties():
    ref = np.zeros((1, 1, 8, 8))
    ref[0, 0, 2, 3] = ref[0, 0, 5, 5] = 1.0  # two equal maxima
    got = ref.copy()
    got[0, 0, 2, 3] = 0.9999999  # argmax moves to the tie: same peak
    assert ex.compare_heatmaps(ref, got, 1e-3, 0, 0.99)["peak_equal"]
    moved = np.zeros_like(ref)
    moved[0, 0, 7, 0] = 1.0
    res = ex.compare_heatmaps(ref, moved, 1e-3, 0, 0.99)
    assert not res["peak_equal"] and not res["ok"] and res["correlation"] < 0.5


@pytest.mark.parametrize("argv, msg", [
    (["/nonexistent/w"], "not found"),
    ([], "either --weights or --random-init"),
    (["--weights", "/nonexistent/w"], "not found"),
    (["--random-init", "--out", "x.pt"], "must end in .onnx"),
    (["--random-init", "--model-config", "/nonexistent.yaml"], "config file not found"),
    (["--random-init", "--opset", "16"], "--opset must be >= 17"),
    (["--random-init", "-o", "x.pt"], "must end in .onnx"),
    (["--random-init", "--config", "/nonexistent.yaml"], "config file not found"),
])
def test_cli_errors(argv, msg, capsys):
    assert ex.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and msg in err and "Traceback" not in err


def test_missing_onnxruntime_says_how_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    assert ex.main(["--random-init", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "pip install .[export]" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_dynamic_batch_needs_fft(tmp_path):
    model = AMCFNet(AMCFConfig(**TINY)).eval()
    with pytest.raises(ex.ExportError, match="FFT"):
        ex.export_onnx(model, tmp_path / "m.onnx", dynamic_batch=True, xcorr="conv")
