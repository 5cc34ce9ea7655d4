#!/usr/bin/env python3
"""Benchmark the simulator: world generation (default 2 km x 2 km at 0.3 m/px, both epochs,
written as JPEG COGs) and UAV-view rendering time per 640x480 frame.

    python scripts/bench_sim.py [--size-m 2000] [--gsd 0.3] [--frames 100] [--out /tmp/bench_sim]
                                [--montage docs/img/sim_montage.jpg]
"""
from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import cv2
import numpy as np

from geoloc_ros.data.camera import CameraIntrinsics, CameraPose, Photometric, render_view
from geoloc_ros.data.flight import Trajectory, TrajectoryConfig, YawConfig
from geoloc_ros.data.world import WorldConfig, generate_world, world_layout
from geoloc_ros.geo.frames import LocalENU
from geoloc_ros.geo.orthomap import OrthoMap


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-m", type=float, default=2000.0)
    ap.add_argument("--gsd", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--out", default="/tmp/bench_sim")
    ap.add_argument("--montage", default=None, help="also write a montage JPEG (map e1, map e2, UAV views)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = WorldConfig(seed=args.seed, size_m=args.size_m, gsd_m=args.gsd)
    print(f"cpu cores visible: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    lay = world_layout(cfg)
    t_layout = time.perf_counter() - t0
    paths = {}
    for e in (1, 2):
        t = time.perf_counter()
        paths[e] = generate_world(cfg, out / f"world_e{e}.tif", e, layout=lay, verbose=True)
        print(f"world {cfg.n_px}x{cfg.n_px} px epoch {e}: {time.perf_counter() - t:.1f} s (render + COG write)")
    print(f"layout: {t_layout:.2f} s; both epochs total: {time.perf_counter() - t0:.1f} s; "
          f"COG sizes {[round(p.stat().st_size / 2**20, 1) for p in paths.values()]} MiB")

    intr = CameraIntrinsics.from_fov(640, 480, 70.0)
    traj = Trajectory(TrajectoryConfig(kind="random", radius_m=min(550.0, args.size_m * 0.3), speed_mps=12.0),
                      YawConfig())
    ts = np.linspace(0, traj.one_pass_s, args.frames, endpoint=False)
    tr = traj.sample(ts)
    with OrthoMap.open(paths[2]) as om:
        enu = LocalENU(*om.center_latlon)
        lat, lon, _ = enu.to_geodetic(tr.east, tr.north, 0.0)
        poses = [CameraPose(float(a), float(b), 120.0, float(y), float(p), float(r))
                 for a, b, y, p, r in zip(lat, lon, tr.yaw, tr.pitch, tr.roll)]
        render_view(om, poses[0], intr)  # warm-up (GDAL cache, overviews)
        views = []
        for label, photo in (("clean", None), ("photometric", Photometric.random(np.random.default_rng(0), 0.7))):
            rng = np.random.default_rng(1)
            t = time.perf_counter()
            for i, pose in enumerate(poses):
                img = render_view(om, pose, intr, photo, rng)
                if label == "photometric" and i % max(1, len(poses) // 4) == 0:
                    views.append(img)
            dt = (time.perf_counter() - t) / len(poses)
            print(f"render 640x480 ({label}): {1000 * dt:.1f} ms/frame ({1 / dt:.0f} fps), {len(poses)} frames")
    if args.montage:
        write_montage(cfg, lay, paths, intr, Path(args.montage))
    return 0


def write_montage(cfg, lay, paths, intr, path: Path) -> None:
    """Map epoch 1 | map epoch 2 (the same 600 m square at a town edge) over four UAV views
    (epoch 2, random camera looks) taken inside that square; a small JPEG."""
    tx, ty = (lay.towns[0][0], lay.towns[0][1]) if lay.towns else (cfg.size_m / 2, cfg.size_m / 2)
    enu = LocalENU(cfg.origin_lat, cfg.origin_lon)
    e0, n0 = tx - cfg.size_m / 2 + 0.25 * lay.towns[0][2] if lay.towns else 0.0, cfg.size_m / 2 - ty
    lat0, lon0, _ = enu.to_geodetic(e0, n0, 0.0)
    rng = np.random.default_rng(3)
    tiles, views = [], []
    with OrthoMap.open(paths[1]) as m1, OrthoMap.open(paths[2]) as m2:
        for m in (m1, m2):
            tiles.append(m.crop((lat0, lon0), 600.0, 480).image)
        for k, (de, dn) in enumerate(((-180, 150), (150, 170), (-150, -160), (170, -140))):
            la, lo, _ = enu.to_geodetic(e0 + de, n0 + dn, 0.0)
            pose = CameraPose(float(la), float(lo), 110.0, yaw=float(rng.uniform(-math.pi, math.pi)),
                              pitch=float(rng.normal(0, 0.04)), roll=float(rng.normal(0, 0.04)))
            views.append(render_view(m2, pose, intr, Photometric.random(rng, 0.6), rng))
    top = np.hstack(tiles)
    bottom = np.hstack([cv2.resize(v, (240, 180), interpolation=cv2.INTER_AREA) for v in views])
    mont = np.vstack([top, bottom])
    for x, y, text in ((8, 22, "map, epoch 1"), (488, 22, "epoch 2 (a year later)"), (8, 500, "UAV views (epoch 2)")):
        cv2.putText(mont, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(mont, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 82])
    print(f"montage: {path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    raise SystemExit(main())
