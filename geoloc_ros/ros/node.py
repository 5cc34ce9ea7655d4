"""localize_node: ROS 2 glue around geoloc_ros.runtime.Session (which runs the Localizer).

Subscribes camera Image + CameraInfo + Odometry (+ an optional altitude topic and the
initial-fix NavSatFix), runs the Session on a worker thread fed by a latest-frame-wins
slot (callbacks never block, latency never accumulates), and publishes:
  ~/fix       sensor_msgs/NavSatFix (only while TRACKING; ENU covariance, KNOWN)
  ~/pose      geometry_msgs/PoseWithCovarianceStamped in `world_frame_id` (local ENU at
              the first initial fix), ~/odometry nav_msgs/Odometry (same pose)
  ~/geopose   geographic_msgs/GeoPoseStamped (when that package is installed)
  ~/status    geoloc_ros_msgs/LocalizerStatus (every frame: processed, or skipped and why)
  ~/heatmap   sensor_msgs/Image mono8 (debug, `publish_heatmap`)
  /diagnostics diagnostic_msgs/DiagnosticArray
  /tf         the fix as map -> odom (or map -> base_link) when `tf.enabled` (ros/tf_out.py)
  /fmu/in/aux_global_position  px4_msgs/AuxGlobalPosition when `px4.enabled` (ros/px4.py)
Services: ~/relocalize, ~/declare_gps_denied (std_srvs/Trigger), ~/set_initial_fix
(geoloc_ros_msgs/SetInitialFix: a fix, optionally only a prior to relocalize around, and a
heading); the topic ~/set_initial_fix (sensor_msgs/NavSatFix, reliable) does the same for
tools that can only publish.
Every input rule (decoding, skipping, the GPS-denial rule, restarts) lives in
geoloc_ros/runtime, shared with the offline replay; every parameter in
geoloc_ros/ros/params.py and config/localize.yaml. Every rule that needs time (GPS timeout,
altitude freshness, camera staleness in /diagnostics, output rate limits) uses the node's
clock, so a bag played with /clock and use_sim_time at any rate behaves like the flight;
wall time (time.monotonic) only measures latency and bounds waits for messages in flight.
The core's Python loggers reach /rosout through ros/logbridge.py.
"""
from __future__ import annotations

import math
import sys
import threading
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, NavSatFix
from nav_msgs.msg import Odometry
from geometry_msgs.msg import PoseWithCovarianceStamped
from diagnostic_msgs.msg import DiagnosticArray
from std_srvs.srv import Trigger

from geoloc_ros.config import ConfigError, load_dataclass
from geoloc_ros.geo.errors import GeoError
from geoloc_ros.ros import convert, diagnostics, logbridge, params, px4, qos, tf_out
from geoloc_ros.ros.pipeline import LatestSlot
from geoloc_ros.runtime import GpsRuleConfig, InputConfig, Session
from geoloc_ros.runtime.resets import ResetCounter, discontinuity_key
from geoloc_ros.runtime.session import ODOM_WAIT_S

try:  # built by scripts/build_msgs.sh (venv) or colcon (workspace)
    from geoloc_ros_msgs.msg import LocalizerStatus
    from geoloc_ros_msgs.srv import SetInitialFix
except ImportError:  # pragma: no cover - reported at start
    LocalizerStatus = SetInitialFix = None

try:  # MAVROS users: GPS_INPUT through MAVROS' gps_input plugin
    from mavros_msgs.msg import GPSINPUT as _MavrosGpsInput  # type: ignore
except ImportError:
    _MavrosGpsInput = None

