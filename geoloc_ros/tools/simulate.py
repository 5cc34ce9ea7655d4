"""geoloc-simulate: fly a scenario over a map and write a rosbag2 (camera, odometry, GPS, truth).

    geoloc-simulate --scenario config/scenarios/loop_2km.yaml --out runs/loop_bag
    geoloc-simulate --scenario my.yaml --out bag --storage sqlite3 --world ortho.tif

Topics and odometry semantics: docs/DESIGN.md and geoloc_ros/data/flight.py. Procedural
world COGs are written next to the bag (reused when they exist); `<bag>/scenario.json`
says which map the localizer should use and gives the initial fix. A scenario's
`appearance_gap` (none|weak|strong or a mapping, data/camera.py AppearanceGap) changes only
what the camera sees: per frame (season tint, haze, blur, JPEG, exposure, lost detail) and
painted once into a copy of the camera's map (changed patches, cloud shadows,
data/world_changes.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .. import cli
from ..bags import (SIDECAR_NAME, SIM_TOPICS, TOPIC_CAMERA_INFO, TOPIC_GPS, TOPIC_GROUND_TRUTH, TOPIC_IMAGE,
                    TOPIC_ODOM, BagWriter, camera_info_msg, image_msg, navsatfix_msg, odometry_msg)
from ..config import load_dataclass, to_dict
from ..data.camera import CameraIntrinsics, CameraPose, Photometric, render_view
from ..data.flight import (ScenarioConfig, Trajectory, flight_duration, simulate_gps, simulate_odometry,
                           wrap_angle)
from ..data.world import WorldConfig, generate_world
from ..data.world_changes import WorldChanges, apply_world_changes
from ..errors import GeolocError
from ..geo.errors import GeoError
from ..geo.frames import LocalENU

#: bump when the same scenario would render a different bag (geoloc-eval re-simulates its cache),
#: e.g. when a message builder in bags.py changes: that module also reads bags, and is not hashed
SIM_VERSION = "2"
#: the modules whose source decides what a scenario renders (their digest joins SIM_VERSION)
SIM_MODULES = ("data/flight.py", "data/camera.py", "data/world.py", "data/world_layout.py", "data/world_render.py",
               "data/world_changes.py", "tools/simulate.py")

ODOM_SEMANTICS = ("odom frame: origin at take-off (x=y=0 at t=0), z = height above the take-off ground; axes = ENU "
                  "rotated by the heading error psi(t) (initial error + random walk + drift + teleport jumps); "
                  "displacements scaled by (1 + scale_error); localizer estimates odom->world offset and yaw")


def world_files(cfg: WorldConfig, directory: Path, epochs=(1, 2), verbose: bool = True) -> dict[int, Path]:
    """COGs of the given epochs of world `cfg` in `directory` (generated unless already there)."""
    out = {}
    layout = None
    for e in epochs:
        p = directory / f"{cfg.cache_key()}_e{e}.tif"
        if not p.exists():
            if layout is None:
                from ..data.world import world_layout
                layout = world_layout(cfg)
            if verbose:
                print(f"generating world epoch {e} ({cfg.n_px}x{cfg.n_px} px) -> {p}", file=sys.stderr)
            generate_world(cfg, p, e, layout=layout)
        out[e] = p
    return out


def simulator_version() -> str:
    """SIM_VERSION plus a digest of the simulator's source: a cache of simulated bags keyed
    by it cannot outlive a change of the renderer, the flight model or the bag layout."""
    import hashlib

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha1(SIM_VERSION.encode())
    for rel in SIM_MODULES:
        h.update((root / rel).read_bytes())
    return f"{SIM_VERSION}-{h.hexdigest()[:10]}"


def changed_world_file(cam_path: Path, changes: WorldChanges, directory: Path, *, world: WorldConfig | None = None,
                       epoch: int = 2, verbose: bool = True) -> Path:
    """A copy of the camera's map with `changes` painted in (cached next to the worlds).

    For a procedural world the new buildings' shadows follow that epoch's sun and no patch
    lands in water; any other north-up map in a metric CRS works too (read whole: keep it
    moderate)."""
    import rasterio

    from ..geo.cog import write_cog

    out = Path(directory) / f"{Path(cam_path).stem}_chg{changes.cache_key()}.tif"
    if out.exists():
        return out
    with rasterio.open(cam_path) as src:
        tr, crs = src.transform, src.crs
        if tr.b != 0 or tr.d != 0 or not crs or not crs.is_projected:
            raise GeoError(f"{cam_path}: appearance-gap ground changes need a north-up map in a metric CRS")
        if max(src.width, src.height) > 20000:
            raise GeoError(f"{cam_path}: {src.width}x{src.height} px is too large for appearance-gap ground "
                           "changes (max 20000 px a side)")
        img = np.moveaxis(src.read((1, 2, 3)), 0, -1)
    avoid = None
    if world is not None:
        from ..data.world import world_layout
        from ..data.world_layout import OCC_RES_M, OCC_WATER

        lay = world_layout(world)
        if changes.sun_azimuth_deg is None:  # world_render turns the sun 25 deg in epoch 2
            changes = dataclasses.replace(changes, sun_azimuth_deg=lay.sun_azimuth_deg + (25.0 if epoch == 2 else 0.0))
        occ = lay.occ

        def avoid(pts: np.ndarray) -> np.ndarray:
            ij = np.clip((np.asarray(pts) / OCC_RES_M).astype(int), 0, occ.shape[0] - 1)
            return (occ[ij[:, 1], ij[:, 0]] & OCC_WATER) > 0
    if verbose:
        print(f"painting appearance-gap ground changes into {out.name}", file=sys.stderr)
    img = apply_world_changes(img, abs(tr.a), changes, avoid)
    quality = int(world.jpeg_quality) if world is not None else 90
    tmp = out.with_name(out.stem + ".partial.tif")
    write_cog(tmp, img, tr, crs, compress="JPEG", quality=quality)
    tmp.replace(out)
    return out


def _resolve(p: str, base: Path) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else (base / q)


def _scenario_maps(sc: ScenarioConfig, out: Path, world: str | None, base: Path, world_dir: Path | None,
                   progress: bool) -> tuple[Path, Path, WorldConfig | None]:
    """(localizer's map, camera's map, the generated WorldConfig or None): --world, the
    scenario's maps, or its procedural world; the camera's map gets the appearance-gap
    ground changes painted in."""
    ws = sc.world
    generated = None
    if world is not None and world != "generate":
        map_path = Path(world)
        cam_path = _resolve(ws.camera_map, base) if ws.camera_map else map_path
    elif world is None and ws.map:
        map_path = _resolve(ws.map, base)
        cam_path = _resolve(ws.camera_map, base) if ws.camera_map else map_path
    else:
        wdir = Path(world_dir) if world_dir is not None else out.parent
        wdir.mkdir(parents=True, exist_ok=True)
        files = world_files(ws.generate, wdir.resolve(), sorted({ws.map_epoch, ws.camera_epoch}), progress)
        map_path, cam_path = files[ws.map_epoch], files[ws.camera_epoch]
        generated = ws.generate
    for p in (map_path, cam_path):
        if not Path(p).is_file():
            raise GeoError(f"map file not found: {p}")
    changes = sc.appearance_gap.world_changes(sc.seed)
    if changes.active:
        wdir = Path(world_dir) if world_dir is not None else out.parent
        wdir.mkdir(parents=True, exist_ok=True)
        cam_path = changed_world_file(Path(cam_path), changes, wdir.resolve(), world=generated,
                                      epoch=ws.camera_epoch, verbose=progress)
    return Path(map_path), Path(cam_path), generated


@dataclasses.dataclass
class _Flight:
    """Everything a bag is written from: truth, odometry and GPS samples, camera frames."""

    sc: ScenarioConfig
    traj: Trajectory
    dur: float
    enu: LocalENU
    t_odom: np.ndarray
    truth_o: Any
    odom: Any
    gps: Any
    glat: np.ndarray  # GPS fixes, geodetic
    glon: np.ndarray
    t_cam: np.ndarray
    truth_c: Any
    lat_c: np.ndarray  # camera positions, geodetic
    lon_c: np.ndarray
    intr: CameraIntrinsics
    photo: Photometric

    def events(self) -> list[tuple[float, int, int]]:
        """(time, kind 0 odom / 1 GPS / 2 camera, sample index) in bag order."""
        return sorted([(t, 0, i) for i, t in enumerate(self.t_odom)] + [(t, 1, i) for i, t in enumerate(self.gps.t)]
                      + [(t, 2, i) for i, t in enumerate(self.t_cam)])


def _fly(sc: ScenarioConfig, map_path: Path, cam_path: Path, cam_map, rng: np.random.Generator) -> _Flight:
    """Sample the scenario's trajectory, odometry, GPS and camera poses (origin: the map centre);
    warns when the flight leaves the camera's map."""
    from ..geo.orthomap import OrthoMap

    with OrthoMap.open(map_path) as loc_map:
        origin_lat, origin_lon = loc_map.center_latlon
    traj = Trajectory(sc.trajectory, sc.yaw, sc.camera, seed=sc.seed)
    dur = flight_duration(sc, traj)
    enu = LocalENU(origin_lat, origin_lon, sc.ground_alt_m)
    probe = traj.sample(np.linspace(0, dur, 200))
    plat, plon, _ = enu.to_geodetic(probe.east, probe.north, 0.0)
    off = sum(not cam_map.contains(a, b) for a, b in zip(plat, plon))
    if off:
        print(f"warning: {off}/200 sampled trajectory points lie outside {cam_path.name}", file=sys.stderr)
    t_odom = np.arange(0.0, dur, 1.0 / sc.odometry.rate_hz)
    truth_o = traj.sample(t_odom)
    odom = simulate_odometry(truth_o, sc.odometry, np.random.default_rng([int(sc.seed), 6]))
    gps = simulate_gps(traj, sc.gps, dur, np.random.default_rng([int(sc.seed), 7]))
    t_cam = np.arange(0.0, dur, 1.0 / sc.camera.rate_hz)
    truth_c = traj.sample(t_cam)
    intr = CameraIntrinsics.from_fov(sc.camera.width, sc.camera.height, sc.camera.hfov_deg)
    photo = sc.appearance_gap.photometric(_flight_photometric(sc, rng))
    lat_c, lon_c, _ = enu.to_geodetic(truth_c.east, truth_c.north, 0.0)
    glat = glon = np.zeros(0)
    if len(gps.t):
        glat, glon, _ = enu.to_geodetic(gps.east, gps.north, 0.0)
    return _Flight(sc, traj, dur, enu, t_odom, truth_o, odom, gps, np.atleast_1d(glat), np.atleast_1d(glon), t_cam,
                   truth_c, np.atleast_1d(lat_c), np.atleast_1d(lon_c), intr, photo)


