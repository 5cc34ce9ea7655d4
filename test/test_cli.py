"""geoloc_ros/cli.py: one spelling per shared flag in every tool, old spellings hidden, one way out."""
import argparse
import importlib

import pytest

from geoloc_ros import cli
from geoloc_ros.errors import GeolocError

TOOLS = ["bench", "demo", "eval_retrieval", "eval_suite", "eval_ul14", "export", "make_world", "model_facts",
         "prepare_map", "replay", "simulate", "train", "train_retrieval"]
#: spellings that only survive as hidden aliases
OLD = ("--no-progress", "--batch", "-o", "--output", "--model", "--index-batch", "--index-device")


@pytest.mark.parametrize("name", TOOLS)
def test_every_tool_uses_the_shared_vocabulary(name, capsys):
    mod = importlib.import_module(f"geoloc_ros.tools.{name}")
    ap = mod.build_parser()
    shown = {s for a in ap._actions if a.help != argparse.SUPPRESS for s in a.option_strings}
    assert not shown & set(OLD), f"{name} still shows {sorted(shown & set(OLD))}"
    for flag in ("--out", "--device", "--quiet", "--batch-size", "--weights", "--config", "--model-config"):
        acts = [a for a in ap._actions if flag in a.option_strings and a.help != argparse.SUPPRESS]
        assert len(acts) <= 1
        if acts:
            assert acts[0].dest == flag.lstrip("-").replace("-", "_"), (name, flag)
    with pytest.raises(SystemExit) as e:
        mod.main(["--help"])
    assert e.value.code == 0 and not set(OLD) & set(capsys.readouterr().out.split())


def test_old_spellings_parse_to_the_new_destination():
    ap = argparse.ArgumentParser()
    cli.add_quiet(ap)
    cli.add_batch_size(ap, default=4)
    cli.add_out(ap, "where", aliases=("-o", "--output"))
    assert vars(ap.parse_args([])) == {"quiet": False, "batch_size": 4, "out": None}
    assert vars(ap.parse_args(["--no-progress", "--batch", "8", "-o", "x"])) == {"quiet": True, "batch_size": 8,
                                                                               "out": "x"}
    assert vars(ap.parse_args(["--output", "y", "--batch-size", "2"]))["out"] == "y"
    assert "--no-progress" not in ap.format_help() and "--batch " not in ap.format_help()


def test_run_main_one_line_for_user_errors_traceback_for_bugs(capsys):
    def user(_):
        raise GeolocError("bad thing: fix it\nsecond line")

    def missing(_):
        raise FileNotFoundError("input not found: x.tif")

    def bug(_):
        raise KeyError("oops")

    assert cli.run_main(user, None) == 2 and capsys.readouterr().err == "error: bad thing: fix it\n"
    assert cli.run_main(missing, None) == 2 and "input not found" in capsys.readouterr().err
    with pytest.raises(KeyError):
        cli.run_main(bug, None)
    assert cli.run_main(lambda _: None, None) == 0 and cli.run_main(lambda _: 3, None) == 3


def test_entry_point_parses_and_runs():
    def build():
        ap = argparse.ArgumentParser()
        cli.add_device(ap)
        return ap

    main = cli.entry_point(build, lambda a: 0 if a.device == "cpu" else 5)
    assert main(["--device", "cpu"]) == 0 and main([]) == 5
