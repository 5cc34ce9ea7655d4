"""localize_node: ROS 2 glue around geoloc_ros.localize.Localizer.

Subscribes camera Image + CameraInfo + Odometry (+ an optional altitude topic and the
initial-fix NavSatFix), runs the Localizer on a worker thread fed by a latest-frame-wins
slot (callbacks never block, latency never accumulates), and publishes:
  ~/fix       sensor_msgs/NavSatFix (only while TRACKING; ENU covariance, KNOWN)
  ~/pose      geometry_msgs/PoseWithCovarianceStamped in `world_frame_id` (local ENU at
              the first initial fix), ~/odometry nav_msgs/Odometry (same pose)
  ~/geopose   geographic_msgs/GeoPoseStamped (when that package is installed)
  ~/status    geoloc_ros_msgs/LocalizerStatus (every processed frame)
  ~/heatmap   sensor_msgs/Image mono8 (debug, `publish_heatmap`)
  /diagnostics diagnostic_msgs/DiagnosticArray
Services: ~/relocalize, ~/declare_gps_denied (std_srvs/Trigger), ~/set_initial_fix
(geoloc_ros_msgs/SetInitialFix: a fix, optionally only a prior to relocalize around, and a
heading); the topic ~/set_initial_fix (sensor_msgs/NavSatFix, reliable) does the same for
tools that can only publish.
The GPS-denial rule is documented in geoloc_ros/ros/pipeline.py; every parameter in
geoloc_ros/ros/params.py and config/localize.yaml.
"""
from __future__ import annotations

import math
import queue
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, NavSatFix, NavSatStatus
from nav_msgs.msg import Odometry
from geometry_msgs.msg import PoseWithCovarianceStamped
from diagnostic_msgs.msg import DiagnosticArray
from std_srvs.srv import Trigger

from geoloc_ros.config import ConfigError, load_dataclass
from geoloc_ros.geo.attitude import AttitudeBuffer, roll_pitch_from_quaternion
from geoloc_ros.geo.errors import GeoError
from geoloc_ros.ros import convert, diagnostics, params, qos
from geoloc_ros.ros.pipeline import InitialFixPolicy, LatestSlot, OdometryBuffer, Seed, fix_sigma_m

try:  # built by scripts/build_msgs.sh (venv) or colcon (workspace)
    from geoloc_ros_msgs.msg import LocalizerStatus
    from geoloc_ros_msgs.srv import SetInitialFix
except ImportError:  # pragma: no cover - reported at start
    LocalizerStatus = SetInitialFix = None

try:  # MAVROS users: GPS_INPUT through MAVROS' gps_input plugin
    from mavros_msgs.msg import GPSINPUT as _MavrosGpsInput  # type: ignore
except ImportError:
    _MavrosGpsInput = None


# Longest wait for odometry to reach an image's stamp before the nearest older sample is used.
ODOM_WAIT_S = 0.05


def default_weights_path() -> Path:
    """The packaged weights (see geoloc_ros.model.weights.packaged_weights_path)."""
    from geoloc_ros.model.weights import WeightsError, packaged_weights_path
    try:
        return packaged_weights_path()
    except WeightsError as exc:
        raise ConfigError(f"parameter 'weights': {exc}") from None


