"""UL14-style training pairs (UAV image, satellite window, UAV position) from any map.

Why: UL14 covers ten universities; a user who flies elsewhere needs pairs from their own
area. Any georeferenced orthophoto (`OrthoPairSource`) or a folder of plain nadir photos
treated as small maps in pixel units (`PhotoPairSource`) gives pairs with the same
geometry the localizer uses at run time:

* the satellite window is north-up and the UAV position is spread over its central
  `coverage` fraction (0.85 like RSC, so label fractions lie in (0.075, 0.925]);
* `gsd_ratio` = (satellite metres per model pixel) / (UAV metres per model pixel). The
  localizer feeds the model with gsd_ratio = 1.0, so that is the default, trained over
  +-25 % (`gsd_ratio_jitter`). With UAV 128 px and satellite 384 px a ratio of 1 makes
  the window 3x the UAV footprint, inside UL14's RSC range (512-1000 px windows around a
  ~330 px footprint). `scale_range` sets window side / footprint directly instead;
* the UAV image has a random heading (its up axis points to `rotation_deg`) and colour,
  blur and noise changes; the label is the UAV centre, which a rotation about that
  centre does not move.

Label convention: (row_frac, col_frac) such that the UAV centre is at pixel
(row_frac * (N-1), col_frac * (N-1)) of the N x N satellite image (pixel centres at
integers), which is what the loss (round(frac * 383)) and the decoder use.
"""
from __future__ import annotations

import glob
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from geoloc_ros.data.augment import (GapAugmentConfig, PhotometricConfig, appearance_gap, crop_rotated, photometric,
                                     random_erasing)
from geoloc_ros.data.images import IMAGE_SUFFIXES, read_rgb
from geoloc_ros.data.tensors import to_tensor
from geoloc_ros.geo.distance import UL14_EARTH_RADIUS_M

log = logging.getLogger(__name__)

#: how much smaller the localizer's trusted window part is than the training `coverage`
USEFUL_MARGIN = 0.05


# --------------------------------------------------------------------------- ground maps
class GroundMap(Protocol):
    """A north-up map in a local East/North frame (metres, or pixels for photos)."""

    extent_en: tuple[float, float, float, float]  # (east_min, north_min, east_max, north_max)

    def crop(self, center_en: tuple[float, float], side: float, out_px: int,
             rotation_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]: ...

    def to_latlon(self, east, north) -> tuple[Any, Any]: ...


class ArrayMap:
    """A plain RGB array as a north-up map: rows go south, columns go east.

    One pixel is `gsd_m` units; (east, north) = (0, 0) is the image centre. `to_latlon`
    places the image on a sphere of the UL14 radius around `origin_latlon` so that
    haversine distances between the returned points equal the metric offsets (what the
    UL14 writer needs for GPS_info.json).
    """

    def __init__(self, image: np.ndarray, gsd_m: float = 1.0,
                 origin_latlon: tuple[float, float] = (30.0, 120.0)) -> None:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"ArrayMap wants an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        self.image = image
        self.gsd_m = float(gsd_m)
        self.origin_latlon = (float(origin_latlon[0]), float(origin_latlon[1]))
        h, w = image.shape[:2]
        self._cr, self._cc = (h - 1) / 2.0, (w - 1) / 2.0
        g = self.gsd_m
        self.extent_en = (-(w / 2.0) * g, -(h / 2.0) * g, (w / 2.0) * g, (h / 2.0) * g)

    def en_to_pixel(self, east, north):
        return self._cr - np.asarray(north) / self.gsd_m, self._cc + np.asarray(east) / self.gsd_m

    def crop(self, center_en, side, out_px, rotation_deg=0.0):
        r, c = self.en_to_pixel(center_en[0], center_en[1])
        return crop_rotated(self.image, (float(r), float(c)), side / self.gsd_m, out_px, rotation_deg)

    def to_latlon(self, east, north):
        lat0, lon0 = self.origin_latlon
        lat = lat0 + np.degrees(np.asarray(north, dtype=np.float64) / UL14_EARTH_RADIUS_M)
        lon = lon0 + np.degrees(np.asarray(east, dtype=np.float64) / (UL14_EARTH_RADIUS_M * math.cos(math.radians(lat0))))
        return lat, lon


