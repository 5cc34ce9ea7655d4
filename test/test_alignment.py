"""localize.alignment: the odometry-to-world yaw measured from the GPS track before denial."""
from __future__ import annotations

import math

import numpy as np
import pytest

from geoloc_ros.geo.frames import LocalENU
from geoloc_ros.localize.alignment import odom_yaw_offset


def _flight(offset_rad: float, n: int = 40, speed: float = 10.0, noise_m: float = 0.0, seed: int = 0):
    """A curved 2-D track: world ENU positions and the same positions in an odometry frame
    rotated by -offset (odometry heading + offset = world heading)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) * 0.5
    heading = 0.3 + 0.02 * t
    world = np.cumsum(np.stack([np.cos(heading), np.sin(heading)], 1) * speed * 0.5, axis=0)
    c, s = math.cos(-offset_rad), math.sin(-offset_rad)
    odom = world @ np.array([[c, s], [-s, c]]) + np.array([100.0, -40.0])
    enu = LocalENU(47.4, 8.55)
    noisy = world + rng.normal(0, noise_m, world.shape) if noise_m else world
    lat, lon, _ = enu.to_geodetic(noisy[:, 0], noisy[:, 1], 0.0)
    gps = [(float(ti), float(a), float(b), 500.0, 2.0) for ti, a, b in zip(t, lat, lon)]
    return t, gps, odom


@pytest.mark.parametrize("offset_deg", [0.0, 25.0, -120.0, 179.0])
def test_yaw_offset_recovers_the_rotation(offset_deg):
    t, gps, odom = _flight(math.radians(offset_deg), noise_m=1.5)
    got = odom_yaw_offset(gps, lambda s: odom[int(np.argmin(abs(t - s)))])
    err = math.degrees(math.atan2(math.sin(got - math.radians(offset_deg)), math.cos(got - math.radians(offset_deg))))
    assert abs(err) < 2.0, (offset_deg, math.degrees(got))


def test_yaw_offset_uses_only_the_window_and_covered_stamps():
    t, gps, odom = _flight(math.radians(40.0))
    # rows outside the odometry (None) are skipped; a short window still sees > 20 m
    got = odom_yaw_offset(gps, lambda s: None if s < 10 else odom[int(np.argmin(abs(t - s)))], window_s=5.0)
    assert got == pytest.approx(math.radians(40.0), abs=1e-3)
    assert odom_yaw_offset(gps, lambda s: None) is None
    assert odom_yaw_offset(gps[:2], lambda s: (0.0, 0.0)) is None


def test_hovering_or_nan_gives_no_yaw():
    t, gps, odom = _flight(0.5, speed=0.2)  # 4 m in 20 s: the rotation is not observable
    assert odom_yaw_offset(gps, lambda s: odom[int(np.argmin(abs(t - s)))]) is None
    t, gps, odom = _flight(0.5)
    assert odom_yaw_offset(gps, lambda s: (float("nan"), 0.0)) is None