class LocalizeNode(Node):
    """See the module docstring. `localizer_factory(cfg, orthomap, net, device)` replaces
    the Localizer class (tests, alternative back-ends)."""

    def __init__(self, *, node_name: str = "localize_node", localizer_factory: Callable | None = None,
                 **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        self.p = p = params.declare_and_read(self)
        self.stats = diagnostics.NodeStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()

        # ---- core objects (errors here stop the node with one line, see main())
        from geoloc_ros.geo.orthomap import OrthoMap
        from geoloc_ros.localize.localizer import Localizer, LocalizerConfig

        if p["torch_threads"] > 0:
            import torch
            torch.set_num_threads(p["torch_threads"])
        self.orthomap = OrthoMap.open(Path(p["map"]).expanduser())
        self.loc_cfg = load_dataclass(LocalizerConfig, params.localizer_overrides(p), where="localizer.* parameters")
        self.net = self._load_net(p["weights"])
        self.device = p["device"]
        if self.net is not None:
            from geoloc_ros.model.device import pick_device
            self.device = pick_device(p["device"])
        self._factory = localizer_factory or Localizer
        self.localizer = self._factory(self.loc_cfg, self.orthomap, self.net, self.device)
        if getattr(self.localizer, "relocalizer_error", ""):
            self.get_logger().warning("retrieval relocalization unavailable, using the window sweep: "
                                      + self.localizer.relocalizer_error)
        if self.net is not None and p["warmup"]:
            self._warmup()

        # ---- input-side state
        self.slot = LatestSlot()
        self.odom = OdometryBuffer()
        self.attitude = AttitudeBuffer()  # odometry roll/pitch -> Frame.roll/pitch (body-fixed camera)
        self.policy = InitialFixPolicy(p["gps_denied_after"], p["gps_timeout_s"], p["gps_reseed_interval_s"],
                                       p["initial_fix_sigma_m"])
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._intrinsics = None
        self._altitude: tuple[float, float] | None = None  # (arrival monotonic, metres AGL)
        self._enu = None  # world frame origin (LocalENU), set by the first seed
        self._last_stamp: float | None = None
        self._last_state: str | None = None
        self._loc_state = "INITIALIZING"
        self._last_odom_stamp: float | None = None

        # ---- outputs
        self.pub_fix = self.create_publisher(NavSatFix, "~/fix", qos.OUTPUT)
        self.pub_pose = self.create_publisher(PoseWithCovarianceStamped, "~/pose", qos.OUTPUT) \
            if p["publish_pose"] else None
        self.pub_odom = self.create_publisher(Odometry, "~/odometry", qos.OUTPUT) if p["publish_odometry"] else None
        self.pub_geopose = None
        if p["publish_geopose"] and convert.HAVE_GEOGRAPHIC_MSGS:
            from geographic_msgs.msg import GeoPoseStamped  # type: ignore
            self.pub_geopose = self.create_publisher(GeoPoseStamped, "~/geopose", qos.OUTPUT)
        self.pub_heatmap = self.create_publisher(Image, "~/heatmap", qos.DEBUG_IMAGE) if p["publish_heatmap"] else None
        self.pub_status = self.create_publisher(LocalizerStatus, "~/status", qos.OUTPUT) if LocalizerStatus else None
        if LocalizerStatus is None:
            self.get_logger().warning("geoloc_ros_msgs is not built: ~/status is off (run scripts/build_msgs.sh "
                                   "or build interfaces/geoloc_ros_msgs with colcon)")
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
        self._diag_lock = threading.Lock()
        self.mav = None
        if p["mavlink.enabled"]:
            from geoloc_ros.outputs.mavlink import GpsInputConfig, GpsInputSender
            try:
                self.mav = GpsInputSender(GpsInputConfig(**params.mavlink_settings(p)))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"mavlink: cannot open {p['mavlink.url']!r}: {exc}") from None
        self.pub_mavros = None
        if p["mavros_gps_input_topic"]:
            if _MavrosGpsInput is None:
                self.get_logger().warning("mavros_gps_input_topic is set but mavros_msgs is not installed: ignored")
            else:
                self.pub_mavros = self.create_publisher(_MavrosGpsInput, p["mavros_gps_input_topic"], qos.OUTPUT)
                self._mavros_last = -math.inf

        # ---- inputs
        self.create_subscription(Image, p["image_topic"], self._on_image, qos.IMAGE_IN)
        self.create_subscription(CameraInfo, p["camera_info_topic"], self._on_camera_info, qos.CAMERA_INFO_IN)
        self.create_subscription(Odometry, p["odom_topic"], self._on_odom, qos.ODOM_IN)
        if p["initial_fix_topic"]:
            self.create_subscription(NavSatFix, p["initial_fix_topic"], self._on_gps_fix, qos.FIX_IN)
        self.create_subscription(NavSatFix, "~/set_initial_fix", self._on_set_initial_fix, qos.COMMAND_IN)
        if p["altitude_source"] == "range":
            from sensor_msgs.msg import Range
            self.create_subscription(Range, p["altitude_topic"], self._on_range, qos.ALTITUDE_IN)
        elif p["altitude_source"] == "float64":
            from std_msgs.msg import Float64
            self.create_subscription(Float64, p["altitude_topic"], self._on_float_altitude, qos.ALTITUDE_IN)
        self.create_service(Trigger, "~/relocalize", self._srv_relocalize)
        self.create_service(Trigger, "~/declare_gps_denied", self._srv_declare_denied)
        if SetInitialFix is not None:
            self.create_service(SetInitialFix, "~/set_initial_fix", self._srv_set_initial_fix)
        self.create_timer(p["diagnostics_period_s"], self._on_timer)

        self._worker = threading.Thread(target=self._run_worker, name="geoloc-inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"ready: map {p['map']} ({self.orthomap.width}x{self.orthomap.height} px, "
            f"{self.orthomap.gsd_m:.2f} m/px), model {'none' if self.net is None else p['weights']}, "
            f"device {self.device}, mavlink {'on ' + p['mavlink.url'] if self.mav else 'off'}")

    # ------------------------------------------------------------------ setup helpers
    def _load_net(self, weights: str):
        if not weights or weights.lower() == "none":
            return None
        from geoloc_ros.model.weights import load_weights
        path = default_weights_path() if weights == "default" else Path(weights).expanduser()
        return load_weights(path, device="cpu")

    def _warmup(self) -> None:
        """One dummy forward pass at the localizer's input sizes (allocator, cuDNN autotune)."""
        import torch

        t = time.perf_counter()
        u = int(getattr(self.localizer, "uav_size", 128))
        s = int(getattr(self.localizer, "sat_size", 384))
        dev = getattr(self.localizer, "device", None) or torch.device("cpu")
        with torch.inference_mode():
            self.localizer.net(torch.zeros(1, 3, u, u, device=dev), torch.zeros(1, 3, s, s, device=dev))
        self.get_logger().info(f"model warm-up: {(time.perf_counter() - t) * 1e3:.0f} ms on {dev}")

    def close(self) -> None:
        """Stop the worker and release the map and the MAVLink link."""
        self._stop.set()
        self.slot.close()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        if self.mav is not None:
            self.mav.close()
        try:
            self.orthomap.close()
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------------ callbacks (never block)
    def _on_image(self, msg: Image) -> None:
        now = time.monotonic()
        with self.stats.lock:
            self.stats.frames_received += 1
            self.stats.last_frame_time = now
        if self.slot.put((msg, now)):
            with self.stats.lock:
                self.stats.frames_dropped += 1

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self._intrinsics = convert.camera_info_to_intrinsics(msg)
        except (convert.CameraInfoError, ValueError) as exc:
            self.stats.error("camera_info", str(exc))

    def _on_odom(self, msg: Odometry) -> None:
        try:
            xyz, yaw = convert.odometry_to_pose(msg)
        except convert.OdometryError as exc:
            self.stats.error("odometry", str(exc))
            return
        stamp = convert.stamp_to_float(msg.header.stamp)
        q = msg.pose.pose.orientation
        roll, pitch = roll_pitch_from_quaternion(q.x, q.y, q.z, q.w)
        if not self.odom.add(stamp, xyz, yaw):
            last = self.odom.last_stamp() or stamp
            if last - stamp > self.p["time_jump_reset_s"]:
                self.odom.clear()  # the data restarted (bag loop): the worker resets the localizer
                self.odom.add(stamp, xyz, yaw)
                self.attitude.add(stamp, roll, pitch)  # an older stamp restarts the attitude buffer too
            else:
                self.stats.error("odometry", f"odometry stamp went back {last - stamp:.3f} s: sample ignored")
            return
        self.attitude.add(stamp, roll, pitch)

    def _on_range(self, msg) -> None:
        r = float(msg.range)
        if not math.isfinite(r) or r < msg.min_range or r > msg.max_range:
            self.stats.error("altitude", f"range {r} outside [{msg.min_range}, {msg.max_range}]")
            return
        self._altitude = (time.monotonic(), r)

    def _on_float_altitude(self, msg) -> None:
        v = float(msg.data)
        if not math.isfinite(v):
            self.stats.error("altitude", f"altitude {v} is not finite")
            return
        self._altitude = (time.monotonic(), v)

    def _on_gps_fix(self, msg: NavSatFix) -> None:
        sigma = fix_sigma_m(msg.position_covariance, msg.position_covariance_type, self.p["initial_fix_sigma_m"])
        seed = self.policy.on_fix(ok=msg.status.status >= NavSatStatus.STATUS_FIX, lat=msg.latitude,
                                  lon=msg.longitude, alt=msg.altitude, sigma_m=sigma,
                                  stamp=convert.stamp_to_float(msg.header.stamp), arrival=time.monotonic(),
                                  localizer_state=self._loc_state)
        self._gps_state_changed()
        if seed is not None:
            self._seed(seed)

    def _on_set_initial_fix(self, msg: NavSatFix) -> None:
        error = self._operator_seed(msg)
        if error:
            self.stats.error("set_initial_fix", error)

    def _srv_set_initial_fix(self, request, response):
        heading = request.heading_enu_rad if request.heading_known else None
        if heading is not None and not math.isfinite(heading):
            response.success, response.message = False, f"heading_enu_rad {heading} is not finite"
            return response
        error = self._operator_seed(request.fix, relocalize=bool(request.relocalize), yaw=heading)
        response.success = not error
        response.message = error or ("relocalizing around the fix" if request.relocalize else "initial fix set")
        return response

    def _operator_seed(self, msg: NavSatFix, relocalize: bool = False, yaw: float | None = None) -> str:
        """Seed from an operator's NavSatFix (topic or service); '' or why it was refused."""
        sigma = fix_sigma_m(msg.position_covariance, msg.position_covariance_type, self.p["initial_fix_sigma_m"])
        ok = all(math.isfinite(v) for v in (msg.latitude, msg.longitude)) and abs(msg.latitude) <= 90 \
            and abs(msg.longitude) <= 180
        if not ok:
            return f"~/set_initial_fix with invalid position ({msg.latitude}, {msg.longitude}) ignored"
        if not self.orthomap.contains(msg.latitude, msg.longitude) and not relocalize:
            return (f"~/set_initial_fix at ({msg.latitude:.6f}, {msg.longitude:.6f}) is outside the map "
                    f"{self.p['map']}: ignored")
        stamp = convert.stamp_to_float(msg.header.stamp)
        if stamp == 0.0 and self._last_stamp is not None:
            stamp = self._last_stamp  # an unstamped operator fix means "now"
        self._seed(Seed(msg.latitude, msg.longitude, msg.altitude if math.isfinite(msg.altitude) else 0.0,
                        sigma, stamp, "operator", yaw=yaw, relocalize=relocalize))
        return ""

    def _seed(self, seed: Seed) -> None:
        from geoloc_ros.geo.frames import LocalENU

        yaw_from = "given"
        if seed.source.startswith("gps") and seed.yaw is None:
            seed.yaw = self._gps_track_yaw(seed.stamp)
            yaw_from = "from the GPS track"
        with self._lock:
            if self._enu is None:
                self._enu = LocalENU(seed.lat, seed.lon, seed.alt)
        self._commands.put(("seed", seed))
        yaw = "unknown" if seed.yaw is None else f"{math.degrees(seed.yaw):.1f} deg {yaw_from}"
        self.get_logger().info(f"initial fix ({seed.source}): {seed.lat:.7f}, {seed.lon:.7f}, "
                               f"alt {seed.alt:.1f} m, sigma {seed.sigma_m:.1f} m, heading {yaw}")

    def _gps_track_yaw(self, stamp: float) -> float | None:
        """ENU heading at `stamp` from the trusted GPS track vs odometry (localize.alignment,
        as the offline replay does); None while the track is too short or the UAV hovers."""
        from geoloc_ros.localize.alignment import odom_yaw_offset
        from geoloc_ros.localize.filter import wrap_angle

        max_age = self.p["odom_max_age_s"]

        def xy_at(t: float):
            try:
                return self.odom.at(t, max_age)[0][:2]
            except LookupError:
                return None

        rows = [r for r in self.policy.track() if r[0] <= stamp]
        offset = odom_yaw_offset(rows, xy_at)
        if offset is None:
            return None
        try:
            odom_yaw = self.odom.at(stamp, max_age)[1]
        except LookupError:
            return None
        return wrap_angle(odom_yaw + offset)

    def _gps_state_changed(self) -> None:
        with self.stats.lock:
            before = self.stats.gps_state
            self.stats.gps_state = self.policy.state
            self.stats.gps_denied_reason = self.policy.denied_reason
        if before != "denied" and self.policy.state == "denied":
            self.get_logger().warning(f"GPS denial declared: {self.policy.denied_reason}; "
                                   f"the initial-fix topic is ignored from now on")
            seed = self.policy.denial_seed(time.monotonic())
            if seed is not None:
                self._seed(seed)

    def _srv_relocalize(self, request, response):
        if not self.stats.seeded:
            response.success, response.message = False, "no initial fix yet: nothing to relocalize from"
        else:
            self._commands.put(("reloc", None))
            response.success, response.message = True, "relocalization requested"
        return response

    def _srv_declare_denied(self, request, response):
        changed = self.policy.deny("declared by service")
        self._gps_state_changed()
        response.success = True
        response.message = "GPS denial declared" if changed else f"already denied ({self.policy.denied_reason})"
        return response

    def _on_timer(self) -> None:
        if self.policy.tick(time.monotonic()):
            self._gps_state_changed()
        self.publish_diagnostics()

    def publish_diagnostics(self) -> None:
        level, msg, kv = diagnostics.summarize(self.stats, stale_after_s=self.p["stale_after_s"])
        arr = diagnostics.to_diagnostic_array(level, msg, kv, self.p["hardware_id"], self.get_clock().now().to_msg())
        with self._diag_lock:
            self.pub_diag.publish(arr)

    # ------------------------------------------------------------------ inference thread
    def _run_worker(self) -> None:
        errors_logged = 0
        while not self._stop.is_set():
            try:
                self._apply_commands()
                item = self.slot.take(timeout=0.1)
                if item is None:
                    continue
                self._process(*item)
            except Exception as exc:  # noqa: BLE001 - keep running, report in diagnostics
                self.stats.error("internal", f"{type(exc).__name__}: {exc}")
                if errors_logged < 5:
                    errors_logged += 1
                    self.get_logger().error("inference step failed:\n" + traceback.format_exc())

    def _apply_commands(self) -> None:
        while True:
            try:
                kind, arg = self._commands.get_nowait()
            except queue.Empty:
                return
            if kind == "seed":
                try:
                    self.localizer.set_initial_fix(arg.lat, arg.lon, arg.alt, arg.sigma_m, arg.stamp, yaw=arg.yaw,
                                                   relocalize=arg.relocalize)
                except ValueError as exc:
                    self.stats.error("initial_fix", f"initial fix rejected: {exc}")
                    continue
                with self.stats.lock:
                    self.stats.seeded = True
            elif kind == "reloc":
                self.localizer.request_relocalization()

    def _skip(self, kind: str, text: str) -> None:
        self.stats.error(kind, text)
        with self.stats.lock:
            self.stats.frames_skipped += 1

    def _restart(self, reason: str) -> None:
        """The data restarted (bag loop, clock reset): fresh localizer, GPS rule from the start."""
        self.get_logger().warning(f"{reason}: restarting the localizer and the GPS rule")
        self.localizer = self._factory(self.loc_cfg, self.orthomap, self.net, self.device)
        self.policy.reset()
        self._gps_state_changed()
        self._last_stamp = None
        self._loc_state = "INITIALIZING"
        with self.stats.lock:
            self.stats.time_jumps += 1
            self.stats.seeded = False
        self.stats.error("time_jump", reason)

    def _altitude_agl(self, odom_z: float) -> float | None:
        if self.p["altitude_source"] == "odom":
            return float(odom_z) - self.p["ground_offset_m"]
        alt = self._altitude
        if alt is None or time.monotonic() - alt[0] > self.p["altitude_max_age_s"]:
            return None
        return alt[1]

    def _frame_intrinsics(self, w: int, h: int):
        intr = self._intrinsics
        if intr is None and self.p["default_hfov_deg"] > 0:
            from geoloc_ros.data.camera import CameraIntrinsics
            intr = CameraIntrinsics.from_fov(w, h, self.p["default_hfov_deg"])
        if intr is None:
            return None
        return convert.scale_intrinsics(intr, w, h)

    def _process(self, msg: Image, arrival: float) -> None:
        from geoloc_ros.localize.localizer import Frame

        stamp = convert.stamp_to_float(msg.header.stamp)
        if self._last_stamp is not None:
            back = self._last_stamp - stamp
            if back > self.p["time_jump_reset_s"]:
                self._restart(f"image time jumped back {back:.2f} s")
            elif back >= 0:
                self._skip("out_of_order", f"image stamp not newer than the last one ({back:.3f} s older)")
                return
        try:
            image = convert.image_to_rgb_any(msg)
        except convert.ImageConversionError as exc:
            self._skip("image", f"bad image: {exc}")
            return
        intr = self._frame_intrinsics(image.shape[1], image.shape[0])
        if intr is None:
            self._skip("camera_info", "no CameraInfo received yet (set default_hfov_deg to run without it)")
            return
        self.odom.wait_for(stamp, ODOM_WAIT_S)
        try:
            xyz, yaw = self.odom.at(stamp, self.p["odom_max_age_s"])
        except LookupError as exc:
            self._skip("odometry", f"no odometry for the frame: {exc}")
            return
        agl = self._altitude_agl(xyz[2])
        if agl is None:
            self._skip("altitude", f"no recent altitude on {self.p['altitude_topic']}")
            return
        if agl < self.p["min_altitude_m"]:
            self._skip("altitude", f"height above ground {agl:.1f} m < min_altitude_m {self.p['min_altitude_m']:g}")
            return
        roll, pitch = self.attitude.at(stamp)
        frame = Frame(image=image, stamp=stamp, odom_xyz=np.asarray(xyz, dtype=np.float64), odom_yaw=float(yaw),
                      altitude_agl=float(agl), intrinsics=intr, roll=float(roll), pitch=float(pitch))
        t_start = time.monotonic()
        est = self.localizer.step(frame)
        self._last_stamp = stamp
        self._publish(est, arrival, (t_start - arrival) * 1e3)

    # ------------------------------------------------------------------ outputs
    def _publish(self, est, arrival: float, queue_ms: float) -> None:
        state = str(est.state)
        self._loc_state = state
        good = convert.estimate_is_publishable(est)
        if good:
            if self._enu is None:  # seeded from LocalizerConfig.initial_fix: anchor at the first fix
                from geoloc_ros.geo.frames import LocalENU
                with self._lock:
                    self._enu = LocalENU(est.lat, est.lon, est.alt)
            self.pub_fix.publish(convert.estimate_to_navsatfix(est, self.p["base_frame_id"]))
            if self.pub_pose is not None:
                self.pub_pose.publish(convert.estimate_to_pose(est, self._enu, self.p["world_frame_id"]))
            if self.pub_odom is not None:
                self.pub_odom.publish(convert.estimate_to_odometry(est, self._enu, self.p["world_frame_id"],
                                                                   self.p["base_frame_id"]))
            if self.pub_geopose is not None:
                self.pub_geopose.publish(convert.estimate_to_geopose(est, self.p["base_frame_id"]))
        if self.pub_heatmap is not None and getattr(est, "heatmap", None) is not None:
            self.pub_heatmap.publish(convert.heatmap_to_image(est.heatmap, stamp=est.stamp,
                                                              frame_id=self.p["world_frame_id"]))
        if self.mav is not None:
            self.mav.maybe_send(est)
        if self.pub_mavros is not None:
            self._publish_mavros(est)
        node_ms = (time.monotonic() - arrival) * 1e3
        if self.pub_status is not None:
            self.pub_status.publish(self._status_msg(est, queue_ms, node_ms))
        t = getattr(est, "timings_ms", {}) or {}
        with self.stats.lock:
            st = self.stats
            st.estimate = est
            st.frames_processed += 1
            st.fixes_published += int(good)
            st.node_ms.append(node_ms)
            st.queue_ms.append(queue_ms)
            st.model_ms.append(float(t.get("model", 0.0)))
            st.total_ms.append(float(t.get("total", 0.0)))
            if self.mav is not None:
                st.mavlink_sent, st.mavlink_error = self.mav.sent, self.mav.last_error
        if state != self._last_state:
            self.get_logger().info(f"state {self._last_state} -> {state}" + (f": {est.message}" if est.message else ""))
            self._last_state = state
            self.publish_diagnostics()

    def _status_msg(self, est, queue_ms: float, node_ms: float):
        m = LocalizerStatus()
        m.header.stamp = convert.float_to_stamp(est.stamp)
        m.header.frame_id = self.p["world_frame_id"]
        name = str(est.state)
        m.state = int(getattr(LocalizerStatus, "STATE_" + name, 255))
        m.state_name = name
        m.fix_valid = bool(convert.estimate_is_publishable(est))
        m.accepted = bool(est.accepted)
        m.confidence = float(est.confidence) if math.isfinite(est.confidence) else 0.0
        m.search_size_m = float(est.search_size_m) if math.isfinite(est.search_size_m) else 0.0
        m.rejections = max(int(est.rejections), 0)
        m.consecutive_rejections = max(int(est.consecutive_rejections), 0)
        m.gps_denied = self.policy.denied
        m.frames_dropped = self.stats.frames_dropped
        m.latitude, m.longitude, m.altitude = float(est.lat), float(est.lon), float(est.alt)
        m.yaw = float(est.yaw)
        m.position_covariance = [float(v) for v in np.asarray(est.cov_enu, dtype=np.float64).reshape(-1)[:9]]
        t = getattr(est, "timings_ms", {}) or {}
        for k in ("predict", "prepare", "crop", "model", "decode", "update", "total"):
            setattr(m, f"t_{k}_ms", float(t.get(k, -1.0)))
        m.t_queue_ms, m.t_node_ms = float(queue_ms), float(node_ms)
        m.message = str(est.message or "")
        return m

    def _publish_mavros(self, est) -> None:
        from geoloc_ros.outputs.mavlink import GpsInputConfig, gps_input_fields

        now = time.monotonic()
        rate = self.p["mavlink.rate_hz"]
        if now - self._mavros_last < 1.0 / rate:
            return
        self._mavros_last = now
        f = gps_input_fields(est, GpsInputConfig(**params.mavlink_settings(self.p)))
        m = _MavrosGpsInput()
        m.header.stamp = convert.float_to_stamp(est.stamp)
        m.header.frame_id = self.p["base_frame_id"]
        for k, v in f.items():
            if k == "time_usec":
                continue
            if hasattr(m, k):
                setattr(m, k, v)
        self.pub_mavros.publish(m)


def main(argv: list[str] | None = None) -> int:
    """Console script / ROS executable `localize_node` (`--ros-args -p map:=... --params-file ...`).

    The command line is checked before rclpy.init: `--help` needs no map and no ROS graph, and
    every value of every params file and -p is typed and range-checked here, because rcl's
    merge of several sources silently keeps one of two differently typed values."""
    from rclpy.executors import ExternalShutdownException

    args = sys.argv if argv is None else ["localize_node", *argv]
    try:
        cmd = params.split_ros_args(args[1:])
        if cmd.wants_help:
            print(params.help_text(params.NODE_NAME))
            return 0
        params.check_command_line(cmd, params.NODE_NAME)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        rclpy.init(args=args)
    except Exception as exc:  # noqa: BLE001 - rcl's argument errors (RCLError) carry the reason
        text = str(exc).split(", at ")[0].replace("failed to initialize rcl: ", "")
        print(f"error: bad ROS arguments: {text}", file=sys.stderr)
        return 2
    node = None
    try:
        try:
            node = LocalizeNode()
        except (ConfigError, GeoError, ValueError, OSError) as exc:  # WeightsError is a ValueError
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            rclpy.spin(node)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except Exception:  # noqa: BLE001
            # SIGINT shuts the context down from the signal handler; if that lands while the
            # executor builds its wait set, rcl reports an invalid context: a normal stop
            if rclpy.ok():
                raise
        return 0
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
