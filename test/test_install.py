"""An installed geoloc_ros finds its resources where the install put them, not in the checkout.

Why: the demo, the node's params file and the Fast DDS profile used to be found through
`Path(__file__).parents[2]`, which is the repository only in a checkout. Here a wheel of the
repository is built (no build isolation, no network, no dependencies: torch is never
fetched), installed into a temporary prefix, and imported from another working directory
with PYTHONPATH pointing at that prefix only. Everything it resolves must lie under the
prefix: as a sourced colcon/ament install (AMENT_PREFIX_PATH) and as a plain `pip --prefix`.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: what setup.py needs to build the wheel (copied, so the build writes nothing into the checkout)
SOURCES = ("setup.py", "setup.cfg", "package.xml", "README.md", "resource", "config", "launch", "msg", "geoloc_ros")

#: run by the installed copy; prints where it found things as JSON
CHECK = r"""
import json, sys
import geoloc_ros
from geoloc_ros import resources
out = {"package": geoloc_ros.__file__, "share": str(resources.share_dir()),
       "scenario": str(resources.scenario_file("short_demo")),
       "localize_yaml": str(resources.config_file("localize.yaml")),
       "fastdds": str(resources.fastdds_profile()), "launch": str(resources.launch_file()),
       "source_root": str(resources.source_root())}
try:
    resources.config_file("no_such_file.yaml")
except resources.ResourceNotFoundError as exc:
    out["missing"] = str(exc)
if "--full" in sys.argv:
    from geoloc_ros.model.weights import packaged_weights_path
    from geoloc_ros.ros import live_replay
    from geoloc_ros.tools import demo
    out["weights"] = str(packaged_weights_path())
    out["demo_scenario"] = str(demo._scenario_path(demo.DEFAULT_SCENARIO))
    out["params_file"] = str(live_replay.PARAMS_FILE)
    cmd = live_replay.node_command({"map": "m.tif"})
    out["node_params_file"] = cmd[cmd.index("--params-file") + 1]
    out["env_fastdds"] = live_replay.ros_env(7, base={})["FASTDDS_DEFAULT_PROFILES_FILE"]
    if "--msgs" in sys.argv:
        from rclpy.serialization import deserialize_message, serialize_message
        from geoloc_ros_msgs.msg import LocalizerStatus
        m = LocalizerStatus()
        m.state_name = "TRACKING"
        out["msgs"] = deserialize_message(serialize_message(m), LocalizerStatus).state_name
print(json.dumps(out))
"""


def _can_build_wheels() -> str | None:
    """Why a wheel cannot be built here (None when it can)."""
    if importlib.util.find_spec("pip") is None:
        return "pip is not installed"
    st = importlib.util.find_spec("setuptools")  # located, not imported (its distutils shim must
    if st is None or not st.origin:               # not load into the test process)
        return "setuptools is not installed"
    has_bdist_wheel = (Path(st.origin).parent / "command" / "bdist_wheel.py").is_file()
    if importlib.util.find_spec("wheel") is None and not has_bdist_wheel:
        return "neither `wheel` nor a setuptools with bdist_wheel (>= 70.1) is installed"
    return None


def _own_installs() -> list[str]:
    """geoloc_ros distributions (and their console scripts) of the running environment."""
    purelib = Path(sysconfig.get_paths()["purelib"])
    scripts = Path(sysconfig.get_paths()["scripts"])
    own = [*purelib.glob("geoloc_ros-*"), *purelib.glob("__editable__*geoloc_ros*"), *scripts.glob("geoloc-*")]
    return sorted(p.name for p in own)


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120.0) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """The repository as a wheel, installed with `pip --prefix` into a temporary prefix."""
    why = _can_build_wheels()
    if why:
        pytest.skip(f"cannot build a wheel: {why}")
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PIP_NO_INDEX="1")
    pip = [sys.executable, "-m", "pip"]
    _run(pip + ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp / "wheel"),
                str(src)], cwd=tmp, env=env)
    (wheel,) = (tmp / "wheel").glob("geoloc_ros-*.whl")
    prefix = tmp / "prefix"
    before = _own_installs()
    # --ignore-installed: without it pip "replaces" the venv's own (editable) geoloc_ros,
    # i.e. uninstalls it from the venv, although the new copy goes to --prefix
    _run(pip + ["install", "--no-deps", "--no-index", "--no-build-isolation", "--ignore-installed",
                "--no-warn-script-location", "-q", "--prefix", str(prefix), str(wheel)], cwd=tmp, env=env)
    assert _own_installs() == before, "installing into the temporary prefix changed the running environment"
    (site,) = prefix.glob("lib/python*/site-packages")
    run = tmp / "elsewhere"
    run.mkdir()
    return {"wheel": wheel, "prefix": prefix.resolve(), "site": site, "cwd": run}


def _installed_env(site: Path, ament_prefix: str | None) -> dict[str, str]:
    """The test's environment with PYTHONPATH = the installed copy only (never the checkout)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH", "PYTHONSAFEPATH")}
    env["PYTHONPATH"] = str(site)
    if ament_prefix:
        env["AMENT_PREFIX_PATH"] = ament_prefix
    return env


