"""`ros2 launch geoloc_ros localize.launch.py`, for real, in a colcon workspace.

The workspace is the one scripts/make_workspace.sh makes without a ROS distro (the venv's
kilted wheels as underlay, the launch stack from ../shared/vendor/ros2_launch built by the same
colcon build), cached in build/ros2_launch_ws: the first run builds all 15 packages (~1-2 min
on 2 cores), later runs rebuild geoloc_ros only (its sources are what changes). Then:
launch arguments and params-file values reach the node (GetParameters service), a tiny
simulated flight replayed over DDS gives fixes, one SIGINT to the process group (Ctrl-C) ends
launch and node with exit 0 and no traceback, and a wrongly typed launch argument stops the
node with one error line.

Skipped, with the reason, where the vendored launch stack (no package registry serves it) or
colcon (requirements/tools.txt) is missing.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ros_helpers as rh

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
VENDOR = Path(os.environ.get("GEOLOC_ROS2_LAUNCH_VENDOR") or ROOT.parent / "shared" / "vendor" / "ros2_launch")
WS = ROOT / "build" / "ros2_launch_ws"
VENV = Path(sys.prefix)
COLCON = VENV / "bin" / "colcon"

TINY = rh.tiny_scenario_yaml("tiny_launch", seed=3, duration_s=5)

# the params file of the launch (params_file:=...): values that are not the defaults, so that
# GetParameters shows they came from it; dead reckoning keeps the fix TRACKING on odometry
PARAMS = """\
/localize_node:
  ros__parameters:
    gps_denied_after: 1.0
    torch_threads: 1
    warmup: false
    localizer:
      lost_sigma_m: 1000000.0
      coast_sigma_m: 1000000.0
      coast_max_s: 1000000000.0
"""


def _stamp() -> str:
    """What the cached workspace's non-geoloc_ros packages were built from."""
    h = hashlib.sha256()
    files = sorted(VENDOR.glob("*.tar.gz")) + sorted((ROOT / "msg").rglob("*.*")) + [
        ROOT / "interfaces" / "geoloc_ros_msgs" / "CMakeLists.txt",
        ROOT / "interfaces" / "geoloc_ros_msgs" / "package.xml", ROOT / "scripts" / "make_workspace.sh"]
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    h.update(str(VENV).encode())
    return h.hexdigest()


