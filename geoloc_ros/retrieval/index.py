"""Map index for coarse relocalization: descriptors of overlapping map tiles + their centres.

Why: when the UAV's position is unknown (lost track, start without a fix, a map of many
km^2), sweeping heatmap windows costs O(area) network passes per frame; with tile
descriptors computed once per map, a query costs one descriptor + one matrix-vector product.

Files (prefix P, by default next to the map, `<map stem>.retrieval`):
- `P.json`: meta (map, model config, tile/stride/scales, descriptor dim, probe descriptor
  that fingerprints the model);
- `P.desc.npy`: float16 [N, D] unit descriptors (memory-mapped at query time);
- `P.tiles.npy`: float64 [N, 3] tile centre lat, lon and side in metres.
"""
from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch

from geoloc_ros.config import read_json, to_dict
from geoloc_ros.data.tensors import to_tensor
from geoloc_ros.errors import GeolocError
from geoloc_ros.model.device import pick_device
from geoloc_ros.retrieval.model import RetrievalModel

INDEX_FORMAT = "geoloc_ros.retrieval_index/1"


class MapIndexError(GeolocError):
    """An index file that is missing, malformed, or built with a different model (one line)."""


def index_paths(out: str | Path) -> tuple[Path, Path, Path]:
    """Prefix or `.json` path -> (json, desc.npy, tiles.npy)."""
    p = Path(out)
    if p.suffix == ".json":
        p = p.with_suffix("")
    return p.with_name(p.name + ".json"), p.with_name(p.name + ".desc.npy"), p.with_name(p.name + ".tiles.npy")


def default_index_prefix(map_path: str | Path) -> Path:
    m = Path(map_path)
    return m.with_name(m.stem + ".retrieval")


def tile_grid(orthomap, tile_m: float, stride_m: float, scales: Sequence[float] = (1.0,)) -> np.ndarray:
    """[N, 3] (lat, lon, side_m) of tile centres: for each scale s, tiles of tile_m*s on a grid
    with spacing <= stride_m*s covering the raster from edge to edge (a map smaller than a
    tile gets one tile at its centre)."""
    rows_out = []
    for s in scales:
        side_px = tile_m * s / orthomap.gsd_m
        step_px = stride_m * s / orthomap.gsd_m

        def axis(n: int) -> np.ndarray:
            lo, hi = side_px / 2 - 0.5, n - 0.5 - side_px / 2
            if hi <= lo:
                return np.array([(n - 1) / 2.0])
            k = int(math.ceil((hi - lo) / step_px - 0.01)) + 1   # tolerate gsd rounding
            return np.linspace(lo, hi, k)

        rr, cc = np.meshgrid(axis(orthomap.height), axis(orthomap.width), indexing="ij")
        lat, lon = orthomap.pixel_to_latlon(rr.ravel(), cc.ravel())
        rows_out.append(np.stack([np.atleast_1d(lat), np.atleast_1d(lon), np.full(rr.size, tile_m * s)], 1))
    return np.concatenate(rows_out, 0)


def probe_image(size: int) -> np.ndarray:
    """A fixed synthetic image whose descriptor fingerprints a model (same weights -> same vector)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    img = np.stack([np.sin(7 * x + 3 * y), np.cos(5 * y - 2 * x), np.sin(11 * x * y + 1)], -1)
    return ((img * 0.5 + 0.5) * 255).astype(np.uint8)


@torch.no_grad()
def model_fingerprint(model: RetrievalModel) -> np.ndarray:
    dev = next(model.parameters()).device
    return model.describe(to_tensor(probe_image(model.eval_size), model.eval_size).to(dev))[0].float().cpu().numpy()


def _batches(orthomap, tiles: np.ndarray, out_px: int, batch: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(start, images [b, S, S, 3], valid fraction [b]) in order; crops run in this thread."""
    for i in range(0, len(tiles), batch):
        imgs, vf = [], []
        for lat, lon, side in tiles[i:i + batch]:
            c = orthomap.crop((lat, lon), float(side), out_px)
            imgs.append(c.image)
            vf.append(c.valid_fraction)
        yield i, np.stack(imgs), np.asarray(vf)


