"""Retrieval data: University-1652 and SUES-200 folder layouts, and pairs generated from a map.

Folder layouts read here (class folders named by location id, any image extension):
- University-1652: `<root>/train/{drone,satellite,street,google}/<id>/*` and
  `<root>/test/{query,gallery}_{drone,satellite,street}/<id>/*` (root = University-Release).
- SUES-200 (after its split script): `<root>/Training/<alt>/{drone,satellite}/<id>/*` and
  `<root>/Testing/<alt>/{query,gallery}_{drone,satellite}/<id>/*`, alt in 150/200/250/300.
Generated pairs (`OrthoRetrievalPairs`): location ids are tile centres on any OrthoMap; the
satellite side is the north-up tile, the drone side a crop around a jittered centre with a
small heading error (heading known) or any heading, scale jitter and photometric changes -
a nadir camera over flat ground sees exactly such a crop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from geoloc_ros.data.images import IMAGE_SUFFIXES, read_rgb
from geoloc_ros.data.tensors import resize_square, to_tensor
from geoloc_ros.errors import GeolocError

SUES_ALTITUDES = ("150", "200", "250", "300")


class DatasetLayoutError(GeolocError):
    """A dataset folder that does not have the expected layout (one line naming the folder)."""


def class_folders(folder: str | Path) -> dict[str, list[Path]]:
    """`folder/<id>/<images>` -> {id: sorted image paths}; ids sorted; empty ids dropped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetLayoutError(f"missing dataset folder: {folder}")
    out: dict[str, list[Path]] = {}
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        imgs = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if imgs:
            out[d.name] = imgs
    if not out:
        raise DatasetLayoutError(f"no <id>/<image> class folders in {folder}")
    return out


@dataclass
class RetrievalSplit:
    """One side of an evaluation (query or gallery): image paths and their location ids."""

    name: str
    paths: list[Path]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.paths)


def _split(folder: Path, name: str) -> RetrievalSplit:
    cf = class_folders(folder)
    paths, ids = [], []
    for k, v in cf.items():
        paths += v
        ids += [k] * len(v)
    return RetrievalSplit(name, paths, ids)


def _u1652_root(root: str | Path) -> Path:
    root = Path(root)
    for cand in (root, root / "University-Release", root / "University-1652"):
        if (cand / "test").is_dir() or (cand / "train").is_dir():
            return cand
    raise DatasetLayoutError(f"{root}: no University-1652 layout (expected train/ and test/ folders)")


def university1652_test(root: str | Path, query: str = "drone", gallery: str = "satellite"
                        ) -> tuple[RetrievalSplit, RetrievalSplit]:
    """(query, gallery) of the University-1652 test set, e.g. drone -> satellite."""
    r = _u1652_root(root) / "test"
    return _split(r / f"query_{query}", f"query_{query}"), _split(r / f"gallery_{gallery}", f"gallery_{gallery}")


def sues200_test(root: str | Path, altitude: str | int, query: str = "drone", gallery: str = "satellite"
                 ) -> tuple[RetrievalSplit, RetrievalSplit]:
    """(query, gallery) of SUES-200 at one altitude (150/200/250/300 m)."""
    r = Path(root) / "Testing" / str(altitude)
    if not r.is_dir():
        raise DatasetLayoutError(f"missing SUES-200 folder {r} (run the SUES-200 split script first)")
    return _split(r / f"query_{query}", f"query_{query}"), _split(r / f"gallery_{gallery}", f"gallery_{gallery}")


def labels_for(*splits: RetrievalSplit) -> list[np.ndarray]:
    """Integer labels shared across splits (same id -> same integer)."""
    ids = sorted({i for s in splits for i in s.ids})
    lut = {k: n for n, k in enumerate(ids)}
    return [np.array([lut[i] for i in s.ids], dtype=np.int64) for s in splits]


class ImageFolderDataset(Dataset):
    """Evaluation images of a split -> (tensor [3, S, S] in [0, 1], label)."""

    def __init__(self, split: RetrievalSplit, labels: np.ndarray, img_size: int):
        self.split, self.labels, self.img_size = split, labels, img_size

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        return to_tensor(read_rgb(self.split.paths[i]), self.img_size)[0], int(self.labels[i])


