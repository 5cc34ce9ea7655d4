"""UL14 benchmark data: training pairs (RSC), test pairs, and a writer of UL14-format sets.

Follows shared/spec/ul14_protocol.md sections 1-2 exactly, with one stated difference:
the reference feeds training satellite crops in BGR (a bug); we use RGB everywhere.

Layout (`<Place>_<Height>_<Index>` folders):
  train/<f>/UAV/0.JPG, train/<f>/Satellite/*.tif (1280 x 1280, UAV GPS fix at the centre)
  test/<f>/UAV/0.JPG (256 x 256), test/<f>/Satellite/0..11.jpg (768 x 768, map_size
  700 + 100 k), test/<f>/labels.json {"k.jpg": [row, col]}, test/<f>/GPS_info.json.
Missing or corrupted files are named; `on_error="skip"` logs and skips them, `"stop"` raises.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import cv2
import numpy as np

from geoloc_ros.config import read_json
from geoloc_ros.data.augment import UL14_UAV_INTERPOLATIONS, random_erasing
from geoloc_ros.data.images import read_rgb
from geoloc_ros.data.pairs import ArrayMap, OrthoGround
from geoloc_ros.data.tensors import to_tensor
from geoloc_ros.errors import GeolocError
from geoloc_ros.metrics import UL14_MAP_SIZES, ul14_scale_label

log = logging.getLogger(__name__)
T = TypeVar("T")

_FOLDER_RE = re.compile(r"^(?P<place>.+)_(?P<height>\d+)_(?P<index>\d+)$")


class UL14Error(GeolocError):
    """A UL14 folder or file that is missing or unreadable (the message names it)."""


def parse_folder(name: str) -> tuple[str, int, int]:
    """'<Place>_<Height>_<Index>' -> (place, height, index); other names raise UL14Error."""
    m = _FOLDER_RE.match(name)
    if not m:
        raise UL14Error(f"folder name {name!r} is not <Place>_<Height>_<Index>")
    return m["place"], int(m["height"]), int(m["index"])


def _check_on_error(on_error: str) -> None:
    if on_error not in ("skip", "stop"):
        raise ValueError(f"on_error must be 'skip' or 'stop', got {on_error!r}")


def _index_folders(folders: Sequence[str], on_error: str, index: Callable[[str], T],
                   skipped: list[str] | None = None) -> list[tuple[str, T]]:
    """(folder, index(folder)) for each folder that indexes; one that raises UL14Error stops
    everything (on_error='stop') or is logged, noted in `skipped` and left out (a partial
    download must not end a long run)."""
    done = []
    for f in folders:
        try:
            done.append((f, index(f)))
        except UL14Error as exc:
            if on_error == "stop":
                raise
            log.warning("skipping UL14 folder: %s", exc)
            if skipped is not None:
                skipped.append(str(exc))
    return done


def _split_dir(root: str | Path, split: str) -> Path:
    d = Path(root).expanduser() / split
    if not d.is_dir():
        raise UL14Error(f"UL14 split folder not found: {d}")
    return d


def list_folders(root: str | Path, split: str) -> list[str]:
    """Sorted UL14 folder names of a split (names that do not parse are ignored with a warning)."""
    out = []
    for p in sorted(_split_dir(root, split).iterdir()):
        if p.is_dir():
            try:
                parse_folder(p.name)
                out.append(p.name)
            except UL14Error as exc:
                log.warning("ignoring %s: %s", p, exc)
    return out


def split_train_folders(folders: Sequence[str], val_fraction: float = 0.1, by: str = "place",
                        seed: int = 0) -> tuple[list[str], list[str]]:
    """Hold out training folders for validation (never the test set).

    by="place" holds out whole places (universities) until at least `val_fraction` of the
    folders are held out, so validation measures generalisation to a new area; with a
    single place it falls back to by="folder" (a random subset).
    """
    folders = sorted(folders)
    if val_fraction <= 0 or not folders:
        return list(folders), []
    rng = np.random.default_rng(seed)
    places = sorted({parse_folder(f)[0] for f in folders})
    if by == "place" and len(places) > 1:
        order = [places[i] for i in rng.permutation(len(places))]
        held: set[str] = set()
        for p in order[:-1]:
            held.add(p)
            if sum(parse_folder(f)[0] in held for f in folders) >= val_fraction * len(folders):
                break
        val = [f for f in folders if parse_folder(f)[0] in held]
    else:
        n = max(1, int(round(val_fraction * len(folders))))
        val = sorted(folders[i] for i in rng.permutation(len(folders))[:n])
    train = [f for f in folders if f not in set(val)]
    return train, val


# --------------------------------------------------------------------------- training (RSC)
class UL14Train:
    """UL14 training pairs with Random Scale Crop (spec section 2); also a `PairSource`.

    For the 1280 px training satellite image with the UAV at (640, 640): ms = randint(512,
    1000) made even; crop centre RCX/RCY = randint(int(640 - 0.425 ms), int(640 + 0.425 ms))
    (upper bound exclusive); crop [RC +- ms/2] with out-of-bounds filled by the crop mean;
    label = 0.5 + (640 - RC) / ms in (0.075, 0.925]; resize to `sat_size`. The UAV image:
    RandomErasing p=0.3 then resize to `uav_size` with a random interpolation. Images are
    RGB (the reference's BGR satellite bug is not reproduced). Other stored sizes are
    handled by scaling 640 / 512 / 1000 with the image side (bit for bit at 1280).

    `__getitem__(i)` draws folder i (deterministic from (seed, epoch, i)); `sample(rng)`
    draws a random folder, for mixing with other sources in a PairDataset.
    """

    def __init__(self, root: str | Path, folders: Sequence[str] | None = None, uav_size: int = 128,
                 sat_size: int = 384, ms_range: tuple[int, int] = (512, 1000), coverage: float = 0.85,
                 erasing_p: float = 0.3, on_error: str = "skip", seed: int = 0, split: str = "train") -> None:
        _check_on_error(on_error)
        self.root = Path(root).expanduser()
        self.dir = _split_dir(self.root, split)
        self.folders = list(folders) if folders is not None else list_folders(self.root, split)
        self.uav_size, self.sat_size = int(uav_size), int(sat_size)
        self.ms_range, self.coverage, self.erasing_p = ms_range, float(coverage), float(erasing_p)
        self.on_error, self.seed, self.epoch = on_error, int(seed), 0
        self._sat_files: dict[str, list[Path]] = {}
        self.folders = [f for f, _ in _index_folders(self.folders, on_error, self._index)]
        if not self.folders:
            raise UL14Error(f"no usable UL14 training folders in {self.dir}")

    def _index(self, folder: str) -> None:
        d = self.dir / folder
        uav = d / "UAV" / "0.JPG"
        if not uav.is_file():
            raise UL14Error(f"missing UAV image: {uav}")
        sats = sorted(p for p in (d / "Satellite").glob("*") if p.suffix.lower() in (".tif", ".tiff"))
        if not sats:
            raise UL14Error(f"no satellite .tif in {d / 'Satellite'}")
        self._sat_files[folder] = sats

    def __len__(self) -> int:
        return len(self.folders)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rsc(self, sat: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float]]:
        """Random Scale Crop of a stored training satellite image (UAV at its centre)."""
        h, w = sat.shape[:2]
        f = w / 1280.0  # 1 at the real size
        c = 640.0 * f if w != 1280 else 640  # UAV pixel (row and column)
        lo, hi = int(round(self.ms_range[0] * f)), int(round(self.ms_range[1] * f))
        ms = int(rng.integers(lo, hi))
        ms = ms - ms % 2
        half = self.coverage / 2.0
        rcx = int(rng.integers(int(c - half * ms), int(c + half * ms)))
        rcy = int(rng.integers(int(c - half * ms), int(c + half * ms)))
        top, left = rcx - ms // 2, rcy - ms // 2
        r0, r1, c0, c1 = max(top, 0), min(top + ms, h), max(left, 0), min(left + ms, w)
        inner = np.ascontiguousarray(sat[r0:r1, c0:c1])
        if inner.size == 0:
            crop = np.zeros((ms, ms, 3), np.uint8)
        elif inner.shape[:2] != (ms, ms):  # out-of-bounds parts get the crop's mean colour
            fill = [int(round(v)) for v in cv2.mean(inner)[:3]]
            crop = cv2.copyMakeBorder(inner, r0 - top, top + ms - r1, c0 - left, left + ms - c1,
                                      cv2.BORDER_CONSTANT, value=fill)
        else:
            crop = inner
        out = cv2.resize(crop, (self.sat_size, self.sat_size), interpolation=cv2.INTER_LINEAR)
        return out, (0.5 + (c - rcx) / ms, 0.5 + (c - rcy) / ms)

    def load(self, folder: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
        """One RSC pair of `folder`: (uav uint8 RGB, satellite uint8 RGB, (row_frac, col_frac))."""
        d = self.dir / folder
        uav = read_rgb(d / "UAV" / "0.JPG")
        sats = self._sat_files[folder]
        sat = read_rgb(sats[int(rng.integers(0, len(sats)))])
        uav = random_erasing(uav, rng, p=self.erasing_p)
        interp = UL14_UAV_INTERPOLATIONS[int(rng.integers(0, len(UL14_UAV_INTERPOLATIONS)))]
        uav = cv2.resize(uav, (self.uav_size, self.uav_size), interpolation=interp)
        sat, frac = self.rsc(sat, rng)
        return uav, sat, frac

    def _load_checked(self, i: int, rng: np.random.Generator):
        n = len(self.folders)
        for k in range(n):
            folder = self.folders[(i + k) % n]
            try:
                return self.load(folder, rng)
            except ValueError as exc:
                if self.on_error == "stop":
                    raise UL14Error(str(exc)) from None
                log.warning("skipping UL14 sample: %s", exc)
        raise UL14Error(f"no readable UL14 training folder in {self.dir}")

    def sample(self, rng: np.random.Generator):
        return self._load_checked(int(rng.integers(0, len(self.folders))), rng)

    def __getitem__(self, i: int) -> dict:
        import torch

        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        uav, sat, frac = self._load_checked(int(i), rng)
        return {"uav": to_tensor(uav)[0], "sat": to_tensor(sat)[0], "center": torch.tensor(frac, dtype=torch.float32),
                "source": 0}


class UL14Epochs:
    """UL14 training pairs by global index, every folder once per epoch (spec section 2).

    Index g belongs to epoch e = g // n (n folders) and draws folder order_e[g % n], where
    order_e is a permutation seeded by (seed, e): sampling WITHOUT replacement within an
    epoch, a new order each epoch, all of it a function of (seed, g). That keeps what the
    training loop relies on (train/loop.py: step s uses fixed global indices, so a resumed
    or multi-GPU run sees exactly the pairs an uninterrupted single one would) while
    matching the reference's "one sample per folder per epoch". The random crop of an item
    is drawn from (seed, g) too. (`UL14Train.sample`, used when UL14 is mixed with other
    sources in a PairDataset, draws folders with replacement.)
    """

    def __init__(self, train: UL14Train, seed: int = 0, length: int = 10**9) -> None:
        self.train, self.seed, self.length = train, int(seed), int(length)
        self.uav_size, self.sat_size = train.uav_size, train.sat_size
        self._order: tuple[int, np.ndarray] | None = None  # (epoch, permutation), one cached

    def __len__(self) -> int:
        return self.length

    def order(self, epoch: int) -> np.ndarray:
        """Folder indices in the order epoch `epoch` visits them."""
        if self._order is None or self._order[0] != epoch:
            perm = np.random.default_rng([self.seed, 0x0EC0, int(epoch)]).permutation(len(self.train.folders))
            self._order = (int(epoch), perm)
        return self._order[1]

    def folder_index(self, g: int) -> int:
        n = len(self.train.folders)
        return int(self.order(int(g) // n)[int(g) % n])

    def __getitem__(self, g: int) -> dict:
        import torch

        rng = np.random.default_rng([self.seed, int(g)])
        uav, sat, frac = self.train._load_checked(self.folder_index(g), rng)
        return {"uav": to_tensor(uav)[0], "sat": to_tensor(sat)[0], "center": torch.tensor(frac, dtype=torch.float32),
                "source": 0}


# --------------------------------------------------------------------------- test
@dataclass
class UL14TestItem:
    """One (UAV, satellite k) test pair with everything the metrics need."""

    folder: str
    sat_name: str
    height: int
    map_size: int
    label_rc: tuple[int, int]  # labels.json (X row, Y col) in the stored satellite image
    stored_size: int  # stored satellite side (768 in UL14)
    uav_latlon: tuple[float, float]  # (N, E)
    tl: tuple[float, float]  # (tl_N, tl_E)
    br: tuple[float, float]  # (br_N, br_E)


class UL14Test:
    """UL14 test (or val) pairs: 12 satellite images per UAV image (spec sections 1 and 4).

    Items are dicts with `uav` [3, 128, 128] and `sat` [3, 384, 384] tensors (PIL bicubic
    resize, as the reference's test transform), `label` = (int(X/768*384), int(Y/768*384))
    computed from the real stored size, and `meta` (a UL14TestItem). A corrupted image gives
    {"skipped": message} with on_error="skip" (see `collate`), or raises with "stop".
    """

    def __init__(self, root: str | Path, split: str = "test", uav_size: int = 128, sat_size: int = 384,
                 on_error: str = "skip", folders: Sequence[str] | None = None,
                 heights: Sequence[int] | None = None) -> None:
        _check_on_error(on_error)
        self.root = Path(root).expanduser()
        self.dir = _split_dir(self.root, split)
        self.uav_size, self.sat_size, self.on_error = int(uav_size), int(sat_size), on_error
        self.items: list[UL14TestItem] = []
        self.skipped: list[str] = []
        names = list(folders) if folders is not None else list_folders(self.root, split)

        def index(f: str) -> list[UL14TestItem]:
            return self._index(f) if heights is None or parse_folder(f)[1] in heights else []

        for _, items in _index_folders(names, on_error, index, self.skipped):
            self.items += items
        if not self.items:
            raise UL14Error(f"no usable UL14 test pairs in {self.dir}")

    def _read_json(self, path: Path) -> dict:
        data = read_json(path, UL14Error, f"missing {path.name}: {path}")
        if not isinstance(data, dict):
            raise UL14Error(f"{path}: expected a JSON object")
        return data

    def _index(self, folder: str) -> list[UL14TestItem]:
        d = self.dir / folder
        _, height, _ = parse_folder(folder)
        uav = d / "UAV" / "0.JPG"
        if not uav.is_file():
            raise UL14Error(f"missing UAV image: {uav}")
        labels = self._read_json(d / "labels.json")
        gps = self._read_json(d / "GPS_info.json")
        try:
            uav_ll = (float(gps["UAV"]["N"]), float(gps["UAV"]["E"]))
            sat_info = gps["Satellite"]
        except (KeyError, TypeError, ValueError):
            raise UL14Error(f"{d / 'GPS_info.json'}: missing UAV N/E or Satellite entries") from None
        items = []
        for name in sorted(labels, key=lambda s: (len(s), s)):
            img = d / "Satellite" / name
            if not img.is_file():
                raise UL14Error(f"missing satellite image: {img}")
            try:
                x, y = labels[name]
                s = sat_info[name]
                tl, br = (float(s["tl_N"]), float(s["tl_E"])), (float(s["br_N"]), float(s["br_E"]))
                ms = int(s.get("map_size", 0))
            except (KeyError, TypeError, ValueError):
                raise UL14Error(f"{d}: label or GPS_info entry for {name} missing or malformed") from None
            items.append(UL14TestItem(folder, name, height, ms, (int(x), int(y)), 0, uav_ll, tl, br))
        if not items:
            raise UL14Error(f"{d / 'labels.json'}: no labels")
        return items

    def __len__(self) -> int:
        return len(self.items)

    @staticmethod
    def _pil_rgb(path: Path):
        from PIL import Image, UnidentifiedImageError

        if not path.is_file():
            raise UL14Error(f"missing image file: {path}")
        try:
            with Image.open(path) as im:
                im.load()
                return im.convert("RGB")
        except (UnidentifiedImageError, OSError, SyntaxError):
            raise UL14Error(f"cannot decode image file (corrupted?): {path}") from None

    def load(self, i: int) -> dict:
        """Decode and resize pair i; raises UL14Error naming a bad file."""
        import torch
        from PIL import Image

        it = self.items[i]
        d = self.dir / it.folder
        uav = self._pil_rgb(d / "UAV" / "0.JPG").resize((self.uav_size, self.uav_size), Image.BICUBIC)
        sat_im = self._pil_rgb(d / "Satellite" / it.sat_name)
        stored = sat_im.size[1]
        sat = sat_im.resize((self.sat_size, self.sat_size), Image.BICUBIC)
        lx, ly = ul14_scale_label(it.label_rc[0], it.label_rc[1], stored, self.sat_size)
        meta = UL14TestItem(**{**it.__dict__, "stored_size": stored})
        return {"uav": to_tensor(np.asarray(uav))[0], "sat": to_tensor(np.asarray(sat))[0],
                "label": torch.tensor([lx, ly], dtype=torch.int64), "meta": meta}

    def __getitem__(self, i: int) -> dict:
        try:
            return self.load(i)
        except UL14Error as exc:
            if self.on_error == "stop":
                raise
            return {"skipped": str(exc), "index": i}

    @staticmethod
    def collate(batch: list[dict]) -> dict:
        """Stack good items; skipped ones go to "skipped" (list of messages)."""
        import torch

        good = [b for b in batch if "skipped" not in b]
        out: dict = {"skipped": [b["skipped"] for b in batch if "skipped" in b]}
        if good:
            out["uav"] = torch.stack([b["uav"] for b in good])
            out["sat"] = torch.stack([b["sat"] for b in good])
            out["label"] = torch.stack([b["label"] for b in good])
            out["meta"] = [b["meta"] for b in good]
        return out


# --------------------------------------------------------------------------- writer
def synthetic_map(size_px: int = 2048, seed: int = 0) -> np.ndarray:
    """A textured RGB map with structure at several scales (fields, roads, buildings) for tests."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size_px, size_px, 3), np.float32)
    for cells, amp in ((4, 60.0), (16, 40.0), (64, 25.0), (256, 12.0)):
        cells = min(cells, size_px)
        noise = rng.uniform(-amp, amp, size=(cells, cells, 3)).astype(np.float32)
        img += cv2.resize(noise, (size_px, size_px), interpolation=cv2.INTER_CUBIC)
    img += np.array([110.0, 120.0, 95.0], np.float32)
    out = np.clip(img, 0, 255).astype(np.uint8)
    n = max(size_px // 40, 4)
    for _ in range(n):  # buildings and roads: sharp features the model can lock onto
        r, c = rng.integers(0, size_px, 2)
        s = int(rng.integers(size_px // 200 + 2, size_px // 40 + 4))
        col = tuple(int(v) for v in rng.integers(0, 255, 3))
        cv2.rectangle(out, (int(c), int(r)), (int(c) + s, int(r) + int(s * rng.uniform(0.5, 2))), col, -1)
    for _ in range(max(n // 4, 2)):
        p = rng.integers(0, size_px, 4)
        cv2.line(out, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), (200, 200, 190), max(size_px // 300, 1))
    return out


def _as_ground(source, source_gsd_m: float, origin_latlon, seed: int, need_m: float):
    from geoloc_ros.geo.orthomap import OrthoMap

    if source is None:
        px = 2048
        return ArrayMap(synthetic_map(px, seed), gsd_m=need_m / px, origin_latlon=origin_latlon)
    if isinstance(source, np.ndarray):
        return ArrayMap(source, gsd_m=source_gsd_m, origin_latlon=origin_latlon)
    if isinstance(source, (str, Path)):
        source = OrthoMap.open(source)
    if isinstance(source, (ArrayMap, OrthoGround)):
        return source
    return OrthoGround(source)


def _write_jpg(path: Path, img: np.ndarray, quality: int = 95) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix if path.suffix.lower() in (".jpg", ".jpeg") else ".jpg",
                           cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"cannot encode {path}")
    path.write_bytes(buf.tobytes())


def _write_tif(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")


def write_ul14_dataset(root: str | Path, n_places: int = 2, folders_per_place: int = 2,
                       heights: Sequence[int] = (80, 90, 100), splits: Sequence[str] = ("train", "test"),
                       source=None, source_gsd_m: float = 0.3, origin_latlon: tuple[float, float] = (30.0, 120.0),
                       half_res_gsd_m: float = 0.3, footprint_per_height: float = 1.0,
                       uav_train_px: int = 512, uav_test_px: int = 256, sat_train_px: int = 1280,
                       sat_test_px: int = 768, train_window: int = 2000,
                       map_sizes: Sequence[int] = UL14_MAP_SIZES, cover_rate: float = 0.95,
                       uav_rotation_deg: float = 0.0, seed: int = 0) -> dict:
    """Write a small dataset in the exact UL14 layout; returns {"train": [...], "test": [...]} folder names.

    Map units follow UL14: window sizes are in half-resolution source pixels of
    `half_res_gsd_m` metres (0.3 m reproduces UL14's ~0.54 m per pixel at 384/700). The
    UAV image covers `footprint_per_height * height` metres (about UL14's camera). A
    training tif covers `train_window` half-res px centred on the UAV; test image k covers
    `map_sizes[k]` with the UAV placed uniformly in the central `cover_rate` of each axis,
    its label = int(position / side * stored size) (row, col), and GPS_info.json holds the
    crop-box corners (tl = top-left pixel edge, br = bottom-right) so that row -> N and
    column -> E interpolate linearly. `source`: None (synthetic texture), an (H, W, 3)
    array of `source_gsd_m` m/px placed at `origin_latlon`, an OrthoMap or a GeoTIFF path.
    Out-of-map parts are filled with the crop's mean colour. Tiny sizes make it fast.
    """
    root = Path(root).expanduser()
    rng = np.random.default_rng(seed)
    places = [f"Place{chr(65 + p)}" for p in range(n_places)]
    need = max(train_window * half_res_gsd_m, max(map_sizes) * half_res_gsd_m * 2.0) * 1.3
    ground = _as_ground(source, source_gsd_m, origin_latlon, seed, need * 1.5)
    e0, n0, e1, n1 = ground.extent_en
    written: dict[str, list[str]] = {s: [] for s in splits}
    for split in splits:
        for place in places:
            for idx in range(folders_per_place):
                height = int(heights[(idx + places.index(place)) % len(heights)])
                name = f"{place}_{height}_{idx}"
                d = root / split / name
                foot = footprint_per_height * height
                margin = 0.5 * (train_window if split == "train" else max(map_sizes) * 2) * half_res_gsd_m
                margin = min(margin, 0.45 * (e1 - e0), 0.45 * (n1 - n0))
                eu, nu = rng.uniform(e0 + margin, e1 - margin), rng.uniform(n0 + margin, n1 - margin)
                uav_px = uav_train_px if split == "train" else uav_test_px
                rot = float(rng.uniform(-uav_rotation_deg, uav_rotation_deg)) if uav_rotation_deg else 0.0
                uav, _ = ground.crop((eu, nu), foot, uav_px, rot)
                _write_jpg(d / "UAV" / "0.JPG", uav)
                if split == "train":
                    sat, _ = ground.crop((eu, nu), train_window * half_res_gsd_m, sat_train_px, 0.0)
                    _write_tif(d / "Satellite" / f"{name}.tif", sat)
                else:
                    lat_u, lon_u = ground.to_latlon(eu, nu)
                    labels, sat_gps = {}, {}
                    lo, hi = 0.5 - cover_rate / 2.0, 0.5 + cover_rate / 2.0
                    for k, ms in enumerate(map_sizes):
                        side = ms * half_res_gsd_m
                        fr, fc = rng.uniform(lo, hi), rng.uniform(lo, hi)
                        # box: UAV at fraction (fr, fc) of the box measured from its top-left edge
                        e_w, n_top = eu - fc * side, nu + fr * side
                        sat, _ = ground.crop((e_w + side / 2.0, n_top - side / 2.0), side, sat_test_px, 0.0)
                        _write_jpg(d / "Satellite" / f"{k}.jpg", sat)
                        tl_n, tl_e = ground.to_latlon(e_w, n_top)
                        br_n, br_e = ground.to_latlon(e_w + side, n_top - side)
                        labels[f"{k}.jpg"] = [int(fr * sat_test_px), int(fc * sat_test_px)]
                        sat_gps[f"{k}.jpg"] = {"tl_E": float(tl_e), "tl_N": float(tl_n), "br_E": float(br_e),
                                               "br_N": float(br_n), "center_distribute_X": float(fr),
                                               "center_distribute_Y": float(fc), "map_size": int(ms)}
                    (d / "labels.json").write_text(json.dumps(labels, indent=1))
                    (d / "GPS_info.json").write_text(json.dumps(
                        {"UAV": {"E": float(lon_u), "N": float(lat_u)}, "Satellite": sat_gps}, indent=1))
                written[split].append(name)
    return written
