"""geoloc-prepare-map: GeoTIFF (any CRS) or PNG/JPEG tiles + CSV -> tiled UTM COG with overviews."""
from __future__ import annotations

import math
import warnings

import cv2
import numpy as np
import pytest
import rasterio

from geoloc_ros.geo import OrthoMap
from geoloc_ros.tools.prepare_map import main

CENTER = (47.3769, 8.5417)


def _check_cog(path, epsg=32632):
    with rasterio.open(path) as ds:
        assert ds.crs.to_epsg() == epsg
        assert ds.profile.get("tiled") and ds.block_shapes[0] == (256, 256)
        assert ds.overviews(1), "no overviews"
        assert ds.compression is not None
        return ds.width, ds.height


def _marker_error_px(out, truth, centroid, size_m=300.0, out_px=300, rotation=25.0):
    with OrthoMap.open(out) as m:
        crop = m.crop(CENTER, size_m, out_px, rotation_deg=rotation)
    got = centroid(crop.image, 0)
    want = crop.latlon_to_pixel(*truth)
    return math.hypot(got[0] - want[0], got[1] - want[1]), crop


def test_geotiff_in_epsg4326_becomes_utm_cog(tmp_path, marker_map, centroid, capsys):
    src = tmp_path / "ortho_4326.tif"  # striped, untiled, no overviews, anisotropic pixels
    truth = marker_map(src, "EPSG:4326", CENTER, 1.0, 900, [(120.0, -60.0)], square_units=True, cog=False,
                       marker_px=5)
    with rasterio.open(src) as ds:
        assert not ds.profile.get("tiled") and not ds.overviews(1)
    out = tmp_path / "map.tif"
    assert main([str(src), str(out), "--no-progress"]) == 0
    summary = capsys.readouterr().out
    assert "EPSG:32632" in summary and "GSD" in summary and str(out) in summary
    _check_cog(out)
    err, crop = _marker_error_px(out, truth[0], centroid)
    assert err < 0.3 and crop.valid.all()
    with OrthoMap.open(out) as m:
        # default GSD = native (mean of the source's 1 m and cos(lat) * 1 m pixel sides)
        assert m.gsd_m == pytest.approx((1.0 + math.cos(math.radians(CENTER[0]))) / 2, rel=0.01)
        # the rotated 4326 footprint leaves invalid corners in the UTM grid: masked, not black data
        corner = m.crop(m.pixel_to_latlon(0, 0), 20.0, 20)
        assert 0.0 < corner.valid_fraction < 1.0


def test_gsd_and_crs_options(tmp_path, marker_map, centroid):
    src = tmp_path / "utm.tif"
    truth = marker_map(src, "EPSG:32632", CENTER, 0.5, 1200, [(-80.0, 90.0)], cog=False, marker_px=9)
    out = tmp_path / "merc.tif"
    assert main([str(src), str(out), "--gsd", "2", "--crs", "EPSG:3857", "--no-progress"]) == 0
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 3857
    with OrthoMap.open(out) as m:
        assert m.gsd_m == pytest.approx(2.0, rel=0.01)
    err, _ = _marker_error_px(out, truth[0], centroid, size_m=500.0, out_px=250, rotation=0.0)
    assert err < 0.5
    same = tmp_path / "same.tif"  # same CRS, native GSD: the source grid is kept exactly
    assert main([str(src), str(same), "--compress", "DEFLATE", "--no-progress"]) == 0
    with rasterio.open(src) as a, rasterio.open(same) as b:
        assert b.transform.almost_equals(a.transform) and (b.width, b.height) == (a.width, a.height)
        assert np.array_equal(a.read(window=((500, 700), (300, 500))), b.read(window=((500, 700), (300, 500))))


