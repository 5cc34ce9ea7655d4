"""localize_node and geoloc-replay refuse bad parameters at start, whatever the source.

Why these tests exist: rcl merges every --params-file and every -p into one set of overrides
and, when two sources type a name differently, silently keeps one of them; a launch file
always passes a params file (and launch_ros writes its override dicts into more params
files), so `-p min_altitude_m:=abc` or a misspelt `localizer.*` name used to start the node
on the YAML value. The node now checks every source itself before rclpy.init. The node runs
as a real subprocess; the failing ones stop at argument checking (~1 s each) and run
concurrently; one full node start checks that good overrides still reach the node.
"""
from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import ros_helpers as rh
from geoloc_ros.ros import params
from geoloc_ros.ros.live_replay import ros_env

NODE = [sys.executable, "-m", "geoloc_ros.ros.node"]
NO_MAP = "/nonexistent/geoloc_strict_map.tif"  # a run that passes the checks stops on this


def _yaml(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


# (id, ros arguments without --params-file, text that the one error line must contain)
BAD_OVERRIDES = [
    ("double_abc", ["-p", "min_altitude_m:=abc"], "parameter 'min_altitude_m' must be a double"),
    ("int_2.5", ["-p", "torch_threads:=2.5"], "parameter 'torch_threads' must be an integer"),
    ("localizer_int_2.5", ["-p", "localizer.max_windows:=2.5"], "parameter 'localizer.max_windows' must be an integer"),
    ("localizer_typo", ["-p", "localizer.min_confidnce:=0.4"],
     ("unknown parameter 'localizer.min_confidnce' (from -p localizer.min_confidnce:=0.4); "
      "did you mean 'localizer.min_confidence'?")),
]


@pytest.fixture(scope="module")
def yamls(tmp_path_factory) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("strict")
    return SimpleNamespace(
        launch_override=_yaml(tmp / "launch_override.yaml",  # what launch_ros writes for a dict
                              {"/**": {"ros__parameters": {"map": NO_MAP, "localizer": {"max_windows": 2.5}}}}),
        other_node=_yaml(tmp / "other_node.yaml", {
            "other_node": {"ros__parameters": {"torch_threads": "abc", "bogus_name": 1}},
            "/**/localize_node": {"ros__parameters": {"min_altitude_m": 3.0}}}))


@pytest.fixture(scope="module")
def runs(yamls) -> SimpleNamespace:
    """Every node command that must stop, started at once (each ~1 s of CPU), then collected:
    `results[key]` CompletedProcess, `wall_s` for all of them."""
    cmds: dict[str, list[str]] = {}
    for key, args, _ in BAD_OVERRIDES:
        cmds[f"{key}/cli"] = [*NODE, "--ros-args", *args]
        cmds[f"{key}/file"] = [*NODE, "--ros-args", "--params-file", str(rh.PARAMS_FILE), *args,
                               "-p", f"map:={NO_MAP}"]
    cmds["launch_two_files"] = [*NODE, "--ros-args", "--params-file", str(rh.PARAMS_FILE),
                                "--params-file", yamls.launch_override]
    cmds["renamed_node_reads_its_section"] = [*NODE, "--ros-args", "-r", "__node:=other_node",
                                              "--params-file", yamls.other_node]
    cmds["help"] = [*NODE, "--help"]
    env = ros_env(rh.unique_domain_id(11))
    t0 = time.monotonic()
    procs = {k: subprocess.Popen(c, env=env, cwd=str(rh.ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL, text=True) for k, c in cmds.items()}
    out: dict[str, subprocess.CompletedProcess] = {}
    for k, p in procs.items():
        try:
            so, se = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            so, se = p.communicate()
        out[k] = subprocess.CompletedProcess(cmds[k], p.returncode, so, se)
    return SimpleNamespace(results=out, wall_s=time.monotonic() - t0)


def _one_error_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, f"rc {r.returncode}\n{r.stdout}\n{r.stderr}"
    err = r.stderr.strip()
    assert err.startswith("error: ") and "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("where", ["cli", "file"])
@pytest.mark.parametrize("key,args,needle", BAD_OVERRIDES, ids=[b[0] for b in BAD_OVERRIDES])
def test_bad_override_stops_with_or_without_params_file(runs, key, args, needle, where):
    err = _one_error_line(runs.results[f"{key}/{where}"])
    assert needle in err, err


def test_second_params_file_with_a_bad_value_stops(runs):
    """The launch file's way: packaged YAML, then launch_ros' temporary file of overrides."""
    err = _one_error_line(runs.results["launch_two_files"])
    assert "parameter 'localizer.max_windows' must be an integer, got the double 2.5" in err
    assert "launch_override.yaml" in err


def test_sections_follow_the_node_name(runs, yamls):
    # another node's section (wrong type, unknown name) is not this node's business...
    cmd = params.split_ros_args(["--ros-args", "--params-file", str(rh.PARAMS_FILE),
                                 "--params-file", yamls.other_node])
    assert params.check_command_line(cmd) == "/localize_node"
    # ...until the node is renamed to it
    err = _one_error_line(runs.results["renamed_node_reads_its_section"])
    assert "parameter 'torch_threads' must be an integer, got the string 'abc'" in err


def test_stray_argument_outside_ros_args(capsys):
    from geoloc_ros.ros import node

    assert node.main(["map:=x.tif"]) == 2  # stops before rclpy.init
    err = capsys.readouterr().err.strip()
    assert err == ("error: unexpected argument 'map:=x.tif': ROS arguments go after --ros-args "
                   "(see localize_node --help)")


def _check_help(stdout: str) -> None:
    assert stdout.startswith("usage: localize_node")
    for name in ("map", "torch_threads", "mavlink.rate_hz", "localizer.min_confidence"):
        assert f"\n  {name}  " in stdout, name
    assert "torch_threads  int = 0, range [0, 256]" in stdout
    assert "altitude_source  string = 'odom', one of odom|range|float64" in stdout


def test_help_prints_the_parameter_table(runs):
    r = runs.results["help"]
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    _check_help(r.stdout)


def test_short_help_needs_no_map(capsys):
    from geoloc_ros.ros import node

    assert node.main(["-h", "--ros-args", "-p", "torch_threads:=2.5"]) == 0  # help wins, no ROS needed
    _check_help(capsys.readouterr().out)


def test_failing_starts_are_fast(runs):
    assert runs.wall_s < 25.0, runs.wall_s


def test_good_overrides_reach_the_running_node(tmp_path):
    """Two params files (the second for the renamed node only) and -p overrides of the right
    type: the node starts, and its parameters hold the last values given."""
    from rcl_interfaces.srv import GetParameters

    domain = rh.unique_domain_id(12)
    map_path = rh.write_test_map(tmp_path / "map.tif")
    mine = _yaml(tmp_path / "mine.yaml", {"geoloc_strict_node": {"ros__parameters": {
        "map": str(map_path), "weights": "", "warmup": False, "localizer": {"max_windows": 5}}}})
    cmd = [*NODE, "--ros-args", "-r", "__node:=geoloc_strict_node", "--params-file", str(rh.PARAMS_FILE),
           "--params-file", mine, "-p", "localizer.min_confidence:=0.4", "-p", "min_altitude_m:=5.0"]
    log = tmp_path / "node.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, env=ros_env(domain), cwd=str(rh.ROOT), stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    client = None
    try:
        deadline = time.monotonic() + 60.0
        while "ready: map" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "ready: map" in log.read_text(), log.read_text()[-3000:]
        client = rh.RosClient(domain, "geoloc_strict_client")
        names = ["localizer.min_confidence", "min_altitude_m", "localizer.max_windows", "torch_threads"]
        req = GetParameters.Request(names=names)
        res = client.call(GetParameters, "/geoloc_strict_node/get_parameters", request=req)
        got = {n: v for n, v in zip(names, res.values)}
        assert math.isclose(got["localizer.min_confidence"].double_value, 0.4)
        assert math.isclose(got["min_altitude_m"].double_value, 5.0)
        assert got["localizer.max_windows"].integer_value == 5
        assert got["torch_threads"].integer_value == 0
    finally:
        if client is not None:
            client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
    assert proc.returncode in (0, -2), log.read_text()[-3000:]


# ----------------------------------------------------------------------------- units (no process)


@pytest.mark.parametrize("text,value", [
    ("2", 2), ("-3", -3), ("0x10", 16), ("010", 8), ("2.0", 2.0), ("1e6", 1e6), (".5", 0.5), ("08", 8.0),
    ("abc", "abc"), ("1_000", "1_000"), ("0b1", "0b1"), ("yes", True), ("Off", False), ("tRue", "tRue"),
    ("~", "~"), ("null", "null"), ("1e", "1e"), (".inf", math.inf), ("-.inf", -math.inf),
    ("99999999999999999999", 1e20),
])
def test_plain_scalars_are_typed_like_rcl(text, value):
    got = params.rcl_scalar(text)
    assert type(got) is type(value) and got == value, (text, got)


def test_quoted_values_stay_strings():
    v = params.param_rule_value("hardware_id:='123'", params.NODE_NAME)
    assert v is not None and v.value == "123"
    assert params.param_rule_value("other:torch_threads:=abc", params.NODE_NAME) is None
    assert params.param_rule_value("map:=", params.NODE_NAME).value is params.NO_VALUE


@pytest.mark.parametrize("keys,fqn,match", [
    (["/**"], "/ns/localize_node", True), (["/**/localize_node"], "/localize_node", True),
    (["localize_node"], "/localize_node", True), (["localize_node"], "/ns/localize_node", False),
    (["ns", "localize_node"], "/ns/localize_node", True), (["/*/localize_node"], "/localize_node", False),
    (["/*"], "/localize_node", True), (["other"], "/localize_node", False),
])
def test_params_file_sections(keys, fqn, match):
    assert bool(params._section_pattern(keys).fullmatch(fqn)) is match


def test_node_name_remaps():
    assert params.node_fqn([]) == "/localize_node"
    assert params.node_fqn(["__node:=a", "__node:=b", "__ns:=/ns"]) == "/ns/a"  # first rule wins, as rcl
    assert params.node_fqn(["zzz:__node:=a", "localize_node:__ns:=/x/"]) == "/x/localize_node"


def test_params_file_flattens_and_checks(tmp_path):
    f = _yaml(tmp_path / "p.yaml", {"/**": {"ros__parameters": {"mavlink": {"rate_hz": 2.0}}}})
    vals = params.params_file_values(f, "/localize_node")
    assert [(v.name, v.value) for v in vals] == [("mavlink.rate_hz", 2.0)]
    params.check_values(vals)
    bad = params.SourcedValue("mavlink.rate_hz", 500.0, "-p mavlink.rate_hz:=500.0")
    with pytest.raises(params.ConfigError, match=r"out of range \[0.1, 50\], got 500.0"):
        params.check_values([bad])
    with pytest.raises(params.ConfigError, match="write 3.0"):
        params.check_values([params.SourcedValue("gps_timeout_s", 3, "-p gps_timeout_s:=3")])
    params.check_values([params.SourcedValue("use_sim_time", True, "x"),
                         params.SourcedValue("qos_overrides./fix.publisher.depth", 5, "x")])


def test_shared_wildcard_sections_hold_other_nodes_parameters(tmp_path):
    """A /** section is read by every node of a launch: another node's parameter there is not
    ours to refuse, but a typo of ours (or anything under localizer./mavlink.) still is."""
    f = _yaml(tmp_path / "shared.yaml", {"/**": {"ros__parameters": {"camera_fps": 30, "use_sim_time": False}}})
    params.check_values(params.params_file_values(f, "/localize_node"))
    for bad, needle in (({"min_altitud_m": 3.0}, "did you mean 'min_altitude_m'"),
                        ({"localizer": {"zzz": 1}}, "unknown parameter 'localizer.zzz'")):
        g = _yaml(tmp_path / "typo.yaml", {"/**": {"ros__parameters": bad}})
        with pytest.raises(params.ConfigError, match=needle):
            params.check_values(params.params_file_values(g, "/localize_node"))
    own = _yaml(tmp_path / "own.yaml", {"localize_node": {"ros__parameters": {"camera_fps": 30}}})
    with pytest.raises(params.ConfigError, match="unknown parameter 'camera_fps'"):
        params.check_values(params.params_file_values(own, "/localize_node"))


# ----------------------------------------------------------------------------- geoloc-replay --set


@pytest.fixture()
def replay_main(monkeypatch):
    """replay.main with the replays themselves replaced by a failure: a bad value must stop
    the tool before any bag is opened."""
    from geoloc_ros.tools import replay

    def no_replay(*a, **k):
        raise AssertionError("the replay started despite a bad configuration")

    monkeypatch.setattr(replay, "replay_offline", no_replay)
    monkeypatch.setattr(replay, "run_live", no_replay)
    return replay.main


@pytest.mark.parametrize("extra,needle", [
    (["--set", "min_confidence=abc"], "--set min_confidence=abc: min_confidence must be a number, got str 'abc'"),
    (["--set", "max_windows=2.5"], "--set max_windows=2.5: max_windows must be an integer, got float 2.5"),
    (["--set", "max_windowz=3"], "unknown key 'max_windowz' for LocalizerConfig; did you mean 'max_windows'?"),
    (["--set", "min_confidence=2"], "min_confidence must be in [0, 1], got 2.0"),
    (["--set", "fp16=2"], "fp16 must be a bool (true or false), got int 2"),
    (["--set", "min_windows=10", "--set", "max_windows=5"], "max_windows (5) must be >= min_windows (10)"),
    (["--live", "--set", "max_windows=2.5"], "max_windows must be an integer"),
])
def test_replay_set_is_typed_before_the_bag_is_read(replay_main, tmp_path, capsys, extra, needle):
    t0 = time.monotonic()
    assert replay_main([str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and len(err.splitlines()) == 1, err
    assert time.monotonic() - t0 < 5.0


def test_replay_config_file_is_typed(replay_main, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("localizer:\n  max_windows: 2.5\n")
    assert replay_main([str(tmp_path), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{cfg}: max_windows must be an integer, got float 2.5" in err and len(err.splitlines()) == 1


def test_replay_accepts_good_values():
    from geoloc_ros.tools.replay import load_localizer_config

    cfg = load_localizer_config(None, ["scale_var_per_m=1e-6", "min_confidence=1", "relocalization=retrieval",
                                       "retrieval_model=2024", "fp16=false", "initial_fix=[47.0, 8.0]"])
    assert cfg.scale_var_per_m == 1e-6 and cfg.min_confidence == 1.0 and type(cfg.min_confidence) is float
    assert cfg.relocalization == "retrieval" and cfg.retrieval_model == "2024" and cfg.fp16 is False
    assert cfg.initial_fix == (47.0, 8.0)