class OrthoGround:
    """An OrthoMap seen in the local ENU tangent plane at its centre (metres)."""

    def __init__(self, orthomap) -> None:
        from geoloc_ros.geo.frames import LocalENU

        self.map = orthomap
        lat0, lon0 = orthomap.center_latlon
        self.enu = LocalENU(lat0, lon0, 0.0)
        la0, lo0, la1, lo1 = orthomap.bounds_latlon
        lats = np.array([la0, la0, la1, la1, (la0 + la1) / 2, (la0 + la1) / 2, la0, la1])
        lons = np.array([lo0, lo1, lo0, lo1, lo0, lo1, (lo0 + lo1) / 2, (lo0 + lo1) / 2])
        e, n, _ = self.enu.to_enu(lats, lons, 0.0)
        # the inner box of the bounds (safe for a map that is not axis aligned in ENU)
        e_w, e_e = max(e[0], e[2], e[4]), min(e[1], e[3], e[5])
        n_s, n_n = max(n[0], n[1], n[6]), min(n[2], n[3], n[7])
        self.extent_en = (float(e_w), float(n_s), float(e_e), float(n_n))

    def to_latlon(self, east, north):
        lat, lon, _ = self.enu.to_geodetic(east, north, 0.0)
        return lat, lon

    def crop(self, center_en, side, out_px, rotation_deg=0.0):
        lat, lon = self.to_latlon(center_en[0], center_en[1])
        mc = self.map.crop((float(lat), float(lon)), float(side), int(out_px), rotation_deg=rotation_deg)
        img = mc.image
        valid = mc.valid
        if not valid.all():  # UL14 fill: the crop's own mean colour
            from geoloc_ros.data.augment import fill_invalid_with_mean

            img = fill_invalid_with_mean(img, valid)
        return img, valid


# --------------------------------------------------------------------------- pair sampling
@dataclass
class PairConfig:
    """Geometry and appearance of generated pairs (shared by ortho and photo sources)."""

    uav_size: int = 128  # UAV image side given to the model (px)
    sat_size: int = 384  # satellite window side given to the model (px)
    gsd_ratio: float = 1.0  # satellite m/px over UAV m/px at model resolution (localizer default 1.0)
    gsd_ratio_jitter: float = 0.25  # ratio drawn uniformly from gsd_ratio * [1 - j, 1 + j]
    scale_range: tuple[float, float] | None = None  # if set: window side / UAV footprint drawn from it (overrides gsd_ratio)
    footprint_m: tuple[float, float] = (60.0, 150.0)  # UAV footprint side on the ground, metres (OrthoPairSource)
    footprint_frac: tuple[float, float] = (0.12, 0.3)  # UAV footprint side / photo short side (PhotoPairSource)
    coverage: float = 0.85  # UAV position spread over this central fraction of the window (RSC: 0.85)
    rotate: bool = True  # random heading of the UAV image
    max_rotation_deg: float = 180.0  # heading drawn from [-max, max]
    photometric: PhotometricConfig | None = field(default_factory=PhotometricConfig)  # UAV side
    sat_photometric: PhotometricConfig | None = None  # satellite side (off by default)
    erasing_p: float = 0.0  # RSC RandomErasing on the UAV image (UL14 uses 0.3)
    gap: GapAugmentConfig | None = None  # season / years-apart appearance of the UAV side (augment.GapAugmentConfig); None = off
    min_valid: float = 0.95  # minimum fraction of map-covered pixels in both images
    max_tries: int = 30  # resample this often before accepting a partly empty pair

    def __post_init__(self) -> None:
        if not 0.0 < self.coverage <= 1.0:
            raise ValueError(f"coverage must be in (0, 1], got {self.coverage}")
        if self.gsd_ratio <= 0 or not 0.0 <= self.gsd_ratio_jitter < 1.0:
            raise ValueError(f"gsd_ratio must be > 0 and gsd_ratio_jitter in [0, 1), got {self.gsd_ratio}, {self.gsd_ratio_jitter}")
        if isinstance(self.photometric, dict):
            self.photometric = PhotometricConfig(**self.photometric)
        if isinstance(self.sat_photometric, dict):
            self.sat_photometric = PhotometricConfig(**self.sat_photometric)
        if isinstance(self.gap, dict):
            self.gap = GapAugmentConfig(**self.gap)
        for name in ("footprint_m", "footprint_frac", "scale_range"):
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, tuple(float(x) for x in v))

    def inference_defaults(self) -> dict[str, float]:
        """The localizer settings for a model trained on these pairs (the weights' `inference` block).

        Same gsd ratio; a useful window fraction USEFUL_MARGIN below the spread of the training
        positions, whose border the model saw least. Written by the trainer into the weights,
        so `LocalizerConfig` no longer repeats the training geometry by hand.
        """
        return {"gsd_ratio": float(self.gsd_ratio), "useful_frac": round(self.coverage - USEFUL_MARGIN, 6)}