def build_index(map_path: str | Path, model: RetrievalModel, tile_m: float = 200.0, stride_m: float = 100.0,
                scales: Sequence[float] = (1.0,), out: str | Path | None = None, batch: int = 32,
                device: str | torch.device = "auto", min_valid: float = 0.5, progress: bool = True) -> Path:
    """Cut overlapping tiles of `map_path`, describe them batched, write the index; returns P.json.

    `scales` multiply `tile_m` and `stride_m` (e.g. (0.7, 1.0, 1.4) to cover the UAV footprint
    over its altitude range). On a GPU, map crops are prefetched in a thread while the model runs.
    Tiles with less than `min_valid` on-map pixels are dropped.
    """
    from geoloc_ros.geo.orthomap import OrthoMap
    if not tile_m > 0 or not stride_m > 0:
        raise ValueError(f"tile_m and stride_m must be > 0, got {tile_m}, {stride_m}")
    if not scales or any(not s > 0 for s in scales):
        raise ValueError(f"scales must be positive numbers, got {list(scales)}")
    dev = pick_device(device)
    model = model.to(dev).eval()
    js, dp, tp = index_paths(out if out is not None else default_index_prefix(map_path))
    js.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with OrthoMap.open(map_path) as om:
        tiles = tile_grid(om, tile_m, stride_m, scales)
        dim = model.descriptor_dim
        tmp = dp.with_name(dp.name + ".tmp.npy")
        desc = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(tiles), dim))
        valid = np.zeros(len(tiles), dtype=bool)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(tiles), unit="tile", desc=f"index {Path(map_path).name}")
        # on a GPU, crop the next batch in a thread while the model runs; on a CPU the thread
        # only competes with the model for the same cores (measured slower), so crop inline
        with ThreadPoolExecutor(max_workers=1) as pool:
            it = _batches(om, tiles, model.eval_size, batch)
            prefetch = dev.type == "cuda"
            fut = pool.submit(next, it, None) if prefetch else None
            while True:
                item = fut.result() if prefetch else next(it, None)
                if item is None:
                    break
                if prefetch:
                    fut = pool.submit(next, it, None)
                start, imgs, vf = item
                x = to_tensor(imgs, model.eval_size).to(dev)
                with torch.autocast(dev.type, dtype=torch.float16, enabled=dev.type == "cuda"):
                    d = model.describe(x)
                desc[start:start + len(imgs)] = torch.nn.functional.normalize(d.float(), dim=-1).cpu().numpy()
                valid[start:start + len(imgs)] = vf >= min_valid
                if bar is not None:
                    bar.update(len(imgs))
        if bar is not None:
            bar.close()
        desc.flush()
        keep = np.flatnonzero(valid)
        final = np.lib.format.open_memmap(dp, mode="w+", dtype=np.float16, shape=(len(keep), dim))
        for i in range(0, len(keep), 65536):
            final[i:i + 65536] = desc[keep[i:i + 65536]]
        final.flush()
        del desc, final
        tmp.unlink()
        np.save(tp, tiles[keep])
        meta = {
            "format": INDEX_FORMAT, "map": str(Path(map_path).resolve()), "map_gsd_m": om.gsd_m,
            "map_bounds_latlon": list(om.bounds_latlon), "tile_m": tile_m, "stride_m": stride_m,
            "scales": list(scales), "min_valid": min_valid, "count": int(len(keep)), "dim": int(dim),
            "dropped_tiles": int(len(tiles) - len(keep)), "model": to_dict(model.cfg),
            "fingerprint": [round(float(v), 6) for v in model_fingerprint(model)],
            "build_seconds": round(time.perf_counter() - t0, 3),
        }
    js.write_text(json.dumps(meta, indent=1))
    return js


def rotations_of(image: np.ndarray, k: int) -> list[np.ndarray]:
    """K copies of a square-ish image rotated by 360/K degree steps (exact for 90-degree steps).

    Rotating the UAV image counter-clockwise by a turns a view whose up axis points to
    bearing b into one whose up axis points to b - a; corners are filled by reflection.
    """
    out = []
    h, w = image.shape[:2]
    for j in range(k):
        a = 360.0 * j / k
        if abs(a % 90) < 1e-9:
            out.append(np.ascontiguousarray(np.rot90(image, int(round(a / 90)) % 4)))
        else:
            m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), a, 1.0)
            out.append(cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101))
    return out


