"""OrthoMap / MapCrop: markers written at known lat/lon must land where the crop says."""
from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest
import rasterio
from pyproj import Geod

from geoloc_ros.geo import GeoError, MapCrop, OrthoMap

CENTER = (47.3769, 8.5417)  # Zurich, UTM zone 32N
MARKERS = [(80.0, 0.0), (0.0, 60.0), (-50.0, -70.0)]  # (east_m, north_m) from the centre
CRS_CASES = {"utm": ("EPSG:32632", False), "webmercator": ("EPSG:3857", False), "wgs84": ("EPSG:4326", True)}
GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def maps(tmp_path_factory, marker_map):
    """One 800 px, 1 m/px map per CRS (EPSG:4326 with equal degree steps: anisotropic pixels)."""
    d = tmp_path_factory.mktemp("maps")
    out = {}
    for name, (crs, square) in CRS_CASES.items():
        path = d / f"{name}.tif"
        truth = marker_map(path, crs, CENTER, 1.0, 800, MARKERS, square_units=square)
        out[name] = (path, truth)
    return out


@pytest.mark.parametrize("rotation", [0.0, 30.0, 90.0, 180.0, 270.0])
@pytest.mark.parametrize("crs_name", list(CRS_CASES))
def test_markers_land_where_crop_transform_says(maps, centroid, crs_name, rotation):
    path, truth = maps[crs_name]
    with OrthoMap.open(path) as m:
        crop = m.crop(CENTER, 300.0, 300, rotation_deg=rotation)
    assert crop.image.shape == (300, 300, 3) and crop.image.dtype == np.uint8
    assert crop.valid.all() and crop.valid_fraction == 1.0
    for i, (lat, lon) in enumerate(truth):
        want = crop.latlon_to_pixel(lat, lon)
        got = centroid(crop.image, i)
        assert got is not None, f"marker {i} missing"
        err = math.hypot(got[0] - want[0], got[1] - want[1])
        # 1 m crop pixels on 1 m map pixels (0.68 m wide for EPSG:4326): within 0.35 px
        assert err < 0.35, f"{crs_name} rot {rotation}: marker {i} at {got}, transform says {want}"


def test_rotation_semantics_up_axis_points_to_bearing(maps, centroid):
    """Marker 0 is 80 m east of the centre: north-up it is right of the centre; with the
    crop's up pointing east (bearing 90) it is above the centre; bearing 270: below."""
    path, _ = maps["utm"]
    c = (200 - 1) / 2.0
    with OrthoMap.open(path) as m:
        r0, c0 = centroid(m.crop(CENTER, 200.0, 200, 0.0).image, 0)
        r90, c90 = centroid(m.crop(CENTER, 200.0, 200, 90.0).image, 0)
        r270, c270 = centroid(m.crop(CENTER, 200.0, 200, 270.0).image, 0)
    assert abs(r0 - c) < 1.5 and c0 - c == pytest.approx(80.0, abs=1.5)
    assert abs(c90 - c) < 1.5 and c - r90 == pytest.approx(80.0, abs=1.5)
    assert abs(c270 - c) < 1.5 and r270 - c == pytest.approx(80.0, abs=1.5)


def test_map_gsd_bounds_and_contains(maps):
    for name, (path, _) in maps.items():
        with OrthoMap.open(path) as m:
            assert m.width == 800 and m.height == 800
            if name == "wgs84":  # equal degree steps: x is cos(lat) shorter on the ground
                lat, lon = m.center_latlon
                ex = GEOD.inv(lon, lat, lon + abs(rasterio.open(path).transform.a), lat)[2]
                assert m.gsd_m == pytest.approx((1.0 + ex) / 2.0, rel=2e-3)
            else:
                assert m.gsd_m == pytest.approx(1.0, rel=2e-3)
            lat_min, lon_min, lat_max, lon_max = m.bounds_latlon
            assert lat_min < CENTER[0] < lat_max and lon_min < CENTER[1] < lon_max
            assert GEOD.inv(*m.center_latlon[::-1], CENTER[1], CENTER[0])[2] < 1.0
            assert m.contains(*CENTER) and m.contains(*CENTER, margin_m=300.0)
            assert not m.contains(*CENTER, margin_m=450.0)
            assert not m.contains(CENTER[0] + 0.1, CENTER[1])
            r, c = m.latlon_to_pixel(*m.pixel_to_latlon(123.25, 456.75))
            assert (r, c) == (pytest.approx(123.25, abs=1e-6), pytest.approx(456.75, abs=1e-6))