@dataclass
class PairSample:
    """One pair and how it was made (`info`: footprint, side, gsd_ratio, rotation_deg, uav_en, sat_en)."""

    uav: np.ndarray
    sat: np.ndarray
    center_frac: tuple[float, float]
    info: dict = field(default_factory=dict)


@runtime_checkable
class PairSource(Protocol):
    """Anything that draws training pairs: `sample(rng) -> (uav, sat, (row_frac, col_frac))`."""

    uav_size: int
    sat_size: int

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]: ...


def sample_pair(ground: GroundMap, cfg: PairConfig, footprint_range: tuple[float, float],
                rng: np.random.Generator, region: tuple[float, float, float, float] | None = None,
                uav_ground: GroundMap | None = None) -> PairSample:
    """Draw one pair from `ground` (see module docstring for the geometry).

    `footprint_range` is in the ground map's units; `region` = (e0, n0, e1, n1) fractions of
    the extent that the satellite window must lie in (train/val split of one map).
    `uav_ground`, when given, is a co-registered map of the same place at another time (e.g.
    a world's epoch 2) that the UAV image is cut from, so the two sides differ as a flight
    and a years-old satellite map do.
    """
    uav_ground = ground if uav_ground is None else uav_ground
    n_uav, n_sat = cfg.uav_size, cfg.sat_size
    e0, n0, e1, n1 = ground.extent_en
    if region is not None:
        fe0, fn0, fe1, fn1 = region
        e0, e1 = e0 + (e1 - e0) * fe0, e0 + (e1 - e0) * fe1
        n0, n1 = n0 + (n1 - n0) * fn0, n0 + (n1 - n0) * fn1
    room = min(e1 - e0, n1 - n0)
    if room <= 0:
        raise ValueError("pair region is empty")
    lo_c, hi_c = 0.5 - cfg.coverage / 2.0, 0.5 + cfg.coverage / 2.0
    best = None
    for attempt in range(max(cfg.max_tries, 1)):
        foot = rng.uniform(*footprint_range)
        if cfg.scale_range is not None:
            k = rng.uniform(*cfg.scale_range)
            ratio = k * n_uav / n_sat
        else:
            j = cfg.gsd_ratio_jitter
            ratio = cfg.gsd_ratio * rng.uniform(1.0 - j, 1.0 + j)
            k = ratio * n_sat / n_uav  # window side / footprint
        side = k * foot
        if side > room:  # keep the ratio, shrink the footprint so the window fits
            side = room * 0.999
            foot = side / k
        fr, fc = rng.uniform(lo_c, hi_c), rng.uniform(lo_c, hi_c)
        es = rng.uniform(e0 + side / 2.0, e1 - side / 2.0)
        ns = rng.uniform(n0 + side / 2.0, n1 - side / 2.0)
        h = (n_sat - 1) / 2.0
        px = side / n_sat
        eu = es + (fc * (n_sat - 1) - h) * px
        nu = ns - (fr * (n_sat - 1) - h) * px
        rot = float(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg)) if cfg.rotate else 0.0
        sat, vs = ground.crop((es, ns), side, n_sat, 0.0)
        uav, vu = uav_ground.crop((eu, nu), foot, n_uav, rot)
        score = min(float(vs.mean()), float(vu.mean()))
        info = dict(footprint=float(foot), side=float(side), gsd_ratio=float((side / n_sat) / (foot / n_uav)),
                    rotation_deg=rot, uav_en=(float(eu), float(nu)), sat_en=(float(es), float(ns)),
                    valid=score, tries=attempt + 1)
        cand = (score, uav, sat, (float(fr), float(fc)), info)
        if best is None or score > best[0]:
            best = cand
        if score >= cfg.min_valid:
            break
    _, uav, sat, frac, info = best
    if cfg.erasing_p > 0:
        uav = random_erasing(uav, rng, p=cfg.erasing_p)
    if cfg.photometric is not None:
        uav = photometric(uav, cfg.photometric, rng)
    if cfg.gap is not None:
        uav = appearance_gap(uav, cfg.gap, rng)
    if cfg.sat_photometric is not None:
        sat = photometric(sat, cfg.sat_photometric, rng)
    return PairSample(uav, sat, frac, info)


