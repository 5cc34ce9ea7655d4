"""Every parameter of localize_node: name, type, default, range and meaning, in one table.

Why a table: the node declares each parameter with a descriptor from it (so `ros2 param
describe` shows type, range and meaning), the launch/YAML consistency test reads it, and
the README's parameter table is generated from it. The localizer's own knobs are
declared as `localizer.<field>` straight from `LocalizerConfig`, whose field comments
become the descriptions, so the two never drift apart.

Reading is strict: a value of the wrong type or out of range stops the node with one
line (`error: parameter 'x' ...`), never a traceback. The node's command line is checked
here too, before rclpy.init (`check_command_line`): every --params-file and every -p, so
that rcl's merge of several sources cannot hide a bad value or a misspelt name; and
`help_text()` is what `localize_node --help` prints.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import re
import shutil
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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
    ParamSpec("max_altitude_m", 3000.0, "Frames above this height above ground are skipped [m].", 1.0, 100000.0),
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
    ParamSpec("max_fix_sigma_m", 1000.0, "A GPS fix claiming a larger horizontal 1-sigma is not used as a "
              "position [m].", 1.0, 1e7),
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
    ParamSpec("mavlink.url", "udpout:127.0.0.1:14550", "Link to the autopilot: udpout:HOST:PORT, udpin:HOST:PORT, "
              "tcp:HOST:PORT, tcpin:HOST:PORT or a serial device (/dev/tty*, /dev/serial/...); nothing else is "
              "accepted."),
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
    # -- TF (REP-105)
    ParamSpec("tf.enabled", False, "Broadcast the fix as a transform on /tf at each fix's stamp (tf2_ros, or "
              "tf2_msgs/TFMessage on /tf when only tf2_msgs is installed)."),
    ParamSpec("tf.mode", "map_odom", "map_odom: world_frame_id -> tf.odom_frame_id, the correction that makes "
              "odometry land on the fix (REP-105; the odometry source broadcasts odom -> base); map_base: "
              "world_frame_id -> base_frame_id directly (no odometry TF in the system).",
              choices=("map_odom", "map_base")),
    ParamSpec("tf.odom_frame_id", "odom", "The odometry's frame (child of the map_odom transform)."),
    # -- PX4 uXRCE-DDS AuxGlobalPosition (docs/AUTOPILOT.md)
    ParamSpec("px4.enabled", False, "Publish px4_msgs/AuxGlobalPosition for PX4's EKF2 (needs px4_msgs; "
              "docs/AUTOPILOT.md)."),
    ParamSpec("px4.topic", "/fmu/in/aux_global_position", "Topic of the AuxGlobalPosition messages "
              "(the uXRCE-DDS bridge's input topic; add the vehicle namespace for multi-vehicle setups)."),
    ParamSpec("px4.id", 1, "AuxGlobalPosition.id: the source id; PX4's EKF2_AGP0_ID must match.", 0, 255),
    ParamSpec("px4.geoid_height_m", 0.0, "Geoid height N: AuxGlobalPosition.alt (AMSL) = ellipsoidal alt - N "
              "[m].", -200.0, 200.0),
)

LOCALIZER_PREFIX = "localizer."

# rclpy declares these itself (both bool); launch files may set them.
BUILTIN_PARAMS = ("use_sim_time", "start_type_description_service")
# rclpy reads these itself (per-topic QoS overrides) and checks them on its own.
BUILTIN_PREFIXES = ("qos_overrides.",)
#: parameter namespaces that are ours alone: an unknown name inside them is always a typo
OWN_PREFIXES = ("localizer.", "mavlink.", "tf.", "px4.")

#: the name the node is created with (LocalizeNode's default); `-r __node:=...` renames it
NODE_NAME = "localize_node"


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
    for key in TOPIC_PARAMS:
        if values.get(key):
            check_topic_name(key, values[key])


#: parameters that name a topic (validated as ROS topic names at start)
TOPIC_PARAMS = ("image_topic", "camera_info_topic", "odom_topic", "initial_fix_topic", "altitude_topic",
                "mavros_gps_input_topic", "px4.topic")


def check_topic_name(key: str, name: str) -> None:
    """ConfigError (one line) when `name` is not a valid ROS topic name."""
    from rclpy.exceptions import InvalidTopicNameException
    from rclpy.validate_topic_name import validate_topic_name

    try:
        validate_topic_name(name)
    except InvalidTopicNameException as exc:
        why = str(exc).splitlines()[0].replace("Invalid topic name: ", "").rstrip(": ")
        raise ConfigError(f"parameter '{key}' is not a valid topic name ({name!r}): {why}") from None


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
                  "mavlink.enabled": "MAVLink GPS_INPUT to an autopilot (docs/AUTOPILOT.md)",
                  "tf.enabled": "TF (REP-105): map -> odom correction or map -> base_link",
                  "px4.enabled": "PX4 AuxGlobalPosition over uXRCE-DDS (docs/AUTOPILOT.md)"}


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
    group = ""  # the nested mapping being written (mavlink, tf, px4)
    for s in NODE_PARAMS:
        if s.name in _YAML_SECTIONS:
            out += ["", f"    # ---- {_YAML_SECTIONS[s.name]}"]
        if "." in s.name:
            prefix, key = s.name.split(".", 1)
            if prefix != group:
                out.append(f"    {prefix}:")
                group = prefix
            ind = "      "
        else:
            ind, key, group = "    ", s.name, ""
        rng = f" Range [{s.lo:g}, {s.hi:g}]." if s.lo is not None else ""
        out += [f"{ind}# {line}" for line in textwrap.wrap(s.description + rng, 92 - len(ind))]
        out.append(f"{ind}{key}: {val(s.default)}")
    out += ["", "    # ---- localizer (geoloc_ros.localize.config.LocalizerConfig: same names, same meaning)",
            "    localizer:"]
    for s in localizer_param_specs():
        out += [f"      # {line}" for line in textwrap.wrap(s.description, 84)]
        out.append(f"      {s.name.split('.', 1)[1]}: {val(s.default)}")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- --help


_HELP_SECTIONS = {"map": "inputs", "gps_denied_after": "GPS denial / initial fix", "world_frame_id": "outputs",
                  "mavlink.enabled": "MAVLink GPS_INPUT to an autopilot (docs/AUTOPILOT.md)",
                  "tf.enabled": "TF (REP-105)", "px4.enabled": "PX4 AuxGlobalPosition (docs/AUTOPILOT.md)",
                  LOCALIZER_PREFIX + "uav_size": "localizer (LocalizerConfig: same names, same meaning)"}


def format_value(value: Any) -> str:
    """A value written the way a params YAML or `-p` wants it (true, 2.0, 'text')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        return repr(value) if math.isfinite(value) else (".inf" if value > 0 else "-.inf")
    if isinstance(value, str):
        return repr(value)
    return str(value)