def _offset(lat0, lon0, east, north):
    lon, lat, _ = GEOD.fwd(lon0, lat0, math.degrees(math.atan2(east, north)), math.hypot(east, north))
    return lat, lon


def test_crop_running_off_the_map_has_mask_and_fill(maps):
    path, _ = maps["utm"]
    with OrthoMap.open(path) as m:
        edge = _offset(*CENTER, 400.0, 0.0)  # on the eastern edge
        crop = m.crop(edge, 200.0, 100, fill=(7, 8, 9))
        assert crop.valid_fraction == pytest.approx(0.5, abs=0.03)
        assert crop.valid[:, :45].all() and not crop.valid[:, 55:].any()
        assert (crop.image[~crop.valid] == (7, 8, 9)).all()
        assert (crop.image[crop.valid] != (7, 8, 9)).any(axis=-1).all()
        assert m.coverage_fraction(edge, 200.0) == pytest.approx(0.5, abs=0.05)
        corner = _offset(*CENTER, 400.0, 400.0)  # north-east corner: a quarter at any rotation
        for rot in (0.0, 45.0, 200.0):
            assert m.crop(corner, 160.0, 80, rotation_deg=rot).valid_fraction == pytest.approx(0.25, abs=0.03)


def test_crop_entirely_off_the_map_raises_one_line(maps):
    path, _ = maps["utm"]
    with OrthoMap.open(path) as m:
        far = _offset(*CENTER, 2000.0, 0.0)
        with pytest.raises(GeoError) as ei:
            m.crop(far, 300.0, 100)
    msg = str(ei.value)
    assert "\n" not in msg and f"{far[0]:.7f}" in msg and "outside" in msg and path.name in msg


def test_overview_is_used_for_coarse_crops_and_stays_aligned(tmp_path, marker_map, centroid):
    path = tmp_path / "fine.tif"
    truth = marker_map(path, "EPSG:32632", CENTER, 0.5, 2048, [(300.0, -150.0)], marker_px=17)
    with OrthoMap.open(path) as m:
        assert m.overview_factors[:4] == [1, 2, 4, 8]
        crop = m.crop(CENTER, 800.0, 200, rotation_deg=30.0)  # 4 m/px: factor-8 overview is exact
        assert crop.source_level == 3 and crop.source_gsd_m == pytest.approx(4.0, rel=1e-3)
        fine = m.crop(CENTER, 150.0, 300)  # 0.5 m/px: full resolution
        assert fine.source_level == 0
    got = centroid(crop.image, 0, threshold=30)
    want = crop.latlon_to_pixel(*truth[0])
    assert math.hypot(got[0] - want[0], got[1] - want[1]) < 0.5


def test_crops_read_only_a_window(maps):
    """Windowed reads only: every read is about the crop's footprint, never the raster."""
    path, _ = maps["utm"]
    with OrthoMap.open(path) as m:
        ds = m._levels[0]
        shapes = []
        real_read = ds.read

        class Spy:
            def __getattr__(self, name):
                return getattr(ds, name)

            def read(self, *a, **kw):
                out = real_read(*a, **kw)
                shapes.append(out.shape[-2:])
                return out

        m._levels[0] = Spy()
        m.crop(CENTER, 100.0, 100, rotation_deg=45.0)
        m._levels[0] = ds
    assert shapes and all(h <= 150 and w <= 150 for h, w in shapes)  # 100 m * sqrt(2) + margin


def test_grey_and_rgba_maps(tmp_path, marker_map):
    grey = tmp_path / "grey.tif"
    marker_map(grey, "EPSG:32632", CENTER, 1.0, 400, [(20.0, 0.0)], bands="grey", cog=False)
    with OrthoMap.open(grey) as m:
        crop = m.crop(CENTER, 100.0, 100)
        assert crop.image.shape == (100, 100, 3) and crop.valid.all()
        assert (crop.image[..., 0] == crop.image[..., 1]).all() and (crop.image[..., 1] == crop.image[..., 2]).all()
        assert crop.image[49:51, 69:71].min() > 200  # the (white) marker 20 m east
    rgba = tmp_path / "rgba.tif"
    marker_map(rgba, "EPSG:32632", CENTER, 1.0, 400, [], bands="rgba", cog=False)
    with OrthoMap.open(rgba) as m:
        west_edge_of_opaque = _offset(*CENTER, -100.0, 0.0)  # western quarter is transparent
        crop = m.crop(west_edge_of_opaque, 100.0, 100, fill=255)
    assert crop.valid_fraction == pytest.approx(0.5, abs=0.03)
    assert not crop.valid[:, :45].any() and crop.valid[:, 55:].all()
    assert (crop.image[~crop.valid] == 255).all() and (crop.image[crop.valid] < 100).all()


