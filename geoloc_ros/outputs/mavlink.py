"""MAVLink 2 GPS_INPUT output: hand the localizer's fix to an autopilot as a GPS.

Why GPS_INPUT: ArduPilot (GPS_TYPE/GPS1_TYPE = 14, "MAV") and PX4 take it as one more
GPS receiver, so the autopilot's own EKF fuses it with its IMU/baro and keeps its
failsafes. See docs/AUTOPILOT.md for the autopilot settings.

Rules (one place, used by the node and by tests):
- fix_type 3 (3D fix) only for an estimate the node would publish as a fix (TRACKING,
  `fix_valid`, sane numbers); otherwise fix_type 1 (NO_FIX, "GPS connected, no
  position") with 0 satellites, so the autopilot sees the receiver alive but unusable
  and falls back as it would for a real GPS. `send_when_not_tracking=False` sends
  nothing instead.
- horiz_accuracy = sqrt(largest eigenvalue of the East/North covariance): the 1-sigma
  error along the major axis of the error ellipse [m]; vert_accuracy = sqrt(var Up).
- hdop/vdop = accuracy / `dop_uere_m` (a convention: an autopilot needs a DOP, we have a
  covariance; with the default 5 m, 5 m 1-sigma reads as DOP 1.0).
- Velocity is not estimated: VEL_HORIZ, VEL_VERT and SPEED_ACCURACY are ignored; yaw is
  0 (= not provided) because the localizer's yaw comes from odometry, not from a GPS.
- alt is MSL: estimate altitude (ellipsoidal, the initial fix's datum) minus
  `geoid_height_m` (N at the flight area; 0 keeps the value unchanged).
- time: time_usec = image stamp (UNIX epoch, us); GPS week / week ms from the same
  stamp with GPS-UTC = `leap_seconds` (18 s since 2017-01-01). A stamp before the GPS
  epoch (simulation time starting at 0) sends week 0, which ArduPilot treats as "no GPS
  time" (it then skips its timestamp jitter correction).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

os.environ.setdefault("MAVLINK20", "1")  # before mavutil is imported: MAVLink 2 framing

# GPS_INPUT_IGNORE_FLAGS (common.xml)
IGNORE_ALT = 1
IGNORE_HDOP = 2
IGNORE_VDOP = 4
IGNORE_VEL_HORIZ = 8
IGNORE_VEL_VERT = 16
IGNORE_SPEED_ACCURACY = 32
IGNORE_HORIZONTAL_ACCURACY = 64
IGNORE_VERTICAL_ACCURACY = 128

FIX_TYPE_NO_GPS = 0
FIX_TYPE_NO_FIX = 1
FIX_TYPE_3D = 3

GPS_EPOCH_UNIX_S = 315964800  # 1980-01-06T00:00:00Z
GPS_UTC_LEAP_S = 18
SECONDS_PER_WEEK = 604800


def gps_week_time(t_unix: float, leap_seconds: int = GPS_UTC_LEAP_S) -> tuple[int, int]:
    """UNIX time (UTC seconds) -> (GPS week, milliseconds into the week). (0, 0) before the GPS epoch."""
    gps_s = float(t_unix) - GPS_EPOCH_UNIX_S + leap_seconds
    if not math.isfinite(gps_s) or gps_s < 0:
        return 0, 0
    week = int(gps_s // SECONDS_PER_WEEK)
    week_ms = int(round((gps_s - week * SECONDS_PER_WEEK) * 1000.0))
    if week_ms >= SECONDS_PER_WEEK * 1000:  # rounding up to the next week
        week, week_ms = week + 1, week_ms - SECONDS_PER_WEEK * 1000
    return week, week_ms


def accuracy_from_cov(cov_enu: Any) -> tuple[float, float]:
    """(horizontal, vertical) 1-sigma accuracy [m] from a 3x3 ENU covariance [m^2]."""
    cov = np.asarray(cov_enu, dtype=np.float64).reshape(3, 3)
    en = 0.5 * (cov[:2, :2] + cov[:2, :2].T)
    h = math.sqrt(max(float(np.linalg.eigvalsh(en)[-1]), 0.0))
    v = math.sqrt(max(float(cov[2, 2]), 0.0))
    return h, v


@dataclass
class GpsInputConfig:
    """Settings of the GPS_INPUT output (node parameters `mavlink.*`)."""

    url: str = "udpout:127.0.0.1:14550"  # pymavlink connection string: udpout:host:port, /dev/ttyACM0, tcp:host:port
    baud: int = 921600  # serial links only
    rate_hz: float = 5.0  # most GPS_INPUT per second (ArduPilot wants >= 4 Hz for a healthy GPS)
    gps_id: int = 0  # GPS instance on the autopilot
    source_system: int = 1  # MAVLink system id (the vehicle's)
    source_component: int = 191  # MAV_COMP_ID_ONBOARD_COMPUTER
    satellites_visible: int = 10  # reported while TRACKING (autopilot GPS checks want >= 6)
    dop_uere_m: float = 5.0  # hdop = horiz_accuracy / dop_uere_m
    geoid_height_m: float = 0.0  # N: alt MSL = ellipsoidal alt - N
    leap_seconds: int = GPS_UTC_LEAP_S  # GPS - UTC
    send_when_not_tracking: bool = True  # send fix_type 1 (no fix) while not TRACKING
    heartbeat: bool = True  # 1 Hz HEARTBEAT (MAV_TYPE_ONBOARD_CONTROLLER) so routers see us

    def validate(self) -> None:
        if not self.url:
            raise ValueError("mavlink.url is empty")
        if not (0.0 < self.rate_hz <= 50.0):
            raise ValueError(f"mavlink.rate_hz must be in (0, 50], got {self.rate_hz}")
        if not (0 < self.dop_uere_m):
            raise ValueError(f"mavlink.dop_uere_m must be > 0, got {self.dop_uere_m}")
        for name in ("gps_id", "source_system", "source_component", "satellites_visible"):
            v = getattr(self, name)
            if not 0 <= v <= 255:
                raise ValueError(f"mavlink.{name} must be in [0, 255], got {v}")


def _publishable(est: Any) -> bool:
    # Same rule as the ROS fix (kept ROS-free here: no import of geoloc_ros.ros).
    if not bool(getattr(est, "fix_valid", False)):
        return False
    if not all(math.isfinite(float(v)) for v in (est.lat, est.lon, est.alt)):
        return False
    cov = np.asarray(est.cov_enu, dtype=np.float64)
    return cov.shape == (3, 3) and bool(np.all(np.isfinite(cov))) and bool(np.all(np.diag(cov) > 0))


def gps_input_fields(est: Any, cfg: GpsInputConfig) -> dict[str, Any]:
    """Estimate -> the GPS_INPUT field values (names as in common.xml), following the module rules."""
    fix = _publishable(est)
    week, week_ms = gps_week_time(est.stamp, cfg.leap_seconds)
    ignore = IGNORE_VEL_HORIZ | IGNORE_VEL_VERT | IGNORE_SPEED_ACCURACY
    if fix:
        h_acc, v_acc = accuracy_from_cov(est.cov_enu)
        lat, lon, alt = float(est.lat), float(est.lon), float(est.alt) - cfg.geoid_height_m
    else:
        h_acc = v_acc = 0.0
        lat = lon = alt = 0.0
        ignore |= IGNORE_ALT | IGNORE_HDOP | IGNORE_VDOP | IGNORE_HORIZONTAL_ACCURACY | IGNORE_VERTICAL_ACCURACY
        if all(math.isfinite(float(v)) for v in (est.lat, est.lon)):
            lat, lon = float(est.lat), float(est.lon)
    stamp = float(est.stamp)
    return dict(
        time_usec=max(int(round(stamp * 1e6)), 0) if math.isfinite(stamp) else 0,
        gps_id=cfg.gps_id,
        ignore_flags=ignore,
        time_week_ms=week_ms,
        time_week=week,
        fix_type=FIX_TYPE_3D if fix else FIX_TYPE_NO_FIX,
        lat=int(round(lat * 1e7)),
        lon=int(round(lon * 1e7)),
        alt=float(alt),
        hdop=float(h_acc / cfg.dop_uere_m) if fix else 0.0,
        vdop=float(v_acc / cfg.dop_uere_m) if fix else 0.0,
        vn=0.0, ve=0.0, vd=0.0,
        speed_accuracy=0.0,
        horiz_accuracy=float(h_acc),
        vert_accuracy=float(v_acc),
        satellites_visible=cfg.satellites_visible if fix else 0,
        yaw=0,
    )


class GpsInputSender:
    """Rate-limited GPS_INPUT sender over any pymavlink connection (UDP, TCP, serial)."""

    def __init__(self, cfg: GpsInputConfig, connection: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        cfg.validate()
        self.cfg = cfg
        self._clock = clock
        if connection is None:
            from pymavlink import mavutil

            connection = mavutil.mavlink_connection(
                cfg.url, baud=cfg.baud, source_system=cfg.source_system,
                source_component=cfg.source_component, autoreconnect=True)
        self.conn = connection
        self._last_send = -math.inf
        self._last_heartbeat = -math.inf
        self.sent = 0
        self.errors = 0
        self.last_error = ""

    def maybe_send(self, est: Any) -> bool:
        """Send GPS_INPUT for `est` unless the rate limit or the not-tracking rule says no."""
        now = self._clock()
        if now - self._last_send < 1.0 / self.cfg.rate_hz - 1e-6:
            return False
        fields = gps_input_fields(est, self.cfg)
        if fields["fix_type"] != FIX_TYPE_3D and not self.cfg.send_when_not_tracking:
            return False
        try:
            if self.cfg.heartbeat and now - self._last_heartbeat >= 1.0:
                from pymavlink.dialects.v20 import common as mav

                self.conn.mav.heartbeat_send(mav.MAV_TYPE_ONBOARD_CONTROLLER, mav.MAV_AUTOPILOT_INVALID, 0, 0, 0)
                self._last_heartbeat = now
            self.conn.mav.gps_input_send(**fields)
        except OSError as exc:  # serial unplugged, UDP unreachable: report, never crash the node
            self.errors += 1
            self.last_error = f"GPS_INPUT send failed: {exc}"
            return False
        self._last_send = now
        self.sent += 1
        return True

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
