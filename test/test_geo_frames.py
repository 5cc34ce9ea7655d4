"""Coordinate helpers: haversine, local ENU and UTM against independent references (pyproj Geod)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from geoloc_ros.geo import (MEAN_EARTH_RADIUS_M, UL14_EARTH_RADIUS_M, LocalENU, haversine_m, utm_crs_for,
                            utm_to_wgs84, wgs84_to_utm)

GEOD = Geod(ellps="WGS84")


def test_haversine_known_distances():
    # a quarter of a great circle, and one degree along a meridian, on the sphere
    assert haversine_m(0.0, 0.0, 0.0, 90.0) == pytest.approx(MEAN_EARTH_RADIUS_M * math.pi / 2, rel=1e-12)
    assert haversine_m(10.0, 5.0, 11.0, 5.0, radius_m=UL14_EARTH_RADIUS_M) == pytest.approx(
        UL14_EARTH_RADIUS_M * math.pi / 180, rel=1e-12)
    # Paris Notre-Dame -> London Trafalgar Square: ~344 km geodesic; the sphere is within 0.5 %
    d = haversine_m(48.8530, 2.3499, 51.5080, -0.1281)
    geo = GEOD.inv(2.3499, 48.8530, -0.1281, 51.5080)[2]
    assert 343e3 < geo < 345.5e3 and d == pytest.approx(geo, rel=5e-3)
    assert haversine_m(47.0, 8.0, 47.0, 8.0) == 0.0


def test_haversine_broadcasts():
    lat2 = np.array([[0.0, 1.0], [2.0, 3.0]])
    d = haversine_m(0.0, 0.0, lat2, 0.0)
    assert d.shape == (2, 2)
    assert np.allclose(d, np.radians(lat2) * MEAN_EARTH_RADIUS_M)


def test_enu_matches_geodesic_offsets():
    enu = LocalENU(47.3769, 8.5417, 0.0)
    lon, lat, _ = GEOD.fwd(8.5417, 47.3769, 0.0, 1000.0)  # 1 km due north on the ellipsoid
    e, n, u = enu.to_enu(lat, lon, 0.0)
    assert abs(e) < 1e-3 and n == pytest.approx(1000.0, abs=0.01)
    assert u == pytest.approx(-1000.0 ** 2 / (2 * 6.37e6), abs=0.01)  # the tangent plane leaves the ellipsoid
    lon, lat, _ = GEOD.fwd(8.5417, 47.3769, 90.0, 2500.0)  # 2.5 km due east
    e, n, _ = enu.to_enu(lat, lon, 0.0)
    assert e == pytest.approx(2500.0, abs=0.02) and abs(n) < 0.5  # east geodesic bends toward the equator
    assert enu.to_enu(47.3769, 8.5417, 10.0) == (pytest.approx(0.0, abs=1e-6), pytest.approx(0.0, abs=1e-6),
                                                 pytest.approx(10.0, abs=1e-6))
    high = LocalENU(47.3769, 8.5417, 400.0)  # at 400 m the same geodesic offset is R+400 / R longer
    assert high.to_enu(lat, lon, 400.0)[0] == pytest.approx(2500.0 * (1 + 400.0 / 6.39e6), abs=0.02)


@settings(max_examples=60, deadline=None)
@given(lat0=st.floats(-80, 80), lon0=st.floats(-180, 180), e=st.floats(-20e3, 20e3),
       n=st.floats(-20e3, 20e3), u=st.floats(-500, 3000))
def test_enu_round_trip(lat0, lon0, e, n, u):
    enu = LocalENU(lat0, lon0, 100.0)
    lat, lon, alt = enu.to_geodetic(e, n, u)
    e2, n2, u2 = enu.to_enu(lat, lon, alt)
    assert abs(e2 - e) < 1e-4 and abs(n2 - n) < 1e-4 and abs(u2 - u) < 1e-4


def test_enu_vectorised_and_validates_origin():
    enu = LocalENU(-33.9, 18.4)
    e = np.linspace(-100, 100, 12).reshape(3, 4)
    lat, lon, alt = enu.to_geodetic(e, 2 * e, 0.0)
    assert lat.shape == (3, 4)
    e2, n2, _ = enu.to_enu(lat, lon, alt)
    assert np.allclose(e2, e, atol=1e-6) and np.allclose(n2, 2 * e, atol=1e-6)
    with pytest.raises(ValueError, match="latitude"):
        LocalENU(91.0, 0.0)
    with pytest.raises(ValueError, match="finite"):
        LocalENU(float("nan"), 0.0)


def test_utm_zone_choice():
    assert utm_crs_for(47.3769, 8.5417).to_epsg() == 32632
    assert utm_crs_for(-33.9, 18.4).to_epsg() == 32734
    assert utm_crs_for(40.0, -179.9).to_epsg() == 32601
    assert utm_crs_for(40.0, 179.9).to_epsg() == 32660
    with pytest.raises(ValueError, match="UTM range"):
        utm_crs_for(85.0, 0.0)


def test_utm_known_point_and_round_trip():
    # on the central meridian of zone 31 (3 deg E) at the equator: easting 500 km, northing 0
    e, n, crs = wgs84_to_utm(0.0, 3.0)
    assert crs.to_epsg() == 32631 and e == pytest.approx(500000.0, abs=1e-6) and n == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(1)
    lat = 47.0 + rng.uniform(-0.5, 0.5, 50)
    lon = 8.0 + rng.uniform(-2.5, 2.5, 50)
    e, n, crs = wgs84_to_utm(lat, lon)
    lat2, lon2 = utm_to_wgs84(e, n, crs)
    back = haversine_m(lat, lon, lat2, lon2)
    assert back.max() < 0.01
    # UTM distances agree with the geodesic to the zone's scale factor (< 0.1 %)
    d_utm = math.hypot(e[1] - e[0], n[1] - n[0])
    d_geo = GEOD.inv(lon[0], lat[0], lon[1], lat[1])[2]
    assert d_utm == pytest.approx(d_geo, rel=1e-3)
