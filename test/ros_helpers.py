"""Shared helpers for tests that talk DDS: isolated domain, wait-for-matching, node process.

Rules (environment.md): a unique ROS_DOMAIN_ID per test run, discovery limited to this
host, the fast-discovery Fast DDS profile, and waiting on real conditions (matched
endpoints, received messages) with deadlines, never sleep-and-hope.
"""
from __future__ import annotations

import math
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from geoloc_ros.ros import live_replay
from geoloc_ros.ros.live_replay import node_command, ros_env

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = ROOT / "config" / "localize.yaml"

MAP_LAT, MAP_LON = 47.0, 8.0  # centre of the synthetic test map


def tiny_scenario_yaml(name: str, seed: int, duration_s: float) -> str:
    """A few seconds of figure-eight over a 300 m generated world (160x120 camera at 4 Hz, GPS
    denied after 2 s): the smallest flight a live node localizes on, for the DDS tests."""
    return f"""
name: {name}
seed: {seed}
duration_s: {duration_s:g}
world:
  generate: {{seed: {seed}, size_m: 300, gsd_m: 0.5, town_density_per_km2: 8, town_radius_m: [125, 140],
             farm_cell_m: 110, lake_probability: 0, river_probability: 0, main_roads: 1}}
trajectory: {{kind: figure8, radius_m: 50, speed_mps: 10, altitude_m: 80}}
camera: {{width: 160, height: 120, hfov_deg: 70, rate_hz: 4}}
odometry: {{rate_hz: 20, initial_yaw_error_deg: 1}}
gps: {{rate_hz: 5, denial_s: 2}}
"""


def unique_domain_id(salt: int = 0) -> int:
    """A ROS_DOMAIN_ID in 1..232 unlikely to collide with parallel runs (pid- and time-based);
    GEOLOC_TEST_DOMAIN_ID overrides."""
    if os.environ.get("GEOLOC_TEST_DOMAIN_ID"):
        return int(os.environ["GEOLOC_TEST_DOMAIN_ID"])
    return 1 + (os.getpid() * 7 + int(time.time() * 10) + salt * 37) % 232


def apply_ros_env(domain_id: int) -> None:
    """Set the variables in this process (before rclpy.init)."""
    for k, v in ros_env(domain_id).items():
        if os.environ.get(k) != v:
            os.environ[k] = v


def spin_until(node, predicate: Callable[[], bool], timeout: float, executor=None) -> bool:
    """Spin `node` (or `executor`) until `predicate()` holds or `timeout` seconds pass."""
    import rclpy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if executor is not None:
            executor.spin_once(timeout_sec=0.02)
        else:
            rclpy.spin_once(node, timeout_sec=0.02)
    return predicate()


def wait_matched(node, endpoints: list, timeout: float = 20.0) -> None:
    """Wait until every publisher has a subscriber / every subscription a publisher."""
    def ok():
        for ep in endpoints:
            n = ep.get_subscription_count() if hasattr(ep, "get_subscription_count") else ep.get_publisher_count()
            if n == 0:
                return False
        return True
    assert spin_until(node, ok, timeout), f"endpoints not matched within {timeout} s: " + ", ".join(
        getattr(e, "topic_name", "?") for e in endpoints)


