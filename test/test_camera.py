"""UAV camera geometry: a rendered map marker lands where the pinhole model says."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from affine import Affine

from geoloc_ros.data.camera import (CameraIntrinsics, CameraPose, Photometric, footprint_m, image_to_ground,
                                    project_offsets, project_point, render_view)
from geoloc_ros.geo.cog import write_cog
from geoloc_ros.geo.frames import LocalENU, utm_crs_for, wgs84_to_utm
from geoloc_ros.geo.orthomap import OrthoMap

LAT0, LON0 = 47.40, 8.55
GSD = 0.25
SIZE_PX = 1600  # 400 m


def _marker_map(tmp_path, markers_en):
    """A grey textured map with bright square markers at the given ENU offsets from (LAT0, LON0)."""
    rng = np.random.default_rng(3)
    img = (rng.integers(60, 90, (SIZE_PX, SIZE_PX, 3))).astype(np.uint8)
    crs = utm_crs_for(LAT0, LON0)
    e0, n0, _ = wgs84_to_utm(LAT0, LON0, crs)
    half = SIZE_PX * GSD / 2
    transform = Affine(GSD, 0, e0 - half, 0, -GSD, n0 + half)
    enu = LocalENU(LAT0, LON0)
    for (e, n), colour in markers_en:
        lat, lon, _ = enu.to_geodetic(e, n, 0.0)
        me, mn, _ = wgs84_to_utm(lat, lon, crs)
        col = (me - (e0 - half)) / GSD - 0.5
        row = ((n0 + half) - mn) / GSD - 0.5
        r = 6  # 13 px = 3.25 m square
        img[int(round(row)) - r:int(round(row)) + r + 1, int(round(col)) - r:int(round(col)) + r + 1] = colour
    path = tmp_path / "markers.tif"
    write_cog(path, img, transform, crs, compress="DEFLATE")
    return OrthoMap.open(path), enu


def _blob(img, colour):
    mask = np.all(np.abs(img.astype(int) - np.array(colour)) < 60, axis=2).astype(np.uint8)
    n, _, stats, cents = cv2.connectedComponentsWithStats(mask)
    assert n >= 2, "marker not visible"
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return cents[k]  # (u, v)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cam")
    om, enu = _marker_map(tmp, [((30.0, 0.0), (255, 40, 40)), ((-10.0, 25.0), (40, 255, 40))])
    yield om, enu
    om.close()


INTR = CameraIntrinsics.from_fov(640, 480, 70.0)


def test_intrinsics_from_fov():
    assert INTR.fx == pytest.approx(320 / math.tan(math.radians(35)))
    assert (INTR.cx, INTR.cy) == (319.5, 239.5)
    with pytest.raises(ValueError):
        CameraIntrinsics.from_fov(640, 480, 0.0)


def test_projection_round_trip():
    pose = CameraPose(LAT0, LON0, 120.0, yaw=0.7, pitch=0.1, roll=-0.05)
    u, v = project_offsets(pose, INTR, np.array([10.0, -20.0]), np.array([5.0, 30.0]))
    e, n = image_to_ground(pose, INTR, u, v)
    np.testing.assert_allclose(e, [10.0, -20.0], atol=1e-6)
    np.testing.assert_allclose(n, [5.0, 30.0], atol=1e-6)


@pytest.mark.parametrize("yaw,pitch,roll", [(0.0, 0.0, 0.0), (0.9, 0.0, 0.0), (2.5, 0.08, -0.06)])
def test_marker_lands_where_model_says(scene, yaw, pitch, roll):
    om, enu = scene
    pose = CameraPose(LAT0, LON0, 100.0, yaw, pitch, roll)
    img = render_view(om, pose, INTR)
    lat, lon, _ = enu.to_geodetic(30.0, 0.0, 0.0)
    u, v = project_point(pose, INTR, lat, lon)
    bu, bv = _blob(img, (255, 40, 40))
    assert math.hypot(bu - u, bv - v) < 1.0


def test_yaw_convention(scene):
    """REP-103: yaw=0 -> image up is East; yaw=pi/2 -> image up is North."""
    om, _ = scene
    img0 = render_view(om, CameraPose(LAT0, LON0, 100.0, 0.0), INTR)
    u, v = _blob(img0, (255, 40, 40))  # marker 30 m East
    assert v < INTR.cy - 50 and abs(u - INTR.cx) < 3
    img1 = render_view(om, CameraPose(LAT0, LON0, 100.0, math.pi / 2), INTR)
    u1, v1 = _blob(img1, (255, 40, 40))  # East is now to the right
    assert u1 > INTR.cx + 50 and abs(v1 - INTR.cy) < 3
    ug, vg = _blob(img1, (40, 255, 40))  # green: 25 m North, 10 m West -> up and left
    assert vg < INTR.cy - 40 and ug < INTR.cx - 10


def test_altitude_scales_offsets(scene):
    om, _ = scene
    d = []
    for alt in (80.0, 160.0):
        img = render_view(om, CameraPose(LAT0, LON0, alt, 0.3), INTR)
        u, v = _blob(img, (255, 40, 40))
        d.append(math.hypot(u - INTR.cx, v - INTR.cy))
    assert d[1] == pytest.approx(d[0] / 2, rel=0.03)


def test_footprint_and_tilt_limit():
    fp = footprint_m(CameraPose(LAT0, LON0, 100.0, 0.0), INTR)
    half_w = 100.0 * math.tan(math.radians(35))
    assert np.max(np.abs(fp[:, 1])) == pytest.approx(half_w * 320 / 320, rel=0.01)  # image width spans North-South at yaw 0
    with pytest.raises(ValueError):
        footprint_m(CameraPose(LAT0, LON0, 100.0, 0.0, pitch=1.2), INTR)


def test_photometric_is_seeded_and_changes_image(scene):
    om, _ = scene
    pose = CameraPose(LAT0, LON0, 100.0, 0.0)
    clean = render_view(om, pose, INTR)
    ph = Photometric.random(np.random.default_rng(5), 1.0)
    a = render_view(om, pose, INTR, ph, np.random.default_rng(1))
    b = render_view(om, pose, INTR, ph, np.random.default_rng(1))
    assert np.array_equal(a, b)
    assert np.mean(np.abs(a.astype(int) - clean.astype(int))) > 1.0
    dark = Photometric(exposure=0.5).apply(clean)
    assert dark.mean() < 0.6 * clean.mean()
    vig = Photometric(vignetting=0.5).apply(np.full((100, 100, 3), 200, np.uint8))
    assert vig[0, 0, 0] < vig[50, 50, 0] - 50