def _check(installed: dict[str, Path], ament_prefix: str | None, *flags: str) -> dict[str, str]:
    env = _installed_env(installed["site"], ament_prefix)
    return json.loads(_run([sys.executable, "-c", CHECK, *flags], cwd=installed["cwd"], env=env).splitlines()[-1])


def _assert_under(found: dict[str, str], prefix: Path, keys: list[str]) -> None:
    for k in keys:
        p = Path(found[k]).resolve()
        assert p.is_relative_to(prefix), f"{k}: {p} is not under the install prefix {prefix}"
        assert not p.is_relative_to(ROOT), f"{k}: {p} comes from the checkout"
        assert p.exists(), f"{k}: {p} does not exist"


def test_wheel_ships_resources_and_weights(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    data = "geoloc_ros-0.1.0.data/data/"
    share = data + "share/geoloc_ros/"
    want = {data + "share/ament_index/resource_index/packages/geoloc_ros", share + "package.xml",
            share + "launch/localize.launch.py", "geoloc_ros/resources.py", "geoloc_ros/weights/MODEL_CARD.md"}
    want |= {share + p.relative_to(ROOT).as_posix() for p in (ROOT / "config").rglob("*")
             if p.is_file() and p.suffix in (".yaml", ".xml")}
    want |= {"geoloc_ros/weights/" + p.name for p in (ROOT / "geoloc_ros" / "weights").glob("*.safetensors")}
    want |= {"geoloc_ros/weights/" + p.name for p in (ROOT / "geoloc_ros" / "weights").glob("*.json")}
    assert any(n.endswith(".safetensors") for n in want)
    assert not want - names, f"missing from the wheel: {sorted(want - names)}"


def test_installed_copy_resolves_everything_under_its_prefix(installed):
    """As a sourced ament/colcon install: the ament index knows the prefix; the rest of the
    environment (the venv with rclpy and geoloc_ros_msgs) is the underlay."""
    prefix = installed["prefix"]
    msgs = importlib.util.find_spec("geoloc_ros_msgs") is not None  # built by scripts/build_msgs.sh
    found = _check(installed, f"{prefix}{os.pathsep}{sys.prefix}", "--full", *(["--msgs"] if msgs else []))
    _assert_under(found, prefix, ["package", "share", "scenario", "localize_yaml", "fastdds", "launch", "weights",
                                  "demo_scenario", "params_file", "node_params_file", "env_fastdds"])
    assert Path(found["share"]).resolve() == prefix / "share" / "geoloc_ros"
    assert found["source_root"] == "None"
    assert Path(found["scenario"]).name == "short_demo.yaml" == Path(found["demo_scenario"]).name
    assert Path(found["weights"]).suffix == ".safetensors" and Path(found["localize_yaml"]).name == "localize.yaml"
    assert found["params_file"] == found["node_params_file"] == found["localize_yaml"]
    missing = found["missing"]
    assert "config/no_such_file.yaml not found" in missing and str(prefix) in missing and "\n" not in missing
    if msgs:
        assert found["msgs"] == "TRACKING"


def test_installed_copy_without_ament_index(installed):
    """`pip install --prefix` without any ament environment: the prefix comes from where the
    package is installed (site-packages -> lib/pythonX.Y -> lib -> prefix)."""
    found = _check(installed, None)
    _assert_under(found, installed["prefix"], ["package", "share", "scenario", "localize_yaml", "fastdds", "launch"])


def test_installed_demo_finds_its_default_scenario(installed):
    env = _installed_env(installed["site"], None)
    text = _run([sys.executable, "-m", "geoloc_ros.tools.demo", "--help"], cwd=installed["cwd"], env=env)
    assert "--scenario" in text and "short_demo" in text
    # a scenario that is neither a file nor packaged: one line naming the places searched
    r = subprocess.run([sys.executable, "-m", "geoloc_ros.tools.demo", "--scenario", "nope", "--out",
                        str(installed["cwd"] / "o")], cwd=installed["cwd"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("error: scenario not found: nope") and "short_demo" in r.stderr
    assert str(installed["prefix"] / "share" / "geoloc_ros" / "config" / "scenarios") in r.stderr
    assert "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- the checkout itself
def test_checkout_resolves_to_its_own_files():
    """Imported from the checkout (editable install): the checkout's files come first, so an
    older installed copy never shadows what is being edited."""
    from geoloc_ros import resources

    if resources.source_root() is None:
        pytest.skip("geoloc_ros is not imported from a source checkout here")
    root = resources.source_root()
    assert resources.search_dirs()[0] == root and resources.share_dir() == root
    assert resources.scenario_file("short_demo") == root / "config" / "scenarios" / "short_demo.yaml"
    assert resources.scenario_file("loop_2km.yaml").name == "loop_2km.yaml"
    assert {"short_demo", "loop_2km"} <= set(resources.scenario_names())
    assert resources.fastdds_profile() == root / "config" / "fastdds_fast_discovery.xml"
    assert resources.packaged_weights_dir() == root / "geoloc_ros" / "weights"


def test_missing_resources_are_one_line_errors_saying_where():
    from geoloc_ros import resources
    from geoloc_ros.errors import GeolocError

    with pytest.raises(GeolocError) as exc:
        resources.scenario_file("no_such_scenario")
    text = str(exc.value)
    assert "no_such_scenario" in text and "short_demo" in text and "looked in:" in text and "\n" not in text
    with pytest.raises(resources.ResourceNotFoundError, match="looked in: .*share/geoloc_ros"):
        resources.config_file("no_such.yaml")
    with pytest.raises(ValueError):
        resources.find("/etc/passwd")


def test_a_params_file_asked_for_is_never_dropped(tmp_path):
    """node_command / NodeProcess: a missing params file stops before any process starts."""
    from geoloc_ros.ros import live_replay

    missing = tmp_path / "nope.yaml"
    with pytest.raises(live_replay.resources.ResourceNotFoundError, match="params file not found: .*nope.yaml"):
        live_replay.node_command({"map": "m.tif"}, missing)
    with pytest.raises(live_replay.resources.ResourceNotFoundError, match="nope.yaml"):
        live_replay.NodeProcess({"map": "m.tif"}, 7, tmp_path / "node.log", missing)
    assert not (tmp_path / "node.log").exists()
    cmd = live_replay.node_command({"map": "m.tif"})
    assert Path(cmd[cmd.index("--params-file") + 1]).is_file()
    assert "--params-file" not in live_replay.node_command({"map": "m.tif"}, None)
