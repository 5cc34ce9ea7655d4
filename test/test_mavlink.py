"""outputs/mavlink.py: GPS_INPUT fields, accepted link URLs, and real 127.0.0.1 links (UDP, TCP, a TCP
peer that goes away) decoded by pymavlink; the caller never waits for the link."""
from __future__ import annotations

import calendar
import math
import socket
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from geoloc_ros.outputs import mavlink as gm


def est(**kw):
    base = dict(stamp=calendar.timegm((2024, 3, 14, 12, 0, 0)) + 0.25, lat=47.3977419, lon=8.5455938,
                alt=488.5, cov_enu=np.array([[9.0, 2.0, 0], [2.0, 4.0, 0], [0, 0, 16.0]]), fix_valid=True)
    base.update(kw)
    return SimpleNamespace(**base)


def test_gps_week_time():
    # 2024-03-14 12:00:00.25 UTC: GPS week 2305 started Sunday 2024-03-10 00:00:00 GPS time
    week, ms = gm.gps_week_time(est().stamp)
    assert week == 2305
    assert ms == ((4 * 86400 + 12 * 3600) + 18) * 1000 + 250
    # the GPS epoch itself (UTC 1980-01-06 = GPS 0, leap seconds were 0 then)
    assert gm.gps_week_time(gm.GPS_EPOCH_UNIX_S, leap_seconds=0) == (0, 0)
    assert gm.gps_week_time(5.0) == (0, 0)  # simulation time: before the epoch
    assert gm.gps_week_time(float("nan")) == (0, 0)


def test_accuracy_is_major_axis_sigma():
    h, v = gm.accuracy_from_cov(est().cov_enu)
    lam = np.linalg.eigvalsh(np.array([[9.0, 2.0], [2.0, 4.0]]))[-1]
    assert math.isclose(h, math.sqrt(lam)) and math.isclose(v, 4.0)
    assert h > 3.0  # larger than the largest axis-aligned sigma because of the correlation


def test_fields_tracking_and_not():
    cfg = gm.GpsInputConfig(geoid_height_m=47.5)
    f = gm.gps_input_fields(est(), cfg)
    assert f["fix_type"] == gm.FIX_TYPE_3D and f["satellites_visible"] == 10
    assert f["lat"] == round(47.3977419e7) and f["lon"] == round(8.5455938e7)
    assert math.isclose(f["alt"], 488.5 - 47.5)
    assert f["ignore_flags"] == gm.IGNORE_VEL_HORIZ | gm.IGNORE_VEL_VERT | gm.IGNORE_SPEED_ACCURACY
    assert math.isclose(f["hdop"], f["horiz_accuracy"] / cfg.dop_uere_m)
    n = gm.gps_input_fields(est(fix_valid=False), cfg)
    assert n["fix_type"] == gm.FIX_TYPE_NO_FIX and n["satellites_visible"] == 0
    assert n["ignore_flags"] & gm.IGNORE_HORIZONTAL_ACCURACY and n["ignore_flags"] & gm.IGNORE_ALT
    bad = gm.gps_input_fields(est(cov_enu=np.full((3, 3), np.nan)), cfg)
    assert bad["fix_type"] == gm.FIX_TYPE_NO_FIX


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_udp_loopback_rate_limit_and_decode():
    from pymavlink import mavutil

    port = free_udp_port()
    rx = mavutil.mavlink_connection(f"udpin:127.0.0.1:{port}")
    clock = [100.0]
    cfg = gm.GpsInputConfig(url=f"udpout:127.0.0.1:{port}", rate_hz=5.0, gps_id=1, source_system=7)
    tx = gm.GpsInputSender(cfg, clock=lambda: clock[0])
    try:
        e = est()
        assert tx.maybe_send(e) and tx.flush(2.0)
        clock[0] += 0.1
        assert not tx.maybe_send(e)  # 10 Hz attempt against a 5 Hz limit
        clock[0] += 0.1
        assert tx.maybe_send(est(fix_valid=False)) and tx.flush(2.0)
        got = []
        t0 = time.monotonic()
        while len(got) < 2 and time.monotonic() - t0 < 5.0:
            m = rx.recv_match(type="GPS_INPUT", blocking=True, timeout=0.5)
            if m is not None:
                got.append(m)
        assert len(got) == 2 and tx.sent == 2
        m = got[0]
        assert m.get_srcSystem() == 7 and m.get_msgbuf()[0] == 0xFD  # MAVLink 2 framing
        week, week_ms = gm.gps_week_time(e.stamp)
        assert (m.time_week, m.time_week_ms, m.time_usec) == (week, week_ms, int(round(e.stamp * 1e6)))
        assert (m.lat, m.lon, m.gps_id, m.fix_type) == (round(e.lat * 1e7), round(e.lon * 1e7), 1, 3)
        assert math.isclose(m.alt, 488.5, rel_tol=1e-6)
        h, v = gm.accuracy_from_cov(e.cov_enu)
        assert math.isclose(m.horiz_accuracy, h, rel_tol=1e-6) and math.isclose(m.vert_accuracy, v, rel_tol=1e-6)
        assert m.ignore_flags == gm.IGNORE_VEL_HORIZ | gm.IGNORE_VEL_VERT | gm.IGNORE_SPEED_ACCURACY
        assert got[1].fix_type == gm.FIX_TYPE_NO_FIX and got[1].satellites_visible == 0
    finally:
        tx.close()
        rx.close()


