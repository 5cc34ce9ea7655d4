"""Procedural satellite-like worlds, written as georeferenced COGs.

Why: flights need maps with the structure real orthophotos have (roads with junctions,
houses with shadows, fields with crop rows, forest, water, parked cars) and the traps
they have (look-alike fields, rows of identical houses), at any size, deterministic
from a seed, and in two "epochs" (the map a localizer carries vs. what the UAV sees a
year later: other season, moved cars, repainted roofs, grown trees, new crops, another
sun angle).

`generate_world(cfg, out, epoch)` draws the layout from `cfg.seed` only (identical for
both epochs) and then renders the epoch; the COG is in the UTM zone of the origin, the
origin lat/lon is the map centre, north-up, `cfg.gsd_m` metres per pixel.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine

from ..geo.cog import write_cog
from ..geo.frames import utm_crs_for, wgs84_to_utm
from .world_layout import Layout, build_layout
from .world_render import render_epoch


@dataclass
class WorldConfig:
    """A procedural world. Everything except `gsd_m`, `jpeg_quality` is part of its layout."""

    seed: int = 0
    size_m: float = 2000.0          # side of the square world
    gsd_m: float = 0.3              # metres per pixel of the written map
    origin_lat: float = 47.40       # map centre (WGS84)
    origin_lon: float = 8.55
    town_density_per_km2: float = 0.75
    town_radius_m: tuple = (170.0, 320.0)
    farm_cell_m: float = 260.0      # typical size of a farm (fields of one orientation)
    forest_fraction: float = 0.18   # share of farm cells that are forest
    meadow_fraction: float = 0.12   # share of farm cells that are meadow with scattered trees
    lake_probability: float = 0.8
    river_probability: float = 0.6
    main_roads: int = -1            # -1: scale with size
    tree_density: float = 1.0
    car_density: float = 1.0
    jpeg_quality: int = 88
    # look-alike farmland (off by default): rows of fields that differ only in their crop phase
    field_uniformity: float = 0.0   # share of field cells given one common orientation and strip size
    crop_types: tuple = ()          # indices into world_layout.CROPS the fields may grow (empty: all)

    #: fields added after worlds were first cached: left out of cache_key() while at their default,
    #: so every world made before keeps its file name
    _LATER_FIELDS = {"field_uniformity": 0.0, "crop_types": []}

    def __post_init__(self) -> None:
        if not self.size_m > 10 or not self.gsd_m > 0:
            raise ValueError(f"world size_m must be > 10 and gsd_m > 0, got {self.size_m}, {self.gsd_m}")
        if self.size_m / self.gsd_m > 40000:
            raise ValueError(f"world of {self.size_m / self.gsd_m:.0f} px per side is too large (max 40000)")
        if not (-80 <= self.origin_lat <= 84 and -180 <= self.origin_lon <= 180):
            raise ValueError(f"world origin ({self.origin_lat}, {self.origin_lon}) outside the UTM range")
        self.town_radius_m = tuple(float(v) for v in self.town_radius_m)
        if not 0.0 <= self.field_uniformity <= 1.0:
            raise ValueError(f"field_uniformity must be in [0, 1], got {self.field_uniformity}")
        from .world_layout import CROPS
        self.crop_types = tuple(int(c) for c in self.crop_types)
        if any(not 0 <= c < len(CROPS) for c in self.crop_types):
            raise ValueError(f"crop_types must be indices in [0, {len(CROPS) - 1}], got {list(self.crop_types)}")

    @property
    def n_px(self) -> int:
        return int(round(self.size_m / self.gsd_m))

    def cache_key(self) -> str:
        """A short stable name for this world's files (layout + resolution)."""
        import hashlib
        import json
        from ..config import to_dict
        d = to_dict(self)
        for k, default in self._LATER_FIELDS.items():
            if d.get(k) == default:
                del d[k]
        blob = json.dumps(d, sort_keys=True).encode()
        return f"world_s{self.seed}_{self.size_m:g}m_{self.gsd_m:g}_{hashlib.sha1(blob).hexdigest()[:8]}"


def world_layout(cfg: WorldConfig) -> Layout:
    """The epoch-independent layout of `cfg` (roads, towns, buildings, trees, ...)."""
    return build_layout(cfg, np.random.default_rng([int(cfg.seed), 1]))


def world_georef(cfg: WorldConfig):
    """(affine transform, UTM CRS) of the world raster: north-up, centred on the origin."""
    crs = utm_crs_for(cfg.origin_lat, cfg.origin_lon)
    e0, n0, _ = wgs84_to_utm(cfg.origin_lat, cfg.origin_lon, crs)
    g = cfg.size_m / cfg.n_px
    half = cfg.size_m / 2.0
    return Affine(g, 0.0, e0 - half, 0.0, -g, n0 + half), crs


def render_world(cfg: WorldConfig, epoch: int = 1, layout: Layout | None = None, progress=None) -> np.ndarray:
    """The (N, N, 3) uint8 RGB image of the world at `epoch` (no file written)."""
    if epoch not in (1, 2):
        raise ValueError(f"epoch must be 1 or 2, got {epoch}")
    lay = layout if layout is not None else world_layout(cfg)
    return render_epoch(lay, cfg, epoch, cfg.n_px, progress=progress)


def generate_world(cfg: WorldConfig, out_path: str | Path, epoch: int = 1, *,
                   layout: Layout | None = None, verbose: bool = False) -> Path:
    """Render epoch `epoch` of world `cfg` and write it as a JPEG COG at `out_path`."""
    t0 = time.perf_counter()
    marks: list[tuple[str, float]] = []
    img = render_world(cfg, epoch, layout,
                       progress=(lambda name: marks.append((name, time.perf_counter() - t0))) if verbose else None)
    transform, crs = world_georef(cfg)
    path = write_cog(out_path, img, transform, crs, compress="JPEG", quality=int(cfg.jpeg_quality))
    if verbose:
        steps = ", ".join(f"{n} {t:.1f}s" for n, t in marks)
        print(f"world epoch {epoch}: {cfg.n_px}x{cfg.n_px} px [{steps}], written in {time.perf_counter() - t0:.1f} s")
    return path


def small_world_config(seed: int = 0, size_m: float = 300.0, gsd_m: float = 0.5, **kw) -> WorldConfig:
    """A small world for tests (300 m at 0.5 m/px renders in well under 2 s)."""
    return WorldConfig(seed=seed, size_m=size_m, gsd_m=gsd_m, town_density_per_km2=kw.pop("town_density_per_km2", 8.0),
                       town_radius_m=kw.pop("town_radius_m", (125.0, 140.0)), farm_cell_m=kw.pop("farm_cell_m", 110.0),
                       lake_probability=kw.pop("lake_probability", 0.0), river_probability=kw.pop("river_probability", 0.0),
                       main_roads=kw.pop("main_roads", 1), **kw)


__all__ = ["WorldConfig", "generate_world", "render_world", "world_layout", "world_georef", "small_world_config"]
_ = math
