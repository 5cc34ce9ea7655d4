"""outputs/mavlink.py: GPS_INPUT fields and a real UDP loopback decoded by pymavlink."""
from __future__ import annotations

import calendar
import math
import socket
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
        assert tx.maybe_send(e)
        clock[0] += 0.1
        assert not tx.maybe_send(e)  # 10 Hz attempt against a 5 Hz limit
        clock[0] += 0.1
        assert tx.maybe_send(est(fix_valid=False))
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
    assert not tx.maybe_send(est(fix_valid=False)) and not sent
    assert tx.maybe_send(est()) and sent[0]["fix_type"] == 3


@pytest.mark.parametrize("bad", [dict(rate_hz=0.0), dict(gps_id=300), dict(url="")])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        gm.GpsInputConfig(**bad).validate()