#: how often the GPS timeout is checked [s] (the rule's decisions land within this)
GPS_TICK_S = 0.1


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
        self.p = params.declare_and_read(self)
        self.stats = diagnostics.NodeStats(started=self._now())
        self._stop = threading.Event()
        # before the core exists: what it logs while being built reaches /rosout too
        self._log_bridge = logbridge.attach(self)
        try:
            self._create_core(localizer_factory)
            self.slot = LatestSlot()
            self._last_state: str | None = None
            self._create_outputs()
            self._create_autopilot_outputs()
            self._create_inputs()
        except BaseException:
            self._log_bridge.detach()
            raise
        self._worker = threading.Thread(target=self._run_worker, name="geoloc-inference", daemon=True)
        self._worker.start()
        self._log_ready()

    # ------------------------------------------------------------------ construction steps
    def _create_core(self, localizer_factory: Callable | None) -> None:
        """Map, localizer configuration, model, place recognizer and the Session (errors here
        stop the node with one line, see main())."""
        from geoloc_ros.geo.orthomap import OrthoMap
        from geoloc_ros.localize import Localizer, LocalizerConfig

        p = self.p
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
        factory = localizer_factory or Localizer
        try:
            inputs = InputConfig.from_params(p)
        except ValueError as exc:
            raise ConfigError(f"parameters: {exc}") from None
        recognizer = None
        if self.loc_cfg.relocalization == "retrieval":
            from geoloc_ros.retrieval.relocalizer import place_recognizer_from_config
            recognizer, why = place_recognizer_from_config(self.loc_cfg, p["map"], self.device if self.net else "cpu")
            if why:
                self.get_logger().warning(f"retrieval relocalization unavailable, using the window sweep: {why}")

        def make_localizer():
            if recognizer is None:
                return factory(self.loc_cfg, self.orthomap, self.net, self.device)
            return factory(self.loc_cfg, self.orthomap, self.net, self.device, relocalization=recognizer)

        self.session = Session(make_localizer, inputs, GpsRuleConfig.from_params(p), report=self._report,
                               log=self._log)
        if self.net is not None and p["warmup"]:
            self._warmup()

    def _create_outputs(self) -> None:
        """~/fix, ~/pose, ~/odometry, ~/geopose, ~/heatmap, ~/status, /diagnostics, /tf."""
        p = self.p
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
        self.tf = None
        if p["tf.enabled"]:
            why = tf_out.available()
            if why:
                self.get_logger().warning(f"tf.enabled but {why}: no transforms are broadcast")
            else:
                self.tf = tf_out.TfOutput(self, p["tf.mode"], p["world_frame_id"], p["tf.odom_frame_id"],
                                          p["base_frame_id"])

    def _create_autopilot_outputs(self) -> None:
        """MAVLink GPS_INPUT, MAVROS GPSINPUT, PX4 AuxGlobalPosition (each optional)."""
        p = self.p
        self.mav = None
        if p["mavlink.enabled"]:
            from geoloc_ros.outputs.mavlink import GpsInputConfig, GpsInputSender
            try:
                self.mav = GpsInputSender(GpsInputConfig(**params.mavlink_settings(p)))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"mavlink: {exc}") from None
        self.pub_mavros = None
        self._mavros_last = -math.inf
        if p["mavros_gps_input_topic"]:
            if _MavrosGpsInput is None:
                self.get_logger().warning("mavros_gps_input_topic is set but mavros_msgs is not installed: ignored")
            else:
                self.pub_mavros = self.create_publisher(_MavrosGpsInput, p["mavros_gps_input_topic"], qos.OUTPUT)
        self.pub_px4 = None
        self.px4_resets = ResetCounter()
        if p["px4.enabled"]:
            if px4.AuxGlobalPosition is None:
                self.get_logger().warning("px4.enabled but px4_msgs is not installed: no AuxGlobalPosition is "
                                          "published (docs/AUTOPILOT.md)")
            else:
                self.pub_px4 = self.create_publisher(px4.AuxGlobalPosition, p["px4.topic"], qos.PX4_IN)

    def _create_inputs(self) -> None:
        """Subscriptions, services and timers (the timers run on the node's clock)."""
        p = self.p
        self.create_subscription(Image, p["image_topic"], self._on_image, qos.IMAGE_IN)
        self.create_subscription(CameraInfo, p["camera_info_topic"], self._on_camera_info, qos.CAMERA_INFO_IN)
        self.create_subscription(Odometry, p["odom_topic"], self.session.on_odometry, qos.ODOM_IN)
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
        self.create_timer(p["diagnostics_period_s"], self.publish_diagnostics)
        self.create_timer(GPS_TICK_S, self._on_gps_tick)

    def _log_ready(self) -> None:
        p = self.p
        sim = " (sim time)" if self.get_parameter("use_sim_time").value else ""
        self.get_logger().info(
            f"ready: map {p['map']} ({self.orthomap.width}x{self.orthomap.height} px, "
            f"{self.orthomap.gsd_m:.2f} m/px), model {'none' if self.net is None else p['weights']}, "
            f"device {self.device}, mavlink {'on ' + p['mavlink.url'] if self.mav else 'off'}, "
            f"tf {self.tf.mode if self.tf else 'off'}, px4 {p['px4.topic'] if self.pub_px4 else 'off'}{sim}")

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

        loc = self.session.localizer
        t = time.perf_counter()
        u = int(getattr(loc, "uav_size", 128))
        s = int(getattr(loc, "sat_size", 384))
        dev = getattr(loc, "device", None) or torch.device("cpu")
        with torch.inference_mode():
            loc.net(torch.zeros(1, 3, u, u, device=dev), torch.zeros(1, 3, s, s, device=dev))
        self.get_logger().info(f"model warm-up: {(time.perf_counter() - t) * 1e3:.0f} ms on {dev}")

    def close(self) -> None:
        """Stop the worker and release the map and the MAVLink link."""
        self._stop.set()
        self._log_bridge.detach()
        self.slot.close()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        if self.mav is not None:
            self.mav.close()
        try:
            self.orthomap.close()
        except Exception:  # noqa: BLE001
            pass

    @property
    def localizer(self):
        """The Session's current Localizer (a data restart replaces it)."""
        return self.session.localizer

    def _now(self) -> float:
        """The node's clock in seconds (wall time, or /clock with use_sim_time)."""
        return self.get_clock().now().nanoseconds * 1e-9

    def _report(self, kind: str, text: str) -> None:
        self.stats.error(kind, text, now=self._now())
        if kind == "time_jump":
            with self.stats.lock:
                self.stats.time_jumps += 1

    def _log(self, level: str, text: str) -> None:
        # rclpy ties a severity to each call site: one call line per severity
        if level == "warning":
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)

    # ------------------------------------------------------------------ callbacks (never block)
    def _on_image(self, msg: Image) -> None:
        arrival = time.monotonic()  # wall time: latency only
        with self.stats.lock:
            self.stats.frames_received += 1
            self.stats.last_frame_time = self._now()
        if self.slot.put((msg, arrival)):
            with self.stats.lock:
                self.stats.frames_dropped += 1

    def _on_camera_info(self, msg: CameraInfo) -> None:
        with self.stats.lock:
            self.stats.last_camera_info_time = self._now()
        self.session.on_camera_info(msg)

    def _on_range(self, msg) -> None:
        r = float(msg.range)
        if not math.isfinite(r) or r < msg.min_range or r > msg.max_range:
            self.stats.error("altitude", f"range {r} outside [{msg.min_range}, {msg.max_range}]")
            return
        self.session.on_altitude(r, self._now())

    def _on_float_altitude(self, msg) -> None:
        self.session.on_altitude(float(msg.data), self._now())

    def _on_gps_fix(self, msg: NavSatFix) -> None:
        self.session.on_gps_fix(msg, self._now())
        self._gps_state_changed()

    def _on_gps_tick(self) -> None:
        self.session.tick(self._now())
        self._gps_state_changed()

    def _on_set_initial_fix(self, msg: NavSatFix) -> None:
        error = self.session.operator_fix(msg, contains=self.orthomap.contains)
        if error:
            self.stats.error("set_initial_fix", error)
            self.get_logger().warning(error)

    def _srv_set_initial_fix(self, request, response):
        heading = request.heading_enu_rad if request.heading_known else None
        error = self.session.operator_fix(request.fix, relocalize=bool(request.relocalize), yaw=heading,
                                          contains=self.orthomap.contains)
        response.success = not error
        response.message = error or ("relocalizing around the fix" if request.relocalize else "initial fix set")
        return response

    def _gps_state_changed(self) -> None:
        policy = self.session.policy
        with self.stats.lock:
            self.stats.gps_state = policy.state
            self.stats.gps_denied_reason = policy.denied_reason
            self.stats.seeded = self.session.seeded or self.stats.seeded

    def _srv_relocalize(self, request, response):
        error = self.session.request_relocalization()
        response.success = not error
        response.message = error or "relocalization requested"
        return response

    def _srv_declare_denied(self, request, response):
        changed = self.session.declare_gps_denied("declared by service", self._now())
        self._gps_state_changed()
        response.success = True
        policy = self.session.policy
        response.message = "GPS denial declared" if changed else f"already denied ({policy.denied_reason})"
        return response

    def publish_diagnostics(self) -> None:
        now = self._now()
        if self.mav is not None:
            status = self.mav.status()
            # the sender stamps its errors with wall time: seen now, on the node's clock
            self.stats.mavlink_update(SimpleNamespace(sent=status.sent, dropped=status.dropped,
                                                      last_error=status.last_error, last_error_time=None), now=now)
        level, msg, kv = diagnostics.summarize(self.stats, now, stale_after_s=self.p["stale_after_s"])
        arr = diagnostics.to_diagnostic_array(level, msg, kv, self.p["hardware_id"], self.get_clock().now().to_msg())
        with self._diag_lock:
            self.pub_diag.publish(arr)

    # ------------------------------------------------------------------ inference thread
    def _run_worker(self) -> None:
        errors_logged = 0
        while not self._stop.is_set():
            item = self.slot.take(timeout=0.1)
            if item is None:
                continue
            try:
                self._process(*item)
            except Exception as exc:  # noqa: BLE001 - keep running, report in diagnostics
                self.stats.frame_failed(f"{type(exc).__name__}: {exc}", now=self._now())
                if errors_logged < 5:
                    errors_logged += 1
                    self.get_logger().error("inference step failed:\n" + traceback.format_exc())

    def _process(self, msg: Image, arrival: float) -> None:
        t_start = time.monotonic()
        res = self.session.step(msg, self._now(), odom_wait_s=ODOM_WAIT_S)
        with self.stats.lock:
            self.stats.seeded = self.session.seeded
        if res.skip is not None:
            with self.stats.lock:
                self.stats.frames_skipped += 1
            if self.pub_status is not None:
                self.pub_status.publish(self._skip_status_msg(res, (time.monotonic() - arrival) * 1e3))
            return
        self._publish(res.estimate, arrival, (t_start - arrival) * 1e3)
        self.stats.frame_ok()  # after publishing: a publish step that always fails still reaches ERROR

    # ------------------------------------------------------------------ outputs
    def _publish(self, est, arrival: float, queue_ms: float) -> None:
        state = str(est.state)
        good = convert.estimate_is_publishable(est)
        enu = self.session.enu
        if good:
            if enu is None:  # seeded from LocalizerConfig.initial_fix: anchor at the first fix
                from geoloc_ros.geo.frames import LocalENU
                enu = self.session.enu = LocalENU(est.lat, est.lon, est.alt)
            self.pub_fix.publish(convert.estimate_to_navsatfix(est, self.p["base_frame_id"]))
            if self.pub_pose is not None:
                self.pub_pose.publish(convert.estimate_to_pose(est, enu, self.p["world_frame_id"]))
            if self.pub_odom is not None:
                self.pub_odom.publish(convert.estimate_to_odometry(est, enu, self.p["world_frame_id"],
                                                                   self.p["base_frame_id"]))
            if self.pub_geopose is not None:
                self.pub_geopose.publish(convert.estimate_to_geopose(est, self.p["base_frame_id"]))
        if self.pub_heatmap is not None and getattr(est, "heatmap", None) is not None:
            self.pub_heatmap.publish(convert.heatmap_to_image(est.heatmap, stamp=est.stamp,
                                                              frame_id=self.p["world_frame_id"]))
        if good and self.tf is not None:
            self.tf.send(est, enu, self._odom_pose(est.stamp))
        if self.mav is not None:
            self.mav.maybe_send(est)
        if self.pub_mavros is not None:
            self._publish_mavros(est)
        if self.pub_px4 is not None:
            self._publish_px4(est, good)
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
        m.gps_denied = self.session.policy.denied
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

    def _skip_status_msg(self, res, node_ms: float):
        """~/status for a frame that never reached the localizer: no fix, the reason in
        `message` ("skipped (<reason>): ..."), so recorders see every frame's fate."""
        m = LocalizerStatus()
        stamp = res.stamp if math.isfinite(res.stamp) else 0.0
        m.header.stamp = convert.float_to_stamp(stamp)
        m.header.frame_id = self.p["world_frame_id"]
        name = self.session.localizer_state
        m.state = int(getattr(LocalizerStatus, "STATE_" + name, 255))
        m.state_name = name
        m.fix_valid = m.accepted = False
        m.gps_denied = self.session.policy.denied
        m.frames_dropped = self.stats.frames_dropped
        m.latitude = m.longitude = m.altitude = m.yaw = float("nan")
        m.position_covariance = [float("nan")] * 9
        for k in ("predict", "prepare", "crop", "model", "decode", "update", "total"):
            setattr(m, f"t_{k}_ms", -1.0)
        m.t_queue_ms, m.t_node_ms = 0.0, float(node_ms)
        m.message = str(res.skip)
        return m

    def _publish_mavros(self, est) -> None:
        from geoloc_ros.outputs.mavlink import GpsInputConfig, gps_input_fields

        now = self._now()
        rate = self.p["mavlink.rate_hz"]
        if 0.0 <= now - self._mavros_last < 1.0 / rate:  # (< 0: the clock went back, e.g. a bag loop)
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

    def _odom_pose(self, stamp: float) -> tuple[float, ...] | None:
        """Odometry (x, y, z, yaw) at `stamp`, or None when it does not cover it."""
        try:
            return tuple(self.session.assembler.odom.at(stamp, self.session.inputs.odom_max_age_s)[:4])
        except LookupError:
            return None

    def _publish_px4(self, est, good: bool) -> None:
        """AuxGlobalPosition for a published fix (ros/px4.py). The reset counter compares the
        discontinuity counts with those at the previous message, so a jump while no fix was
        published (a seed, a relocalization) still bumps it; the first message is the baseline."""
        if not good:
            return
        counter = self.px4_resets.update(discontinuity_key(self.session))
        fields = px4.aux_global_position_fields(est, agp_id=self.p["px4.id"], reset_counter=counter,
                                                now_s=self._now(), geoid_height_m=self.p["px4.geoid_height_m"])
        self.pub_px4.publish(px4.aux_global_position_msg(fields))