def _write_bag(fl: _Flight, out: Path, storage: str, cam_map, progress: bool) -> None:
    """The flight's messages in time order: odometry, GPS, and per camera frame the rendered
    image, its camera info and the ground-truth fix."""
    sc, odom, gps, truth_o, truth_c = fl.sc, fl.odom, fl.gps, fl.truth_o, fl.truth_c
    t0 = float(sc.start_time_s)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(fl.t_cam), unit="frame", desc=f"simulate {sc.name}", file=sys.stderr)
    frame_rng = np.random.default_rng([int(sc.seed), 8])
    with BagWriter(out, storage, SIM_TOPICS) as bw:
        for t, kind, i in fl.events():
            st = t0 + t
            if kind == 0:
                rpy = (truth_o.roll[i], truth_o.pitch[i], odom.yaw[i])
                bw.write(TOPIC_ODOM, st, odometry_msg(st, odom.xyz[i], rpy, odom.vel_body[i], odom.yaw_rate[i],
                                                      pos_var=odom.pos_var[i], yaw_var=odom.yaw_var[i]))
            elif kind == 1:
                bw.write(TOPIC_GPS, st, navsatfix_msg(fl.glat[i], fl.glon[i], sc.ground_alt_m + gps.up[i], st,
                                                      sigma_h=gps.sigma_h, sigma_v=gps.sigma_v, frame_id="gps"))
            else:
                pose = CameraPose(float(fl.lat_c[i]), float(fl.lon_c[i]), float(truth_c.agl[i]), float(truth_c.yaw[i]),
                                  float(truth_c.pitch[i]), float(truth_c.roll[i]))
                img = render_view(cam_map, pose, fl.intr, fl.photo, frame_rng)
                if sc.camera.frame_noise > 0:
                    img = np.clip(img + frame_rng.standard_normal(img.shape, dtype=np.float32)
                                  * sc.camera.frame_noise, 0, 255).astype(np.uint8)
                bw.write(TOPIC_IMAGE, st, image_msg(img, st, "camera"))
                bw.write(TOPIC_CAMERA_INFO, st, camera_info_msg(fl.intr, st, "camera"))
                bw.write(TOPIC_GROUND_TRUTH, st, navsatfix_msg(fl.lat_c[i], fl.lon_c[i],
                                                               sc.ground_alt_m + truth_c.agl[i], st, sigma_h=0.0,
                                                               sigma_v=0.0, frame_id="ground_truth"))
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()


