"""Georeferenced map access: metric, rotatable crops from any GeoTIFF/COG, read by window.

The localizer asks for "the ground square of `size_m` metres around (lat, lon), as an
`out_px` image whose up axis points to bearing `rotation_deg`" many times per second, from
maps far larger than memory. So: the dataset stays open, only the source window under
the crop is read (from the overview whose resolution is just finer than the crop's),
and one affine warp maps it to crop pixels. The crop's geometry is defined in the local
East-North-Up tangent plane at its centre, which makes `MapCrop`'s pixel <-> lat/lon
mapping exact and independent of the map's CRS (UTM, Web Mercator, plain lat/lon...).
"""
from __future__ import annotations

import math
import os
import threading
import warnings
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import cv2
import numpy as np
import rasterio
from pyproj import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.env import set_gdal_config
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from .errors import GeoError
from .frames import WGS84_ECEF, WGS84_GEODETIC_3D, LocalENU, cached_transformer

#: GDAL block cache (MiB) unless the user set GDAL_CACHEMAX: GDAL's default (5 % of RAM)
#: would let memory grow with the number of distinct map tiles ever read.
DEFAULT_GDAL_CACHE_MB = 64
_GDAL_CONFIGURED = False


def colour_bands(ds, path: str | Path) -> list[int]:
    """The raster's colour bands (1-based, alpha left out), as read by OrthoMap and
    geoloc-prepare-map alike; GeoError for a paletted raster (its values are no colours)."""
    ci = ds.colorinterp
    if ci and ci[0] == ColorInterp.palette:
        raise GeoError(f"{path}: paletted raster; expand it to RGB first (gdal_translate -expand rgb)")
    return [i + 1 for i, c in enumerate(ci) if c != ColorInterp.alpha]


def _configure_gdal() -> None:
    global _GDAL_CONFIGURED
    if _GDAL_CONFIGURED:
        return
    if "GDAL_CACHEMAX" not in os.environ:
        set_gdal_config("GDAL_CACHEMAX", DEFAULT_GDAL_CACHE_MB * 1024 * 1024)
    _GDAL_CONFIGURED = True


def _enu_rotation(lat_deg: float, lon_deg: float) -> np.ndarray:
    """Rows: east, north, up unit vectors in ECEF at (lat, lon)."""
    la, lo = math.radians(lat_deg), math.radians(lon_deg)
    sla, cla, slo, clo = math.sin(la), math.cos(la), math.sin(lo), math.cos(lo)
    return np.array([[-slo, clo, 0.0], [-sla * clo, -sla * slo, cla], [cla * clo, cla * slo, sla]])


def _axes(rotation_deg: float) -> tuple[float, float]:
    t = math.radians(rotation_deg)
    return math.cos(t), math.sin(t)


@lru_cache(maxsize=32)
def _control_points(out_px: int) -> tuple[np.ndarray, np.ndarray]:
    """3x3 grid of crop pixel positions (col, row) spanning the outer pixel edges, and the
    pseudo-inverse that fits an affine map to values at those points (least squares)."""
    n = out_px
    ticks = np.array([-0.5, (n - 1) / 2.0, n - 0.5])
    cols, rows = np.meshgrid(ticks, ticks)
    pts = np.stack([cols.ravel(), rows.ravel()], axis=1)
    design = np.concatenate([pts, np.ones((len(pts), 1))], axis=1)
    return pts, np.linalg.pinv(design)


