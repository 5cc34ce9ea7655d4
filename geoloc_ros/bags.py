"""rosbag2 I/O without ROS: standard messages built and read with the `rosbags` library.

One place for the message layouts the simulator writes and the replay tool / node tests
read (sensor_msgs/Image rgb8, CameraInfo, NavSatFix, nav_msgs/Odometry), so that they
agree. rclpy's `deserialize_message` decodes what is written here (CDR). ROS-free.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from rosbags.rosbag2 import Reader, Writer
from rosbags.rosbag2.enums import StoragePlugin
from rosbags.typesys import Stores, get_typestore

from .errors import GeolocError
from .geo.angles import quaternion_from_euler

TOPIC_IMAGE = "/camera/image_raw"
TOPIC_CAMERA_INFO = "/camera/camera_info"
TOPIC_ODOM = "/odom"
TOPIC_GPS = "/gps/fix"
TOPIC_GROUND_TRUTH = "/ground_truth/fix"
#: what geoloc-replay reads by default (the topics geoloc-simulate writes)
DEFAULT_TOPICS = {"image": TOPIC_IMAGE, "camera_info": TOPIC_CAMERA_INFO, "odom": TOPIC_ODOM, "gps": TOPIC_GPS,
                  "truth": TOPIC_GROUND_TRUTH}

IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
NAVSATFIX = "sensor_msgs/msg/NavSatFix"
ODOMETRY = "nav_msgs/msg/Odometry"

#: topic -> message type of a simulated bag (docs/DESIGN.md)
SIM_TOPICS = {TOPIC_IMAGE: IMAGE, TOPIC_CAMERA_INFO: CAMERA_INFO, TOPIC_ODOM: ODOMETRY,
              TOPIC_GPS: NAVSATFIX, TOPIC_GROUND_TRUTH: NAVSATFIX}

SIDECAR_NAME = "scenario.json"

# sensor_msgs/NavSatStatus and NavSatFix constants
STATUS_NO_FIX, STATUS_FIX = -1, 0
SERVICE_GPS = 1
COVARIANCE_TYPE_UNKNOWN, COVARIANCE_TYPE_APPROXIMATED, COVARIANCE_TYPE_DIAGONAL_KNOWN, COVARIANCE_TYPE_KNOWN = 0, 1, 2, 3

_TYPESTORE = None


def typestore():
    """The shared rosbags typestore (ROS 2 Kilted message definitions; same layouts since Humble)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        store = getattr(Stores, "ROS2_KILTED", None) or Stores.LATEST
        _TYPESTORE = get_typestore(store)
    return _TYPESTORE


def _t():
    return typestore().types