def _run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def workspace():
    """The workspace, built (or brought up to date) under a lock: parallel runs share it."""
    if not (VENDOR / "launch.tar.gz").is_file():
        pytest.skip(f"no vendored ROS 2 launch stack at {VENDOR} (ros2 launch/launch_ros/ros2cli are on no "
                    "package registry reachable here; set GEOLOC_ROS2_LAUNCH_VENDOR to the folder of its archives)")
    if not COLCON.is_file():
        pytest.skip(f"colcon is not installed in {VENV} (scripts/setup_env.sh installs requirements/tools.txt)")
    WS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GEOLOC_VENV": str(VENV), "GEOLOC_ROS2_LAUNCH_VENDOR": str(VENDOR)}
    env.pop("AMENT_PREFIX_PATH", None)
    env.pop("CMAKE_PREFIX_PATH", None)
    with open(WS / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp_file = WS / ".geoloc_test_stamp"
        want = _stamp()
        t0 = time.monotonic()
        if stamp_file.is_file() and stamp_file.read_text() == want and (WS / "install" / "ros2cli").is_dir():
            # the launch stack and the messages are built: geoloc_ros only (copied, not linked)
            cmd = ["bash", "-c", "source underlay.bash && colcon build --base-paths src src/geoloc_ros/interfaces "
                   "--packages-select geoloc_ros"]
            res = _run(cmd, 600, cwd=WS, env=env)
        else:
            stamp_file.unlink(missing_ok=True)
            res = _run(["bash", str(ROOT / "scripts" / "make_workspace.sh"), "--distro", "none", "--no-deps",
                        "--build", str(WS)], 1200, env=env)
        assert res.returncode == 0, f"workspace build failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
        stamp_file.write_text(want)
        print(f"workspace {WS} built in {time.monotonic() - t0:.0f} s")
    # the environment of `source install/setup.bash` (which chains the venv's local_setup.bash)
    res = _run(["bash", "-c", f"source {WS}/install/setup.bash && env -0"], 60, env=env)
    assert res.returncode == 0, res.stderr
    ws_env = dict(kv.split("=", 1) for kv in res.stdout.split("\0") if "=" in kv)
    assert shutil.which("ros2", path=ws_env["PATH"]), "no ros2 on the workspace's PATH"
    return ws_env


@pytest.fixture(scope="module")
def tiny_flight(tmp_path_factory):
    from geoloc_ros.tools.simulate import load_scenario, run_scenario

    d = tmp_path_factory.mktemp("launch")
    (d / "tiny.yaml").write_text(TINY)
    side = run_scenario(load_scenario(d / "tiny.yaml"), d / "bag", scenario_dir=d, progress=False)
    return d / "bag", (d / "bag" / side["map_path"]).resolve(), side


class Launch:
    """`ros2 launch geoloc_ros localize.launch.py ARGS` in its own process group (like a
    terminal's foreground job), SIGINT at its default disposition (a test runner started from a
    non-interactive shell may hand down an ignored one), output in `log`."""

    def __init__(self, ws_env: dict[str, str], domain: int, args: list[str], log: Path) -> None:
        from geoloc_ros.ros.live_replay import ros_env

        self.log = log
        self._out = log.open("w")
        unmask = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                  "os.execvp(sys.argv[1], sys.argv[1:])")
        cmd = [sys.executable, "-c", unmask, "ros2", "launch", "geoloc_ros", "localize.launch.py", *args]
        env = ros_env(domain, base=ws_env)
        env["ROS_LOG_DIR"] = str(log.parent / "ros_log")  # launch's own log files: not in ~/.ros
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")

    def tail(self, n: int = 25) -> str:
        return "\n".join(self.output().splitlines()[-n:])

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self._out.close()


def _get_parameters(domain: int, node: str, names: list[str], timeout: float = 30.0) -> dict:
    """rcl_interfaces/GetParameters of a running node (what `ros2 param get` asks), own context."""
    import rclpy
    from rcl_interfaces.srv import GetParameters
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import parameter_value_to_python

    rh.apply_ros_env(domain)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    try:
        client_node = rclpy.create_node("test_ros2_launch_params", context=ctx)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(client_node)
        cli = client_node.create_client(GetParameters, f"{node}/get_parameters")
        assert cli.wait_for_service(timeout_sec=timeout), f"{node}/get_parameters not available"
        fut = cli.call_async(GetParameters.Request(names=names))
        executor.spin_until_future_complete(fut, timeout_sec=timeout)
        assert fut.done(), "GetParameters timed out"
        return {n: parameter_value_to_python(v) for n, v in zip(names, fut.result().values)}
    finally:
        rclpy.try_shutdown(context=ctx)


def _assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-4000:]


