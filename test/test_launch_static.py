"""launch/localize.launch.py and config/localize.yaml, checked without `launch` (not on PyPI):
the launch file is parsed with ast; its executable is a console script that ament_python
installs to lib/geoloc_ros; every argument reaches a declared parameter (or the namespace);
the YAML and the node's parameter table agree key for key, with the right types."""
from __future__ import annotations

import ast
import configparser
import re
from pathlib import Path

import yaml

from geoloc_ros.ros import params

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "localize.launch.py"
YAML = ROOT / "config" / "localize.yaml"


def _launch_tree():
    return ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))


def _calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def _kw(call, key):
    for k in call.keywords:
        if k.arg == key:
            return k.value
    return None


def _launch_config_name(node):
    """LaunchConfiguration('x') (possibly wrapped in ParameterValue) -> 'x'."""
    for c in ast.walk(node):
        if isinstance(c, ast.Call) and getattr(c.func, "id", None) == "LaunchConfiguration":
            return c.args[0].value
    return None


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def test_launch_file_parses_and_generates():
    tree = _launch_tree()
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)


def test_executable_matches_console_script_and_install_dir():
    tree = _launch_tree()
    (node,) = _calls(tree, "Node")
    assert _kw(node, "package").value == "geoloc_ros"
    exe = _kw(node, "executable").value
    setup = (ROOT / "setup.py").read_text()
    m = re.search(rf"['\"]\s*{re.escape(exe)}\s*=\s*([\w.]+):(\w+)", setup)
    assert m, f"no console script {exe!r} in setup.py"
    module, func = m.groups()
    assert module == "geoloc_ros.ros.node" and func == "main"
    # ament_python: ros2 run / launch look for lib/<package>/<executable>; setup.cfg puts the
    # console scripts there
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg.get("install", "install_scripts", fallback="").endswith("lib/geoloc_ros"), \
        "setup.cfg [install] install_scripts must be $base/lib/geoloc_ros"
    assert cfg.get("develop", "script_dir", fallback="").endswith("lib/geoloc_ros")


def test_default_params_file_exists_and_is_installed():
    src = LAUNCH.read_text()
    assert '"config", "localize.yaml"' in src
    assert YAML.is_file()
    setup = (ROOT / "setup.py").read_text()
    assert 'f"share/{PACKAGE}/config", glob("config/*.yaml")' in setup
    assert 'f"share/{PACKAGE}/launch", glob("launch/*.py")' in setup


def test_every_launch_argument_reaches_the_node():
    tree = _launch_tree()
    declared = {c.args[0].value for c in _calls(tree, "DeclareLaunchArgument")}
    (node,) = _calls(tree, "Node")
    used = {}
    for item in ast.walk(_kw(node, "parameters")):
        if isinstance(item, ast.Dict):
            for k, v in zip(item.keys, item.values):
                used[_launch_config_name(v)] = k.value
    ns = _launch_config_name(_kw(node, "namespace"))
    pf = [_launch_config_name(e) for e in _kw(node, "parameters").elts if isinstance(e, ast.Call)]
    names = {s.name for s in params.all_param_specs()} | set(params.BUILTIN_PARAMS)
    for arg in declared:
        if arg == ns or arg in pf:
            continue
        assert arg in used, f"launch argument {arg!r} is not passed to the node"
        assert used[arg] in names, f"launch argument {arg!r} sets undeclared parameter {used[arg]!r}"
    assert declared >= {"map", "weights", "device", "params_file", "namespace", "use_sim_time",
                        "image", "camera_info", "odom", "initial_fix"}


def test_yaml_and_declared_parameters_agree():
    data = yaml.safe_load(YAML.read_text())
    assert list(data) == ["/**"] and list(data["/**"]) == ["ros__parameters"]
    keys = _flatten(data["/**"]["ros__parameters"])
    specs = {s.name: s for s in params.all_param_specs()}
    assert set(keys) - set(specs) == set(), f"YAML keys the node does not declare: {set(keys) - set(specs)}"
    assert set(specs) - set(keys) == set(), (f"parameters missing from the YAML: {set(specs) - set(keys)}; "
                                             "regenerate it with geoloc_ros.ros.params.yaml_text()")
    for k, v in keys.items():
        want = type(specs[k].default)
        assert type(v) is want, f"{k}: YAML has {type(v).__name__}, the node declares {want.__name__}"
        assert v == specs[k].default, f"{k}: YAML default {v!r} != declared default {specs[k].default!r}"


def test_yaml_documents_every_parameter():
    lines = YAML.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^\s+([\w]+):\s*\S", line)
        if m and not line.strip().startswith("#"):
            assert lines[i - 1].strip().startswith("#"), f"undocumented YAML key {m.group(1)!r} (line {i + 1})"