class OrthoPairSource:
    """Pairs from a georeferenced orthophoto (an OrthoMap or a GeoTIFF path), in metres.

    `region` = (e0, n0, e1, n1) fractions of the map's ENU extent that windows must lie in:
    e.g. (0, 0.2, 1, 1) for training and (0, 0, 1, 0.2) for a held-out southern strip.
    `uav_map`: an optional co-registered map of the same area at another time (a world's
    epoch 2, a newer orthophoto) that the UAV images are cut from.
    """

    def __init__(self, orthomap, cfg: PairConfig | None = None,
                 region: tuple[float, float, float, float] | None = None, uav_map=None) -> None:
        from geoloc_ros.geo.orthomap import OrthoMap

        if isinstance(orthomap, (str, Path)):
            orthomap = OrthoMap.open(orthomap)
        if isinstance(uav_map, (str, Path)):
            uav_map = OrthoMap.open(uav_map)
        self.cfg = cfg or PairConfig()
        self.ground = OrthoGround(orthomap)
        self.uav_ground = OrthoGround(uav_map) if uav_map is not None else None
        self.region = region
        self.uav_size, self.sat_size = self.cfg.uav_size, self.cfg.sat_size
        self.name = str(getattr(orthomap, "path", "orthomap"))

    def sample_with_info(self, rng: np.random.Generator) -> PairSample:
        return sample_pair(self.ground, self.cfg, self.cfg.footprint_m, rng, self.region, self.uav_ground)

    def sample(self, rng: np.random.Generator):
        s = self.sample_with_info(rng)
        return s.uav, s.sat, s.center_frac