def _initial_fix(fl: _Flight, rng: np.random.Generator) -> dict:
    """The localizer's initial fix: the last GPS fix before denial (or truth + noise without GPS)."""
    sc, gps, traj = fl.sc, fl.gps, fl.traj
    if len(gps.t):
        k = len(gps.t) - 1
        fix_t, fix_lat, fix_lon = float(gps.t[k]), float(fl.glat[k]), float(fl.glon[k])
        fix_alt = sc.ground_alt_m + float(gps.up[k])
        sigma = max(sc.initial_fix_sigma_m, gps.sigma_h)
    else:
        tr0 = traj.sample([0.0])
        d = rng.standard_normal(2) * sc.initial_fix_sigma_m
        fix_t = 0.0
        fix_lat, fix_lon, _ = fl.enu.to_geodetic(tr0.east[0] + d[0], tr0.north[0] + d[1], 0.0)
        fix_alt = sc.ground_alt_m + float(tr0.agl[0])
        sigma = sc.initial_fix_sigma_m
    tr_fix = traj.sample([fix_t])
    return {"lat": float(fix_lat), "lon": float(fix_lon), "alt": float(fix_alt), "sigma_m": float(sigma),
            "stamp": float(sc.start_time_s) + fix_t,
            "yaw": float(wrap_angle(tr_fix.yaw[0] + rng.normal(0, math.radians(3.0)))),
            "yaw_sigma_deg": 5.0, "altitude_datum": "WGS84 ellipsoid"}