def _write_tiles(tmp_path, n=2, px=320):
    """A 2x2 mosaic of ~1 m pixels in lat/lon: PNG and JPEG tiles and their corner CSV;
    one red 7x7 marker in the lower-right tile. Returns (csv path, marker lat/lon)."""
    dlat = 1.0 / 111_200.0
    dlon = 1.0 / (111_320.0 * math.cos(math.radians(CENTER[0])))
    north0 = CENTER[0] + n * px * dlat / 2
    west0 = CENTER[1] - n * px * dlon / 2
    rows = ["br_lon, br_lat ,file,tl_lat,tl_lon"]  # column order and spaces do not matter
    marker = None
    yy, xx = np.mgrid[0:px, 0:px]
    for i in range(n):
        for j in range(n):
            img = np.zeros((px, px, 3), np.uint8)
            img[...] = (40 + 20 * ((yy // 32 + xx // 32) % 2))[..., None]
            if (i, j) == (1, 1):
                img[200 - 3:200 + 4, 150 - 3:150 + 4] = (255, 0, 0)
                marker = (north0 - (i * px + 200.5) * dlat, west0 + (j * px + 150.5) * dlon)
            name = f"t{i}{j}.png" if (i + j) % 2 == 0 else f"t{i}{j}.jpg"
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if name.endswith(".jpg") else []
            cv2.imwrite(str(tmp_path / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params)
            tl_lat, tl_lon = north0 - i * px * dlat, west0 + j * px * dlon
            br_lat, br_lon = tl_lat - px * dlat, tl_lon + px * dlon
            rows.append(f"{br_lon:.9f},{br_lat:.9f},{name},{tl_lat:.9f},{tl_lon:.9f}")
    csv_path = tmp_path / "tiles.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    return csv_path, marker


def test_png_jpeg_tiles_with_corner_csv(tmp_path, centroid):
    csv_path, marker = _write_tiles(tmp_path)
    out = tmp_path / "out" / "map.tif"
    assert main([str(csv_path), str(out), "--no-progress"]) == 0
    w, h = _check_cog(out)
    assert 630 <= w <= 660 and 630 <= h <= 660  # 640 m of ~1 m pixels (+ UTM grid convergence)
    err, crop = _marker_error_px(out, marker, centroid, size_m=500.0, out_px=500, rotation=0.0)
    assert err < 0.3
    with OrthoMap.open(out) as m:
        seam = m.crop(CENTER, 100.0, 100, rotation_deg=45.0)  # where all four tiles meet
        assert seam.valid.all() and seam.image.min() >= 25  # no holes or black seams


@pytest.mark.parametrize("case", ["missing", "no_crs", "bad_column", "bad_number", "missing_tile", "bad_gsd"])
def test_bad_inputs_print_one_line_error_and_exit_2(tmp_path, capsys, case):
    out = tmp_path / "out.tif"
    if case == "missing":
        src, want = tmp_path / "absent.tif", "input not found"
    elif case == "no_crs":
        src, want = tmp_path / "plain.tif", "no CRS"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(src, "w", driver="GTiff", width=32, height=32, count=3, dtype="uint8") as dst:
                dst.write(np.zeros((3, 32, 32), np.uint8))
    elif case == "bad_column":
        src, want = tmp_path / "tiles.csv", "missing column(s) br_lon"
        src.write_text("file,tl_lat,tl_lon,br_lat\na.png,1,2,0\n")
    elif case == "bad_number":
        src, want = tmp_path / "tiles.csv", "tiles.csv:2: tl_lon is not a number"
        (tmp_path / "a.png").write_bytes(b"")
        src.write_text("file,tl_lat,tl_lon,br_lat,br_lon\na.png,1,east,0,3\n")
    elif case == "missing_tile":
        src, want = tmp_path / "tiles.csv", "tile not found"
        src.write_text("file,tl_lat,tl_lon,br_lat,br_lon\nnope.png,1,2,0,3\n")
    else:
        src, want = tmp_path / "tiles.csv", "--gsd must be a positive"
        src.write_text("file,tl_lat,tl_lon,br_lat,br_lon\n")
    argv = [str(src), str(out), "--no-progress"] + (["--gsd", "-1"] if case == "bad_gsd" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and want in err, err
    assert "Traceback" not in err and not out.exists()
