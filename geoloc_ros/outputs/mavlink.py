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

Link (`GpsInputSender`):
- only the forms in ACCEPTED_URLS are accepted (checked at construction): udpout, udpin
  (udp is udpin, as in pymavlink), tcp, tcpin and a serial device; pymavlink would
  otherwise run an executable path as a child process or read a file as a log.
- the caller's thread never touches the link: `maybe_send` puts the message into a
  one-slot latest-wins queue; a sender thread writes it, sends the 1 Hz HEARTBEAT and
  reconnects a TCP / serial link every `retry_s` while the peer is away. pymavlink does
  the MAVLink 2 framing, our own sockets do the I/O, so a failed write is seen (mavutil's
  connections swallow send errors) and `last_error` says so until a write succeeds again.
"""
from __future__ import annotations

import errno
import math
import os
import re
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from geoloc_ros.errors import GeolocError

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


class MavlinkConfigError(GeolocError):
    """A `mavlink.*` setting that cannot work (one line that says what to change)."""


class MavlinkUrlError(MavlinkConfigError):
    """`mavlink.url` is not one of the accepted link forms."""


ACCEPTED_URLS = ("udpout:HOST:PORT, udpin:HOST:PORT, udp:HOST:PORT (= udpin), tcp:HOST:PORT, tcpin:HOST:PORT "
                 "(PORT 1-65535), or a serial device /dev/tty*, /dev/serial/... (COMn on Windows) with mavlink.baud")

_HOST = re.compile(r"[A-Za-z0-9_.-]+")
_TTY = re.compile(r"/dev/tty[A-Za-z0-9_.-]+")
_SERIAL_BY = re.compile(r"/dev/serial/[A-Za-z0-9_.:+@-]+(/[A-Za-z0-9_.:+@-]+)*")
_COM = re.compile(r"COM[1-9][0-9]{0,2}", re.IGNORECASE)
_SCHEMES = {"udpout": "udpout", "udpin": "udpin", "udp": "udpin", "tcp": "tcp", "tcpin": "tcpin"}


@dataclass(frozen=True)
class Endpoint:
    """A parsed `mavlink.url`: kind is udpout | udpin | tcp | tcpin | serial."""

    kind: str
    host: str = ""
    port: int = 0
    device: str = ""


def parse_url(url: str, *, windows: bool = os.name == "nt") -> Endpoint:
    """`mavlink.url` -> Endpoint, or MavlinkUrlError.

    Why a whitelist: pymavlink's mavlink_connection() runs a path containing /bin/ or ending in
    .elf as a child process and opens other existing files as logs, so an unchecked string
    is more than a link address.
    """
    def bad(reason: str) -> MavlinkUrlError:
        return MavlinkUrlError(f"mavlink.url {url!r}: {reason}; accepted: {ACCEPTED_URLS}")

    if not isinstance(url, str) or not url.strip():
        raise bad("empty")
    scheme, sep, rest = url.partition(":")
    if sep and scheme.lower() in _SCHEMES:
        host, sep2, port_s = rest.rpartition(":")
        if not sep2 or not _HOST.fullmatch(host):
            raise bad("expected HOST:PORT after the scheme")
        if not re.fullmatch(r"[0-9]+", port_s):
            raise bad(f"port {port_s!r} is not a number")
        port = int(port_s)
        if not 1 <= port <= 65535:
            raise bad(f"port {port} out of range")
        return Endpoint(_SCHEMES[scheme.lower()], host=host, port=port)
    if _TTY.fullmatch(url) or (_SERIAL_BY.fullmatch(url) and "/../" not in url + "/" and "/./" not in url + "/"):
        return Endpoint("serial", device=url)
    if windows and _COM.fullmatch(url):
        return Endpoint("serial", device=url.upper())
    raise bad("not a link address")


@dataclass
class GpsInputConfig:
    """Settings of the GPS_INPUT output (node parameters `mavlink.*`)."""

    url: str = "udpout:127.0.0.1:14550"  # one of ACCEPTED_URLS (checked by parse_url)
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

    def validate(self) -> Endpoint:
        """Check every field; returns the parsed url. Raises a ValueError subclass."""
        endpoint = parse_url(self.url)
        if not (0.0 < self.rate_hz <= 50.0):
            raise MavlinkConfigError(f"mavlink.rate_hz must be in (0, 50], got {self.rate_hz}")
        if not (0 < self.dop_uere_m):
            raise MavlinkConfigError(f"mavlink.dop_uere_m must be > 0, got {self.dop_uere_m}")
        if endpoint.kind == "serial" and not int(self.baud) > 0:
            raise MavlinkConfigError(f"mavlink.baud must be > 0 for the serial link {self.url}, got {self.baud}")
        for name in ("gps_id", "source_system", "source_component", "satellites_visible"):
            v = getattr(self, name)
            if not 0 <= v <= 255:
                raise MavlinkConfigError(f"mavlink.{name} must be in [0, 255], got {v}")
        return endpoint


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


# ----------------------------------------------------------------------------- links
# Why our own sockets instead of mavutil's connections: mavutil's writes swallow every send
# error (so a dead link looks healthy), its TCP reconnect sleeps inside write() and its
# connect has no timeout. pymavlink still does all the MAVLink framing (MAVLink.send).

CONNECT_TIMEOUT_S = 3.0  # TCP connect, checked in slices so that close() is never held up
WRITE_TIMEOUT_S = 0.5  # a stream peer that stops reading for this long is treated as gone
_SLICE_S = 0.05


class _NoPeer(OSError):
    """A listening link (udpin, tcpin) has nobody to send to yet."""


class _Link:
    """A byte transport that only the sender thread touches. write/poll raise OSError when it broke."""

    def __init__(self, label: str) -> None:
        self.label = label

    def ready(self) -> bool:
        return True

    def connect(self, stop: threading.Event) -> None:
        """(Re)open what drop() closed; may raise. Returns early when `stop` is set."""

    def write(self, buf: bytes) -> None:
        raise NotImplementedError

    def poll(self) -> None:
        """Read and discard what the peer sent (learns udpin peers, notices a closed TCP peer)."""

    def drop(self) -> None:
        """Forget the broken part after an error; connect() rebuilds it."""

    def close(self) -> None:
        self.drop()


def _close_quietly(obj: Any) -> None:
    try:
        obj.close()
    except Exception:  # noqa: BLE001 - closing is best effort
        pass


def _drain_stream(sock: socket.socket) -> None:
    for _ in range(64):
        readable, _, _ = select.select([sock], [], [], 0.0)
        if not readable:
            return
        if not sock.recv(4096):
            raise ConnectionResetError("peer closed the connection")


def _bound(kind: int, ep: Endpoint) -> socket.socket:
    """A non-blocking socket bound to `ep` (listening, for TCP); closed again when that fails (port in use)."""
    sock = socket.socket(socket.AF_INET, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ep.host, ep.port))
        if kind == socket.SOCK_STREAM:
            sock.listen(1)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _drain_datagrams(sock: socket.socket, peer: Any = None) -> Any:
    """Read and discard what is waiting; returns the latest sender (`peer` when nothing came)."""
    for _ in range(64):
        try:
            _, peer = sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:  # an ICMP error reported late: the next sendto tells
            break
    return peer


class _Outgoing(_Link):
    """A link that opens its own socket to `ep` in connect() and throws it away in drop()."""

    def __init__(self, ep: Endpoint, label: str) -> None:
        super().__init__(label)
        self.ep = ep
        self.sock: socket.socket | None = None

    def ready(self) -> bool:
        return self.sock is not None

    def drop(self) -> None:
        if self.sock is not None:
            _close_quietly(self.sock)
        self.sock = None


class _UdpOut(_Outgoing):
    def __init__(self, ep: Endpoint, label: str) -> None:
        super().__init__(ep, label)
        self.addr: Any = None

    def connect(self, stop: threading.Event) -> None:
        addr = socket.getaddrinfo(self.ep.host, self.ep.port, socket.AF_INET, socket.SOCK_DGRAM)[0][4]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        self.sock, self.addr = sock, addr

    def write(self, buf: bytes) -> None:
        assert self.sock is not None
        self.sock.sendto(buf, self.addr)

    def poll(self) -> None:
        _drain_datagrams(self.sock)  # type: ignore[arg-type]


class _UdpIn(_Link):
    """Bound at construction (a port in use is a configuration error); sends to the last sender."""

    def __init__(self, ep: Endpoint, label: str) -> None:
        super().__init__(label)
        self.sock = _bound(socket.SOCK_DGRAM, ep)
        self.peer: Any = None

    def write(self, buf: bytes) -> None:
        if self.peer is None:
            raise _NoPeer("no peer yet: nothing has been received on this port")
        self.sock.sendto(buf, self.peer)

    def poll(self) -> None:
        self.peer = _drain_datagrams(self.sock, self.peer)

    def close(self) -> None:
        _close_quietly(self.sock)


class _TcpOut(_Outgoing):
    def connect(self, stop: threading.Event) -> None:
        addr = socket.getaddrinfo(self.ep.host, self.ep.port, socket.AF_INET, socket.SOCK_STREAM)[0][4]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            err = sock.connect_ex(addr)
            if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, 10035):  # 10035: Windows
                raise OSError(err, os.strerror(err))
            deadline = time.monotonic() + CONNECT_TIMEOUT_S
            while not select.select([], [sock], [], _SLICE_S)[1]:
                if stop.is_set():
                    raise InterruptedError("closing")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"connect timed out after {CONNECT_TIMEOUT_S:g} s")
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(WRITE_TIMEOUT_S)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def write(self, buf: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(buf)

    def poll(self) -> None:
        _drain_stream(self.sock)  # type: ignore[arg-type]


class _TcpIn(_Link):
    """Listens from construction (a port in use is a configuration error); one client at a time."""

    def __init__(self, ep: Endpoint, label: str) -> None:
        super().__init__(label)
        self.listener = _bound(socket.SOCK_STREAM, ep)
        self.client: socket.socket | None = None

    def write(self, buf: bytes) -> None:
        if self.client is None:
            raise _NoPeer("no client connected yet")
        self.client.sendall(buf)

    def poll(self) -> None:
        if self.client is None:
            try:
                client, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.settimeout(WRITE_TIMEOUT_S)
            self.client = client
        _drain_stream(self.client)

    def drop(self) -> None:
        if self.client is not None:
            _close_quietly(self.client)
        self.client = None

    def close(self) -> None:
        self.drop()
        _close_quietly(self.listener)


class _Serial(_Link):
    def __init__(self, ep: Endpoint, label: str, baud: int) -> None:
        super().__init__(label)
        try:
            import serial  # pyserial: only serial links need it
        except ImportError:
            raise MavlinkConfigError(f"mavlink.url {label!r} is a serial device, which needs pyserial "
                                     "(pip install pyserial, or apt install python3-serial)") from None
        self._serial = serial
        self.device, self.baud = ep.device, int(baud)
        self.port: Any = None

    def ready(self) -> bool:
        return self.port is not None

    def connect(self, stop: threading.Event) -> None:
        self.port = self._serial.Serial(self.device, baudrate=self.baud, timeout=0, write_timeout=WRITE_TIMEOUT_S)

    def write(self, buf: bytes) -> None:
        self.port.write(buf)

    def poll(self) -> None:
        waiting = self.port.in_waiting
        if waiting:
            self.port.read(waiting)

    def drop(self) -> None:
        if self.port is not None:
            _close_quietly(self.port)
        self.port = None


class _GivenConnection(_Link):
    """A caller-made pymavlink-like connection (`.mav.*_send`, `.close()`): used as it is, never reopened."""

    def __init__(self, conn: Any) -> None:
        super().__init__(str(getattr(conn, "address", "connection")))
        self.conn = conn

    def close(self) -> None:
        _close_quietly(self.conn)


def _make_link(ep: Endpoint, cfg: GpsInputConfig) -> _Link:
    label = cfg.url
    if ep.kind == "udpout":
        return _UdpOut(ep, label)
    if ep.kind == "udpin":
        return _UdpIn(ep, label)
    if ep.kind == "tcp":
        return _TcpOut(ep, label)
    if ep.kind == "tcpin":
        return _TcpIn(ep, label)
    return _Serial(ep, label, cfg.baud)


class _LinkFile:
    """What pymavlink's MAVLink encoder writes to (it only calls write)."""

    def __init__(self, link: _Link) -> None:
        self.link = link

    def write(self, buf: bytes) -> None:
        self.link.write(bytes(buf))