def _sidecar(fl: _Flight, out: Path, map_path: Path, cam_path: Path, generated: WorldConfig | None,
             initial_fix: dict) -> dict:
    """scenario.json: which map the localizer uses (relative to the bag), the initial fix, the
    camera, and the truth the simulation hid in the odometry."""
    sc, intr, odom, ws = fl.sc, fl.intr, fl.odom, fl.sc.world
    t0 = float(sc.start_time_s)
    bag_dir = out.resolve()
    rel = lambda p: _relpath(Path(p).resolve(), bag_dir)  # noqa: E731
    return {
        "name": sc.name,
        "map_path": rel(map_path),
        "camera_map_path": rel(cam_path),
        "map_epoch": ws.map_epoch if generated else None,
        "camera_epoch": ws.camera_epoch if generated else None,
        "origin": {"lat": fl.enu.lat0, "lon": fl.enu.lon0, "ground_alt_m": sc.ground_alt_m},
        "start_stamp": t0,
        "duration_s": fl.dur,
        "gps_denial_stamp": (t0 + sc.gps.denial_s) if sc.gps.denial_s is not None else None,
        "initial_fix": initial_fix,
        "camera": {"width": intr.width, "height": intr.height, "fx": intr.fx, "fy": intr.fy, "cx": intr.cx,
                   "cy": intr.cy, "rate_hz": sc.camera.rate_hz},
        "topics": SIM_TOPICS,
        "frames": {"odom": "odom", "base_link": "base_link", "camera": "camera"},
        "odometry_semantics": ODOM_SEMANTICS,
        "camera_photometric": to_dict(fl.photo),
        "truth": {"initial_yaw_error_deg": sc.odometry.initial_yaw_error_deg,
                  "scale_error": sc.odometry.scale_error, "teleports": list(sc.odometry.teleports),
                  "final_heading_error_deg": float(np.degrees(odom.heading_error[-1])) if len(odom.t) else 0.0},
        "frames_written": int(len(fl.t_cam)),
        "world": to_dict(generated) if generated is not None else None,
        "scenario": to_dict(sc),
    }


