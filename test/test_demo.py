"""geoloc-demo: argument errors, and a cut-short end-to-end run on a tiny scenario."""
from __future__ import annotations

import json

import pytest

from geoloc_ros.tools import demo
from test_live_replay import DEAD_RECKONING, TINY


@pytest.mark.parametrize("argv, text", [
    (["--rate", "0"], "--rate must be > 0"),
    (["--frames", "1"], "--frames must be >= 2"),
    (["--device", "tpu"], "--device must be"),
    (["--scenario", "nope.yaml"], "scenario not found"),
    (["--weights", "/nonexistent/w"], "weights not found"),
    (["--node-param", "bogus", "--weights", "none"], "NAME=VALUE"),
    (["--node-param", "localizer.lost_sigma_m=x", "--weights", "none"], "must be of type double"),
])
def test_demo_argument_errors(argv, text, tmp_path, capsys):
    assert demo.main(argv + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and text in err and "Traceback" not in err


def test_demo_end_to_end_cut_short(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY)
    params = [a for k, v in DEAD_RECKONING.items() for a in ("--node-param", f"{k}={v}")]
    out = tmp_path / "out"
    rc = demo.main(["--scenario", str(tmp_path / "tiny.yaml"), "--weights", "none", "--frames", "16",
                    "--rate", "2", "--out", str(out), "--device", "cpu", *params])
    text = capsys.readouterr().out
    assert rc == 0, text
    for stage in ("[1/5] world", "[2/5] simulate flight", "[3/5] start localize_node", "[4/5] live replay",
                  "[5/5] report"):
        assert stage in text
    assert "horizontal error" in text and "RESULT: the estimate followed the ground truth" in text
    assert (out / "demo.png").stat().st_size > 10_000 and not (out / "work").exists()
    s = json.loads((out / "summary.json").read_text())
    assert s["live"]["images_published"] == 16 and 0 < s["error_m"]["median"] < 8.0


def test_demo_reports_a_node_without_fixes(tmp_path, capsys):
    """No model and default settings: the node never tracks; the demo says so and fails."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    rc = demo.main(["--scenario", str(tmp_path / "tiny.yaml"), "--weights", "none", "--frames", "8",
                    "--rate", "4", "--out", str(tmp_path / "out"), "--device", "cpu", "--keep"])
    out = capsys.readouterr().out
    assert rc == 1 and "RESULT: FAILED - the node published no fix" in out
    assert (tmp_path / "out" / "work" / "bag").is_dir()
