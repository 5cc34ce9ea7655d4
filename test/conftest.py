"""Shared pytest fixtures (kept small; add fixtures only when two test modules need them)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import CRS, Geod, Transformer
from rasterio.transform import from_origin

MARKER_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
_GEOD = Geod(ellps="WGS84")


def write_marker_map(path: Path, crs, center_latlon, gsd_m: float, size_px: int, markers=(), *,
                     bands: str = "rgb", marker_px: int = 3, square_units: bool = False,
                     cog: bool = True) -> list[tuple[float, float]]:
    """Write a synthetic georeferenced raster: a grey checkerboard with pure-colour square
    markers (red, green, blue) at the map pixels nearest to the given (east_m, north_m)
    offsets from the centre. Returns each marker's true (lat, lon): the centre of its
    middle pixel, computed with pyproj/rasterio only (independent of geoloc_ros.geo).

    `square_units`: equal pixel size in CRS units along x and y (anisotropic on the
    ground for EPSG:4326); otherwise pixels are `gsd_m` square on the ground.
    """
    crs = CRS.from_user_input(crs)
    lat0, lon0 = center_latlon
    fwd = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    back = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    cx, cy = fwd.transform(lon0, lat0)
    # metres per CRS unit at the centre, along x and y
    d = 1e-5 if crs.is_geographic else 1.0
    lons, lats = back.transform([cx, cx + d, cx], [cy, cy, cy + d])
    mx = _GEOD.inv(lons[0], lats[0], lons[1], lats[1])[2] / d
    my = _GEOD.inv(lons[0], lats[0], lons[2], lats[2])[2] / d
    px_x, px_y = gsd_m / mx, gsd_m / my
    if square_units:
        px_x = px_y
    n = size_px
    transform = from_origin(cx - n / 2 * px_x, cy + n / 2 * px_y, px_x, px_y)
    yy, xx = np.mgrid[0:n, 0:n]
    grey = np.where(((yy // 64) + (xx // 64)) % 2 == 0, 50, 70).astype(np.uint8)
    img = np.repeat(grey[..., None], 3, axis=2)
    truth = []
    h = marker_px // 2
    for i, (e, nn) in enumerate(markers):
        lon, lat, _ = _GEOD.fwd(lon0, lat0, math.degrees(math.atan2(e, nn)), math.hypot(e, nn))
        col_f, row_f = ~transform @ fwd.transform(lon, lat)
        ci, ri = int(math.floor(col_f)), int(math.floor(row_f))
        img[ri - h:ri + h + 1, ci - h:ci + h + 1] = MARKER_COLOURS[i % 3]
        tlon, tlat = back.transform(*(transform @ (ci + 0.5, ri + 0.5)))
        truth.append((tlat, tlon))
    if bands == "rgb" and cog:
        from geoloc_ros.geo.cog import write_cog
        write_cog(path, img, transform, crs.to_wkt(), compress="DEFLATE")
        return truth
    if bands == "grey":
        arr = img.max(axis=2)[None]
    elif bands == "rgba":
        alpha = np.full((n, n), 255, np.uint8)
        alpha[:, : n // 4] = 0  # western quarter transparent
        arr = np.concatenate([np.moveaxis(img, -1, 0), alpha[None]], axis=0)
    else:
        arr = np.moveaxis(img, -1, 0)
    profile = dict(driver="GTiff", width=n, height=n, count=arr.shape[0], dtype="uint8", crs=crs.to_wkt(),
                   transform=transform)
    if bands == "rgba":
        profile["photometric"] = "RGB"
        profile["alpha"] = "YES"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)
    return truth


def colour_centroid(image: np.ndarray, colour_index: int, threshold: int = 60):
    """(row, col) centroid of the pixels where one primary colour dominates, or None."""
    c = image.astype(np.int32)
    k = colour_index % 3
    others = np.delete(c, k, axis=2).max(axis=2)
    w = np.clip(c[..., k] - others, 0, None).astype(np.float64)
    w[w < threshold] = 0
    if w.sum() == 0:
        return None
    rows, cols = np.nonzero(w)
    wt = w[rows, cols]
    return float((rows * wt).sum() / wt.sum()), float((cols * wt).sum() / wt.sum())


@pytest.fixture(scope="session")
def marker_map():
    """Factory: `marker_map(path, crs, center_latlon, gsd_m, size_px, markers, **kw) -> truths`."""
    return write_marker_map


@pytest.fixture(scope="session")
def centroid():
    """`centroid(image, colour_index) -> (row, col) | None` of a pure-colour marker."""
    return colour_centroid


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one torch thread is several times faster than two on a shared 2-core runner
    (use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