def test_launch_arguments_params_fixes_and_ctrl_c(workspace, tiny_flight, tmp_path):
    from geoloc_ros.ros.live_replay import replay_live

    bag, map_path, side = tiny_flight
    params_file = tmp_path / "params.yaml"
    params_file.write_text(PARAMS)
    domain = rh.unique_domain_id(41)
    launch = Launch(workspace, domain, [f"map:={map_path}", "weights:=default", "device:=cpu",
                                        f"params_file:={params_file}", "odom:=/odom", "initial_fix:=/gps/fix"],
                    tmp_path / "launch.log")
    try:
        res = replay_live(bag, domain, rate=1.0, node_alive=launch.alive, node_log=launch.tail, startup_timeout=120)
        got = _get_parameters(domain, "/localize_node",
                              ["map", "weights", "device", "odom_topic", "initial_fix_topic", "gps_denied_after",
                               "torch_threads", "warmup", "localizer.lost_sigma_m"])
        # Ctrl-C in a terminal: SIGINT to the whole process group (launch and the node at once;
        # launch then sends the node its own SIGINT)
        os.killpg(launch.proc.pid, signal.SIGINT)
        rc = launch.wait(60)
    finally:
        launch.kill()
    out = launch.output()
    # launch arguments (map, weights, device, odom, initial_fix) and the params file's values
    assert got == {"map": str(map_path), "weights": "default", "device": "cpu", "odom_topic": "/odom",
                   "initial_fix_topic": "/gps/fix", "gps_denied_after": 1.0, "torch_threads": 1, "warmup": False,
                   "localizer.lost_sigma_m": 1e6}, out[-3000:]
    assert res.images_published == side["frames_written"] and len(res.fixes) >= 3, out[-3000:]
    assert rc == 0, f"ros2 launch exit {rc} after one SIGINT:\n{out[-3000:]}"
    _assert_no_traceback(out)
    assert "process has finished cleanly" in out, out[-3000:]


def test_wrongly_typed_launch_argument_is_one_error_line(workspace, tiny_flight, tmp_path):
    _, map_path, _ = tiny_flight
    domain = rh.unique_domain_id(42)
    # launch_ros reads an untyped argument as YAML: device:=42 arrives as an integer
    launch = Launch(workspace, domain, [f"map:={map_path}", "device:=42"], tmp_path / "launch.log")
    try:
        rc = launch.wait(90)
    finally:
        launch.kill()
    out = launch.output()
    assert rc is not None, f"launch still running 90 s after the node's parameter error:\n{out[-3000:]}"
    node_lines = [ln for ln in out.splitlines() if ln.startswith("[localize_node-1]")]
    errors = [ln for ln in node_lines if "error" in ln.lower()]
    assert len(errors) == 1 and "device" in errors[0], "\n".join(node_lines)
    _assert_no_traceback(out)
    assert "exit code 2" in out, out[-3000:]


def test_ctrl_c_while_frames_are_processed(workspace, tiny_flight, tmp_path):
    """SIGINT to the process group mid-flight: the worker is inside a frame; the node still stops
    in order (no publish on a shut-down context, no KeyboardInterrupt), exit 0."""
    import threading

    from geoloc_ros.ros.live_replay import replay_live

    bag, map_path, _ = tiny_flight
    params_file = tmp_path / "params.yaml"
    params_file.write_text(PARAMS)
    domain = rh.unique_domain_id(43)
    launch = Launch(workspace, domain, [f"map:={map_path}", "weights:=default", "device:=cpu",
                                        f"params_file:={params_file}"], tmp_path / "launch.log")
    errors: list[BaseException] = []

    def replay() -> None:
        try:
            replay_live(bag, domain, rate=1.0, node_alive=launch.alive, node_log=launch.tail, startup_timeout=120)
        except Exception as exc:  # noqa: BLE001 - the node is stopped under it on purpose
            errors.append(exc)

    feeder = threading.Thread(target=replay, daemon=True)
    try:
        feeder.start()
        deadline = time.monotonic() + 120
        while "-> TRACKING" not in launch.output() and launch.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "-> TRACKING" in launch.output(), launch.tail()
        time.sleep(1.0)  # frames of the (5 s) flight are still coming in
        os.killpg(launch.proc.pid, signal.SIGINT)
        rc = launch.wait(60)
    finally:
        launch.kill()
        feeder.join(60)
    out = launch.output()
    assert rc == 0, f"ros2 launch exit {rc} after one SIGINT:\n{out[-3000:]}"
    _assert_no_traceback(out)
    assert "process has finished cleanly" in out and "context is invalid" not in out, out[-3000:]
