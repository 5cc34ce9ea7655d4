"""Local frames: WGS84 <-> local ENU tangent plane and WGS84 <-> UTM (pyproj).

The localizer works in metres in a local East-North-Up frame anchored at the initial
fix (REP-103); maps and outputs speak WGS84. Everything here is vectorised over numpy
arrays and exact to well below a centimetre over tens of kilometres.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from pyproj import CRS, Transformer

WGS84_GEODETIC_3D = "EPSG:4979"
WGS84_ECEF = "EPSG:4978"


@lru_cache(maxsize=64)
def cached_transformer(src, dst) -> Transformer:
    """One shared always_xy Transformer per (src, dst) pair: building one costs ~0.6 ms,
    using one ~20 us, and pyproj (>= 3.1) Transformers are thread-safe."""
    return Transformer.from_crs(src, dst, always_xy=True)


def _as_float(x):
    a = np.asarray(x, dtype=np.float64)
    return float(a) if a.ndim == 0 else a


@dataclass
class LocalENU:
    """East-North-Up tangent plane at (lat0, lon0, alt0) on the WGS84 ellipsoid.

    `to_enu` / `to_geodetic` go through ECEF, so the frame is a true tangent plane (not a
    flat-earth approximation); heights are ellipsoidal unless the caller says otherwise.
    """

    lat0: float
    lon0: float
    alt0: float = 0.0
    _to_ecef: Transformer = field(init=False, repr=False)
    _to_geo: Transformer = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.lat0) and np.isfinite(self.lon0) and np.isfinite(self.alt0)):
            raise ValueError(f"LocalENU origin must be finite, got ({self.lat0}, {self.lon0}, {self.alt0})")
        if not -90.0 <= self.lat0 <= 90.0:
            raise ValueError(f"latitude {self.lat0} outside [-90, 90]")
        self._to_ecef = cached_transformer(WGS84_GEODETIC_3D, WGS84_ECEF)
        self._to_geo = cached_transformer(WGS84_ECEF, WGS84_GEODETIC_3D)
        x0, y0, z0 = self._to_ecef.transform(self.lon0, self.lat0, self.alt0)
        self._origin = np.array([x0, y0, z0])
        la, lo = np.radians(self.lat0), np.radians(self.lon0)
        # rows: east, north, up expressed in ECEF
        self._rot = np.array(
            [
                [-np.sin(lo), np.cos(lo), 0.0],
                [-np.sin(la) * np.cos(lo), -np.sin(la) * np.sin(lo), np.cos(la)],
                [np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)],
            ]
        )

    def to_enu(self, lat, lon, alt=0.0):
        """WGS84 degrees (+ ellipsoidal height) -> (east, north, up) metres."""
        lat, lon, alt = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (lat, lon, alt)))
        x, y, z = self._to_ecef.transform(lon, lat, alt)
        d = np.stack([np.asarray(x), np.asarray(y), np.asarray(z)], axis=0) - self._origin.reshape(3, *([1] * np.ndim(x)))
        enu = np.tensordot(self._rot, d, axes=1)
        return _as_float(enu[0]), _as_float(enu[1]), _as_float(enu[2])

    def to_geodetic(self, east, north, up=0.0):
        """(east, north, up) metres -> (lat, lon, ellipsoidal height)."""
        e, n, u = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (east, north, up)))
        enu = np.stack([e, n, u], axis=0)
        d = np.tensordot(self._rot.T, enu, axes=1) + self._origin.reshape(3, *([1] * e.ndim))
        lon, lat, alt = self._to_geo.transform(d[0], d[1], d[2])
        return _as_float(lat), _as_float(lon), _as_float(alt)


def utm_crs_for(lat: float, lon: float) -> CRS:
    """The WGS84 / UTM zone CRS that contains (lat, lon) (EPSG 326xx north, 327xx south)."""
    if not (-80.0 <= lat <= 84.0):
        raise ValueError(f"latitude {lat} is outside the UTM range [-80, 84]")
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def wgs84_to_utm(lat, lon, crs: CRS | None = None):
    """WGS84 degrees -> (easting, northing, crs); the zone is picked from the first point unless given."""
    lat_a, lon_a = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    crs = crs or utm_crs_for(float(lat_a.flat[0]), float(lon_a.flat[0]))
    t = cached_transformer("EPSG:4326", crs)
    e, n = t.transform(lon_a, lat_a)
    return _as_float(e), _as_float(n), crs


def utm_to_wgs84(easting, northing, crs: CRS):
    """UTM (easting, northing) in `crs` -> (lat, lon) degrees."""
    t = cached_transformer(crs, "EPSG:4326")
    lon, lat = t.transform(np.asarray(easting, dtype=np.float64), np.asarray(northing, dtype=np.float64))
    return _as_float(lat), _as_float(lon)