def main(argv: list[str] | None = None) -> int:
    """Console script / ROS executable `localize_node` (`--ros-args -p map:=... --params-file ...`).

    The command line is checked before rclpy.init: `--help` needs no map and no ROS graph, and
    every value of every params file and -p is typed and range-checked here, because rcl's
    merge of several sources silently keeps one of two differently typed values.

    Stopping: Ctrl-C under `ros2 launch` sends SIGINT to the whole process group and launch sends
    its own SIGINT after it, so the node usually gets two. SIGINT and SIGTERM only set a flag
    (rclpy's own handlers are off: they would shut the context down under the worker thread,
    whose next publish then fails, and chain to Python's KeyboardInterrupt); the spin loop sees
    the flag within 0.1 s and the node stops in order: worker joined (with a timeout), node
    destroyed, rclpy shut down. Exit 0, no traceback, however many signals arrive."""
    import signal

    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

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
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():  # else rclpy's handlers (in-process use)
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    node = None
    try:
        try:
            rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO if previous else None)
        except Exception as exc:  # noqa: BLE001 - rcl's argument errors (RCLError) carry the reason
            text = str(exc).split(", at ")[0].replace("failed to initialize rcl: ", "")
            print(f"error: bad ROS arguments: {text}", file=sys.stderr)
            return 2
        try:
            node = LocalizeNode()
        except (ConfigError, GeoError, ValueError, OSError) as exc:  # WeightsError is a ValueError
            print(f"error: {exc}", file=sys.stderr)
            return 2
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.1)  # the node's timers wake it too; a signal is seen within 0.1 s
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except Exception:  # noqa: BLE001
            # the context shut down from outside (rclpy's handlers, in-process use) while the
            # executor built its wait set: rcl reports an invalid context, a normal stop
            if rclpy.ok() and not stop.is_set():
                raise
        return 0
    finally:
        _shutdown(node)
        for sig, handler in previous.items():
            # in-process (tests): the caller's handlers back. As the executable (argv None) the
            # signals are ignored from here to the exit: Python's finalization puts SIG_DFL back
            # for a handler of its own (not for SIG_IGN), and a late second SIGINT would then
            # kill the interpreter while it tears torch and rclpy down (exit -2)
            signal.signal(sig, handler if argv is not None else signal.SIG_IGN)


def _shutdown(node: "LocalizeNode | None") -> None:
    """Stop the worker (joined with a timeout), destroy the node, shut rclpy down; each step on
    its own, so one that fails (a context already shut down by a signal) skips nothing after it.
    A KeyboardInterrupt here (SIGINT while a foreign handler is installed) is swallowed too."""
    steps = [] if node is None else [node.close, node.destroy_node]
    for step in [*steps, rclpy.try_shutdown]:
        try:
            step()
        except (Exception, KeyboardInterrupt):  # noqa: BLE001
            pass


if __name__ == "__main__":
    sys.exit(main())