def test_not_tracking_can_be_silent():
    sent = []
    conn = SimpleNamespace(mav=SimpleNamespace(gps_input_send=lambda **f: sent.append(f),
                                               heartbeat_send=lambda *a: None), close=lambda: None)
    tx = gm.GpsInputSender(gm.GpsInputConfig(send_when_not_tracking=False), connection=conn, clock=lambda: 0.0)
    assert not tx.maybe_send(est(fix_valid=False)) and tx.flush(2.0) and not sent
    assert tx.maybe_send(est()) and tx.flush(2.0) and sent[0]["fix_type"] == 3
    tx.close()


@pytest.mark.parametrize("bad", [dict(rate_hz=0.0), dict(gps_id=300), dict(url="")])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        gm.GpsInputConfig(**bad).validate()


# ----------------------------------------------------------------------------- link URL


REJECTED = ["/bin/true", "foo", "udpout:host:99999", "", "udpout:127.0.0.1:0", "tcp:127.0.0.1", "flight.tlog",
            "00000001.BIN", "/dev/serial/../../bin/true", "udpbcast:255.255.255.255:14550", "COM3", " "]


@pytest.mark.parametrize("url", REJECTED)
def test_rejected_urls_raise_one_line(url):
    with pytest.raises(gm.MavlinkUrlError) as info:
        gm.GpsInputSender(gm.GpsInputConfig(url=url))
    text = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in text
    assert gm.ACCEPTED_URLS in text and "udpout:HOST:PORT" in text and "/dev/tty*" in text


def test_accepted_urls():
    assert gm.parse_url("udpout:192.168.1.5:14550") == gm.Endpoint("udpout", "192.168.1.5", 14550)
    assert gm.parse_url("udpin:0.0.0.0:14550") == gm.Endpoint("udpin", "0.0.0.0", 14550)
    assert gm.parse_url("udp:localhost:14550").kind == "udpin"  # pymavlink's meaning of udp:
    assert gm.parse_url("tcp:127.0.0.1:5760") == gm.Endpoint("tcp", "127.0.0.1", 5760)
    assert gm.parse_url("tcpin:0.0.0.0:5760").kind == "tcpin"
    assert gm.parse_url("/dev/ttyACM0") == gm.Endpoint("serial", device="/dev/ttyACM0")
    assert gm.parse_url("/dev/serial/by-id/usb-ArduPilot_fmuv3_1E0-if00").kind == "serial"
    assert gm.parse_url("COM3", windows=True) == gm.Endpoint("serial", device="COM3")
    with pytest.raises(gm.MavlinkUrlError):
        gm.parse_url("COM3", windows=False)


def test_serial_without_pyserial_is_a_config_error():
    try:
        import serial  # noqa: F401
        pytest.skip("pyserial is installed")
    except ImportError:
        pass
    with pytest.raises(gm.MavlinkConfigError, match="pyserial"):
        gm.GpsInputSender(gm.GpsInputConfig(url="/dev/ttyUSB0"))


# ----------------------------------------------------------------------------- real links on 127.0.0.1


def gps_inputs(data: bytes) -> list:
    from pymavlink.dialects.v20 import common

    return [m for m in (common.MAVLink(None).parse_buffer(bytes(data)) or []) if m.get_type() == "GPS_INPUT"]


class TcpPeer:
    """A TCP server on 127.0.0.1 that accepts and records what it receives; close() makes it go away."""

    def __init__(self, port: int = 0) -> None:
        self.srv = socket.create_server(("127.0.0.1", port))  # SO_REUSEADDR: a later peer can take the port
        self.srv.settimeout(0.02)
        self.port = self.srv.getsockname()[1]
        self.data = bytearray()
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                c, _ = self.srv.accept()
                c.settimeout(0.01)
                self.conns.append(c)
            except OSError:
                pass
            for c in list(self.conns):
                try:
                    chunk = c.recv(4096)
                except OSError:
                    continue
                if chunk:
                    self.data += chunk
                else:
                    self.conns.remove(c)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        for c in self.conns:
            c.close()
        self.srv.close()


