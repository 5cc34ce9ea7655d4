"""Every parameter of localize_node: name, type, default, range and meaning, in one table.

Why a table: the node declares each parameter with a descriptor from it (so `ros2 param
describe` shows type, range and meaning), the launch/YAML consistency test reads it, and
the README's parameter table is generated from it. The localizer's own knobs are
declared as `localizer.<field>` straight from `LocalizerConfig`, whose field comments
become the descriptions, so the two never drift apart.

Reading is strict: a value of the wrong type or out of range stops the node with one
line (`error: parameter 'x' ...`), never a traceback.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoloc_ros.config import ConfigError


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any  # bool / int / float / str; its Python type is the parameter type
    description: str
    lo: float | None = None  # inclusive range for numbers
    hi: float | None = None
    choices: tuple[str, ...] = ()  # allowed strings

    @property
    def type_name(self) -> str:
        return {bool: "bool", int: "int", float: "double", str: "string"}[type(self.default)]


_BIG = 1e9

NODE_PARAMS: tuple[ParamSpec, ...] = (
    # -- inputs
    ParamSpec("map", "", "GeoTIFF/COG orthophoto to localize against (required)."),
    ParamSpec("weights", "default", "AMCF-Net weights (.safetensors + .json): 'default' for the packaged "
              "weights, a path, or '' / 'none' to run without a model (dead reckoning, never a fix)."),
    ParamSpec("device", "auto", "Inference device: auto (CUDA when available), cpu, cuda or cuda:N."),
    ParamSpec("torch_threads", 0, "CPU threads for torch (0 = torch default).", 0, 256),
    ParamSpec("warmup", True, "Run one dummy forward pass at start so the first frame is not slow."),
    ParamSpec("image_topic", "/camera/image_raw", "Downward camera sensor_msgs/Image (sensor-data QoS)."),
    ParamSpec("camera_info_topic", "/camera/camera_info", "sensor_msgs/CameraInfo of the camera."),
    ParamSpec("odom_topic", "/odom", "nav_msgs/Odometry, ENU odom frame, z = height above take-off ground."),
    ParamSpec("initial_fix_topic", "/gps/fix", "sensor_msgs/NavSatFix used as initial fix until GPS "
              "denial (e.g. /mavros/global_position/global); '' = none (use ~/set_initial_fix)."),
    ParamSpec("altitude_source", "odom", "Height above ground: 'odom' (odometry z - ground_offset_m), "
              "'range' (sensor_msgs/Range on altitude_topic) or 'float64' (std_msgs/Float64 AGL metres).",
              choices=("odom", "range", "float64")),
    ParamSpec("altitude_topic", "", "Topic for altitude_source 'range' or 'float64'."),
    ParamSpec("ground_offset_m", 0.0, "Terrain height under the flight minus take-off ground height [m] "
              "(altitude_source 'odom': AGL = odom z - this).", -10000.0, 10000.0),
    ParamSpec("min_altitude_m", 2.0, "Frames below this height above ground are skipped [m].", 0.0, 10000.0),
    ParamSpec("altitude_max_age_s", 1.0, "Range/Float64 altitude older than this is not used [s].", 0.01, 3600.0),
    ParamSpec("odom_max_age_s", 0.5, "Largest gap between an image stamp and the nearest odometry [s]; "
              "frames further away are skipped.", 0.001, 60.0),
    ParamSpec("default_hfov_deg", 0.0, "Horizontal field of view used while no CameraInfo has arrived "
              "(0 = wait for CameraInfo) [deg].", 0.0, 178.0),
    # -- GPS denial / initial fix
    ParamSpec("gps_denied_after", 0.0, "Declare GPS denial this many seconds (fix stamps) after the first "
              "fix (0 = only by timeout, NO_FIX or the service).", 0.0, _BIG),
    ParamSpec("gps_timeout_s", 2.0, "Declare GPS denial when no fix arrived for this long (0 = never) [s].",
              0.0, _BIG),
    ParamSpec("gps_reseed_interval_s", 5.0, "While GPS is still trusted and the localizer is LOST or "
              "RELOCALIZING, re-seed it from GPS at most this often (0 = never) [s].", 0.0, _BIG),
    ParamSpec("initial_fix_sigma_m", 5.0, "1-sigma of an initial fix whose covariance is unknown, and the "
              "lower bound for any initial fix [m].", 0.01, 10000.0),
    # -- outputs
    ParamSpec("world_frame_id", "map", "Frame of ~/pose and ~/odometry: local ENU anchored at the first "
              "initial fix."),
    ParamSpec("base_frame_id", "base_link", "Frame of ~/fix and child frame of ~/odometry."),
    ParamSpec("publish_pose", True, "Publish ~/pose (PoseWithCovarianceStamped) while TRACKING."),
    ParamSpec("publish_odometry", True, "Publish ~/odometry (nav_msgs/Odometry) while TRACKING."),
    ParamSpec("publish_geopose", True, "Publish ~/geopose (geographic_msgs/GeoPoseStamped) while TRACKING "
              "when geographic_msgs is installed."),
    ParamSpec("publish_heatmap", False, "Publish the debug heatmap of each frame on ~/heatmap (mono8)."),
    ParamSpec("hardware_id", "geoloc_ros", "hardware_id of the /diagnostics status."),
    ParamSpec("diagnostics_period_s", 1.0, "Period of /diagnostics [s].", 0.05, 60.0),
    ParamSpec("stale_after_s", 3.0, "No camera frame for this long is reported as an error [s].", 0.1, 3600.0),
    ParamSpec("time_jump_reset_s", 1.0, "An image stamp this much older than the previous one (bag loop, "
              "clock reset) restarts the localizer and the GPS rule [s].", 0.01, _BIG),
    ParamSpec("mavros_gps_input_topic", "", "Also publish mavros_msgs/GPSINPUT here (e.g. "
              "/mavros/gps_input/gps_input) when mavros_msgs is installed; '' = off."),
    # -- MAVLink GPS_INPUT (geoloc_ros.outputs.mavlink)
    ParamSpec("mavlink.enabled", False, "Send MAVLink 2 GPS_INPUT to an autopilot (docs/AUTOPILOT.md)."),
    ParamSpec("mavlink.url", "udpout:127.0.0.1:14550", "pymavlink connection: udpout:HOST:PORT, tcp:HOST:PORT "
              "or a serial device such as /dev/ttyACM0."),
    ParamSpec("mavlink.baud", 921600, "Serial baud rate.", 1200, 10000000),
    ParamSpec("mavlink.rate_hz", 5.0, "Most GPS_INPUT messages per second.", 0.1, 50.0),
    ParamSpec("mavlink.gps_id", 0, "GPS instance id on the autopilot.", 0, 255),
    ParamSpec("mavlink.source_system", 1, "MAVLink system id to send as (the vehicle's).", 1, 255),
    ParamSpec("mavlink.source_component", 191, "MAVLink component id (191 = onboard computer).", 1, 255),
    ParamSpec("mavlink.satellites_visible", 10, "satellites_visible reported while TRACKING.", 0, 255),
    ParamSpec("mavlink.dop_uere_m", 5.0, "hdop = horiz_accuracy / this (and vdop likewise) [m].", 0.01, 1000.0),
    ParamSpec("mavlink.geoid_height_m", 0.0, "Geoid height N: GPS_INPUT alt (MSL) = ellipsoidal alt - N [m].",
              -200.0, 200.0),
    ParamSpec("mavlink.leap_seconds", 18, "GPS - UTC leap seconds for the GPS week time.", 0, 100),
    ParamSpec("mavlink.send_when_not_tracking", True, "While not TRACKING send fix_type 1 (no fix) instead "
              "of nothing."),
    ParamSpec("mavlink.heartbeat", True, "Send a 1 Hz HEARTBEAT as an onboard controller."),
)

LOCALIZER_PREFIX = "localizer."

# rclpy declares these itself; launch files may set them.
BUILTIN_PARAMS = ("use_sim_time",)


def _field_comments(cls) -> dict[str, str]:
    """`name: type = default  # comment` lines of a dataclass's source -> {name: comment}."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out = {}
    for m in re.finditer(r"^\s+(\w+)\s*:[^=\n]*=[^#\n]*#\s*(.+)$", src, re.MULTILINE):
        out[m.group(1)] = m.group(2).strip()
    return out