def write_test_map(path: Path, size_px: int = 512, gsd_m: float = 1.0, seed: int = 0) -> Path:
    """A small textured COG in UTM centred on (MAP_LAT, MAP_LON)."""
    import cv2
    from affine import Affine

    from geoloc_ros.geo.cog import write_cog
    from geoloc_ros.geo.frames import wgs84_to_utm

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size_px // 16, size_px // 16, 3), dtype=np.uint8)
    img = cv2.resize(small, (size_px, size_px), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img.astype(np.int16) + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
    e, n, crs = wgs84_to_utm(MAP_LAT, MAP_LON)
    half = size_px * gsd_m / 2.0
    transform = Affine(gsd_m, 0.0, e - half, 0.0, -gsd_m, n + half)
    return write_cog(path, img, transform, crs)


class NodeProcess(live_replay.NodeProcess):
    """localize_node as a subprocess with its log in a temp file (shown on failure)."""

    def __init__(self, params: dict[str, Any], domain_id: int, params_file: Path | None = PARAMS_FILE):
        with tempfile.NamedTemporaryFile("w", suffix=".log", prefix="localize_node_", delete=False) as log:
            path = log.name
        super().__init__(params, domain_id, path, params_file)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


def run_node_once(params: dict[str, Any], domain_id: int, timeout: float = 60.0,
                  params_file: Path | None = PARAMS_FILE) -> subprocess.CompletedProcess:
    """Run the node expecting it to exit by itself (bad parameters)."""
    return subprocess.run(node_command(params, params_file), env=ros_env(domain_id), cwd=str(ROOT),
                          capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------- messages


def image_msg(stamp: float, rgb: np.ndarray, frame_id: str = "camera"):
    from geoloc_ros.ros.convert import numpy_to_image

    return numpy_to_image(rgb, "rgb8", stamp=stamp, frame_id=frame_id)


def camera_info_msg(stamp: float, w: int, h: int, hfov_deg: float = 60.0):
    from sensor_msgs.msg import CameraInfo

    from geoloc_ros.ros.convert import float_to_stamp

    f = (w / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    m = CameraInfo()
    m.header.stamp = float_to_stamp(stamp)
    m.width, m.height = w, h
    m.k = [f, 0.0, (w - 1) / 2.0, 0.0, f, (h - 1) / 2.0, 0.0, 0.0, 1.0]
    return m


def odom_msg(stamp: float, x: float, y: float, z: float, yaw: float = 0.0):
    from nav_msgs.msg import Odometry

    from geoloc_ros.ros.convert import float_to_stamp, quaternion_from_yaw

    m = Odometry()
    m.header.stamp = float_to_stamp(stamp)
    m.header.frame_id, m.child_frame_id = "odom", "base_link"
    m.pose.pose.position.x, m.pose.pose.position.y, m.pose.pose.position.z = x, y, z
    q = m.pose.pose.orientation
    q.x, q.y, q.z, q.w = quaternion_from_yaw(yaw)
    return m


def fix_msg(stamp: float, lat: float, lon: float, alt: float, sigma_m: float = 2.0, status: int = 0):
    from sensor_msgs.msg import NavSatFix

    from geoloc_ros.ros.convert import float_to_stamp

    m = NavSatFix()
    m.header.stamp = float_to_stamp(stamp)
    m.status.status = status
    m.latitude, m.longitude, m.altitude = lat, lon, alt
    m.position_covariance = [sigma_m ** 2, 0, 0, 0, sigma_m ** 2, 0, 0, 0, (2 * sigma_m) ** 2]
    m.position_covariance_type = NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
    return m


def diag_values(arr) -> dict[str, str]:
    """{key: value} of the geoloc_ros status in a DiagnosticArray (+ 'level', 'message')."""
    from geoloc_ros.ros.diagnostics import STATUS_NAME

    for s in arr.status:
        if s.name == STATUS_NAME:
            d = {kv.key: kv.value for kv in s.values}
            d["level"] = str(s.level[0] if isinstance(s.level, (bytes, bytearray)) else s.level)
            d["message"] = s.message
            d["hardware_id"] = s.hardware_id
            return d
    return {}


class RosClient:
    """The test side of the graph: its own rclpy context on the test's domain."""

    def __init__(self, domain_id: int, name: str = "geoloc_test_client") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        apply_ros_env(domain_id)
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.received: dict[str, list] = {}
        self.subs: dict[str, Any] = {}

    def subscribe(self, msg_type, topic: str, qos=10):
        self.received[topic] = []
        self.subs[topic] = self.node.create_subscription(msg_type, topic, self.received[topic].append, qos)
        return self.subs[topic]

    def publisher(self, msg_type, topic: str, qos=10):
        return self.node.create_publisher(msg_type, topic, qos)

    def spin_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        return spin_until(self.node, predicate, timeout, executor=self.executor)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)

    def wait_matched(self, endpoints: list, timeout: float = 20.0, proc: "NodeProcess | None" = None) -> None:
        def ok():
            if proc is not None and not proc.alive():
                raise AssertionError("node exited:\n" + proc.output()[-3000:])
            return all((ep.get_subscription_count() if hasattr(ep, "get_subscription_count")
                        else ep.get_publisher_count()) > 0 for ep in endpoints)
        assert self.spin_until(ok, timeout), f"endpoints not matched within {timeout} s: " + ", ".join(
            getattr(e, "topic_name", "?") for e in endpoints)

    def call(self, srv_type, name: str, timeout: float = 20.0, request=None):
        cli = self.node.create_client(srv_type, name)
        assert self.spin_until(cli.service_is_ready, timeout), f"service {name} not available"
        fut = cli.call_async(srv_type.Request() if request is None else request)
        assert self.spin_until(fut.done, timeout), f"service {name} did not answer"
        return fut.result()

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


class Feeder:
    """Publishes a synthetic flight (camera, camera_info, odometry, GPS fix) from the test
    thread: stamps are wall-clock time, odometry moves `speed` m/s east at `alt` m."""

    def __init__(self, client: RosClient, w: int = 160, h: int = 120, alt: float = 60.0, speed: float = 5.0):
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import CameraInfo, Image, NavSatFix

        self.c = client
        self.w, self.h, self.alt, self.speed = w, h, alt, speed
        self.pub_img = client.publisher(Image, "/camera/image_raw")
        self.pub_info = client.publisher(CameraInfo, "/camera/camera_info")
        self.pub_odom = client.publisher(Odometry, "/odom", 50)
        self.pub_fix = client.publisher(NavSatFix, "/gps/fix")
        self.rgb = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
        self.t0 = time.time()
        self.x = 0.0

    def retime(self, now: float, speed: float | None = None) -> None:
        """Continue the odometry without a jump from time `now` on (new clock or new speed):
        a jump would read as a VIO reset to the localizer."""
        speed = self.speed if speed is None else speed
        self.t0, self.speed = now - self.x / speed, speed

    def all_publishers(self) -> list:
        return [self.pub_img, self.pub_info, self.pub_odom, self.pub_fix]

    def step(self, *, image=True, info=True, fix=False, odom=True, stamp: float | None = None, image_msg_=None):
        t = time.time() if stamp is None else stamp
        self.x = self.speed * (t - self.t0)
        if odom:
            self.pub_odom.publish(odom_msg(t, self.x, 0.0, self.alt))
        if info:
            self.pub_info.publish(camera_info_msg(t, self.w, self.h))
        if fix:
            self.pub_fix.publish(fix_msg(t, MAP_LAT, MAP_LON, 500.0))
        if image:
            self.pub_img.publish(image_msg_ if image_msg_ is not None else image_msg(t, self.rgb))
        return t

    def run(self, seconds: float, rate_hz: float = 10.0, until: Callable[[], bool] | None = None, **kw) -> bool:
        """Publish at `rate_hz` for up to `seconds` (stop early when `until()` holds)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.step(**kw)
            nxt = time.monotonic() + 1.0 / rate_hz
            while time.monotonic() < nxt:
                self.c.executor.spin_once(timeout_sec=0.005)
            if until is not None and until():
                return True
        return until() if until is not None else True