def _jitter(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    if strength <= 0:
        return img
    from geoloc_ros.data.augment import PhotometricConfig, photometric
    s = strength
    return photometric(img, PhotometricConfig(brightness=0.3 * s, contrast=0.3 * s, saturation=0.3 * s,
                                              hue=0.03 * s, gamma=0.2 * s, blur_p=0.3 * s, noise_std=3.0 * s), rng)


SAMPLINGS = ("location", "drone_image")


def _pad_crop(img: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """Pad by `pad` px (edge-replicated) and cut a random window of the original size back out."""
    if pad <= 0:
        return img
    h, w = img.shape[:2]
    big = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    r, c = rng.integers(0, 2 * pad + 1, 2)
    return big[r:r + h, c:c + w]


class PairedFolderTrain(Dataset):
    """(drone image, satellite image, location index) pairs from the two class-folder trees.

    sampling "location" (University-1652 baseline / FSRA / Safe-Net / QDFL): one item per
    location id, a random drone image of it; an epoch is `repeats` x the ids (their
    `sample_num`). sampling "drone_image" (Sample4Geo / MEAN): one item per drone image,
    paired with its location's satellite image; an epoch visits every drone image once.
    `item_labels()` tells the step-indexed sampler which items share a place, so that no
    batch holds one place twice (InfoNCE needs that).
    Augmentation: photometric changes on the drone side, a random 90-degree turn of the
    satellite side, optional pad-and-crop (`crop_pad` px) and a horizontal flip of both views
    together (`flip_p`, as Sample4Geo's prob_flip: the pair stays a correct match).
    """

    def __init__(self, drone_dir: str | Path, sat_dir: str | Path, img_size: int, repeats: int = 1,
                 photometric: float = 1.0, sat_rot90: bool = True, seed: int = 0, sampling: str = "location",
                 flip_p: float = 0.0, crop_pad: int = 0):
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
        d, s = class_folders(drone_dir), class_folders(sat_dir)
        self.ids = sorted(set(d) & set(s))
        if not self.ids:
            raise DatasetLayoutError(f"no location id has both {drone_dir} and {sat_dir} images")
        self.drone, self.sat = d, s
        self.img_size, self.repeats, self.photometric, self.sat_rot90 = img_size, repeats, photometric, sat_rot90
        self.seed, self.sampling, self.flip_p, self.crop_pad = seed, sampling, flip_p, crop_pad
        # items: (location index, drone image index or -1 = random image of that location)
        if sampling == "location":
            self.items = [(n, -1) for n in range(len(self.ids))]
        else:
            self.items = [(n, j) for n, k in enumerate(self.ids) for j in range(len(d[k]))]
        self._calls = 0

    @property
    def num_classes(self) -> int:
        return len(self.ids)

    def __len__(self) -> int:
        return len(self.items) * self.repeats

    def item_labels(self) -> np.ndarray:
        """Location index of every item (duplicates: items that must not share a batch)."""
        return np.array([self.items[i % len(self.items)][0] for i in range(len(self))], dtype=np.int64)

    def __getitem__(self, i: int):
        self._calls += 1
        rng = np.random.default_rng([self.seed, i, self._calls, torch.initial_seed() % (2 ** 32)])
        n, j = self.items[i % len(self.items)]
        k = self.ids[n]
        dr = read_rgb(self.drone[k][j if j >= 0 else rng.integers(len(self.drone[k]))])
        sa = read_rgb(self.sat[k][rng.integers(len(self.sat[k]))])
        dr = _jitter(resize_square(dr, self.img_size), rng, self.photometric)
        sa = resize_square(sa, self.img_size)
        if self.sat_rot90:
            sa = np.rot90(sa, int(rng.integers(4)))
        if self.crop_pad > 0:
            dr, sa = _pad_crop(dr, self.crop_pad, rng), _pad_crop(sa, self.crop_pad, rng)
        if self.flip_p > 0 and rng.random() < self.flip_p:
            dr, sa = dr[:, ::-1], sa[:, ::-1]
        return to_tensor(np.ascontiguousarray(dr))[0], to_tensor(np.ascontiguousarray(sa))[0], n


def unique_label_order(labels: np.ndarray, batch: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    """rows * batch item indices, cut into batches of `batch` distinct labels (Sample4Geo's
    custom shuffle): items walk a random permutation; one whose label is already in the
    batch waits for the next batch; permutations are drawn until `rows` batches are full."""
    if len(np.unique(labels)) < batch:
        raise ValueError(f"batch_size {batch} is larger than the {len(np.unique(labels))} distinct places: "
                         "a batch cannot hold only different places")
    out: list[int] = []
    cur: list[int] = []
    seen: set[int] = set()
    waiting: list[int] = []
    while len(out) < rows * batch:
        for i in rng.permutation(len(labels)):
            queue, waiting = waiting + [int(i)], []
            for j in queue:
                if int(labels[j]) in seen:
                    waiting.append(j)
                    continue
                cur.append(j)
                seen.add(int(labels[j]))
                if len(cur) == batch:
                    out += cur
                    cur, seen = [], set()
            if len(out) >= rows * batch:
                break
    return np.asarray(out[:rows * batch], dtype=np.int64)


def university1652_train(root: str | Path, img_size: int, **kw) -> PairedFolderTrain:
    r = _u1652_root(root) / "train"
    return PairedFolderTrain(r / "drone", r / "satellite", img_size, **kw)


def sues200_train(root: str | Path, altitude: str | int, img_size: int, **kw) -> PairedFolderTrain:
    r = Path(root) / "Training" / str(altitude)
    return PairedFolderTrain(r / "drone", r / "satellite", img_size, **kw)


# --- pairs generated from any orthophoto ----------------------------------------------------
@dataclass
class OrthoPairsConfig:
    tile_m: float = 200.0           # side of a satellite tile (≈ the UAV footprint it should match)
    locations: int = 512            # number of location ids (tile centres), drawn inside the map
    shift_frac: float = 0.1         # drone-view centre jitter, fraction of tile_m (uniform, each axis)
    scale_jitter: float = 0.1       # drone footprint in tile_m * [1 - s, 1 + s]
    heading_known: bool = True      # True: heading error only; False: any heading
    heading_error_deg: float = 5.0  # max residual heading error when the heading is known
    photometric: float = 1.0        # strength of colour/blur/noise changes on the drone side (0 = off)
    min_valid: float = 0.9          # minimum valid (on-map) fraction of a satellite tile
    seed: int = 0
    fixed_views: bool = False       # True: view i is the same on every call (evaluation)


class OrthoRetrievalPairs(Dataset):
    """(drone view, satellite tile, location id) from an OrthoMap (any GeoTIFF/COG or a world)."""

    def __init__(self, orthomap, cfg: OrthoPairsConfig, img_size: int):
        self.map, self.cfg, self.img_size = orthomap, cfg, img_size
        self.centers = self._draw_centers()
        self._calls = 0

    def _draw_centers(self) -> list[tuple[float, float]]:
        m, c = self.map, self.cfg
        rng = np.random.default_rng(c.seed)
        half_px = 0.5 * c.tile_m * (1 + c.shift_frac + c.scale_jitter) / m.gsd_m
        if 2 * half_px >= min(m.width, m.height):
            raise ValueError(f"tile_m {c.tile_m} is too large for the {m.width}x{m.height} px map at {m.gsd_m:.2f} m/px")
        out: list[tuple[float, float]] = []
        tries = 0
        while len(out) < c.locations and tries < 20 * c.locations:
            tries += 1
            r = rng.uniform(half_px, m.height - 1 - half_px)
            q = rng.uniform(half_px, m.width - 1 - half_px)
            lat, lon = m.pixel_to_latlon(r, q)
            if c.min_valid > 0 and m.coverage_fraction((float(lat), float(lon)), c.tile_m) < c.min_valid:
                continue
            out.append((float(lat), float(lon)))
        if not out:
            raise ValueError(f"no tile of {c.tile_m} m with >= {c.min_valid:.0%} valid pixels in {m.path}")
        return out

    @property
    def num_classes(self) -> int:
        return len(self.centers)

    def __len__(self) -> int:
        return len(self.centers)

    def satellite(self, i: int) -> np.ndarray:
        return self.map.crop(self.centers[i], self.cfg.tile_m, self.img_size).image

    def drone(self, i: int, rng: np.random.Generator) -> np.ndarray:
        """A nadir view near location i: shifted centre, scale jitter, heading error, photometric."""
        c = self.cfg
        lat, lon = self.centers[i]
        de, dn = rng.uniform(-c.shift_frac, c.shift_frac, 2) * c.tile_m
        k = 1.0 / (111_320.0)
        center = (lat + dn * k, lon + de * k / max(math.cos(math.radians(lat)), 1e-6))
        size = c.tile_m * rng.uniform(1 - c.scale_jitter, 1 + c.scale_jitter)
        rot = rng.uniform(-c.heading_error_deg, c.heading_error_deg) if c.heading_known else rng.uniform(0, 360)
        img = self.map.crop(center, size, self.img_size, rotation_deg=float(rot)).image
        return _jitter(img, rng, c.photometric)

    def __getitem__(self, i: int):
        self._calls += 1
        seed = [self.cfg.seed, i] if self.cfg.fixed_views else [self.cfg.seed, i, self._calls, torch.initial_seed() % (2 ** 32)]
        rng = np.random.default_rng(seed)
        return to_tensor(self.drone(i, rng))[0], to_tensor(self.satellite(i))[0], i


class _Side(Dataset):
    """One side (drone views or satellite tiles) of OrthoRetrievalPairs as (tensor, label)."""

    def __init__(self, pairs: OrthoRetrievalPairs, side: str):
        self.pairs, self.side = pairs, side

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        d, s, lab = self.pairs[i]
        return (d if self.side == "drone" else s), lab


def ortho_eval_sides(pairs: OrthoRetrievalPairs) -> dict[str, Dataset]:
    """{'drone': .., 'satellite': ..} datasets of the same locations for query/gallery evaluation."""
    pairs.cfg.fixed_views = True
    return {"drone": _Side(pairs, "drone"), "satellite": _Side(pairs, "satellite")}


__all__ = ["DatasetLayoutError", "RetrievalSplit", "class_folders", "university1652_test", "sues200_test",
           "university1652_train", "sues200_train", "labels_for", "ImageFolderDataset", "PairedFolderTrain",
           "SAMPLINGS", "unique_label_order",
           "OrthoPairsConfig", "OrthoRetrievalPairs", "ortho_eval_sides", "SUES_ALTITUDES", "read_rgb"]