def localizer_param_specs() -> list[ParamSpec]:
    """`localizer.<field>` specs for the scalar fields of LocalizerConfig (tuples such as
    initial_fix are left to the node's own initial-fix handling)."""
    from geoloc_ros.localize.config import RELOCALIZATION_MODES, LocalizerConfig

    comments = _field_comments(LocalizerConfig)
    default = LocalizerConfig()
    specs = []
    for f in dataclasses.fields(LocalizerConfig):
        value = getattr(default, f.name)
        if type(value) not in (bool, int, float, str):
            continue
        lo, hi = LocalizerConfig.RANGES.get(f.name, (None, None))
        choices = RELOCALIZATION_MODES if f.name == "relocalization" else ()
        specs.append(ParamSpec(LOCALIZER_PREFIX + f.name, value, comments.get(f.name, f"LocalizerConfig.{f.name}"),
                               lo, hi, choices))
    return specs


def all_param_specs() -> list[ParamSpec]:
    return list(NODE_PARAMS) + localizer_param_specs()


# ----------------------------------------------------------------------------- rclpy side


def _descriptor(spec: ParamSpec):
    from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                    ParameterType)

    ptype = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}[type(spec.default)]
    d = ParameterDescriptor(name=spec.name, type=ptype, description=spec.description, read_only=True)
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.lo is not None and isinstance(spec.default, float):
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.lo), to_value=float(spec.hi), step=0.0)]
    elif spec.lo is not None and isinstance(spec.default, int) and not isinstance(spec.default, bool):
        d.integer_range = [IntegerRange(from_value=int(spec.lo), to_value=int(spec.hi), step=1)]
    return d