def run_scenario(sc: ScenarioConfig, out: Path, *, storage: str = "mcap", world: str | None = None,
                 scenario_dir: Path | None = None, progress: bool = True, world_dir: Path | None = None) -> dict:
    """Simulate `sc` into the bag directory `out`; returns the sidecar dict.
    `world_dir`: where procedural world COGs are written and reused (default: next to `out`)."""
    from ..geo.orthomap import OrthoMap

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"output {out} already exists (rosbag2 writes a new directory)")
    map_path, cam_path, generated = _scenario_maps(sc, out, world, scenario_dir or Path.cwd(), world_dir, progress)
    rng = np.random.default_rng([int(sc.seed), 5])  # the flight's look, then the initial fix
    with OrthoMap.open(cam_path) as cam_map:
        fl = _fly(sc, map_path, cam_path, cam_map, rng)
        _write_bag(fl, out, storage, cam_map, progress)
    sidecar = _sidecar(fl, out, map_path, cam_path, generated, _initial_fix(fl, rng))
    (out / SIDECAR_NAME).write_text(json.dumps(sidecar, indent=2))
    return sidecar


def _relpath(p: Path, start: Path) -> str:
    import os
    try:
        return os.path.relpath(p, start)
    except ValueError:  # other drive (Windows)
        return str(p)


def _flight_photometric(sc: ScenarioConfig, rng: np.random.Generator) -> Photometric:
    """The fixed photometric setting of the flight, combined with a seeded random camera look."""
    base = sc.camera.photometric
    if sc.camera.random_photometric <= 0:
        return base
    r = Photometric.random(rng, sc.camera.random_photometric)
    return Photometric(
        exposure=base.exposure * r.exposure, gamma=base.gamma * r.gamma,
        white_balance=tuple(a * b for a, b in zip(base.white_balance, r.white_balance)),
        contrast=base.contrast * r.contrast, haze=max(base.haze, r.haze),
        defocus_sigma_px=max(base.defocus_sigma_px, r.defocus_sigma_px),
        motion_blur_px=max(base.motion_blur_px, r.motion_blur_px), motion_blur_angle_deg=r.motion_blur_angle_deg,
        noise_sigma=max(base.noise_sigma, r.noise_sigma), vignetting=max(base.vignetting, r.vignetting),
        jpeg_quality=base.jpeg_quality or r.jpeg_quality, saturation=base.saturation,
        hue_shift_deg=base.hue_shift_deg, detail_loss=base.detail_loss)


def load_scenario(path: str | Path) -> ScenarioConfig:
    return load_dataclass(ScenarioConfig, path)


def build_parser() -> argparse.ArgumentParser:
    ap = cli.tool_parser("geoloc-simulate", __doc__)
    ap.add_argument("--scenario", required=True, help="scenario YAML (config/scenarios/*.yaml)")
    cli.add_out(ap, "output bag directory (must not exist)", required=True)
    ap.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    ap.add_argument("--world", default=None,
                    help="an existing map COG/GeoTIFF for both localizer and camera, or 'generate' (default: the "
                         "scenario's world section)")
    ap.add_argument("--duration", type=float, default=None, help="override the scenario duration (s)")
    cli.add_quiet(ap)
    return ap


def run(args: argparse.Namespace) -> int | None:
    """Load the scenario, simulate it into the bag, say where the localizer's map is."""
    sc = load_scenario(args.scenario)
    if args.duration is not None:
        if not args.duration > 0:
            raise GeolocError(f"--duration must be > 0, got {args.duration}")
        sc.duration_s = float(args.duration)
    side = run_scenario(sc, Path(args.out), storage=args.storage, world=args.world,
                        scenario_dir=Path(args.scenario).resolve().parent, progress=not args.quiet)
    print(f"wrote {args.out} ({side['frames_written']} frames, {side['duration_s']:.1f} s); "
          f"map for the localizer: {side['map_path']} (relative to the bag)")


main = cli.entry_point(build_parser, run)


if __name__ == "__main__":
    sys.exit(main())