def list_images(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """Image files under directories (recursive), from glob patterns or given directly, sorted."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[Path] = []
    for p in paths:
        p = Path(p).expanduser()
        if p.is_dir():
            out += [q for q in sorted(p.rglob("*")) if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file()]
        elif p.is_file():
            out.append(p)
        elif any(ch in str(p) for ch in "*?["):
            out += [Path(q) for q in glob.glob(str(p), recursive=True)
                    if Path(q).suffix.lower() in IMAGE_SUFFIXES and Path(q).is_file()]
        else:
            raise FileNotFoundError(f"photo path not found: {p}")
    return sorted(set(out))


class PhotoPairSource:
    """Pairs from a folder of non-georeferenced nadir photos, each treated as a small map.

    Units are photo pixels; the photo's up is taken as north. The footprint is a fraction
    of the photo's short side (`cfg.footprint_frac`); the window is shrunk (keeping the
    gsd ratio) when it would not fit. Undecodable photos are named in the log and dropped
    (`on_error="skip"`) or raise (`"stop"`).
    """

    def __init__(self, paths, cfg: PairConfig | None = None, on_error: str = "skip", cache_size: int = 8) -> None:
        if on_error not in ("skip", "stop"):
            raise ValueError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
        self.cfg = cfg or PairConfig()
        self.paths = list_images(paths)
        if not self.paths:
            raise ValueError(f"no photos found in {paths}")
        self.on_error = on_error
        self.uav_size, self.sat_size = self.cfg.uav_size, self.cfg.sat_size
        self._cache: OrderedDict[Path, ArrayMap] = OrderedDict()
        self._cache_size = cache_size
        self._bad: set[Path] = set()
        self.name = str(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def _ground(self, path: Path) -> ArrayMap:
        g = self._cache.get(path)
        if g is None:
            g = ArrayMap(read_rgb(path), gsd_m=1.0)
            self._cache[path] = g
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(path)
        return g

    def sample_with_info(self, rng: np.random.Generator) -> PairSample:
        for _ in range(len(self.paths) + 1):
            good = [p for p in self.paths if p not in self._bad]
            if not good:
                raise ValueError(f"no readable photos left in {self.name}")
            path = good[int(rng.integers(0, len(good)))]
            try:
                g = self._ground(path)
            except ValueError as exc:
                if self.on_error == "stop":
                    raise
                log.warning("skipping photo: %s", exc)
                self._bad.add(path)
                continue
            short = min(g.image.shape[:2])
            fr = (self.cfg.footprint_frac[0] * short, self.cfg.footprint_frac[1] * short)
            s = sample_pair(g, self.cfg, fr, rng)
            s.info["photo"] = str(path)
            return s
        raise ValueError(f"no readable photos left in {self.name}")

    def sample(self, rng: np.random.Generator):
        s = self.sample_with_info(rng)
        return s.uav, s.sat, s.center_frac


# --------------------------------------------------------------------------- dataset
class PairDataset:
    """torch Dataset over weighted pair sources; item g is reproducible from (seed, g).

    Items are dicts: `uav` [3, h, w] float in [0, 1], `sat` [3, H, W], `center` [2]
    (row_frac, col_frac) float32, `source` int. A fixed `seed` and index give the same
    pair whatever the worker or the process, which makes resumed training and held-out
    validation sets exact.
    """

    def __init__(self, sources: Sequence[PairSource], weights: Sequence[float] | None = None,
                 seed: int = 0, length: int = 10**9) -> None:
        if not sources:
            raise ValueError("PairDataset needs at least one source")
        sizes = {(s.uav_size, s.sat_size) for s in sources}
        if len(sizes) != 1:
            raise ValueError(f"pair sources disagree on image sizes (uav, sat): {sorted(sizes)}")
        self.uav_size, self.sat_size = sizes.pop()
        w = np.asarray(weights if weights is not None else [1.0] * len(sources), dtype=np.float64)
        if w.shape != (len(sources),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"need one non-negative weight per source with a positive sum, got {list(w)}")
        self.sources = list(sources)
        self.weights = w / w.sum()
        self.seed = int(seed)
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float], int]:
        rng = np.random.default_rng([self.seed, int(index)])
        k = int(rng.choice(len(self.sources), p=self.weights)) if len(self.sources) > 1 else 0
        uav, sat, frac = self.sources[k].sample(rng)
        return uav, sat, frac, k

    def __getitem__(self, index: int) -> dict:
        import torch

        uav, sat, frac, k = self.sample(index)
        return {"uav": to_tensor(uav)[0], "sat": to_tensor(sat)[0],
                "center": torch.tensor(frac, dtype=torch.float32), "source": k}
