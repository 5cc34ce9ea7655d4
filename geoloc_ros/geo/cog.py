"""Write RGB rasters as tiled, compressed Cloud-Optimized GeoTIFFs with overviews.

One writer for everything that produces maps (procedural worlds, geoloc-prepare-map,
tests), so every map the package reads has the same layout: 512 px tiles, internal
overviews by factors of 2 down to < 512 px, pixel-interleaved RGB.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.shutil import copy as rio_copy

#: codecs geoloc-prepare-map offers; lossless ones get the horizontal-difference predictor
COMPRESSIONS = ("ZSTD", "JPEG", "WEBP", "DEFLATE", "LZW", "NONE")
LOSSLESS = ("ZSTD", "DEFLATE", "LZW")


def cog_options(compress: str = "ZSTD", quality: int = 90) -> dict:
    """GDAL COG-driver creation options for a map codec.

    ZSTD with the predictor is the default because a cold random crop is decode bound:
    scripts/bench_crop.py measures ~2 ms per 384 px crop for ZSTD and ~4.5 ms for JPEG on
    2 cores, at ~8x the file size (lossless). JPEG/WEBP are for storage-limited platforms.
    """
    c = compress.upper()
    if c not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compress!r}")
    opts: dict = {"COMPRESS": c}
    if c in LOSSLESS:
        opts["PREDICTOR"] = "YES"
    if c in ("JPEG", "WEBP"):
        opts["QUALITY"] = int(quality)
    return opts


def overview_factors(width: int, height: int, min_size: int = 256) -> list[int]:
    """Factors 2, 4, 8, ... until the coarsest overview is smaller than `min_size` px."""
    factors, f = [], 2
    while max(width, height) / f >= min_size / 2 and f <= 1024:
        factors.append(f)
        f *= 2
    return factors


def write_cog(
    path: str | Path,
    image: np.ndarray,
    transform: Affine,
    crs,
    *,
    compress: str = "DEFLATE",
    blocksize: int = 512,
    overviews: bool = True,
    quality: int = 90,
) -> Path:
    """Write an (H, W, 3) uint8 array as a COG at `path` and return the path.

    `transform` maps pixel (col, row) corners to CRS coordinates (GDAL convention);
    `crs` is anything rasterio accepts ("EPSG:32614", a pyproj/rasterio CRS, WKT).
    JPEG compression is smaller for photographic maps; DEFLATE is lossless.
    """
    path = Path(path)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"write_cog wants an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.tif")
    profile = dict(
        driver="GTiff", width=w, height=h, count=3, dtype="uint8", crs=crs, transform=transform,
        tiled=True, blockxsize=blocksize, blockysize=blocksize, compress="DEFLATE",
        photometric="RGB", interleave="pixel", BIGTIFF="IF_SAFER",
    )
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(np.moveaxis(image, -1, 0))
        if overviews:
            factors = overview_factors(w, h)
            if factors:
                dst.build_overviews(factors, Resampling.average)
                dst.update_tags(ns="rio_overview", resampling="average")
    opts = dict(copy_src_overviews=True, tiled=True, blockxsize=blocksize, blockysize=blocksize,
                compress=compress, interleave="pixel", BIGTIFF="IF_SAFER")
    if compress.upper() == "JPEG":
        opts.update(photometric="YCBCR", jpeg_quality=quality)
    rio_copy(tmp, path, driver="GTiff", **opts)
    tmp.unlink(missing_ok=True)
    return path