# ----------------------------------------------------------------------------- sender

STALE_S = 1.0  # a handed-over estimate older than this when the link is free again is not sent


@dataclass(frozen=True)
class SenderStatus:
    """One consistent reading of the sender's counters (for /diagnostics)."""

    sent: int  # GPS_INPUT messages written to the link
    dropped: int  # handed over but replaced by a newer one (or stale) before the link took it
    errors: int  # GPS_INPUT messages that could not be written (link down or write failed)
    last_error: str  # '' once a write succeeds again
    last_error_time: float | None  # time.monotonic() of the latest failure; None when last_error is ''
    connected: bool  # the link is open (for udpin/tcpin: listening)


class GpsInputSender:
    """Rate-limited GPS_INPUT output whose link I/O never runs on the caller's thread.

    Why: a write on a dead link can block (TCP send buffer, serial flow control) and a
    reconnect waits; that must cost the inference thread nothing. The caller hands an
    estimate over (`maybe_send`, a one-slot latest-wins queue); the sender thread owns the
    link: it connects and reconnects (every `retry_s` while the peer is away), writes
    GPS_INPUT, sends the 1 Hz HEARTBEAT and reads and discards what the peer sends.
    """

    def __init__(self, cfg: GpsInputConfig, connection: Any = None,
                 clock: Callable[[], float] = time.monotonic, *, retry_s: float = 1.0) -> None:
        endpoint = cfg.validate()
        if not retry_s > 0:
            raise MavlinkConfigError(f"retry_s must be > 0, got {retry_s}")
        from pymavlink.dialects.v20 import common as mavlink2  # MAVLink 2 framing whatever MAVLINK20 says

        self._dialect = mavlink2
        self.cfg = cfg
        self.retry_s = float(retry_s)
        self._clock = clock
        self._last_send = -math.inf
        if connection is None:
            self._link: _Link = _make_link(endpoint, cfg)  # binds udpin/tcpin now: OSError if the port is taken
            self._mav: Any = mavlink2.MAVLink(_LinkFile(self._link), srcSystem=cfg.source_system,
                                              srcComponent=cfg.source_component)
        else:
            self._link = _GivenConnection(connection)
            self._mav = connection.mav
        self.conn = connection if connection is not None else self._link
        self._cond = threading.Condition()
        self._pending: tuple[dict[str, Any], float] | None = None
        self._busy = False
        self._stop = threading.Event()
        self._closed = False
        self.sent = 0
        self.dropped = 0
        self.errors = 0
        self.last_error = ""
        self.last_error_time: float | None = None
        self._thread = threading.Thread(target=self._run, name="geoloc-mavlink", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ caller side (never blocks)
    def maybe_send(self, est: Any) -> bool:
        """Hand `est` to the sender thread unless the rate limit or the not-tracking rule says no.

        True means handed over (not yet written: see `sent`, `last_error`). A newer estimate
        replaces one the sender has not taken yet (`dropped`).
        """
        now = self._clock()
        if now - self._last_send < 1.0 / self.cfg.rate_hz - 1e-6:
            return False
        fields = gps_input_fields(est, self.cfg)
        if fields["fix_type"] != FIX_TYPE_3D and not self.cfg.send_when_not_tracking:
            return False
        with self._cond:
            if self._closed:
                return False
            if self._pending is not None:
                self.dropped += 1
            self._pending = (fields, time.monotonic())
            self._cond.notify_all()
        self._last_send = now
        return True

    def status(self) -> SenderStatus:
        """The counters read together (they change on the sender thread)."""
        with self._cond:
            return SenderStatus(self.sent, self.dropped, self.errors, self.last_error, self.last_error_time,
                                self._link.ready())

    @property
    def running(self) -> bool:
        """The sender thread is alive (False after close())."""
        return self._thread.is_alive()

    def flush(self, timeout: float = 1.0) -> bool:
        """Wait until the sender has dealt with the handed-over estimate (tests, shutdown)."""
        with self._cond:
            return self._cond.wait_for(lambda: (self._pending is None and not self._busy)
                                       or not self._thread.is_alive(), timeout)

    def close(self, timeout: float = 1.0) -> None:
        """Stop the sender thread and close the link; returns within ~`timeout` even while a peer is away."""
        with self._cond:
            self._closed = True
            self._stop.set()
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._thread.is_alive():  # stuck in a system call (DNS): closing the link may release it
            self._link.close()

    def __enter__(self) -> "GpsInputSender":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ sender thread
    def _fail(self, text: str, *, count: bool) -> None:
        with self._cond:
            self.last_error = text
            self.last_error_time = time.monotonic()
            self.errors += int(count)

    def _write(self, what: str, send: Callable[[], None]) -> bool:
        """One message; False (and the link dropped if it broke) on failure."""
        gps = what == "GPS_INPUT"
        try:
            send()
        except OSError as exc:
            self._fail(f"{self._link.label}: {what} not sent: {exc}", count=gps)
            self._link.drop()
            return False
        except Exception as exc:  # noqa: BLE001 - a bad value (struct.error): report, keep the link
            self._fail(f"{self._link.label}: {what} not sent: {type(exc).__name__}: {exc}", count=gps)
            return False
        with self._cond:
            self.sent += int(gps)
            self.last_error, self.last_error_time = "", None
        return True

    def _heartbeat(self) -> None:
        self._mav.heartbeat_send(self._dialect.MAV_TYPE_ONBOARD_CONTROLLER, self._dialect.MAV_AUTOPILOT_INVALID, 0, 0, 0)

    def _run(self) -> None:
        link = self._link
        retry_at = 0.0
        next_heartbeat = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if not link.ready() and now >= retry_at:
                    try:
                        link.connect(self._stop)
                    except Exception as exc:  # noqa: BLE001 - refused, unreachable, no device: retry later
                        if self._stop.is_set():
                            break
                        self._fail(f"{link.label}: cannot connect: {exc} (retrying every {self.retry_s:g} s)",
                                   count=False)
                        retry_at = time.monotonic() + self.retry_s
                if link.ready():
                    try:
                        link.poll()
                    except OSError as exc:
                        self._fail(f"{link.label}: link lost: {exc}", count=False)
                        link.drop()  # reconnect on the next pass; a restarting peer is back quickly
                if self.cfg.heartbeat and link.ready() and time.monotonic() >= next_heartbeat:
                    next_heartbeat = time.monotonic() + 1.0  # also after a failure: no retry storm
                    self._write("HEARTBEAT", self._heartbeat)
                with self._cond:
                    item, self._pending = self._pending, None
                    self._busy = item is not None
                if item is not None:
                    fields, handed = item
                    if time.monotonic() - handed > STALE_S:
                        with self._cond:
                            self.dropped += 1
                    elif not link.ready():
                        self._fail(self.last_error or f"{link.label}: GPS_INPUT not sent: not connected", count=True)
                    else:
                        self._write("GPS_INPUT", lambda: self._mav.gps_input_send(**fields))
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
                    if self._pending is None and not self._stop.is_set():
                        wait = 0.1
                        if self.cfg.heartbeat and link.ready():
                            wait = min(wait, max(next_heartbeat - time.monotonic(), 0.0))
                        if not link.ready():
                            wait = min(wait, max(retry_at - time.monotonic(), 0.0))
                        self._cond.wait(wait)
        finally:
            link.close()
            with self._cond:
                self._busy = False
                self._cond.notify_all()