class MapIndex:
    """A built index, memory-mapped: `search(descriptors, k)` -> (tile ids, cosine scores)."""

    def __init__(self, meta: dict, desc: np.ndarray, tiles: np.ndarray, path: Path, cache_mb: float = 1024.0):
        self.meta, self.desc, self.tiles, self.path = meta, desc, tiles, path
        self.cache_mb = cache_mb
        self._f32: np.ndarray | None = None

    def _matrix(self) -> np.ndarray | None:
        """float32 copy of the descriptors, made on first search when it fits in `cache_mb`:
        a float16 memory map must be converted chunk by chunk on every search (~20x slower)."""
        if self._f32 is None and self.desc.size * 4 <= self.cache_mb * 2 ** 20:
            self._f32 = np.asarray(self.desc, dtype=np.float32)
        return self._f32

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True, cache_mb: float = 1024.0) -> "MapIndex":
        js, dp, tp = index_paths(path)
        meta = read_json(js, MapIndexError, f"no retrieval index at {js} (build one with geoloc-prepare-map --index)")
        if meta.get("format") != INDEX_FORMAT:
            raise MapIndexError(f"{js}: not a geoloc_ros retrieval index")
        for p in (dp, tp):
            if not p.is_file():
                raise MapIndexError(f"index file missing: {p}")
        desc = np.load(dp, mmap_mode="r" if mmap else None)
        tiles = np.load(tp)
        if desc.shape != (meta["count"], meta["dim"]) or tiles.shape != (meta["count"], 3):
            raise MapIndexError(f"{js}: descriptor/tile arrays do not match the meta (count {meta['count']})")
        return cls(meta, desc, tiles, js, cache_mb)

    def __len__(self) -> int:
        return int(self.desc.shape[0])

    @property
    def lat(self) -> np.ndarray:
        return self.tiles[:, 0]

    @property
    def lon(self) -> np.ndarray:
        return self.tiles[:, 1]

    @property
    def size_m(self) -> np.ndarray:
        return self.tiles[:, 2]

    def check_model(self, model: RetrievalModel, tol: float = 0.99) -> None:
        """Raise if `model` is not the one that built the index (probe-descriptor cosine < tol)."""
        fp = np.asarray(self.meta["fingerprint"], np.float32)
        mine = model_fingerprint(model)
        if mine.shape != fp.shape or float(mine @ fp) / (np.linalg.norm(mine) * np.linalg.norm(fp) + 1e-12) < tol:
            raise MapIndexError(f"{self.path}: built with a different retrieval model; rebuild the index")

    def scores(self, query: np.ndarray, rows: np.ndarray | None = None, chunk: int = 131072) -> np.ndarray:
        """Cosine of every tile (or `rows`) with each query: [R, D] -> [R, N] float32."""
        q = np.atleast_2d(np.asarray(query, np.float32))
        full = self._matrix()
        if full is not None:
            return q @ (full if rows is None else full[rows]).T
        n = len(self) if rows is None else len(rows)
        out = np.empty((q.shape[0], n), np.float32)
        for i in range(0, n, chunk):
            block = self.desc[i:i + chunk] if rows is None else self.desc[rows[i:i + chunk]]
            out[:, i:i + chunk] = q @ np.asarray(block, np.float32).T
        return out

    def search(self, query: np.ndarray, k: int = 5, reduce: str = "max", size_m: float | None = None,
               size_tol: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
        """Top-k tiles for query descriptor(s) [D] or [R, D].

        R rows are alternatives of one query (K rotations when the heading is unknown):
        `reduce='max'` scores a tile by its best row. `size_m` keeps only tiles whose side is
        within `size_tol` (relative) of the UAV footprint. Returns (tile ids [k], scores [k]).
        """
        rows = None
        if size_m is not None:
            rows = np.flatnonzero(np.abs(self.size_m / size_m - 1.0) <= size_tol)
            if len(rows) == 0:                       # no scale close enough: use the nearest one
                best = self.size_m[np.argmin(np.abs(np.log(self.size_m / size_m)))]
                rows = np.flatnonzero(self.size_m == best)
        s = self.scores(query, rows)
        if reduce == "max":
            s = s.max(0)
        elif reduce == "mean":
            s = s.mean(0)
        else:
            raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
        k = min(k, s.shape[0])
        top = np.argpartition(-s, k - 1)[:k] if k < s.shape[0] else np.arange(s.shape[0])
        top = top[np.argsort(-s[top], kind="stable")]
        ids = top if rows is None else rows[top]
        return ids, s[top]
