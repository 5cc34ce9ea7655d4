#!/usr/bin/env python3
"""Window sweep vs retrieval relocalization on a simulated flight with forced losses (issue 8).

    # once: a tiny retrieval model trained on pairs from ANOTHER procedural world (~15 min CPU)
    .venv/bin/python scripts/compare_relocalization.py --train-retrieval --train-only
    # the comparison (builds the map index, flies the scenario twice, prints the table)
    .venv/bin/python scripts/compare_relocalization.py

The scenario (config/scenarios/reloc_4km2.yaml: a 2 km x 2 km world, random path) is flown
in memory (same renderer and odometry model as geoloc-simulate); every `forced_losses.every_s`
seconds the localizer is kidnapped: `set_initial_fix(truth + offset_m in a random direction,
sigma = offset_m / 2, relocalize=True)`, i.e. it keeps its heading but only knows its position
to within hundreds of metres. The same frames and kidnaps are replayed with
`relocalization: sweep` and `relocalization: retrieval`. Per method: time to relocalize
(seconds of flight and of compute), success rate (first relocalization within `timeout_s` and
within `--ok-m` of the truth), heatmap windows evaluated, wrong relocalizations (any switch to
TRACKING farther than `--ok-m` from the truth). An episode that times out is re-seeded from
the truth (as if GPS came back) so that every kidnap starts from the same situation.
Also printed: index build throughput (tiles/s) and query latency of the retrieval stage.
Everything is written under --work (git-ignored runs/reloc by default), never into the repo.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- inputs
def heatmap_weights(arg: str | None) -> Path:
    """The AMCF-Net weights: --weights, else the packaged demo weights, else the smoke run."""
    if arg:
        return Path(arg)
    packaged = sorted((ROOT / "geoloc_ros" / "weights").glob("*.safetensors"))
    if packaged:
        return packaged[0].with_suffix("")
    return ROOT / "runs" / "demo_train" / "smoke" / "best"


def load_scenario(path: Path):
    """ScenarioConfig + the `forced_losses` section (which geoloc-simulate does not know)."""
    from geoloc_ros.config import load_dataclass, read_yaml
    from geoloc_ros.data.flight import ScenarioConfig

    raw = dict(read_yaml(path))
    losses = dict(first_s=20.0, every_s=45.0, offset_m=500.0, timeout_s=35.0, seed=0)
    losses.update(raw.pop("forced_losses", {}) or {})
    return load_dataclass(ScenarioConfig, raw, where=str(path)), losses


def nominal_footprint_m(sc) -> float:
    from geoloc_ros.data.camera import CameraIntrinsics
    from geoloc_ros.localize.search import footprint_side_m

    i = CameraIntrinsics.from_fov(sc.camera.width, sc.camera.height, sc.camera.hfov_deg)
    return footprint_side_m(i.width, i.height, i.fx, i.fy, i.cx, i.cy, sc.trajectory.altitude_m)


def train_retrieval(work: Path, world_seed: int, tile_m: float, epochs: int, locations: int) -> Path:
    """geoloc-train-retrieval with config/retrieval_tiny.yaml, on pairs cut from another world
    (seed `world_seed`), tiles of the UAV footprint; returns the weights path (no extension)."""
    import yaml

    from geoloc_ros.config import read_yaml
    from geoloc_ros.tools import train_retrieval

    cfg = dict(read_yaml(ROOT / "config" / "retrieval_tiny.yaml"))
    out = work / f"retrieval_tiny_world{world_seed}"
    cfg["data"] = {**cfg["data"], "world_seed": world_seed, "world_size_m": 2000.0, "world_gsd_m": 1.0,
                   "ortho": {**cfg["data"].get("ortho", {}), "tile_m": round(tile_m, 1), "locations": locations}}
    cfg.update(epochs=epochs, batch_size=32, out=str(out))
    path = work / f"train_retrieval_world{world_seed}.yaml"
    path.write_text("# config/retrieval_tiny.yaml with the data section of this comparison\n"
                    + yaml.safe_dump(cfg, sort_keys=False))
    t = time.perf_counter()
    rc = train_retrieval.main(["--config", str(path), "--quiet"])
    if rc != 0:
        raise SystemExit(f"error: retrieval training failed ({rc})")
    print(f"trained retrieval model in {time.perf_counter() - t:.0f} s -> {out / 'model'}")
    return out / "model"


# ----------------------------------------------------------------------------- flight
@dataclass
class Flight:
    frames: list
    truth_ll: np.ndarray  # (N, 2) lat, lon
    truth_yaw: np.ndarray  # (N,) world ENU yaw
    stamps: np.ndarray
    render_s: float = 0.0


def fly(sc, map_path: Path, cam_path: Path) -> Flight:
    """Render the camera frames and the drifting odometry of scenario `sc` (in memory)."""
    from geoloc_ros.data.camera import CameraIntrinsics, CameraPose, render_view
    from geoloc_ros.data.flight import Trajectory, flight_duration, simulate_odometry
    from geoloc_ros.geo.frames import LocalENU
    from geoloc_ros.geo.orthomap import OrthoMap
    from geoloc_ros.localize import Frame
    from geoloc_ros.tools.simulate import _flight_photometric

    rng = np.random.default_rng([int(sc.seed), 5])
    with OrthoMap.open(map_path) as m:
        enu = LocalENU(*m.center_latlon, sc.ground_alt_m)
    traj = Trajectory(sc.trajectory, sc.yaw, sc.camera, seed=sc.seed)
    dur = flight_duration(sc, traj)
    t_cam = np.arange(0.0, dur, 1.0 / sc.camera.rate_hz)
    truth = traj.sample(t_cam)
    # odometry sampled at the camera times (the node/replay interpolate it there too)
    odom = simulate_odometry(truth, sc.odometry, np.random.default_rng([int(sc.seed), 6]))
    intr = CameraIntrinsics.from_fov(sc.camera.width, sc.camera.height, sc.camera.hfov_deg)
    photo = _flight_photometric(sc, rng)
    frame_rng = np.random.default_rng([int(sc.seed), 8])
    lat, lon, _ = enu.to_geodetic(truth.east, truth.north, np.zeros(len(t_cam)))
    frames = []
    t0 = time.perf_counter()
    with OrthoMap.open(cam_path) as cam:
        for i, t in enumerate(t_cam):
            pose = CameraPose(float(lat[i]), float(lon[i]), float(truth.agl[i]), float(truth.yaw[i]),
                              float(truth.pitch[i]), float(truth.roll[i]))
            img = render_view(cam, pose, intr, photo, frame_rng)
            if sc.camera.frame_noise > 0:
                img = np.clip(img + frame_rng.standard_normal(img.shape, dtype=np.float32) * sc.camera.frame_noise,
                              0, 255).astype(np.uint8)
            frames.append(Frame(image=img, stamp=float(sc.start_time_s + t), odom_xyz=odom.xyz[i].copy(),
                                odom_yaw=float(odom.yaw[i]), altitude_agl=float(odom.xyz[i, 2]), intrinsics=intr,
                                roll=float(truth.roll[i]), pitch=float(truth.pitch[i])))
    return Flight(frames, np.stack([lat, lon], 1), np.asarray(truth.yaw), t_cam + sc.start_time_s,
                  time.perf_counter() - t0)


def loss_schedule(flight: Flight, losses: dict, omap) -> list[tuple[int, float, float]]:
    """[(frame index, believed lat, believed lon)] of the kidnaps; believed positions on the map."""
    from geoloc_ros.geo.frames import LocalENU

    rng = np.random.default_rng(int(losses["seed"]))
    enu = LocalENU(*omap.center_latlon)
    rate = 1.0 / float(np.median(np.diff(flight.stamps)))
    out = []
    t = float(losses["first_s"])
    while t < flight.stamps[-1] - flight.stamps[0] - 5.0:
        i = int(round(t * rate))
        e, n, _ = enu.to_enu(*flight.truth_ll[i], 0.0)
        for _ in range(100):
            a = rng.uniform(0, 2 * math.pi)
            be, bn = e + losses["offset_m"] * math.cos(a), n + losses["offset_m"] * math.sin(a)
            blat, blon, _ = enu.to_geodetic(be, bn, 0.0)
            if omap.contains(blat, blon, margin_m=200.0):
                break
        out.append((i, float(blat), float(blon)))
        t += float(losses["every_s"])
    return out


# ----------------------------------------------------------------------------- one run
@dataclass
class Episode:
    start: int
    reloc_frame: int | None = None  # first correct relocalization
    flight_s: float = math.nan
    compute_s: float = math.nan
    windows: int = 0
    retrieval_windows: int = 0
    sweep_windows: int = 0
    wrong: int = 0  # switches to TRACKING far from the truth
    error_m: float = math.nan
    events: list = field(default_factory=list)


def run_method(method: str, flight: Flight, kidnaps, omap, net, cfg_kw: dict, losses: dict, ok_m: float,
               progress: bool = True) -> tuple[list[Episode], dict]:
    from geoloc_ros.geo.distance import haversine_m
    from geoloc_ros.localize import Localizer, LocalizerConfig, LocalizerState

    from geoloc_ros.retrieval.relocalizer import place_recognizer_from_config

    cfg = LocalizerConfig(**{**cfg_kw, "relocalization": method})
    recognizer, why = place_recognizer_from_config(cfg, omap.path)
    if method == "retrieval" and recognizer is None:
        raise SystemExit(f"error: retrieval relocalizer unavailable: {why}")
    loc = Localizer(cfg, omap, net, device="cpu", relocalization=recognizer)
    rate = 1.0 / float(np.median(np.diff(flight.stamps)))
    timeout_frames = int(round(float(losses["timeout_s"]) * rate))
    starts = {k[0]: k for k in kidnaps}
    f0 = flight.frames[0]
    loc.set_initial_fix(*flight.truth_ll[0], 500.0, 5.0, f0.stamp, yaw=float(flight.truth_yaw[0]))
    episodes: list[Episode] = []
    ep: Episode | None = None
    prev_state, last_yaw = None, float(flight.truth_yaw[0])
    counts0: dict = {}
    compute = 0.0
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(flight.frames), unit="frame", desc=method, file=sys.stderr)
    for i, fr in enumerate(flight.frames):
        if i in starts:
            _, blat, blon = starts[i]
            loc.set_initial_fix(blat, blon, 500.0, 0.5 * float(losses["offset_m"]), fr.stamp, yaw=last_yaw,
                                relocalize=True)
            ep = Episode(i)
            episodes.append(ep)
            counts0, compute = dict(loc.reloc_counts), 0.0
        est = loc.step(fr)
        last_yaw = est.yaw
        if bar is not None:
            bar.update(1)
        if ep is None or ep.reloc_frame is not None:
            prev_state = est.state
            continue
        compute += est.timings_ms["total"] / 1e3
        if est.state == LocalizerState.TRACKING and prev_state != LocalizerState.TRACKING:
            err = float(haversine_m(est.lat, est.lon, *flight.truth_ll[i]))
            ep.events.append(round(err, 1))
            if err <= ok_m:
                ep.reloc_frame, ep.error_m = i, err
                ep.flight_s = float(flight.stamps[i] - flight.stamps[ep.start])
                ep.compute_s = compute
            else:
                ep.wrong += 1
        if ep.reloc_frame is not None or i - ep.start >= timeout_frames:
            c = loc.reloc_counts
            ep.windows = c["windows"] - counts0.get("windows", 0)
            ep.retrieval_windows = c["retrieval_windows"] - counts0.get("retrieval_windows", 0)
            ep.sweep_windows = c["sweep_windows"] - counts0.get("sweep_windows", 0)
            if ep.reloc_frame is None:  # timed out: GPS comes back, so every kidnap starts alike
                loc.set_initial_fix(*flight.truth_ll[i], 500.0, 5.0, fr.stamp, yaw=float(flight.truth_yaw[i]))
                ep.reloc_frame = -1
        prev_state = est.state
    if bar is not None:
        bar.close()
    c = loc.reloc_counts
    for e in episodes:
        if e.reloc_frame == -1:
            e.reloc_frame = None
        elif e.reloc_frame is None:  # still relocalizing when the flight ended
            e.windows = c["windows"] - counts0.get("windows", 0)
            e.retrieval_windows = c["retrieval_windows"] - counts0.get("retrieval_windows", 0)
            e.sweep_windows = c["sweep_windows"] - counts0.get("sweep_windows", 0)
    return episodes, dict(loc.reloc_counts)


# ----------------------------------------------------------------------------- retrieval figures
def index_and_latency(map_path: Path, model_path: Path, tile_m: float, stride_m: float, work: Path,
                      flight: Flight, top_k: int) -> dict:
    from geoloc_ros.retrieval import RetrievalRelocalizer, build_index, load_model
    from geoloc_ros.localize.prepare import prepare_uav

    model = load_model(model_path)
    js = build_index(map_path, model, tile_m=tile_m, stride_m=stride_m, scales=(1.0,),
                     out=work / (map_path.stem + ".retrieval"), batch=64, device="cpu", progress=False)
    meta = json.loads(js.read_text())
    reloc = RetrievalRelocalizer(js, model, device="cpu")
    lat_ms, rot_ms = [], []
    for fr, yaw in zip(flight.frames[::25][:20], flight.truth_yaw[::25][:20]):
        q = prepare_uav(fr.image, fr.intrinsics, fr.altitude_agl, float(yaw), reloc.img_size)
        t = time.perf_counter()
        reloc.candidates(q.image, k=top_k, footprint_m=q.footprint_m)
        lat_ms.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        reloc.candidates(q.image, k=top_k, footprint_m=q.footprint_m, rotations=8)
        rot_ms.append((time.perf_counter() - t) * 1e3)
    return {"index": js, "tiles": meta["count"], "build_s": meta["build_seconds"],
            "tiles_per_s": meta["count"] / max(meta["build_seconds"], 1e-9),
            "query_ms": statistics.median(lat_ms), "query8_ms": statistics.median(rot_ms)}


def summarize(eps: list[Episode]) -> dict:
    ok = [e for e in eps if e.reloc_frame is not None]
    med = lambda v: statistics.median(v) if v else math.nan  # noqa: E731
    return {"episodes": len(eps), "success": len(ok), "flight_s": med([e.flight_s for e in ok]),
            "flight_s_max": max([e.flight_s for e in ok], default=math.nan),
            "compute_s": med([e.compute_s for e in ok]), "windows": med([e.windows for e in eps]),
            "windows_ok": med([e.windows for e in ok]), "wrong": sum(e.wrong for e in eps),
            "error_m": med([e.error_m for e in ok])}


def table(rows: dict[str, dict]) -> str:
    names = list(rows)
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def line(label, fmt):
        lines.append(f"| {label} | " + " | ".join(fmt(rows[n]) for n in names) + " |")

    line("success (relocalized within timeout, < ok_m)", lambda r: f"{r['success']}/{r['episodes']}")
    line("time to relocalize, flight s (median / max)", lambda r: f"{r['flight_s']:.1f} / {r['flight_s_max']:.1f}")
    line("time to relocalize, compute s (median)", lambda r: f"{r['compute_s']:.1f}")
    line("heatmap windows per episode (median, all / successful)",
         lambda r: f"{r['windows']:.0f} / {r['windows_ok']:.0f}")
    line("wrong relocalizations (TRACKING far from truth)", lambda r: f"{r['wrong']}")
    line("error at relocalization, m (median)", lambda r: f"{r['error_m']:.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default=str(ROOT / "config" / "scenarios" / "reloc_4km2.yaml"))
    ap.add_argument("--work", default=str(ROOT / "runs" / "reloc"), help="output folder (outside git)")
    ap.add_argument("--weights", default=None, help="AMCF-Net weights (default: packaged, else the smoke run)")
    ap.add_argument("--retrieval-model", default=None,
                    help="retrieval weights (default: <work>/retrieval_tiny_world<seed>/model)")
    ap.add_argument("--train-retrieval", action="store_true", help="train the tiny retrieval model first")
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--train-world-seed", type=int, default=101, help="procedural world of the training pairs")
    ap.add_argument("--train-epochs", type=int, default=9)
    ap.add_argument("--train-locations", type=int, default=1024)
    ap.add_argument("--stride-frac", type=float, default=0.5, help="index tile stride / tile side")
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--reloc-batch", type=int, default=16, help="sweep windows per frame (LocalizerConfig)")
    ap.add_argument("--ok-m", type=float, default=25.0, help="a relocalization this close to the truth is correct")
    ap.add_argument("--methods", default="sweep,retrieval")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--duration", type=float, default=None, help="fly only this many seconds (quick runs)")
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        sc, losses = load_scenario(Path(a.scenario))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    if a.duration:
        sc.duration_s = a.duration
    if a.train_world_seed == sc.world.generate.seed:
        print("error: --train-world-seed must differ from the test world's seed (train on other worlds)")
        return 2
    foot = nominal_footprint_m(sc)
    model_path = Path(a.retrieval_model) if a.retrieval_model else work / f"retrieval_tiny_world{a.train_world_seed}" / "model"
    if a.train_retrieval:
        model_path = train_retrieval(work, a.train_world_seed, foot, a.train_epochs, a.train_locations)
    if a.train_only:
        return 0

    from geoloc_ros.geo.orthomap import OrthoMap
    from geoloc_ros.model.weights import load_weights
    from geoloc_ros.tools.simulate import world_files

    weights = heatmap_weights(a.weights)
    if not weights.with_suffix(".safetensors").is_file():
        print(f"error: no heatmap weights at {weights}.safetensors")
        return 2
    if "retrieval" in a.methods and not model_path.with_suffix(".safetensors").is_file():
        print(f"error: no retrieval model at {model_path}.safetensors (run with --train-retrieval)")
        return 2
    ws = sc.world
    files = world_files(ws.generate, work, sorted({ws.map_epoch, ws.camera_epoch}))
    map_path, cam_path = files[ws.map_epoch], files[ws.camera_epoch]
    area = ws.generate.size_m ** 2 / 1e6
    t = time.perf_counter()
    flight = fly(sc, map_path, cam_path)
    print(f"flight: {len(flight.frames)} frames ({flight.stamps[-1] - flight.stamps[0]:.0f} s at "
          f"{sc.camera.rate_hz:g} Hz) rendered in {time.perf_counter() - t:.0f} s; world {area:.1f} km^2 "
          f"(seed {ws.generate.seed}, map epoch {ws.map_epoch}, camera epoch {ws.camera_epoch}); footprint {foot:.0f} m")

    rows, figures, results = {}, None, {}
    net = load_weights(str(weights), device="cpu")
    cfg_kw = dict(reloc_batch=a.reloc_batch, retrieval_top_k=a.top_k, keep_heatmap=False)
    with OrthoMap.open(map_path) as omap:
        kidnaps = loss_schedule(flight, losses, omap)
        if "retrieval" in a.methods:
            figures = index_and_latency(map_path, model_path, foot, foot * a.stride_frac, work, flight, a.top_k)
            cfg_kw.update(retrieval_index=str(figures["index"]), retrieval_model=str(model_path))
        for method in a.methods.split(","):
            t = time.perf_counter()
            eps, counts = run_method(method, flight, kidnaps, omap, net, cfg_kw, losses, a.ok_m)
            rows[method] = summarize(eps)
            rows[method]["wall_s"] = time.perf_counter() - t
            results[method] = {"summary": rows[method], "counts": counts,
                               "episodes": [e.__dict__ for e in eps]}
            print(f"{method}: {rows[method]['success']}/{len(eps)} relocalized, episodes "
                  + ", ".join(f"[{e.flight_s:.1f} s, {e.windows} win, events {e.events}]" for e in eps)
                  + f"; wall {rows[method]['wall_s']:.0f} s", flush=True)

    print()
    print(f"hardware: {torch.get_num_threads()} torch threads, CPU only; heatmap model {weights}; "
          f"retrieval model {model_path if 'retrieval' in a.methods else '-'}")
    print(f"losses: {len(kidnaps)} kidnaps, belief {losses['offset_m']:.0f} m off (sigma {losses['offset_m'] / 2:.0f} m), "
          f"timeout {losses['timeout_s']:.0f} s; reloc_batch {a.reloc_batch}, top-k {a.top_k}, ok < {a.ok_m:.0f} m")
    print(table(rows))
    if figures:
        print(f"\nindex: {figures['tiles']} tiles ({foot:.0f} m, stride {foot * a.stride_frac:.0f} m) built in "
              f"{figures['build_s']:.1f} s = {figures['tiles_per_s']:.0f} tiles/s; query latency (describe + search, "
              f"top-{a.top_k}) {figures['query_ms']:.1f} ms, with 8 rotations {figures['query8_ms']:.1f} ms (median)")
    if a.json:
        if figures:
            figures["index"] = str(figures["index"])
        Path(a.json).write_text(json.dumps({"rows": rows, "figures": figures, "results": results}, indent=1,
                                           default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