@dataclass
class MapCrop:
    """A square map crop and its exact pixel <-> ground mapping.

    Pixel (row, col) has integer values at pixel centres; the crop centre is at
    ((N-1)/2, (N-1)/2) and sits on `center_latlon`. The crop's up axis points to the
    compass bearing `rotation_deg`; one pixel is `gsd_m` metres on the ground (local
    tangent plane at the centre).
    """

    image: np.ndarray = field(repr=False)
    valid: np.ndarray = field(repr=False)
    center_latlon: tuple[float, float]
    size_m: float
    rotation_deg: float = 0.0
    source_level: int = 0
    source_gsd_m: float = float("nan")
    valid_fraction: float = field(init=False)

    def __post_init__(self) -> None:
        self.valid_fraction = float(np.count_nonzero(self.valid)) / max(1, self.valid.size)

    @property
    def out_px(self) -> int:
        return int(self.image.shape[0])

    @property
    def gsd_m(self) -> float:
        """Metres per crop pixel (= size_m / out_px)."""
        return self.size_m / self.out_px

    @cached_property
    def _enu(self) -> LocalENU:
        return LocalENU(float(self.center_latlon[0]), float(self.center_latlon[1]), 0.0)

    def pixel_to_offset_m(self, rows, cols):
        """Crop pixels -> (east_m, north_m) from the crop centre in the local tangent plane."""
        c = (self.out_px - 1) / 2.0
        g = self.gsd_m
        ct, st = _axes(self.rotation_deg)
        dc = (np.asarray(cols, dtype=np.float64) - c) * g
        du = (c - np.asarray(rows, dtype=np.float64)) * g
        # right axis = bearing + 90 deg = (cos t, -sin t) in (E, N); up axis = (sin t, cos t)
        east = dc * ct + du * st
        north = -dc * st + du * ct
        return _out(east), _out(north)

    def offset_m_to_pixel(self, east_m, north_m):
        """(east_m, north_m) from the crop centre -> crop (rows, cols)."""
        c = (self.out_px - 1) / 2.0
        g = self.gsd_m
        ct, st = _axes(self.rotation_deg)
        e = np.asarray(east_m, dtype=np.float64)
        n = np.asarray(north_m, dtype=np.float64)
        cols = c + (e * ct - n * st) / g
        rows = c - (e * st + n * ct) / g
        return _out(rows), _out(cols)

    def pixel_to_latlon(self, rows, cols):
        """Crop pixels -> WGS84 (lat, lon) degrees."""
        e, n = self.pixel_to_offset_m(rows, cols)
        lat, lon, _ = self._enu.to_geodetic(e, n, 0.0)
        return lat, lon

    def latlon_to_pixel(self, lat, lon):
        """WGS84 (lat, lon) degrees -> crop (rows, cols) (may lie outside the crop)."""
        e, n, _ = self._enu.to_enu(lat, lon, 0.0)
        return self.offset_m_to_pixel(e, n)


def _out(a: np.ndarray):
    return float(a) if np.ndim(a) == 0 else a


#: a crop may read at most this many times its own pixel count (plus a constant) from the
#: chosen overview level: with overviews it reads ~2-8x; without, a km-wide window would read
#: the whole full-resolution map on every frame
MAX_READ_FACTOR = 64
MAX_READ_EXTRA_PX = 4_000_000


