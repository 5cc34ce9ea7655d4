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

TOPIC_IMAGE = "/camera/image_raw"
TOPIC_CAMERA_INFO = "/camera/camera_info"
TOPIC_ODOM = "/odom"
TOPIC_GPS = "/gps/fix"
TOPIC_GROUND_TRUTH = "/ground_truth/fix"

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


def quaternion_from_euler(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of R = Rz(yaw) Ry(pitch) Rx(roll)."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy)


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    """ENU yaw (rad) of a quaternion (ZYX convention)."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


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


# ----------------------------------------------------------------------------- readers
def image_from_msg(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8), honouring `step`."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    enc = str(msg.encoding).lower()
    ch = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8uc3": 3, "8uc1": 1}.get(enc)
    if ch is None:
        raise ValueError(f"unsupported image encoding {msg.encoding!r} (want rgb8/bgr8/rgba8/bgra8/mono8)")
    buf = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, np.uint8)
    if buf.size < h * step or step < w * ch:
        raise ValueError(f"image data too short: {buf.size} bytes for {h} rows of step {step}")
    a = buf[: h * step].reshape(h, step)[:, : w * ch].reshape(h, w, ch)
    if enc in ("bgr8", "bgra8"):
        a = a[..., 2::-1] if ch == 3 else a[..., [2, 1, 0]]
    elif ch == 4:
        a = a[..., :3]
    elif ch == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a)


def intrinsics_from_msg(msg):
    """CameraIntrinsics from a sensor_msgs/CameraInfo (K matrix)."""
    from .data.camera import CameraIntrinsics
    k = np.asarray(msg.k, np.float64)
    return CameraIntrinsics(int(msg.width), int(msg.height), float(k[0]), float(k[4]), float(k[2]), float(k[5]))


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