_TYPE_WORDS = {"bool": "a bool (true/false)", "int": "an integer", "double": "a double (write 2.0, not 2)",
               "string": "a string"}


def declare_and_read(node) -> dict[str, Any]:
    """Declare every parameter on `node` and return {name: value}; raises ConfigError with
    one line for a wrong type, an out-of-range value or a bad choice."""
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    values: dict[str, Any] = {}
    for spec in all_param_specs():
        try:
            p = node.declare_parameter(spec.name, spec.default, _descriptor(spec))
        except InvalidParameterTypeException as exc:
            want = _TYPE_WORDS[spec.type_name]
            got = re.search(r"of type '(\w+)'", str(exc))
            raise ConfigError(f"parameter '{spec.name}' must be {want}"
                              + (f", got {got.group(1).lower()}" if got else "")) from None
        except InvalidParameterValueException:
            raise ConfigError(f"parameter '{spec.name}' is out of range [{spec.lo}, {spec.hi}]") from None
        values[spec.name] = p.value
    validate(values)
    return values


def validate(values: dict[str, Any]) -> None:
    """Checks that need more than a type and a range (choices, files, cross-field rules)."""
    for spec in NODE_PARAMS:
        v = values.get(spec.name, spec.default)
        if spec.choices and v not in spec.choices:
            raise ConfigError(f"parameter '{spec.name}' must be one of {', '.join(spec.choices)}, got {v!r}")
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"parameter '{spec.name}' must be finite, got {v}")
    hfov = values.get("default_hfov_deg", 0.0)
    if 0.0 < hfov <= 1.0:
        raise ConfigError(f"parameter 'default_hfov_deg' must be 0 (off) or in (1, 178], got {hfov}")
    if not values.get("map"):
        raise ConfigError("parameter 'map' is required (path to a GeoTIFF/COG orthophoto)")
    if not Path(values["map"]).expanduser().is_file():
        raise ConfigError(f"parameter 'map': file not found: {values['map']}")
    dev = values.get("device", "auto")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", dev):
        raise ConfigError(f"parameter 'device' must be auto, cpu, cuda or cuda:N, got {dev!r}")
    if values.get("altitude_source", "odom") != "odom" and not values.get("altitude_topic"):
        raise ConfigError(f"parameter 'altitude_topic' is required for altitude_source "
                          f"'{values['altitude_source']}'")
    for key in ("image_topic", "camera_info_topic", "odom_topic"):
        if not values.get(key):
            raise ConfigError(f"parameter '{key}' must not be empty")