class Clock:
    """A caller clock that moves 1 s per reading: every maybe_send passes the rate limit."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def send_until(tx, pred, timeout: float, e=None) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        tx.maybe_send(e or est())
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_tcp_peer_that_goes_away_never_slows_the_caller_and_the_link_recovers():
    peer = TcpPeer()
    port = peer.port
    tx = gm.GpsInputSender(gm.GpsInputConfig(url=f"tcp:127.0.0.1:{port}", rate_hz=50.0), clock=Clock(),
                           retry_s=0.2)
    peer2 = None
    try:
        assert send_until(tx, lambda: len(gps_inputs(peer.data)) >= 3, 5.0), tx.last_error
        assert tx.last_error == "" and tx.sent >= 3 and tx.status().connected
        m = gps_inputs(peer.data)[-1]
        assert m.fix_type == 3 and m.lat == round(est().lat * 1e7)

        peer.close()  # the peer disappears mid-run: EOF, then connection refused on every retry
        assert send_until(tx, lambda: tx.last_error != "" and not tx.status().connected, 3.0)
        assert tx.flush(2.0)
        before = tx.status()
        t0 = time.perf_counter()
        for _ in range(100):
            tx.maybe_send(est())
        caller_s = time.perf_counter() - t0
        assert caller_s < 0.05, f"100 maybe_send took {caller_s * 1e3:.1f} ms"
        assert tx.flush(2.0)
        after = tx.status()
        assert after.sent == before.sent  # nothing reached a peer...
        assert (after.dropped - before.dropped) + (after.errors - before.errors) == 100  # ...and each is counted
        assert "127.0.0.1" in after.last_error and after.last_error_time is not None

        peer2 = TcpPeer(port)  # the peer comes back on the same port
        assert send_until(tx, lambda: len(gps_inputs(peer2.data)) >= 2 and tx.last_error == "", 5.0), tx.last_error
        assert tx.status().connected and tx.status().last_error_time is None
    finally:
        t0 = time.monotonic()
        tx.close()
        assert time.monotonic() - t0 < 1.0 and not tx.running
        peer.close()
        if peer2 is not None:
            peer2.close()


def test_close_is_quick_while_the_sender_hangs_in_connect():
    # a listener whose accept queue is full: the next SYN is never answered, connect() hangs
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=1.0)
    tx = gm.GpsInputSender(gm.GpsInputConfig(url=f"tcp:127.0.0.1:{port}"), clock=Clock())
    try:
        time.sleep(0.3)
        assert not tx.status().connected and tx.running
        t0 = time.perf_counter()
        for _ in range(100):
            assert tx.maybe_send(est())
        assert time.perf_counter() - t0 < 0.05
    finally:
        t0 = time.monotonic()
        tx.close()
        closed_s = time.monotonic() - t0
        filler.close()
        srv.close()
    assert closed_s < 1.0 and not tx.running
    assert not tx.maybe_send(est())  # closed: nothing handed over any more


def test_udpin_sends_to_the_peer_that_spoke():
    from pymavlink import mavutil

    port = free_udp_port()
    tx = gm.GpsInputSender(gm.GpsInputConfig(url=f"udpin:127.0.0.1:{port}", rate_hz=50.0), clock=Clock())
    gcs = None
    try:
        assert tx.maybe_send(est()) and tx.flush(2.0)
        assert "no peer" in tx.last_error and tx.errors == 1 and tx.sent == 0
        gcs = mavutil.mavlink_connection(f"udpout:127.0.0.1:{port}")
        gcs.mav.heartbeat_send(6, 8, 0, 0, 0)  # a GCS speaks first, as routers do
        got = []
        assert send_until(tx, lambda: got.append(gcs.recv_match(type="GPS_INPUT", blocking=False)) or any(got), 5.0)
        assert tx.last_error == "" and tx.sent >= 1
    finally:
        tx.close()
        if gcs is not None:
            gcs.close()


def test_tcpin_serves_one_client_at_a_time():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    tx = gm.GpsInputSender(gm.GpsInputConfig(url=f"tcpin:127.0.0.1:{port}", rate_hz=50.0), clock=Clock())
    try:
        for _ in range(2):  # a client, then after it left another one
            c = socket.create_connection(("127.0.0.1", port), timeout=1.0)
            c.settimeout(0.05)
            data = bytearray()

            def received() -> bool:
                try:
                    data.extend(c.recv(4096))
                except OSError:
                    pass
                return len(gps_inputs(data)) >= 2
            assert send_until(tx, received, 5.0), tx.last_error
            assert tx.last_error == ""
            c.close()
            assert send_until(tx, lambda: tx.last_error != "", 3.0)  # it noticed the client left
    finally:
        tx.close()


def test_a_value_pymavlink_cannot_pack_is_reported_and_the_sender_keeps_going():
    port = free_udp_port()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", port))
    rx.settimeout(0.5)
    tx = gm.GpsInputSender(gm.GpsInputConfig(url=f"udpout:127.0.0.1:{port}", heartbeat=False), clock=Clock())
    try:
        assert tx.maybe_send(est(lat=1000.0)) and tx.flush(2.0)  # lat degE7 beyond int32
        assert "GPS_INPUT not sent" in tx.last_error and tx.errors == 1 and tx.running
        assert tx.maybe_send(est()) and tx.flush(2.0)
        assert tx.last_error == "" and tx.sent == 1
        assert gps_inputs(rx.recv(4096))[0].fix_type == 3
    finally:
        tx.close()
        rx.close()