def text_table(width: int | None = None) -> str:
    """Every parameter for a terminal: `name  type = default, range` and the meaning below it.

    Why not the markdown table: ~110 rows of markdown are unreadable in a terminal; two
    lines per parameter under section headings wrap cleanly at any width."""
    if width is None:
        width = max(60, min(110, shutil.get_terminal_size((100, 24)).columns))
    out: list[str] = []
    for s in all_param_specs():
        if s.name in _HELP_SECTIONS:
            out += ["", f"  -- {_HELP_SECTIONS[s.name]}"]
        extra = ""
        if s.lo is not None:
            extra = f", range [{s.lo:g}, {s.hi:g}]"
        if s.choices:
            extra += ", one of " + "|".join(s.choices)
        out.append(f"  {s.name}  {s.type_name} = {format_value(s.default)}{extra}")
        out += textwrap.wrap(s.description, width, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(out)


def help_text(prog: str = NODE_NAME, width: int | None = None) -> str:
    """`localize_node --help`: usage, the strictness rules and the parameter table."""
    return "\n".join([
        (f"usage: {prog} [-h] --ros-args [--params-file FILE]... [-p NAME:=VALUE]... "
         "[-r __node:=NAME] [-r __ns:=/NS]"),
        "",
        "Keeps a UAV localized without GPS: the downward camera is matched against an orthophoto",
        "and the result is published as ~/fix (sensor_msgs/NavSatFix) with its covariance.",
        "",
        f"  {prog} --ros-args --params-file config/localize.yaml -p map:=/data/area.tif",
        "",
        "Types are strict, as in ROS: write 2.0 for a double, 2 for an integer, true/false for a",
        "bool, quote a string that looks like a number ('123'). Every value from every --params-file",
        "and every -p is checked at start: a wrong type, a value out of range or an unknown name stops",
        "the node with one line on stderr and exit code 2. Also accepted: use_sim_time,",
        "start_type_description_service (bool) and qos_overrides.* (rclpy's own).",
        "",
        "parameters (name  type = default, range; meaning):",
        text_table(width),
        "",
    ])


# ----------------------------------------------------------------------------- command line
#
# Why the node reads its own command line: rcl merges every --params-file and every -p into
# one set of overrides, and when two sources give the same name different types it keeps one
# of them silently (a file value beats `-p min_altitude_m:=abc`), so a typo or a wrong type
# reached the node only when no params file was given. Launch files always pass one (launch_ros
# even writes its override dicts to temporary params files). Checking every value of every
# source that applies to this node, before rclpy.init, makes the result independent of rcl's
# merge order: any bad value anywhere stops the node.

_FLAGS_WITH_VALUE = frozenset({"-p", "--param", "--params-file", "-r", "--remap", "-e", "--enclave",
                               "--log-level", "--log-config-file", "--log-file-name"})
_HELP_FLAGS = frozenset({"-h", "--help"})


@dataclass(frozen=True)
class RosCommandLine:
    """A node's argv split the way rcl splits it (ROS arguments live between `--ros-args` and
    `--`), keeping the order of the parameter sources."""

    user_args: tuple[str, ...]  # outside --ros-args, program name excluded
    param_sources: tuple[tuple[str, str], ...]  # ("file", path) or ("param", "NAME:=VALUE"), in order
    remap_rules: tuple[str, ...]  # "[node:]from:=to"
    wants_help: bool


def split_ros_args(argv: Sequence[str]) -> RosCommandLine:
    """Split argv (without the program name); ConfigError for a ROS flag missing its value.
    Tokens rcl does not know are left for rcl to report."""
    user: list[str] = []
    sources: list[tuple[str, str]] = []
    remaps: list[str] = []
    wants_help = False
    in_ros = False
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok == "--ros-args":
            in_ros = True
        elif not in_ros:
            wants_help |= tok in _HELP_FLAGS
            user.append(tok)
        elif tok == "--":
            in_ros = False
        elif tok in _FLAGS_WITH_VALUE:
            if i >= len(argv):
                raise ConfigError(f"bad ROS arguments: {tok} needs a value")
            value = argv[i]
            i += 1
            if tok == "--params-file":
                sources.append(("file", value))
            elif tok in ("-p", "--param"):
                sources.append(("param", value))
            elif tok in ("-r", "--remap"):
                remaps.append(value)
        else:
            wants_help |= tok in _HELP_FLAGS
    return RosCommandLine(tuple(user), tuple(sources), tuple(remaps), wants_help)


def node_fqn(remap_rules: Sequence[str], name: str = NODE_NAME, namespace: str = "/") -> str:
    """Fully qualified node name after `-r [node:]__node:=x` / `-r [node:]__ns:=/x` (the first
    matching rule wins, as in rcl; a node prefix refers to the name in the code)."""
    new_name = new_ns = None
    for rule in remap_rules:
        lhs, sep, rhs = rule.partition(":=")
        if not sep or not rhs:
            continue
        prefix, colon, what = lhs.rpartition(":")
        if colon and prefix != name:
            continue
        if what == "__node" and new_name is None:
            new_name = rhs
        elif what == "__ns" and new_ns is None:
            new_ns = rhs
    ns = (new_ns if new_ns is not None else namespace).rstrip("/")
    return f"{ns}/{new_name or name}"


# -- values typed the way rcl types them (rcl_yaml_param_parser): a quoted scalar is a string;
# -- a plain one is a bool (its fixed word list), else a C integer, else a C double, else a string.

_RCL_TRUE = frozenset({"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"})
_RCL_FALSE = frozenset({"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"})
_C_INT = re.compile(r"([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_C_DOUBLE = re.compile(r"[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)", re.IGNORECASE)
_C_HEX_DOUBLE = re.compile(r"[+-]?0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)([pP][+-]?\d+)?")
_YAML_INF = re.compile(r"([+-]?)\.(inf|Inf|INF)")
_YAML_NAN = re.compile(r"\.(nan|NaN|NAN)")
_PLAIN_TAG = "!geoloc-plain"  # marks untagged plain scalars while composing
_STR_TAG = "tag:yaml.org,2002:str"
_INT64 = (-(2 ** 63), 2 ** 63 - 1)


class _NoValue:
    """An empty plain scalar (`x:` or `-p x:=`): rcl refuses it."""


NO_VALUE = _NoValue()


def rcl_scalar(text: str) -> bool | int | float | str:
    """The value rcl gives a plain (unquoted, untagged) YAML scalar: `2` int, `2.0` / `1e6`
    double, `yes` bool, `abc` string (YAML 1.1 loaders differ on 1e6, 1_000, 0b1)."""
    if text in _RCL_TRUE:
        return True
    if text in _RCL_FALSE:
        return False
    m = _C_INT.fullmatch(text)
    if m:
        digits = m.group(2)
        base = 16 if digits[:2].lower() == "0x" else 8 if len(digits) > 1 and digits[0] == "0" else 10
        v = int(digits, base) * (-1 if m.group(1) == "-" else 1)
        if _INT64[0] <= v <= _INT64[1]:
            return v
    if _C_DOUBLE.fullmatch(text):
        return float(text)
    if _C_HEX_DOUBLE.fullmatch(text):
        sign = -1.0 if text.startswith("-") else 1.0
        return sign * float.fromhex(text.lstrip("+-"))
    m = _YAML_INF.fullmatch(text)
    if m:
        return -math.inf if m.group(1) == "-" else math.inf
    if _YAML_NAN.fullmatch(text):
        return math.nan
    return text


class _RclLoader(yaml.SafeLoader):
    """Composes YAML with untagged plain scalars tagged _PLAIN_TAG (text kept), so that they
    are typed like rcl types them rather than like PyYAML's YAML 1.1 resolver."""

    def resolve(self, kind: type, value: str, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN_TAG
        return super().resolve(kind, value, implicit)


def _compose(text: str) -> yaml.Node | None:
    return yaml.compose(text, Loader=_RclLoader)


def _node_value(node: yaml.Node) -> Any:
    """Scalar -> bool/int/float/str (or NO_VALUE); sequence -> list; mapping -> dict marker."""
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _PLAIN_TAG:
            return NO_VALUE if node.value == "" else rcl_scalar(node.value)
        return node.value if node.tag == _STR_TAG else rcl_scalar(node.value)
    if isinstance(node, yaml.SequenceNode):
        return [_node_value(n) for n in node.value]
    return {}


@dataclass(frozen=True)
class SourcedValue:
    """One parameter value as one source on the command line gives it."""

    name: str
    value: Any
    source: str  # "-p NAME:=VALUE" or "--params-file PATH"
    shared: bool = False  # from a wildcard section (/**, /*/x) that other nodes read too


def _section_pattern(keys: Sequence[str]) -> re.Pattern[str]:
    """Node-name keys of a params file (`/**`, `ns` + `node`, `/*/node`) -> a regex on the fully
    qualified node name: `**` is any number of name tokens, `*` exactly one."""
    parts = [p for key in keys for p in key.split("/") if p]
    rx = "".join("(?:/[^/]+)*" if p == "**" else "/[^/]+" if p == "*" else "/" + re.escape(p) for p in parts)
    return re.compile(rx or "(?!)")


def _flatten(mapping: yaml.MappingNode, prefix: str) -> Iterator[tuple[str, Any]]:
    for key, node in mapping.value:
        name = f"{prefix}{key.value}"
        if isinstance(node, yaml.MappingNode):
            yield from _flatten(node, name + ".")
        else:
            yield name, _node_value(node)


def params_file_values(path: str, fqn: str) -> list[SourcedValue]:
    """The parameters a params YAML gives node `fqn` (sections for other nodes are skipped);
    ConfigError for a missing file, invalid YAML, or a section without ros__parameters."""
    src = f"--params-file {path}"
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{src}: file not found")
    try:
        root = _compose(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{src}: not valid YAML{where}") from None
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{src}: expected a mapping of node names to ros__parameters")
    out: list[SourcedValue] = []

    def walk(node: yaml.MappingNode, keys: list[str]) -> None:
        for key, value in node.value:
            if key.value == "ros__parameters":
                if not keys:
                    raise ConfigError(f"{src}: ros__parameters needs a node name above it (e.g. /**:)")
                if isinstance(value, yaml.MappingNode):
                    if _section_pattern(keys).fullmatch(fqn):
                        shared = any("*" in k for k in keys)
                        out.extend(SourcedValue(n, v, src, shared) for n, v in _flatten(value, ""))
                elif not (isinstance(value, yaml.ScalarNode) and value.value == ""):
                    raise ConfigError(f"{src}: ros__parameters of '{'/'.join(keys)}' must be a mapping")
            elif isinstance(value, yaml.MappingNode):
                walk(value, keys + [str(key.value)])
            else:
                raise ConfigError(f"{src}: '{'/'.join(keys + [str(key.value)])}' is not under a node's "
                                  "ros__parameters (expected <node name>: ros__parameters: ...)")

    walk(root, [])
    return out


def param_rule_value(rule: str, node_name: str) -> SourcedValue | None:
    """`-p [node:]NAME:=VALUE` -> its value, or None when the rule names another node."""
    src = f"-p {rule}"
    lhs, sep, text = rule.partition(":=")
    if not sep or not lhs:
        raise ConfigError(f"bad ROS arguments: -p wants NAME:=VALUE, got {rule!r}")
    prefix, colon, name = lhs.rpartition(":")
    if colon and prefix != node_name:
        return None
    try:
        node = _compose(text)
    except yaml.YAMLError:
        raise ConfigError(f"parameter '{name}': value {text!r} is not valid YAML (from {src})") from None
    value = NO_VALUE if node is None else _node_value(node)
    return SourcedValue(name, value, src)


def command_line_values(cmd: RosCommandLine, fqn: str) -> list[SourcedValue]:
    """Every value the command line gives node `fqn`, in command-line order."""
    node_name = fqn.rsplit("/", 1)[-1]
    out: list[SourcedValue] = []
    for kind, text in cmd.param_sources:
        if kind == "file":
            out.extend(params_file_values(text, fqn))
        else:
            v = param_rule_value(text, node_name)
            if v is not None:
                out.append(v)
    return out


_RCL_TYPE_WORDS = {bool: "bool", int: "integer", float: "double", str: "string", list: "array"}
_WANT_WORDS = {"bool": "a bool (true or false)", "int": "an integer", "double": "a double", "string": "a string"}


def _got(value: Any) -> str:
    kind = _RCL_TYPE_WORDS.get(type(value), type(value).__name__)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a mapping"
    return f"the {kind} {format_value(value) if not isinstance(value, str) else repr(value)}"


def check_value(spec: ParamSpec, value: Any, source: str) -> None:
    """Type (strict, as ROS declares it), range and choices of one value; ConfigError if not."""
    where = f"(from {source})"
    if value is NO_VALUE:
        raise ConfigError(f"parameter '{spec.name}' has no value {where}; write '' for an empty string")
    want = spec.type_name
    ok = {"bool": isinstance(value, bool), "string": isinstance(value, str),
          "int": isinstance(value, int) and not isinstance(value, bool),
          "double": isinstance(value, float)}[want]
    if not ok:
        hint = ""
        if want == "double" and isinstance(value, int) and not isinstance(value, bool):
            hint = f"; write {value}.0"
        elif want == "string" and isinstance(value, (bool, int, float)):
            hint = f"; quote it: '{format_value(value)}'"
        raise ConfigError(f"parameter '{spec.name}' must be {_WANT_WORDS[want]}, got {_got(value)} {where}{hint}")
    if isinstance(value, float) and spec.lo is None and not math.isfinite(value):
        raise ConfigError(f"parameter '{spec.name}' must be finite, got {format_value(value)} {where}")
    if spec.lo is not None and not (spec.lo <= value <= spec.hi):  # also refuses NaN
        raise ConfigError(f"parameter '{spec.name}' is out of range [{spec.lo:g}, {spec.hi:g}], "
                          f"got {format_value(value)} {where}")
    if spec.choices and value not in spec.choices:
        raise ConfigError(f"parameter '{spec.name}' must be one of {', '.join(spec.choices)}, "
                          f"got {value!r} {where}")


def suggest(name: str, known: Sequence[str], cutoff: float = 0.6) -> str | None:
    """The declared name a typo most likely meant (`min_confidence` -> `localizer.min_confidence`)."""
    if LOCALIZER_PREFIX + name in known:
        return LOCALIZER_PREFIX + name
    close = difflib.get_close_matches(name, known, n=1, cutoff=cutoff)
    return close[0] if close else None


def check_values(values: Sequence[SourcedValue]) -> None:
    """Every value against the parameter table; the first problem raises ConfigError (one line)."""
    specs = {s.name: s for s in all_param_specs()}
    builtin = {n: ParamSpec(n, False, "rclpy") for n in BUILTIN_PARAMS}
    for v in values:
        if v.name.startswith(BUILTIN_PREFIXES):
            continue
        spec = specs.get(v.name) or builtin.get(v.name)
        if spec is None:
            guess = suggest(v.name, [*specs, *builtin], cutoff=0.85 if v.shared else 0.6)
            if v.shared and guess is None and not v.name.startswith(OWN_PREFIXES):
                continue  # a wildcard section shared with other nodes: their parameters, not a typo of ours
            raise ConfigError(f"unknown parameter '{v.name}' (from {v.source})"
                              + (f"; did you mean '{guess}'?" if guess else f"; see {NODE_NAME} --help"))
        check_value(spec, v.value, v.source)


def check_command_line(cmd: RosCommandLine, node_name: str = NODE_NAME, namespace: str = "/") -> str:
    """Check what the command line gives this node; returns its fully qualified name.

    ConfigError (one line) for stray arguments outside --ros-args, a missing or invalid params
    file, an unknown name or a value of the wrong type, out of range or not among the choices."""
    if cmd.user_args:
        raise ConfigError(f"unexpected argument {cmd.user_args[0]!r}: ROS arguments go after --ros-args "
                          f"(see {node_name} --help)")
    fqn = node_fqn(cmd.remap_rules, node_name, namespace)
    check_values(command_line_values(cmd, fqn))
    return fqn
