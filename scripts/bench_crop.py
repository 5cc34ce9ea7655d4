#!/usr/bin/env python3
"""Benchmark OrthoMap.crop: latency and memory on a 30,000 x 30,000 px COG vs a 3,000 px one.

Generates both maps on the fly (a temporary tiled GeoTIFF written block by block from a cheap
procedural texture, then converted by GDAL's COG driver with overviews; the 30k map is
~2.7 GB raw but never in memory), then measures each map in a fresh subprocess of a small
parent (Linux keeps ru_maxrss across fork/exec), so the peak RSS belongs to the crops:

  * random:   384 px crops of 400 m (1.04 m/px) at random positions and rotations
              (a cold read almost every time: the worst case),
  * coarse:   384 px crops of 3 km (7.8 m/px, read from an overview),
  * tracking: 384 px crops of 400 m moving 8 m per step with slowly changing heading
              (what the localizer does while tracking).

    .venv/bin/python scripts/bench_crop.py            # ~3 min on 2 cores, ~1 GB of temp disk
    .venv/bin/python scripts/bench_crop.py --size 30000 --crops 2000 --keep /tmp/bench_maps
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CENTER = (47.3769, 8.5417)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------------------------
def _textures(rng: np.random.Generator, n: int = 8, size: int = 512) -> list[np.ndarray]:
    """A few photo-like 512 px RGB textures (multi-scale noise, 'fields', 'roads', 'roofs')."""
    import cv2

    out = []
    for _ in range(n):
        base = np.zeros((size, size, 3), np.float32)
        for sigma, amp in ((40, 60), (8, 30), (1.5, 18)):
            noise = rng.standard_normal((size, size, 3)).astype(np.float32)
            base += amp * cv2.GaussianBlur(noise, (0, 0), sigma) * (sigma ** 0.5)
        base += np.array(rng.uniform(70, 150, 3), np.float32)
        img = np.clip(base, 0, 255).astype(np.uint8)
        for _ in range(12):  # roofs
            x, y = rng.integers(0, size - 40, 2)
            w, h = rng.integers(8, 40, 2)
            cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), tuple(int(v) for v in rng.integers(60, 230, 3)), -1)
        for _ in range(2):  # roads
            p = rng.integers(0, size, 4)
            cv2.line(img, (int(p[0]), 0), (int(p[1]), size - 1), (150, 150, 150), int(rng.integers(3, 9)))
        out.append(img)
    return out


def make_map(path: Path, size: int, gsd_m: float = 1.0, seed: int = 0, block: int = 256,
             compress: str = "ZSTD") -> Path:
    """Write a size x size px COG (UTM 32N, overviews) block by block."""
    import rasterio
    from rasterio.shutil import copy as rio_copy
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    from tqdm import tqdm

    from geoloc_ros.geo.cog import cog_options
    from geoloc_ros.geo.frames import wgs84_to_utm

    rng = np.random.default_rng(seed)
    tex = _textures(rng)
    e0, n0, crs = wgs84_to_utm(*CENTER)
    transform = from_origin(e0 - size / 2 * gsd_m, n0 + size / 2 * gsd_m, gsd_m, gsd_m)
    tmp = path.with_name(path.stem + ".base.tif")
    b = 512  # generation granularity (texture size); the COG's own tiles are `block`
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs=crs.to_wkt(),
                   transform=transform, tiled=True, blockxsize=b, blockysize=b, compress="JPEG",
                   photometric="YCBCR", jpeg_quality=85, BIGTIFF="YES", NUM_THREADS="ALL_CPUS")
    blocks = [(r, c) for r in range(0, size, b) for c in range(0, size, b)]
    with rasterio.Env(GDAL_CACHEMAX=256 * 1024 * 1024), rasterio.open(tmp, "w", **profile) as dst:
        for r, c in tqdm(blocks, desc=f"{size} px base", unit="block", leave=False, mininterval=2):
            t = tex[(r * 7919 + c * 104729) // b % len(tex)]
            img = np.roll(t, (r // b * 37 % b, c // b * 61 % b), axis=(0, 1))
            tint = np.array([(r * 3 // b) % 40, (c * 5 // b) % 40, ((r + c) // b) % 30], np.int16) - 20
            img = np.clip(img.astype(np.int16) + tint, 0, 255).astype(np.uint8)
            h, w = min(b, size - r), min(b, size - c)
            dst.write(np.moveaxis(img[:h, :w], -1, 0), window=Window(c, r, w, h))
    t0 = time.perf_counter()
    print(f"  converting {size} px map to COG (GDAL COG driver, overviews) ...", flush=True)
    with rasterio.Env(GDAL_CACHEMAX=512 * 1024 * 1024):
        rio_copy(tmp, path, driver="COG", BLOCKSIZE=block, OVERVIEW_RESAMPLING="AVERAGE", BIGTIFF="YES",
                 NUM_THREADS="ALL_CPUS", **cog_options(compress, quality=85))
    tmp.unlink()
    print(f"  {path.name}: {path.stat().st_size / 1e6:.0f} MB on disk, COG step {time.perf_counter() - t0:.0f} s",
          flush=True)
    return path


# ----------------------------------------------------------------------------------------
def measure(path: Path, crops: int, threads: int, seed: int = 1) -> dict:
    """Runs in a fresh process: time crops and watch memory."""
    from geoloc_ros.geo import OrthoMap
    from geoloc_ros.geo.frames import LocalENU

    rss0 = rss_mb()
    m = OrthoMap.open(path, num_threads=threads)
    enu = LocalENU(*m.center_latlon)
    half = m.width * m.gsd_m / 2.0
    rng = np.random.default_rng(seed)

    cpu: list[float] = []

    def run(kind: str, n: int) -> list[float]:
        times = []
        cpu.clear()
        if kind == "tracking":
            lim = half / 2.0
            e, nn, hd = rng.uniform(-lim, lim, 2).tolist() + [rng.uniform(0, 360)]
        for _ in range(n):
            if kind == "tracking":
                hd += rng.normal(0, 2.0)
                e += 8.0 * math.sin(math.radians(hd))
                nn += 8.0 * math.cos(math.radians(hd))
                if abs(e) > half - 400 or abs(nn) > half - 400:
                    hd += 180.0
                    e, nn = np.clip([e, nn], -(half - 400), half - 400).tolist()
                size, rot = 400.0, hd
            else:
                size = 400.0 if kind == "random" else 3000.0
                lim = max(half - size / 2.0, 1.0)  # the whole crop on the map where it fits
                e, nn = rng.uniform(-lim, lim, 2)
                rot = rng.uniform(0, 360)
            lat, lon, _ = enu.to_geodetic(e, nn, 0.0)
            t0, c0 = time.perf_counter(), time.process_time()
            crop = m.crop((lat, lon), size, 384, rotation_deg=rot)
            times.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
            assert crop.image.shape == (384, 384, 3)
        return times

    run("random", 5)
    rss_few = rss_mb()
    res = {"map_px": m.width, "threads": threads, "rss_start_mb": rss0}
    for kind in ("random", "coarse", "tracking"):
        t = np.array(run(kind, crops))
        res[kind] = {"median_ms": float(np.median(t)), "p95_ms": float(np.percentile(t, 95)), "n": len(t),
                     "cpu_median_ms": float(np.median(cpu)),
                     "rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()}
    res["coarse_source_level"] = m.crop(m.center_latlon, 3000.0, 384).source_level
    res["rss_after_5_mb"] = rss_few
    res["rss_after_all_mb"] = rss_mb()
    res["peak_rss_mb"] = peak_rss_mb()
    m.close()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=30000, help="big map side in px (default 30000)")
    ap.add_argument("--small", type=int, default=3000, help="small map side in px (default 3000)")
    ap.add_argument("--crops", type=int, default=1000, help="crops per pattern (default 1000)")
    ap.add_argument("--threads", type=int, default=2, help="GDAL decode threads per OrthoMap (default 2)")
    ap.add_argument("--block", type=int, default=256, help="COG tile size in px (default 256, as geoloc-prepare-map)")
    ap.add_argument("--compress", default="ZSTD",
                    help="COG compression (default ZSTD + predictor, as geoloc-prepare-map; JPEG is q85)")
    ap.add_argument("--keep", type=Path, default=None, help="keep/reuse the maps in this folder")
    ap.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--generate", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.generate:
        make_map(args.generate, args.size, block=args.block, compress=args.compress)
        return 0
    if args.measure:
        print(json.dumps(measure(args.measure, args.crops, args.threads)))
        return 0

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench_crop_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        results = []
        for size in (args.small, args.size):
            path = workdir / f"map_{size}_b{args.block}_{args.compress}.tif"
            if not path.exists():  # generated in a child too, so this process stays small
                t0 = time.perf_counter()
                subprocess.run([sys.executable, __file__, "--generate", str(path), "--size", str(size),
                                "--block", str(args.block), "--compress", args.compress], check=True)
                print(f"  generated {size} x {size} px in {time.perf_counter() - t0:.0f} s", flush=True)
            out = subprocess.run([sys.executable, __file__, "--measure", str(path), "--crops", str(args.crops),
                                  "--threads", str(args.threads)], capture_output=True, text=True, check=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"\nOrthoMap.crop, 384 px output, {args.crops} crops per row, {os.cpu_count()} cores ({cpu}), "
          f"{args.threads} GDAL decode threads, {args.block} px COG tiles, {args.compress}")
    load = os.getloadavg()[0]
    print(f"(1-min load average at the end: {load:.1f}; cpu ms = process CPU time per crop, all threads)")
    print(f"{'map':>13} {'pattern':>9} {'median ms':>10} {'p95 ms':>8} {'cpu ms':>7}")
    for r in results:
        for kind in ("random", "coarse", "tracking"):
            k = r[kind]
            print(f"{r['map_px']:>6} x {r['map_px']:<5} {kind:>9} {k['median_ms']:>10.2f} {k['p95_ms']:>8.2f} "
                  f"{k['cpu_median_ms']:>7.2f}")
    print(f"\n{'map':>13} {'RSS start':>10} {'after 5':>8} {'after all':>10} {'peak':>8}   (MB, fresh process each)")
    for r in results:
        print(f"{r['map_px']:>6} x {r['map_px']:<5} {r['rss_start_mb']:>10.0f} {r['rss_after_5_mb']:>8.0f} "
              f"{r['rss_after_all_mb']:>10.0f} {r['peak_rss_mb']:>8.0f}")
    print(f"coarse crops (3 km in 384 px) read overview level {results[-1]['coarse_source_level']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
