"""geoloc-prepare-map: turn a GeoTIFF or a set of georeferenced tiles into a map COG.

Every map the localizer reads should have the same shape: one tiled, compressed
Cloud-Optimized GeoTIFF with overviews, in a metric CRS (UTM zone of the map centre by
default), so crops are windowed reads at any scale. The input can be a GeoTIFF in any
CRS (untiled, no overviews, 8- or 16-bit) or a CSV listing PNG/JPEG tiles with their
corner coordinates (`file,tl_lat,tl_lon,br_lat,br_lon`; WGS84 degrees of the outer
corners of the top-left and bottom-right pixels; `file` relative to the CSV).

The output is built chunk by chunk (2048 px squares of the output grid): for each chunk
only the source window / tiles under it are read and warped, so inputs larger than
memory work. Pixels that no source covers are marked invalid in an internal mask. Tiles
are 256 px by default: a cold 384 px crop then decodes ~0.7 MP instead of ~1.2 MP with
512 px tiles. Tiles are ZSTD-compressed (lossless, with the predictor) by default, which
decodes about twice as fast as JPEG; `--compress JPEG` gives ~8x smaller files
(scripts/bench_crop.py measures both).

    geoloc-prepare-map ortho_epsg4326.tif --out map.tif
    geoloc-prepare-map tiles.csv --out map.tif --gsd 0.5 --crs EPSG:32632
    geoloc-prepare-map map.tif --index runs/ret/model --index-only    # index of an already prepared map
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.shutil import copy as rio_copy
from rasterio.transform import from_bounds
from rasterio.warp import reproject
from rasterio.windows import Window
from tqdm import tqdm

from geoloc_ros import cli
from geoloc_ros.geo.cog import COMPRESSIONS, cog_options
from geoloc_ros.geo.errors import GeoError
from geoloc_ros.geo.frames import LocalENU, cached_transformer, utm_crs_for
from geoloc_ros.geo.orthomap import colour_bands

CHUNK = 2048
TILE_COLUMNS = ("file", "tl_lat", "tl_lon", "br_lat", "br_lon")
WGS84 = CRS.from_epsg(4326)


@dataclass
class PreparedMap:
    """What geoloc-prepare-map wrote (also its printed summary)."""

    path: Path
    width: int
    height: int
    crs: str
    gsd_m: float
    bounds_latlon: tuple[float, float, float, float]
    overviews: list[int]
    size_bytes: int
    has_mask: bool

    def summary(self) -> str:
        b = self.bounds_latlon
        return (f"wrote {self.path}: {self.width} x {self.height} px, {self.crs}, GSD {self.gsd_m:.3f} m/px, "
                f"lat {b[0]:.6f}..{b[2]:.6f}, lon {b[1]:.6f}..{b[3]:.6f}, overviews {self.overviews}, "
                f"{self.size_bytes / 1e6:.1f} MB{', with validity mask' if self.has_mask else ''}")


# --------------------------------------------------------------------------------------
# geometry helpers
def _ring(x0: float, y0: float, x1: float, y1: float, n: int = 17) -> tuple[np.ndarray, np.ndarray]:
    """Points along the boundary of an axis-aligned box (densified so curved images of the
    edges in another CRS are bounded well)."""
    t = np.linspace(0.0, 1.0, n)
    xs = np.concatenate([x0 + t * (x1 - x0), np.full(n, x1), x1 - t * (x1 - x0), np.full(n, x0)])
    ys = np.concatenate([np.full(n, y0), y0 + t * (y1 - y0), np.full(n, y1), y1 - t * (y1 - y0)])
    return xs, ys


def _transform_ring(src_crs, dst_crs, x0, y0, x1, y1) -> tuple[float, float, float, float]:
    xs, ys = _ring(x0, y0, x1, y1)
    tx, ty = cached_transformer(src_crs, dst_crs).transform(xs, ys)
    tx, ty = np.asarray(tx), np.asarray(ty)
    ok = np.isfinite(tx) & np.isfinite(ty)
    if not ok.any():
        raise GeoError(f"the map's extent cannot be expressed in {CRS.from_user_input(dst_crs).to_string()}")
    return float(tx[ok].min()), float(ty[ok].min()), float(tx[ok].max()), float(ty[ok].max())


def _metres_per_unit(crs: CRS, x: float, y: float, dx: float, dy: float) -> tuple[float, float]:
    """Ground metres per CRS unit along x and y at (x, y) (numerically; any CRS)."""
    lon, lat = cached_transformer(crs, WGS84).transform(np.array([x, x + dx, x]), np.array([y, y, y + dy]))
    enu = LocalENU(float(lat[0]), float(lon[0]))
    e, n, _ = enu.to_enu(np.asarray(lat[1:]), np.asarray(lon[1:]), 0.0)
    d = np.hypot(e, n)
    return float(d[0] / abs(dx)), float(d[1] / abs(dy))


def _parse_crs(text: str) -> CRS:
    try:
        return CRS.from_user_input(text)
    except Exception:
        raise GeoError(f"--crs {text!r} is not a CRS pyproj understands (try EPSG:32632)") from None


# --------------------------------------------------------------------------------------
# sources: something that can paint itself (RGB + alpha) into a chunk of the output grid
class _RasterSource:
    """A georeferenced raster, read one window at a time."""

    def __init__(self, path: Path) -> None:
        try:
            with warnings.catch_warnings():  # we say it ourselves, in one line
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self.ds = rasterio.open(path)
        except RasterioIOError as exc:
            raise GeoError(f"{path}: not a readable raster ({str(exc).splitlines()[0][:120]})") from None
        ds = self.ds
        if ds.crs is None:
            gcp_note = " (it has GCPs only; warp it with gdalwarp first)" if ds.gcps[0] else ""
            raise GeoError(f"{path}: no CRS, the file is not georeferenced{gcp_note}")
        if ds.transform.is_identity:
            raise GeoError(f"{path}: no geotransform (identity pixel->CRS mapping), the file is not georeferenced")
        colour = colour_bands(ds, path)
        self.bands = [colour[0]] * 3 if len(colour) < 3 else colour[:3]
        self.crs = CRS.from_user_input(ds.crs.to_wkt())
        self.path = path
        cx, cy = ds.transform @ (ds.width / 2.0, ds.height / 2.0)
        px_x = math.hypot(ds.transform.a, ds.transform.d)
        px_y = math.hypot(ds.transform.b, ds.transform.e)
        mx, my = _metres_per_unit(self.crs, cx, cy, px_x, -px_y)
        self.native_gsd_m = 0.5 * (mx * px_x + my * px_y)
        self.scale = self._stretch() if ds.dtypes[0] != "uint8" else None

    def bounds_in(self, dst_crs) -> tuple[float, float, float, float]:
        return _transform_ring(self.crs, dst_crs, *self._src_box())

    def _src_box(self):
        xs, ys = zip(*(self.ds.transform @ p for p in ((0, 0), (self.ds.width, 0), (0, self.ds.height),
                                                       (self.ds.width, self.ds.height))))
        return min(xs), min(ys), max(xs), max(ys)

    def center_latlon(self) -> tuple[float, float]:
        cx, cy = self.ds.transform @ (self.ds.width / 2.0, self.ds.height / 2.0)
        lon, lat = cached_transformer(self.crs, WGS84).transform(cx, cy)
        return float(lat), float(lon)

    def _stretch(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-band 0.5/99.5 percentiles from a decimated read: maps 16-bit/float rasters to 8 bit."""
        f = max(1, max(self.ds.width, self.ds.height) // 1024)
        shape = (3, max(1, self.ds.height // f), max(1, self.ds.width // f))
        data = self.ds.read(self.bands, out_shape=shape, resampling=Resampling.nearest).astype(np.float64)
        valid = self.ds.read_masks(self.bands[0], out_shape=shape[1:]) > 0
        if not valid.any():
            raise GeoError(f"{self.path}: every pixel is nodata")
        lo = np.array([np.percentile(b[valid], 0.5) for b in data])
        hi = np.array([np.percentile(b[valid], 99.5) for b in data])
        return lo, np.maximum(hi, lo + 1e-9)

    def render(self, dst_transform: Affine, shape: tuple[int, int], dst_crs: CRS, resampling: Resampling):
        ds = self.ds
        h, w = shape
        x0, y1 = dst_transform @ (0, 0)
        x1, y0 = dst_transform @ (w, h)
        sx0, sy0, sx1, sy1 = _transform_ring(dst_crs, self.crs, x0, y0, x1, y1)
        inv = ~ds.transform
        cols, rows = zip(*(inv @ p for p in ((sx0, sy0), (sx1, sy0), (sx0, sy1), (sx1, sy1))))
        ratio = max((max(cols) - min(cols)) / w, (max(rows) - min(rows)) / h)
        margin = 3 + int(math.ceil(ratio))
        c0 = max(0, int(math.floor(min(cols))) - margin)
        r0 = max(0, int(math.floor(min(rows))) - margin)
        c1 = min(ds.width, int(math.ceil(max(cols))) + margin)
        r1 = min(ds.height, int(math.ceil(max(rows))) + margin)
        if c1 <= c0 or r1 <= r0:
            return None
        win = Window(c0, r0, c1 - c0, r1 - r0)
        decim = max(1, int(ratio / 1.5))  # never read far more pixels than the chunk needs
        oh, ow = max(1, win.height // decim), max(1, win.width // decim)
        data = ds.read(self.bands, window=win, out_shape=(3, oh, ow), resampling=Resampling.average)
        mask = ds.read_masks(self.bands[0], window=win, out_shape=(oh, ow), resampling=Resampling.nearest)
        if self.scale is not None:
            lo, hi = self.scale
            data = np.clip((data.astype(np.float64) - lo[:, None, None]) / (hi - lo)[:, None, None] * 255.0,
                           0, 255).astype(np.uint8)
        src = np.concatenate([data, (mask > 0).astype(np.uint8)[None] * 255], axis=0)
        src_t = ds.window_transform(win) @ Affine.scale(win.width / ow, win.height / oh)
        return _warp(src, src_t, self.crs, dst_transform, shape, dst_crs, resampling)


@dataclass
class _Tile:
    path: Path
    west: float
    south: float
    east: float
    north: float
    line: int


class _TileSource:
    """PNG/JPEG tiles in WGS84 from a CSV (`file,tl_lat,tl_lon,br_lat,br_lon`)."""

    def __init__(self, csv_path: Path) -> None:
        self.path = csv_path
        self.tiles = _read_tile_csv(csv_path)
        self.crs = WGS84
        self._cache: OrderedDict[Path, np.ndarray] = OrderedDict()
        gsds, sizes = [], []
        for t in self.tiles:
            h, w = self._size(t)
            sizes.append((h, w))
            mlon, mlat = _metres_per_unit(WGS84, (t.west + t.east) / 2, (t.south + t.north) / 2, 1e-4, 1e-4)
            gsds.append(0.5 * (mlon * (t.east - t.west) / w + mlat * (t.north - t.south) / h))
        self.native_gsd_m = float(np.median(gsds))
        self._dst_boxes: dict = {}

    @staticmethod
    def _size(t: _Tile) -> tuple[int, int]:
        # header-only read where GDAL can (PNG/JPEG drivers), full decode otherwise
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(t.path) as ds:
                    return ds.height, ds.width
        except RasterioIOError:
            img = cv2.imread(str(t.path), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise GeoError(f"{t.path}: not a readable image (CSV line {t.line})") from None
            return img.shape[:2]

    def center_latlon(self) -> tuple[float, float]:
        s = min(t.south for t in self.tiles)
        n = max(t.north for t in self.tiles)
        w = min(t.west for t in self.tiles)
        e = max(t.east for t in self.tiles)
        return (s + n) / 2.0, (w + e) / 2.0

    def bounds_in(self, dst_crs) -> tuple[float, float, float, float]:
        boxes = [self._dst_box(t, dst_crs) for t in self.tiles]
        return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))

    def _dst_box(self, t: _Tile, dst_crs):
        key = (t.path, t.line)
        if key not in self._dst_boxes:
            self._dst_boxes[key] = _transform_ring(WGS84, dst_crs, t.west, t.south, t.east, t.north)
        return self._dst_boxes[key]

    def _image(self, t: _Tile) -> np.ndarray:
        """(4, H, W) uint8 RGBA of a tile (small LRU: neighbouring chunks share tiles)."""
        if t.path in self._cache:
            self._cache.move_to_end(t.path)
            return self._cache[t.path]
        img = cv2.imread(str(t.path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise GeoError(f"{t.path}: not a readable PNG/JPEG image (CSV line {t.line})")
        if img.dtype != np.uint8:
            img = (img.astype(np.float64) / np.iinfo(img.dtype).max * 255.0 + 0.5).astype(np.uint8) \
                if img.dtype.kind == "u" else np.clip(img, 0, 255).astype(np.uint8)
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGBA)
        elif img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGBA)
        else:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
        out = np.ascontiguousarray(np.moveaxis(img, -1, 0))
        self._cache[t.path] = out
        while len(self._cache) > 32:
            self._cache.popitem(last=False)
        return out

    def render(self, dst_transform: Affine, shape: tuple[int, int], dst_crs: CRS, resampling: Resampling):
        h, w = shape
        x0, y1 = dst_transform @ (0, 0)
        x1, y0 = dst_transform @ (w, h)
        acc = None
        for t in self.tiles:
            b = self._dst_box(t, dst_crs)
            if b[0] >= x1 or b[2] <= x0 or b[1] >= y1 or b[3] <= y0:
                continue
            src = self._image(t)
            src_t = from_bounds(t.west, t.south, t.east, t.north, src.shape[2], src.shape[1])
            out = _warp(src, src_t, WGS84, dst_transform, shape, dst_crs, resampling)
            if acc is None:
                acc = out
            else:  # first tile wins; later tiles fill what is still empty
                take = (acc[3] < 128) & (out[3] >= 128)
                acc[:, take] = out[:, take]
        return acc


def _read_tile_csv(csv_path: Path) -> list[_Tile]:
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise GeoError(f"{csv_path}: not a text CSV file") from None
    reader = csv.DictReader(text.splitlines())
    cols = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in TILE_COLUMNS if c not in cols]
    if missing:
        raise GeoError(f"{csv_path}: missing column(s) {', '.join(missing)}; expected header {','.join(TILE_COLUMNS)}")
    tiles = []
    for i, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        vals = {}
        for k in TILE_COLUMNS[1:]:
            try:
                vals[k] = float(row[k])
            except ValueError:
                raise GeoError(f"{csv_path}:{i}: {k} is not a number: {row[k]!r}") from None
            if not math.isfinite(vals[k]):
                raise GeoError(f"{csv_path}:{i}: {k} is not finite")
        if not (-90 <= vals["br_lat"] < vals["tl_lat"] <= 90):
            raise GeoError(f"{csv_path}:{i}: need -90 <= br_lat < tl_lat <= 90, got tl_lat={vals['tl_lat']} br_lat={vals['br_lat']}")
        if not (-180 <= vals["tl_lon"] < vals["br_lon"] <= 180):
            raise GeoError(f"{csv_path}:{i}: need -180 <= tl_lon < br_lon <= 180, got tl_lon={vals['tl_lon']} br_lon={vals['br_lon']}")
        if not row["file"]:
            raise GeoError(f"{csv_path}:{i}: empty file name")
        p = Path(row["file"])
        p = p if p.is_absolute() else csv_path.parent / p
        if not p.is_file():
            raise GeoError(f"{csv_path}:{i}: tile not found: {p}")
        tiles.append(_Tile(p, vals["tl_lon"], vals["br_lat"], vals["br_lon"], vals["tl_lat"], i))
    if not tiles:
        raise GeoError(f"{csv_path}: no tiles listed")
    return tiles


def _warp(src: np.ndarray, src_t: Affine, src_crs, dst_t: Affine, shape, dst_crs, resampling) -> np.ndarray:
    """Warp a (4, h, w) RGBA array (band 4 = alpha) into a (4, H, W) chunk of the output grid."""
    dst = np.zeros((4, shape[0], shape[1]), dtype=np.uint8)
    reproject(src, dst, src_transform=src_t, src_crs=src_crs, dst_transform=dst_t, dst_crs=dst_crs,
              resampling=resampling, src_alpha=4, dst_alpha=4)
    return dst


# --------------------------------------------------------------------------------------
def prepare_map(
    src: str | Path,
    out: str | Path,
    *,
    crs: str | None = None,
    gsd_m: float | None = None,
    compress: str = "ZSTD",
    quality: int = 90,
    blocksize: int = 256,
    resampling: str = "auto",
    progress: bool = True,
) -> PreparedMap:
    """Convert `src` (GeoTIFF or tiles CSV) into a map COG at `out`; returns its summary."""
    src, out = Path(src), Path(out)
    if not src.is_file():
        raise GeoError(f"input not found: {src}")
    if gsd_m is not None and not (gsd_m > 0 and math.isfinite(gsd_m)):
        raise GeoError(f"--gsd must be a positive number of metres, got {gsd_m}")
    if out.resolve() == src.resolve():
        raise GeoError(f"output {out} would overwrite the input")
    source = _TileSource(src) if src.suffix.lower() == ".csv" else _RasterSource(src)

    lat_c, lon_c = source.center_latlon()
    dst_crs = _parse_crs(crs) if crs else utm_crs_for(lat_c, lon_c)
    gsd = float(gsd_m or source.native_gsd_m)
    bx0, by0, bx1, by1 = source.bounds_in(dst_crs)
    st = source.ds.transform if isinstance(source, _RasterSource) else None
    if st is not None and gsd_m is None and source.crs == dst_crs and st.b == 0 and st.d == 0 and st.e < 0:
        # already in the target CRS at native resolution: keep the source grid (no resampling)
        res_x, res_y, x0, y1 = st.a, -st.e, st.c, st.f
        width, height = source.ds.width, source.ds.height
    else:
        cx, cy = cached_transformer(WGS84, dst_crs).transform(lon_c, lat_c)
        mx, my = _metres_per_unit(dst_crs, cx, cy, (bx1 - bx0) / 1000.0, (by1 - by0) / 1000.0)
        res_x, res_y = gsd / mx, gsd / my  # CRS units per output pixel (degrees for geographic CRSs)
        x0 = math.floor(bx0 / res_x) * res_x
        y1 = math.ceil(by1 / res_y) * res_y
        width = int(math.ceil((bx1 - x0) / res_x))
        height = int(math.ceil((y1 - by0) / res_y))
    if width * height > 4e10 or width < 1 or height < 1:
        raise GeoError(f"output would be {width} x {height} px at {gsd:g} m/px; choose a coarser --gsd")
    transform = Affine(res_x, 0.0, x0, 0.0, -res_y, y1)
    if resampling == "auto":
        rs = Resampling.bilinear if gsd < 1.5 * source.native_gsd_m else Resampling.average
    else:
        rs = Resampling[resampling]

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".prepare_map_") as tmpdir:
        tmp = Path(tmpdir) / "mosaic.tif"
        profile = dict(driver="GTiff", width=width, height=height, count=3, dtype="uint8", crs=dst_crs.to_wkt(),
                       transform=transform, tiled=True, blockxsize=512, blockysize=512, compress="DEFLATE",
                       zlevel=1, photometric="RGB", interleave="pixel", BIGTIFF="IF_SAFER")
        chunks = [(r, c) for r in range(0, height, CHUNK) for c in range(0, width, CHUNK)]
        written: list[Window] = []
        has_mask = False
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(tmp, "w", **profile) as dst:
            for r, c in tqdm(chunks, desc="warping", unit="chunk", disable=not progress, leave=False):
                win = Window(c, r, min(CHUNK, width - c), min(CHUNK, height - r))
                rgba = source.render(dst.window_transform(win), (win.height, win.width), dst_crs, rs)
                if rgba is None:
                    rgba = np.zeros((4, win.height, win.width), dtype=np.uint8)
                valid = rgba[3] >= 128
                dst.write(rgba[:3], window=win)
                if not has_mask and not valid.all():
                    has_mask = True  # first invalid pixel: give the chunks written so far a full mask
                    for w in written:
                        dst.write_mask(np.full((w.height, w.width), 255, np.uint8), window=w)
                if has_mask:
                    dst.write_mask(valid.astype(np.uint8) * 255, window=win)
                written.append(win)
        if progress:
            print("writing COG with overviews ...", file=sys.stderr, flush=True)
        opts = dict(BLOCKSIZE=blocksize, OVERVIEW_RESAMPLING="AVERAGE", BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS",
                    **cog_options(compress, quality))
        rio_copy(tmp, out, driver="COG", **opts)

    from geoloc_ros.geo.orthomap import OrthoMap  # validates the result the way the localizer reads it
    with OrthoMap.open(out) as m, rasterio.open(out) as ds:
        return PreparedMap(path=out, width=ds.width, height=ds.height, crs=dst_crs.to_string(), gsd_m=m.gsd_m,
                           bounds_latlon=m.bounds_latlon, overviews=list(ds.overviews(1)),
                           size_bytes=out.stat().st_size, has_mask=has_mask)


def build_parser() -> argparse.ArgumentParser:
    ap = cli.tool_parser("geoloc-prepare-map", __doc__)
    ap.add_argument("input", help="GeoTIFF, or CSV listing tiles with their corner coordinates (WGS84)")
    ap.add_argument("output", nargs="?", help=argparse.SUPPRESS)  # the old positional form of --out
    cli.add_out(ap, "output COG (.tif)")
    ap.add_argument("--crs", default=None, help="output CRS (default: UTM zone of the map centre)")
    ap.add_argument("--gsd", type=float, default=None, help="output metres per pixel (default: native)")
    ap.add_argument("--compress", default="ZSTD", choices=list(COMPRESSIONS),
                    help="tile compression (default ZSTD, lossless: the fastest cold crops, ~2 ms; JPEG is "
                         "~8x smaller, ~4.5 ms per cold crop; see scripts/bench_crop.py)")
    ap.add_argument("--quality", type=int, default=90, help="JPEG/WEBP quality (default 90)")
    ap.add_argument("--blocksize", type=int, default=256, choices=[128, 256, 512, 1024],
                    help="COG tile size in px (default 256: a cold 384 px crop decodes ~40 %% fewer "
                         "pixels than with 512 px tiles; see scripts/bench_crop.py)")
    ap.add_argument("--resampling", default="auto",
                    choices=["auto", "nearest", "bilinear", "cubic", "average", "lanczos"],
                    help="auto = bilinear, or average when the output is >1.5x coarser than the input")
    cli.add_quiet(ap)
    add_index_args(ap)
    return ap


def add_index_args(ap: argparse.ArgumentParser) -> None:
    """The `--index` options: a retrieval index of the map's tiles (coarse relocalization)."""
    g = ap.add_argument_group("retrieval index (coarse relocalization)")
    g.add_argument("--index", metavar="WEIGHTS", help="also build a retrieval index of the map's tiles with this "
                   "retrieval model (<path>.safetensors + <path>.json); written next to the map")
    g.add_argument("--index-only", action="store_true", help="INPUT is already a prepared map: only build its index "
                   "(--out: the index prefix, default <map stem>.retrieval next to the map)")
    g.add_argument("--index-tile-m", type=float, default=200.0, help="tile side in metres (~ UAV footprint)")
    g.add_argument("--index-stride-m", type=float, default=100.0, help="tile spacing in metres")
    g.add_argument("--index-scales", type=float, nargs="+", default=[1.0], help="tile size multipliers")
    cli.add_batch_size(g, "tiles per forward of the retrieval model", default=32, aliases=("--index-batch",))
    cli.add_device(g, help="retrieval model: auto | cpu | cuda | cuda:N", aliases=("--index-device",))


def index_from_args(args: argparse.Namespace, map_path: str | Path, out: str | Path | None = None,
                    progress: bool = True) -> Path | None:
    """Build the index that the `--index` options ask for (None when --index was not given)."""
    if not getattr(args, "index", None):
        return None
    from geoloc_ros.retrieval.index import build_index
    from geoloc_ros.retrieval.model import load_model

    return build_index(map_path, load_model(args.index), args.index_tile_m, args.index_stride_m, args.index_scales,
                       out, args.batch_size, args.device, progress=progress)


def run(args: argparse.Namespace) -> int | None:
    """Prepare the COG (unless --index-only), then the retrieval index when asked."""
    if args.output and args.out and args.output != args.out:
        raise GeoError("give the output once (--out)")
    out = args.out or args.output
    if args.index_only:
        if not args.index:
            raise GeoError("--index-only needs --index WEIGHTS")
        map_path, index_out = args.input, out
    else:
        if not out:
            raise GeoError("no output: give --out MAP.tif")
        info = prepare_map(args.input, out, crs=args.crs, gsd_m=args.gsd, compress=args.compress,
                           quality=args.quality, blocksize=args.blocksize, resampling=args.resampling,
                           progress=not args.quiet)
        print(info.summary())
        map_path, index_out = info.path, None
    index_json = index_from_args(args, map_path, index_out, progress=not args.quiet)
    if index_json:
        print(f"retrieval index: {index_json}")


main = cli.entry_point(build_parser, run)


if __name__ == "__main__":
    sys.exit(main())
