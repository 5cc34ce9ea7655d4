"""North-up preparation: rotation sign conventions and scale, against a synthetic marker
image and against OrthoMap crops (the satellite side's convention)."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from geoloc_ros.localize.prepare import heatmap_cov_to_enu, honest_cov, prepare_uav


def _intr(w, h, f):
    return SimpleNamespace(width=w, height=h, fx=f, fy=f, cx=(w - 1) / 2, cy=(h - 1) / 2)


def _red_centroid(img):
    c = img.astype(int)
    m = (c[..., 0] > 150) & (c[..., 1] < 80) & (c[..., 2] < 80)
    rows, cols = np.nonzero(m)
    assert len(rows) > 0, "marker lost"
    return rows.mean(), cols.mean()


@pytest.mark.parametrize("yaw_deg, expect", [(90, (-1, 0)), (0, (0, 1)), (180, (0, -1)), (-90, (1, 0))])
def test_marker_in_front_ends_up_in_heading_direction(yaw_deg, expect):
    """A marker ahead of the UAV (image up when nadir) lies in the heading direction: north-up
    output has it up for yaw 90 (north), right for yaw 0 (east), left for 180, down for -90."""
    w, h, f, alt, n = 200, 160, 100.0, 50.0, 64
    img = np.full((h, w, 3), 90, np.uint8)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    img[int(cy) - 42:int(cy) - 36, int(cx) - 3:int(cx) + 3] = (255, 0, 0)  # ~39 px ahead = 19.5 m
    prep = prepare_uav(img, _intr(w, h, f), alt, math.radians(yaw_deg), n)
    assert math.isclose(prep.footprint_m, math.sqrt(2) * 80 * alt / f, rel_tol=1e-9)
    r, c = _red_centroid(prep.image)
    ctr = (n - 1) / 2
    dist_px = 19.5 / prep.gsd_m
    assert abs((r - ctr) - expect[0] * dist_px) < 1.5 and abs((c - ctr) - expect[1] * dist_px) < 1.5, (r, c)


def test_vehicle_right_is_not_mirrored():
    """A marker on the vehicle's right (image right) facing north must end up east."""
    w = h = 160
    img = np.full((h, w, 3), 90, np.uint8)
    img[77:83, 115:121] = (255, 0, 0)
    prep = prepare_uav(img, _intr(w, h, 100.0), 50.0, math.radians(90), 64)
    r, c = _red_centroid(prep.image)
    assert c > 40 and abs(r - 31.5) < 2


@pytest.mark.parametrize("yaw_deg", [0.0, 90.0, 180.0, 237.0])
def test_orthomap_rotated_crop_prepares_back_to_north_up(tmp_path, marker_map, yaw_deg):
    """A UAV view = OrthoMap crop whose up axis points to the heading; prepared, the markers
    sit where a north-up crop puts them."""
    center = (47.3769, 8.5417)
    path = tmp_path / "m.tif"
    marker_map(path, "EPSG:32632", center, 0.25, 800, [(15.0, 0.0), (0.0, 15.0)], marker_px=5)
    from geoloc_ros.geo.orthomap import OrthoMap

    w, f, alt = 240, 200.0, 100.0  # 0.5 m/px, 120 m side
    with OrthoMap.open(path) as m:
        bearing = 90.0 - yaw_deg
        view = m.crop(center, w * alt / f, w, rotation_deg=bearing).image
    prep = prepare_uav(view, _intr(w, w, f), alt, math.radians(yaw_deg), 128)
    ctr = 63.5
    r, c = _red_centroid(prep.image)  # red marker 15 m east
    assert abs(r - ctr) < 1.5 and abs(c - (ctr + 15.0 / prep.gsd_m)) < 1.5, (r, c)
    g = prep.image.astype(int)
    gm = (g[..., 1] > 150) & (g[..., 0] < 80) & (g[..., 2] < 80)
    rows, cols = np.nonzero(gm)  # green marker 15 m north
    assert abs(rows.mean() - (ctr - 15.0 / prep.gsd_m)) < 1.5 and abs(cols.mean() - ctr) < 1.5


def test_large_image_is_antialiased_and_scaled():
    w = h = 1200
    rng = np.random.default_rng(0)
    img = (rng.random((h, w, 3)) * 255).astype(np.uint8)  # white noise averages to grey
    prep = prepare_uav(img, _intr(w, h, 1000.0), 100.0, 0.3, 64)
    assert prep.image.shape == (64, 64, 3)
    assert prep.image.astype(float).std() < 20  # aliasing would keep the noise at ~74
    raw = prepare_uav(img, _intr(w, h, 1000.0), 100.0, 0.3, 64, antialias=False)
    assert raw.image.astype(float).std() > 35


def test_heatmap_covariance_axes_and_honesty():
    cov_px = np.array([[4.0, 0.0], [0.0, 1.0]])  # long along rows = north-south
    c = heatmap_cov_to_enu(cov_px, 0.5)
    assert np.allclose(c, [[0.25, 0.0], [0.0, 1.0]])
    cov_px = np.array([[2.0, 1.0], [1.0, 2.0]])  # row and col grow together: south-east
    c = heatmap_cov_to_enu(cov_px, 1.0)
    assert c[0, 1] < 0  # east grows while north shrinks
    h = honest_cov(np.diag([0.01, 9.0]), inflation=2.0, floor_m=1.0)
    assert np.allclose(h, np.diag([1.0, 18.0]))


@pytest.mark.parametrize("roll_deg, pitch_deg, yaw_deg", [(15.0, 0.0, 90.0), (0.0, -12.0, 30.0), (8.0, 6.0, 200.0)])
def test_tilted_body_camera_is_rectified_and_offset_known(tmp_path, marker_map, roll_deg, pitch_deg, yaw_deg):
    """Body-fixed camera banked/pitched (data/camera.render_view): the prepared patch is north-up
    and centred on the optical-axis ground point; the red marker at the nadir lands at
    centre - offset, the green one 15 m north of the nadir 15 m further up."""
    camera = pytest.importorskip("geoloc_ros.data.camera")
    from geoloc_ros.geo.orthomap import OrthoMap

    center = (47.3769, 8.5417)
    path = tmp_path / "m.tif"
    marker_map(path, "EPSG:32632", center, 0.25, 1000, [(0.0, 0.0), (0.0, 15.0)], marker_px=5)
    intr = camera.CameraIntrinsics.from_fov(320, 240, 70.0)
    pose = camera.CameraPose(center[0], center[1], 100.0, math.radians(yaw_deg), math.radians(pitch_deg),
                             math.radians(roll_deg))
    with OrthoMap.open(path) as m:
        img = camera.render_view(m, pose, intr)
    prep = prepare_uav(img, intr, 100.0, math.radians(yaw_deg), 128, pitch=math.radians(pitch_deg),
                       roll=math.radians(roll_deg))
    ge, gn = prep.center_offset_en
    tilt = math.radians(math.hypot(roll_deg, pitch_deg))
    assert math.isclose(math.hypot(ge, gn), 100.0 * math.tan(tilt), rel_tol=0.05)
    ctr, g = 63.5, prep.gsd_m
    r, c = _red_centroid(prep.image)
    assert abs(c - (ctr - ge / g)) < 1.5 and abs(r - (ctr + gn / g)) < 1.5, (r, c, ge, gn)
    q = prep.image.astype(int)
    rows, cols = np.nonzero((q[..., 1] > 150) & (q[..., 0] < 80) & (q[..., 2] < 80))
    assert abs(cols.mean() - (ctr - ge / g)) < 1.5 and abs(rows.mean() - (ctr + (gn - 15.0) / g)) < 1.5