def localizer_overrides(values: dict[str, Any]) -> dict[str, Any]:
    """{field: value} for LocalizerConfig from the `localizer.*` parameters."""
    n = len(LOCALIZER_PREFIX)
    return {k[n:]: v for k, v in values.items() if k.startswith(LOCALIZER_PREFIX)}


def mavlink_settings(values: dict[str, Any]) -> dict[str, Any]:
    """{field: value} for outputs.mavlink.GpsInputConfig from the `mavlink.*` parameters."""
    return {k[len("mavlink."):]: v for k, v in values.items()
            if k.startswith("mavlink.") and k != "mavlink.enabled"}


def markdown_table() -> str:
    """README-ready table of every parameter."""
    rows = ["| name | type | default | meaning |", "|---|---|---|---|"]
    for s in all_param_specs():
        d = repr(s.default) if isinstance(s.default, str) else str(s.default).lower() \
            if isinstance(s.default, bool) else str(s.default)
        rng = f" Range [{s.lo:g}, {s.hi:g}]." if s.lo is not None else ""
        rows.append(f"| `{s.name}` | {s.type_name} | `{d}` | {s.description}{rng} |")
    return "\n".join(rows)


_YAML_SECTIONS = {"map": "inputs", "gps_denied_after": "GPS denial / initial fix (rule: geoloc_ros/ros/pipeline.py)",
                  "world_frame_id": "outputs",
                  "mavlink.enabled": "MAVLink GPS_INPUT to an autopilot (docs/AUTOPILOT.md)"}


def yaml_text() -> str:
    """config/localize.yaml, generated from the table (regenerate after LocalizerConfig changes:
    `python -c "from geoloc_ros.ros.params import yaml_text; print(yaml_text(), end='')" > config/localize.yaml`)."""
    import textwrap

    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, float):
            if not math.isfinite(v):
                return ".nan" if math.isnan(v) else (".inf" if v > 0 else "-.inf")
            r = repr(v)  # YAML 1.1 (and PyYAML) read 1e-07 as a string: write 1.0e-07
            mant, _, exp = r.partition("e")
            return f"{mant if '.' in mant else mant + '.0'}e{exp}" if exp else r
        return str(v)

    out = ["# localize_node parameters (geoloc_ros). Every parameter the node declares is listed here",
           "# with its default and meaning; wrong types or out-of-range values stop the node with one",
           "# line at start. Types are strict: write 2.0 for a double, 2 for an integer.",
           "#   localize_node --ros-args --params-file config/localize.yaml -p map:=/path/map.tif",
           "#   ros2 launch geoloc_ros localize.launch.py map:=/path/map.tif",
           "# Generated by geoloc_ros.ros.params.yaml_text() (the README table: markdown_table()).",
           "/**:", "  ros__parameters:"]
    in_mav = False
    for s in NODE_PARAMS:
        if s.name in _YAML_SECTIONS:
            out += ["", f"    # ---- {_YAML_SECTIONS[s.name]}"]
        if s.name.startswith("mavlink."):
            if not in_mav:
                out.append("    mavlink:")
                in_mav = True
            ind, key = "      ", s.name.split(".", 1)[1]
        else:
            ind, key = "    ", s.name
        rng = f" Range [{s.lo:g}, {s.hi:g}]." if s.lo is not None else ""
        out += [f"{ind}# {line}" for line in textwrap.wrap(s.description + rng, 92 - len(ind))]
        out.append(f"{ind}{key}: {val(s.default)}")
    out += ["", "    # ---- localizer (geoloc_ros.localize.config.LocalizerConfig: same names, same meaning)",
            "    localizer:"]
    for s in localizer_param_specs():
        out += [f"      # {line}" for line in textwrap.wrap(s.description, 84)]
        out.append(f"      {s.name.split('.', 1)[1]}: {val(s.default)}")
    return "\n".join(out) + "\n"