def test_mapcrop_transforms_round_trip_and_vectorise(maps):
    path, _ = maps["wgs84"]
    with OrthoMap.open(path) as m:
        crop = m.crop(CENTER, 384.0, 384, rotation_deg=33.0)
    assert isinstance(crop, MapCrop) and crop.gsd_m == 1.0 and crop.out_px == 384
    c = 383 / 2.0
    assert crop.pixel_to_offset_m(c, c) == (pytest.approx(0.0, abs=1e-9), pytest.approx(0.0, abs=1e-9))
    lat, lon = crop.pixel_to_latlon(c, c)
    assert (lat, lon) == (pytest.approx(CENTER[0], abs=1e-10), pytest.approx(CENTER[1], abs=1e-10))
    rng = np.random.default_rng(0)
    rows, cols = rng.uniform(-50, 434, (2, 7, 5))
    lat, lon = crop.pixel_to_latlon(rows, cols)
    assert lat.shape == (7, 5)
    r2, c2 = crop.latlon_to_pixel(lat, lon)
    assert np.abs(r2 - rows).max() * crop.gsd_m < 0.01 and np.abs(c2 - cols).max() * crop.gsd_m < 0.01
    e, n = crop.pixel_to_offset_m(rows, cols)
    r3, c3 = crop.offset_m_to_pixel(e, n)
    assert np.allclose(r3, rows) and np.allclose(c3, cols)
    # ground distance between pixel centres = gsd, whatever the rotation
    la, lo = crop.pixel_to_latlon(np.array([10.0, 10.0]), np.array([10.0, 110.0]))
    assert GEOD.inv(lo[0], la[0], lo[1], la[1])[2] == pytest.approx(100.0, abs=0.01)
    # the up axis points to bearing 33 deg
    la, lo = crop.pixel_to_latlon(np.array([c, c - 100.0]), np.array([c, c]))
    assert GEOD.inv(lo[0], la[0], lo[1], la[1])[0] == pytest.approx(33.0, abs=0.01)


def test_bad_inputs_give_one_line_errors(tmp_path, maps):
    missing = tmp_path / "nope.tif"
    with pytest.raises(GeoError, match=r"map file not found: .*nope\.tif$"):
        OrthoMap.open(missing)
    plain = tmp_path / "plain.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(plain, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8") as dst:
            dst.write(np.zeros((3, 64, 64), np.uint8))
    with pytest.raises(GeoError) as ei:
        OrthoMap.open(plain)
    assert "\n" not in str(ei.value) and "plain.tif" in str(ei.value) and "no CRS" in str(ei.value)
    nogeo = tmp_path / "crs_only.tif"  # a CRS but no geotransform
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(nogeo, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8",
                           crs="EPSG:32632") as dst:
            dst.write(np.zeros((3, 64, 64), np.uint8))
    with pytest.raises(GeoError, match=r"crs_only\.tif: no geotransform"):
        OrthoMap.open(nogeo)
    notraster = tmp_path / "text.tif"
    notraster.write_text("hello")
    with pytest.raises(GeoError, match="text.tif: not a readable raster"):
        OrthoMap.open(notraster)
    with OrthoMap.open(maps["utm"][0]) as m:
        with pytest.raises(GeoError, match="not a valid lat/lon"):
            m.crop((95.0, 8.0), 100.0, 64)
        with pytest.raises(ValueError, match="size_m > 0"):
            m.crop(CENTER, 0.0, 64)


def test_pickle_and_fork_reopen_the_file(maps):
    import multiprocessing as mp
    import pickle

    global _SHARED
    path, _ = maps["utm"]
    with OrthoMap.open(path) as m:
        ref = m.crop(CENTER, 200.0, 100, rotation_deg=10.0).image
        clone = pickle.loads(pickle.dumps(m))
        assert np.array_equal(clone.crop(CENTER, 200.0, 100, rotation_deg=10.0).image, ref)
        clone.close()
        _SHARED = m  # inherited by forked children, not pickled
        with mp.get_context("fork").Pool(2) as pool:
            outs = pool.map(_crop_in_child, [10.0] * 4)
        _SHARED = None
    assert all(pid != os.getpid() and np.array_equal(img, ref) for pid, img in outs)


_SHARED = None


def _crop_in_child(rot):
    img = _SHARED.crop(CENTER, 200.0, 100, rotation_deg=rot).image
    assert _SHARED._pid == os.getpid()  # the child reopened the file
    return os.getpid(), img