def stamp_msg(stamp_s: float):
    sec = int(math.floor(stamp_s))
    nsec = int(round((stamp_s - sec) * 1e9))
    if nsec >= 1_000_000_000:
        sec, nsec = sec + 1, nsec - 1_000_000_000
    return _t()["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec)


def stamp_to_s(stamp) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def stamp_ns(stamp_s: float) -> int:
    return int(round(stamp_s * 1e9))


def header(stamp_s: float, frame_id: str):
    return _t()["std_msgs/msg/Header"](stamp=stamp_msg(stamp_s), frame_id=frame_id)


# ----------------------------------------------------------------------------- builders
def image_msg(img: np.ndarray, stamp_s: float, frame_id: str = "camera"):
    """sensor_msgs/Image rgb8 from an (H, W, 3) uint8 RGB array (or mono8 from (H, W))."""
    a = np.ascontiguousarray(img, dtype=np.uint8)
    if a.ndim == 3 and a.shape[2] == 3:
        enc, step = "rgb8", a.shape[1] * 3
    elif a.ndim == 2:
        enc, step = "mono8", a.shape[1]
    else:
        raise ValueError(f"image must be (H, W, 3) or (H, W) uint8, got {a.shape}")
    return _t()[IMAGE](header=header(stamp_s, frame_id), height=a.shape[0], width=a.shape[1], encoding=enc,
                       is_bigendian=0, step=step, data=a.reshape(-1))


def camera_info_msg(intr, stamp_s: float, frame_id: str = "camera"):
    """sensor_msgs/CameraInfo (plumb_bob, zero distortion) from CameraIntrinsics."""
    t = _t()
    k = np.array([intr.fx, 0, intr.cx, 0, intr.fy, intr.cy, 0, 0, 1], np.float64)
    p = np.array([intr.fx, 0, intr.cx, 0, 0, intr.fy, intr.cy, 0, 0, 0, 1, 0], np.float64)
    roi = t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return t[CAMERA_INFO](header=header(stamp_s, frame_id), height=int(intr.height), width=int(intr.width),
                          distortion_model="plumb_bob", d=np.zeros(5, np.float64), k=k,
                          r=np.eye(3).reshape(-1), p=p, binning_x=0, binning_y=0, roi=roi)


def navsatfix_msg(lat: float, lon: float, alt: float, stamp_s: float, *, sigma_h: float | None = None,
                  sigma_v: float | None = None, cov_enu: np.ndarray | None = None, frame_id: str = "gps",
                  status: int = STATUS_FIX):
    """sensor_msgs/NavSatFix; covariance in ENU m^2 (diagonal from sigmas, or a full 3x3)."""
    t = _t()
    if cov_enu is not None:
        cov, ctype = np.asarray(cov_enu, np.float64).reshape(9), COVARIANCE_TYPE_KNOWN
    elif sigma_h is not None:
        sv = sigma_v if sigma_v is not None else sigma_h
        cov, ctype = np.diag([sigma_h ** 2, sigma_h ** 2, sv ** 2]).reshape(9), COVARIANCE_TYPE_DIAGONAL_KNOWN
    else:
        cov, ctype = np.zeros(9), COVARIANCE_TYPE_UNKNOWN
    st = t["sensor_msgs/msg/NavSatStatus"](status=status, service=SERVICE_GPS)
    return t[NAVSATFIX](header=header(stamp_s, frame_id), status=st, latitude=float(lat), longitude=float(lon),
                        altitude=float(alt), position_covariance=cov.astype(np.float64),
                        position_covariance_type=ctype)


def odometry_msg(stamp_s: float, xyz, rpy, vel_body=(0.0, 0.0, 0.0), yaw_rate: float = 0.0, *,
                 pos_var: float = 0.0, yaw_var: float = 0.0, frame_id: str = "odom",
                 child_frame_id: str = "base_link"):
    """nav_msgs/Odometry: pose in `frame_id` (ENU axes), twist in the body frame (FLU)."""
    t = _t()
    q = quaternion_from_euler(*rpy)
    pose = t["geometry_msgs/msg/Pose"](
        position=t["geometry_msgs/msg/Point"](x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])),
        orientation=t["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))
    pc = np.zeros(36)
    pc[0] = pc[7] = pos_var
    pc[14] = pos_var
    pc[21] = pc[28] = 1e-4
    pc[35] = yaw_var
    twist = t["geometry_msgs/msg/Twist"](
        linear=t["geometry_msgs/msg/Vector3"](x=float(vel_body[0]), y=float(vel_body[1]), z=float(vel_body[2])),
        angular=t["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=float(yaw_rate)))
    tc = np.diag([0.01, 0.01, 0.01, 1e-4, 1e-4, 1e-4]).reshape(36)
    return t[ODOMETRY](header=header(stamp_s, frame_id), child_frame_id=child_frame_id,
                       pose=t["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=pc),
                       twist=t["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=tc))


# ----------------------------------------------------------------------------- bag files
class BagWriter:
    """Write standard messages to a rosbag2 (MCAP default, or sqlite3)."""

    def __init__(self, path: str | Path, storage: str = "mcap", topics: dict[str, str] | None = None) -> None:
        if storage not in ("mcap", "sqlite3"):
            raise ValueError(f"storage must be mcap or sqlite3, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"bag {self.path} already exists")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._w = Writer(self.path, version=9, storage_plugin=plugin)
        self._w.open()
        self._conn = {}
        for name, mtype in (topics or SIM_TOPICS).items():
            self._conn[name] = self._w.add_connection(name, mtype, typestore=typestore())

    def write(self, topic: str, stamp_s: float, msg) -> None:
        conn = self._conn[topic]
        self._w.write(conn, stamp_ns(stamp_s), typestore().serialize_cdr(msg, conn.msgtype))

    def close(self) -> None:
        self._w.close()

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close()


def read_messages(path: str | Path, topics: list[str] | None = None) -> Iterator[tuple[str, int, object]]:
    """(topic, bag time ns, deserialized message) for every message of a rosbag2 (mcap or sqlite3)."""
    ts = typestore()
    with Reader(Path(path)) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        for conn, t_ns, raw in reader.messages(connections=conns):
            yield conn.topic, t_ns, ts.deserialize_cdr(raw, conn.msgtype)


def read_raw(path: str | Path, topics: list[str] | None = None) -> Iterator[tuple[str, str, int, bytes]]:
    """(topic, msgtype, bag time ns, CDR bytes), e.g. for rclpy.serialization.deserialize_message."""
    with Reader(Path(path)) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        for conn, t_ns, raw in reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, t_ns, bytes(raw)


def bag_topics(path: str | Path) -> dict[str, tuple[str, int]]:
    """topic -> (message type, message count)."""
    with Reader(Path(path)) as reader:
        return {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}


def replayable_topics(path: str | Path, topics: dict[str, str]) -> dict[str, tuple[str, int]]:
    """bag_topics of a bag to replay into the localizer; GeolocError when it lacks the camera
    or odometry topic named in `topics` (without both there is nothing to localize)."""
    present = bag_topics(path)
    for key in ("image", "odom"):
        if topics[key] not in present:
            raise GeolocError(f"{path}: no {key} topic {topics[key]} (topics: {', '.join(sorted(present))})")
    return present


def read_fixes(path: str | Path, topic: str) -> list[tuple[float, float, float, float]]:
    """(header stamp, lat, lon, alt) of every valid NavSatFix on `topic` (status >= FIX,
    finite position), sorted by stamp: ground truth for evaluation, or where GPS stops."""
    rows = []
    if topic not in bag_topics(path):
        return rows
    for _topic, _t, msg in read_messages(path, [topic]):
        if msg.status.status < 0 or not (math.isfinite(msg.latitude) and math.isfinite(msg.longitude)):
            continue
        rows.append((stamp_to_s(msg.header.stamp), float(msg.latitude), float(msg.longitude), float(msg.altitude)))
    rows.sort(key=lambda r: r[0])
    return rows


def truth_series(path: str | Path, topic: str = TOPIC_GROUND_TRUTH):
    """The ground-truth topic as a runtime.buffers.StampedSeries of (lat, lon, alt)."""
    from .timeseries import StampedSeries

    series = StampedSeries(3, maxlen=10_000_000)
    for st, lat, lon, alt in read_fixes(path, topic):
        series.add(st, (lat, lon, alt))
    return series


@dataclass
class Sidecar:
    """`scenario.json` inside a simulated bag directory: what the localizer needs."""

    data: dict
    root: Path

    @property
    def map_path(self) -> Path:
        return (self.root / self.data["map_path"]).resolve()

    @property
    def camera_map_path(self) -> Path:
        return (self.root / self.data["camera_map_path"]).resolve()

    @property
    def initial_fix(self) -> dict:
        return self.data["initial_fix"]


def load_sidecar(bag_path: str | Path) -> Sidecar:
    """Read `<bag>/scenario.json` (map paths resolved relative to the bag directory)."""
    p = Path(bag_path)
    f = p / SIDECAR_NAME if p.is_dir() else p
    if not f.is_file():
        raise FileNotFoundError(f"no {SIDECAR_NAME} in {p} (not a bag written by geoloc-simulate?)")
    return Sidecar(json.loads(f.read_text()), f.parent)