class OrthoMap:
    """An open georeferenced raster (GeoTIFF/COG, any CRS) serving metric crops.

    Use `OrthoMap.open(path)` (or as a context manager). Reads are serialised by a lock,
    so one OrthoMap may be shared between threads; after a fork (DataLoader workers) it
    reopens its file in the child, and pickling reopens it from the path. 8-bit RGB, RGBA
    (alpha -> validity), grey and grey+alpha rasters are accepted; nodata values and
    internal masks also mark pixels invalid.
    """

    def __init__(self, path: str | Path, *, num_threads: int = 2) -> None:
        _configure_gdal()
        self._num_threads = num_threads
        self._pid = os.getpid()
        self._path = Path(path)
        if not self._path.is_file():
            raise GeoError(f"map file not found: {self._path}")
        self._open_kw = {"NUM_THREADS": str(num_threads)} if num_threads and num_threads > 1 else {}
        try:
            with warnings.catch_warnings():  # we say it ourselves, in one line
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                ds = rasterio.open(self._path, **self._open_kw)
        except RasterioIOError as exc:
            raise GeoError(f"{self._path}: not a readable raster ({str(exc).splitlines()[0][:120]})") from None
        self._ds = ds
        try:
            self._init_from(ds)
        except Exception:
            ds.close()
            raise
        self._lock = threading.Lock()

    # -- construction ------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, **kwargs) -> "OrthoMap":
        """Open a map; a missing file, a non-raster or a raster without georeferencing
        raises GeoError naming the file."""
        return cls(path, **kwargs)

    def _init_from(self, ds) -> None:
        p = self._path
        if ds.crs is None:
            raise GeoError(f"{p}: no CRS (not georeferenced); georeference it or use geoloc-prepare-map with corner coordinates")
        if ds.transform.is_identity:
            raise GeoError(f"{p}: no geotransform (identity pixel->CRS mapping); the file is not georeferenced")
        if ds.dtypes[0] != "uint8":
            raise GeoError(f"{p}: band type {ds.dtypes[0]}, OrthoMap reads 8-bit maps; convert with geoloc-prepare-map")
        colour = colour_bands(ds, p)
        self._grey = len(colour) < 3
        self._bands = [colour[0]] if self._grey else colour[:3]
        flags = ds.mask_flag_enums[self._bands[0] - 1]
        self._all_valid = MaskFlags.all_valid in flags
        self._crs = CRS.from_user_input(ds.crs.to_wkt())
        self._fwd = ds.transform
        self._inv = ~ds.transform
        self._to_map = cached_transformer("EPSG:4326", self._crs)
        self._to_wgs = cached_transformer(self._crs, "EPSG:4326")
        self._geo3d_to_ecef = cached_transformer(WGS84_GEODETIC_3D, WGS84_ECEF)
        self._ecef_to_map = cached_transformer(WGS84_ECEF, self._crs)
        self._width, self._height = ds.width, ds.height
        # level 0 = full resolution; level k = k-th internal overview (opened on first use)
        self._factors = [1] + list(ds.overviews(self._bands[0]))
        self._levels: list = [ds] + [None] * (len(self._factors) - 1)
        self._gsd_m = self._compute_gsd()

    def _compute_gsd(self) -> float:
        cx, cy = self._width / 2.0, self._height / 2.0
        xs, ys = zip(*(self._fwd @ pt for pt in ((cx, cy), (cx + 1, cy), (cx, cy + 1))))
        lon, lat = self._to_wgs.transform(np.array(xs), np.array(ys))
        if not np.all(np.isfinite(lat)):
            raise GeoError(f"{self._path}: the map centre does not transform to WGS84; check its CRS")
        enu = LocalENU(float(lat[0]), float(lon[0]))
        e, n, _ = enu.to_enu(lat[1:], lon[1:], 0.0)
        return float(np.mean(np.hypot(e, n)))

    def __getstate__(self):
        return {"path": str(self._path), "num_threads": self._num_threads}

    def __setstate__(self, state) -> None:
        self.__init__(state["path"], num_threads=state["num_threads"])

    def _check_process(self) -> None:
        """A GDAL handle inherited through fork shares the parent's file offset: reopen."""
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._levels = [rasterio.open(self._path, **self._open_kw)] + [None] * (len(self._factors) - 1)
            self._ds = self._levels[0]

    def close(self) -> None:
        for ds in self._levels:
            if ds is not None and not ds.closed:
                ds.close()

    def __enter__(self) -> "OrthoMap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OrthoMap({str(self._path)!r}, {self._width}x{self._height}, {self._crs.to_string()}, {self._gsd_m:.3f} m/px)"

    # -- properties ----------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self._path

    @property
    def crs(self) -> CRS:
        return self._crs

    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    @property
    def gsd_m(self) -> float:
        """Metres per pixel at the map centre (mean of the x and y pixel sizes)."""
        return self._gsd_m

    @property
    def overview_factors(self) -> list[int]:
        """Decimation factor of each level: [1, 2, 4, ...] (1 = full resolution)."""
        return list(self._factors)

    @cached_property
    def bounds_latlon(self) -> tuple[float, float, float, float]:
        """(lat_min, lon_min, lat_max, lon_max) of the raster's footprint (densified edges)."""
        t = np.linspace(0.0, 1.0, 33)
        w, h = self._width, self._height
        cols = np.concatenate([t * w, np.full_like(t, w), t * w, np.zeros_like(t)])
        rows = np.concatenate([np.zeros_like(t), t * h, np.full_like(t, h), t * h])
        lat, lon = self.pixel_to_latlon(rows - 0.5, cols - 0.5)
        return float(np.min(lat)), float(np.min(lon)), float(np.max(lat)), float(np.max(lon))

    @cached_property
    def center_latlon(self) -> tuple[float, float]:
        lat, lon = self.pixel_to_latlon((self._height - 1) / 2.0, (self._width - 1) / 2.0)
        return float(lat), float(lon)

    # -- map pixel <-> WGS84 (full resolution, integer at pixel centres) -----------------------
    def latlon_to_pixel(self, lat, lon):
        """WGS84 degrees -> full-resolution map (rows, cols), integers at pixel centres."""
        x, y = self._to_map.transform(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
        a = self._inv
        x, y = np.asarray(x), np.asarray(y)
        cols = a.a * x + a.b * y + a.c - 0.5
        rows = a.d * x + a.e * y + a.f - 0.5
        return _out(rows), _out(cols)

    def pixel_to_latlon(self, rows, cols):
        """Full-resolution map (rows, cols) -> WGS84 (lat, lon) degrees."""
        f = self._fwd
        c = np.asarray(cols, dtype=np.float64) + 0.5
        r = np.asarray(rows, dtype=np.float64) + 0.5
        lon, lat = self._to_wgs.transform(f.a * c + f.b * r + f.c, f.d * c + f.e * r + f.f)
        return _out(np.asarray(lat)), _out(np.asarray(lon))

    def contains(self, lat: float, lon: float, margin_m: float = 0.0) -> bool:
        """True if (lat, lon) lies on the raster, at least `margin_m` from its edges."""
        r, c = self.latlon_to_pixel(lat, lon)
        m = margin_m / self._gsd_m
        return bool(np.isfinite(r) and np.isfinite(c) and -0.5 + m <= r <= self._height - 0.5 - m
                    and -0.5 + m <= c <= self._width - 0.5 - m)

    def coverage_fraction(self, center_latlon, size_m: float) -> float:
        """Fraction of the north-up `size_m` ground square at `center_latlon` that lies on
        the raster's extent (geometry only; masked pixels inside the extent count)."""
        lat0, lon0 = float(center_latlon[0]), float(center_latlon[1])
        n = 24
        t = (np.arange(n) + 0.5) / n * size_m - size_m / 2.0
        e, nn = np.meshgrid(t, t)
        lat, lon, _ = LocalENU(lat0, lon0).to_geodetic(e.ravel(), nn.ravel(), 0.0)
        r, c = self.latlon_to_pixel(lat, lon)
        inside = (r >= -0.5) & (r <= self._height - 0.5) & (c >= -0.5) & (c <= self._width - 0.5)
        return float(np.mean(inside))

    # -- crops ----------------------------------------------------------------------------
    def _level(self, k: int):
        ds = self._levels[k]
        if ds is None:
            ds = rasterio.open(self._path, overview_level=k - 1, **self._open_kw)
            self._levels[k] = ds
        return ds

    def _pick_level(self, crop_gsd_m: float) -> int:
        """The coarsest level whose pixels are still at least as fine as the crop's."""
        best = 0
        for k, f in enumerate(self._factors):
            if self._gsd_m * f <= crop_gsd_m * (1.0 + 1e-6):
                best = k
        return best

    def crop(self, center_latlon, size_m: float, out_px: int, rotation_deg: float = 0.0,
             fill=0, *, interpolation: int = cv2.INTER_LINEAR) -> MapCrop:
        """The `size_m` x `size_m` ground square centred on `center_latlon`, as an
        (out_px, out_px, 3) uint8 RGB image whose up axis points to compass bearing
        `rotation_deg`. Off-map pixels get `fill` and valid=False; a crop that does not
        touch the map raises GeoError."""
        lat0, lon0 = float(center_latlon[0]), float(center_latlon[1])
        if not (np.isfinite(lat0) and np.isfinite(lon0) and -90.0 <= lat0 <= 90.0):
            raise GeoError(f"crop centre ({lat0}, {lon0}) is not a valid lat/lon")
        out_px = int(out_px)
        if out_px <= 0 or not size_m > 0:
            raise ValueError(f"crop needs size_m > 0 and out_px > 0, got size_m={size_m}, out_px={out_px}")
        n = out_px
        g = float(size_m) / n
        c = (n - 1) / 2.0
        pts, pinv = _control_points(n)
        # crop pixels -> ENU offsets -> ECEF -> map CRS -> full-resolution map pixel edges
        ct, st = _axes(rotation_deg)
        dc = (pts[:, 0] - c) * g
        du = (c - pts[:, 1]) * g
        east = dc * ct + du * st
        north = -dc * st + du * ct
        x0, y0, z0 = self._geo3d_to_ecef.transform(lon0, lat0, 0.0)
        rot = _enu_rotation(lat0, lon0)
        ecef = rot[0][:, None] * east + rot[1][:, None] * north
        mx, my, _ = self._ecef_to_map.transform(ecef[0] + x0, ecef[1] + y0, ecef[2] + z0)
        mx, my = np.asarray(mx), np.asarray(my)
        if not (np.all(np.isfinite(mx)) and np.all(np.isfinite(my))):
            raise GeoError(f"crop centre ({lat0:.7f}, {lon0:.7f}) cannot be expressed in the CRS of {self._path}")
        a = self._inv
        col_e = a.a * mx + a.b * my + a.c  # pixel-edge convention (GDAL)
        row_e = a.d * mx + a.e * my + a.f

        # bounding-box test at full resolution: does the crop touch the raster at all?
        if (col_e.max() <= 0.0 or row_e.max() <= 0.0 or col_e.min() >= self._width
                or row_e.min() >= self._height):
            raise GeoError(f"crop at ({lat0:.7f}, {lon0:.7f}), {size_m:g} m, lies entirely outside "
                           f"{self._path.name} (map bounds lat/lon {_fmt_bounds(self.bounds_latlon)})")

        k = self._pick_level(g)
        self._check_process()
        with self._lock:
            ds = self._level(k)
        sx, sy = self._width / ds.width, self._height / ds.height
        # level pixel coordinates with integers at pixel centres (OpenCV convention)
        lx = col_e / sx - 0.5
        ly = row_e / sy - 0.5
        aff = (pinv @ np.stack([lx, ly], axis=1)).T  # 2x3: crop (col,row,1) -> level (x,y)

        x_lo = max(0, int(math.floor(lx.min())) - 1)
        y_lo = max(0, int(math.floor(ly.min())) - 1)
        x_hi = min(ds.width, int(math.ceil(lx.max())) + 2)
        y_hi = min(ds.height, int(math.ceil(ly.max())) + 2)
        clipped = (x_lo == 0 or y_lo == 0 or x_hi == ds.width or y_hi == ds.height)
        if x_hi <= x_lo or y_hi <= y_lo:
            raise GeoError(f"crop at ({lat0:.7f}, {lon0:.7f}), {size_m:g} m, lies entirely outside {self._path.name}")
        read_px = (x_hi - x_lo) * (y_hi - y_lo)
        if read_px > MAX_READ_FACTOR * n * n + MAX_READ_EXTRA_PX:
            # the map has no overview coarse enough: refuse rather than read gigapixels per frame
            raise GeoError(f"crop of {size_m:g} m at {out_px} px would read {read_px} px of {self._path.name} "
                           f"(no overview at {g:.2f} m/px; run geoloc-prepare-map to add overviews)")
        win = Window(x_lo, y_lo, x_hi - x_lo, y_hi - y_lo)
        with self._lock:
            if self._grey:
                data = ds.read(self._bands, window=win)
            else:  # GDAL writes pixel-interleaved straight into an (h, w, 3) array: no merge copy
                src = np.empty((win.height, win.width, 3), dtype=np.uint8)
                ds.read(self._bands, window=win, out=src.transpose(2, 0, 1))
            mask = None if self._all_valid else ds.read_masks(self._bands[0], window=win)
        aff[0, 2] -= x_lo
        aff[1, 2] -= y_lo

        fill_t = _fill_tuple(fill)
        flags = interpolation | cv2.WARP_INVERSE_MAP
        if self._grey:
            img = cv2.warpAffine(data[0], aff, (n, n), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                                 borderValue=fill_t[0])
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        else:
            img = cv2.warpAffine(src, aff, (n, n), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                                 borderValue=fill_t)
        if mask is None and not clipped:
            valid = np.ones((n, n), dtype=bool)
        else:
            if mask is None:
                mask = np.full((win.height, win.width), 255, dtype=np.uint8)
            valid = cv2.warpAffine(mask, aff, (n, n), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0
            img[~valid] = fill_t
        return MapCrop(image=img, valid=valid, center_latlon=(lat0, lon0), size_m=float(size_m),
                       rotation_deg=float(rotation_deg), source_level=k,
                       source_gsd_m=self._gsd_m * sx)


def _fill_tuple(fill) -> tuple[int, int, int]:
    if np.ndim(fill) == 0:
        v = int(fill)
        return (v, v, v)
    t = tuple(int(v) for v in fill)
    if len(t) != 3:
        raise ValueError(f"fill must be one value or three (R, G, B), got {fill!r}")
    return t


def _fmt_bounds(b) -> str:
    return f"[{b[0]:.6f}, {b[1]:.6f}] .. [{b[2]:.6f}, {b[3]:.6f}]"
