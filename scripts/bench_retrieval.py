#!/usr/bin/env python3
"""Benchmark of the retrieval stage: index build throughput and query latency (prints figures).

    .venv/bin/python scripts/bench_retrieval.py                       # tiny + full MEAN, synthetic map
    .venv/bin/python scripts/bench_retrieval.py --config config/retrieval_mean.yaml --map map.tif --tiles 200

Figures: map crops/s alone, model tiles/s alone, end-to-end build tiles/s (crops prefetched in a
thread while the model runs), query latency (descriptor of one frame, with 8 rotations, search
over the built index) and search latency over a large synthetic index (N tiles x D, float16
memory-mapped) so the O(N) part can be extrapolated to a map of many km^2.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from affine import Affine

from geoloc_ros.config import read_yaml
from geoloc_ros.data.tensors import to_tensor
from geoloc_ros.geo.cog import write_cog
from geoloc_ros.geo.orthomap import OrthoMap
from geoloc_ros.model.device import pick_device
from geoloc_ros.retrieval import MapIndex, build_index, build_model
from geoloc_ros.retrieval.index import index_paths, tile_grid
from geoloc_ros.retrieval.relocalizer import RetrievalRelocalizer

ROOT = Path(__file__).resolve().parents[1]


def synthetic_map(path: Path, size_px: int = 2000, gsd: float = 0.5) -> Path:
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 255, (size_px // 16, size_px // 16, 3)).astype(np.uint8), (size_px, size_px),
                     interpolation=cv2.INTER_CUBIC)
    for _ in range(size_px // 4):
        x, y = (int(v) for v in rng.integers(0, size_px - 40, 2))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(4, 40)), y + int(rng.integers(4, 40))),
                      tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    return write_cog(path, img, Affine(gsd, 0, 500000.0, 0, -gsd, 5300000.0), "EPSG:32632", compress="JPEG")


def timeit(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def memory_index(desc: np.ndarray, tiles: np.ndarray, stride_m: float) -> MapIndex:
    """An in-memory MapIndex (for latency figures without building one from the map)."""
    meta = {"count": len(desc), "dim": desc.shape[1], "stride_m": stride_m, "fingerprint": []}
    return MapIndex(meta, desc.astype(np.float16), tiles, Path("<memory>"))


def bench_model(name: str, model_cfg: dict, map_path: Path, tile_m: float, stride_m: float, max_tiles: int,
                batch: int, device: torch.device, work: Path, e2e_budget_s: float) -> None:
    model = build_model(model_cfg).to(device).eval()
    s = model.eval_size
    print(f"\n== {name}: head {model.cfg.head}, backbone {model.cfg.backbone.name}, {s} px, "
          f"descriptor {model.descriptor_dim}-d, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params")
    with OrthoMap.open(map_path) as om:
        grid = tile_grid(om, tile_m, stride_m)
        tiles = grid[:max_tiles]
        t = time.perf_counter()
        crops = [om.crop((a, b), c, s).image for a, b, c in tiles]
        crop_rate = len(tiles) / (time.perf_counter() - t)
    x = to_tensor(crops[:batch], s).to(device)
    model.describe(x)                                            # warm-up
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    reps = max(1, min(3, max_tiles // batch))
    tm = timeit(lambda: (model.describe(x), sync()), reps)
    model_rate = batch / statistics.median(tm)
    line = f"index build: crops {crop_rate:.1f} tiles/s | model {model_rate:.2f} tiles/s (batch {batch})"
    est = len(grid) / min(model_rate, crop_rate)
    if est <= e2e_budget_s:
        js = build_index(map_path, model, tile_m, stride_m, (1.0,), work / f"idx_{name}", batch, device, progress=False)
        import json
        meta = json.loads(js.read_text())
        line += (f" | end-to-end {meta['count'] / meta['build_seconds']:.2f} tiles/s ({meta['count']} tiles of "
                 f"{tile_m:g} m, stride {stride_m:g} m, {meta['build_seconds']:.1f} s)")
        index = MapIndex.load(js)
    else:
        line += f" | end-to-end skipped (~{est:.0f} s for {len(grid)} tiles > --e2e-budget)"
        rng = np.random.default_rng(0)
        d = rng.standard_normal((len(grid), model.descriptor_dim)).astype(np.float32)
        index = memory_index(d / np.linalg.norm(d, axis=1, keepdims=True), grid, stride_m)
    print(line)
    reloc = RetrievalRelocalizer(index, model, device=device, check_model=False)
    frame = crops[len(crops) // 2]
    reloc.candidates(frame, 5)
    for k, label in ((1, "heading known"), (8, "heading unknown, 8 rotations")):
        c = timeit(lambda: reloc.candidates(frame, 5, rotations=k), 3)
        print(f"query ({label}): candidates() {1e3 * statistics.median(c):.1f} ms "
              f"(descriptor + search over {len(index)} tiles, min {1e3 * min(c):.1f} ms)")


def bench_search(n: int, dim: int, work: Path) -> None:
    rng = np.random.default_rng(0)
    js, dp, tp = index_paths(work / f"big_{n}")
    d = np.lib.format.open_memmap(dp, mode="w+", dtype=np.float16, shape=(n, dim))
    for i in range(0, n, 65536):
        v = rng.standard_normal((min(65536, n - i), dim)).astype(np.float32)
        d[i:i + len(v)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    d.flush()
    del d
    np.save(tp, np.zeros((n, 3)))
    import json
    js.write_text(json.dumps({"format": "geoloc_ros.retrieval_index/1", "count": n, "dim": dim, "stride_m": 100.0,
                              "fingerprint": []}))
    ix = MapIndex.load(js)
    q = rng.standard_normal((8, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    ix.search(q[:1], 5)
    t1 = statistics.median(timeit(lambda: ix.search(q[:1], 5), 3))
    t8 = statistics.median(timeit(lambda: ix.search(q, 5), 3))
    area = n * 100.0 * 100.0 / 1e6     # 200 m tiles at 100 m stride: one tile per hectare
    print(f"search over {n} x {dim} float16 (memory-mapped, ~{area:.0f} km^2 at 100 m stride): "
          f"{1e3 * t1:.1f} ms (1 query), {1e3 * t8:.1f} ms (8 rotations)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--config", action="append", help="retrieval YAML(s) (model: section); default tiny + MEAN")
    ap.add_argument("--map", help="GeoTIFF/COG (default: a synthetic 1 km map at 0.5 m/px)")
    ap.add_argument("--tile-m", type=float, default=200.0)
    ap.add_argument("--stride-m", type=float, default=100.0)
    ap.add_argument("--tiles", type=int, default=32, help="tiles for the crop/model rates")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--search-n", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--e2e-budget", type=float, default=60.0, help="skip an end-to-end build estimated longer (s)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = pick_device(a.device)
    print(f"device {dev}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    configs = a.config or [str(ROOT / "config/retrieval_tiny.yaml"), str(ROOT / "config/retrieval_mean.yaml")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        map_path = Path(a.map) if a.map else synthetic_map(work / "map.tif")
        with OrthoMap.open(map_path) as om:
            print(f"map {map_path.name}: {om.width}x{om.height} px at {om.gsd_m:.2f} m/px")
        for c in configs:
            bench_model(Path(c).stem, read_yaml(c)["model"], map_path, a.tile_m, a.stride_m, a.tiles, a.batch, dev, work,
                        a.e2e_budget)
        for n in a.search_n:
            bench_search(n, 768, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
