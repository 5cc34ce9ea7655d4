"""One-shot benchmark: how often one heatmap, on its own, puts a flight frame within 5 / 10 m.

Why: closed-loop flights mix the model with the filter; this isolates the model on fixed,
held-out data, measured through the localizer's own per-frame path, so two weights files
can be compared on the same frames (`geoloc-bench --only oneshot --weights PATH`).

Data, generated deterministically from seeds (nothing is committed; maps are cached under
`work_dir`):
- procedural: worlds 901-904 (no other set uses 9xx), the map from epoch 1, the camera from
  epoch 2 with the `weak` / `strong` appearance gap (data/camera.py GAP_PRESETS: ground
  changes painted into the camera's map, season tint, haze, blur, JPEG ... per frame);
  frames rendered along a random flight (data/flight.py Trajectory: body-fixed camera that
  banks in turns and wobbles, heading along the track). Weak and strong share poses and priors.
- photo: the CC0 photos the packaged weights held out of training (train_demo_cpu.yaml's
  photo split: val_fraction 0.1, seed 0), each written as a map at a nominal 0.4 m/px; the
  camera renders the same photo with the gap applied, at random positions, headings and a
  few degrees of tilt.

Per frame (what `Localizer._match` does in tracking with one window): `prepare_uav` (north-up,
rectified with the true attitude and heading), `sat_window_side_m` with the weights'
`gsd_ratio`, `OrthoMap.crop` centred on truth + a prior error drawn uniformly in a disc of
radius `max_prior_m`, the localizer's model call and decoder, `peak_measurement` (pixel ->
metres, tilt offset removed). Metrics: MA@5/10 m, RDS (UL14 formula on offsets divided by
the window side, i.e. in the model's output pixels / size as UL14 does), the share of
confident frames (decode confidence >= LocalizerConfig.min_confidence, from which the
tracker compares a peak with the track) and MA@10 of those, median model ms per frame.

    python -m geoloc_ros.tools.oneshot [--weights PATH] [--quick] [--work DIR] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .. import cli, resources
from ..data.camera import GAP_PRESETS, AppearanceGap, CameraIntrinsics, CameraPose, Photometric, render_view
from ..data.world import WorldConfig
from ..geo.frames import LocalENU
from ..metrics import ma_at_k, ul14_rds

PARTS = ("procedural/weak", "procedural/strong", "photo/weak", "photo/strong")


@dataclass
class OneShotConfig:
    """What the benchmark renders and measures; the defaults are the model card's run."""

    parts: tuple = PARTS
    world_seeds: tuple = (901, 902, 903, 904)  # 9xx: used by no training set, scenario or suite
    world_size_m: float = 1000.0
    world_gsd_m: float = 0.3
    photos: str = ""  # folder of the CC0 photos; '' = shared/data/aerial_cc0 beside the source checkout
    photo_val_fraction: float = 0.1  # the training split whose held-out photos are used ...
    photo_split_seed: int = 0  # ... (train_demo_cpu.yaml: the packaged weights never saw them)
    photo_count: int = 10  # held-out photos used (at most all of them)
    photo_gsd_m: float = 0.4  # nominal metres per photo pixel (the photos carry no georeference)
    frames_per_part: int = 160
    max_prior_m: float = 30.0  # window centre = truth + uniform draw in a disc of this radius
    prior_bins_m: tuple = (10.0, 20.0, 30.0)
    width: int = 640
    height: int = 480
    hfov_deg: float = 70.0
    altitude_m: float = 115.0
    altitude_wave_m: float = 15.0  # flights: +- slow altitude change; photos: uniform in +- this
    speed_mps: float = 12.0
    tilt_sigma_deg: float = 3.0  # photos: pitch/roll 1-sigma (flights take theirs from the flight)
    yaw_sigma_deg: float = 0.0  # heading error handed to prepare_uav (0: the true heading)
    random_photometric: float = 0.5  # a random camera look per frame, as the simulator's flights
    frame_noise: float = 2.0  # per-frame sensor noise sigma (0..255)
    seed: int = 0

    @classmethod
    def quick(cls, **kw) -> "OneShotConfig":
        """A few frames on one small world and two photos (the test's, seconds not minutes)."""
        base = dict(world_seeds=(901,), world_size_m=500.0, world_gsd_m=0.5, photo_count=2, frames_per_part=8,
                    speed_mps=4.0)  # slow: the small world's flight turns tightly
        return cls(**{**base, **kw})

    def __post_init__(self) -> None:
        self.parts = tuple(self.parts)
        bad = [p for p in self.parts if p not in PARTS]
        if bad or not self.parts:
            raise ValueError(f"oneshot parts must be among {', '.join(PARTS)}, got {list(self.parts)}")
        if self.frames_per_part < 1 or not self.max_prior_m >= 0:
            raise ValueError("oneshot frames_per_part must be >= 1 and max_prior_m >= 0")
        self.world_seeds = tuple(int(s) for s in self.world_seeds)
        self.prior_bins_m = tuple(float(b) for b in self.prior_bins_m)

    @property
    def intrinsics(self) -> CameraIntrinsics:
        return CameraIntrinsics.from_fov(self.width, self.height, self.hfov_deg)

    def window_half_m(self, sat_over_uav: float) -> float:
        """Half the largest satellite window side plus the prior and a margin: how far from a
        map edge a frame's nadir must stay so that every window lies on the map."""
        intr = self.intrinsics
        r_px = min(intr.cx + 0.5, intr.cy + 0.5)
        foot = math.sqrt(2.0) * r_px * (self.altitude_m + self.altitude_wave_m) / intr.fx
        return 0.5 * foot * sat_over_uav + self.max_prior_m + 10.0


@dataclass
class Shot:
    """One benchmark frame: the camera image, where the camera really was, the prior's error."""

    part: str
    source: str  # world seed or photo name
    image: np.ndarray = field(repr=False)
    pose: CameraPose
    prior_en: tuple  # window centre minus the true nadir (m, east / north)
    intr: CameraIntrinsics
    yaw_error: float = 0.0  # heading error handed to prepare_uav (rad)


# ----------------------------------------------------------------------------------- data
def default_photo_dir() -> Path | None:
    """shared/data/aerial_cc0 next to the source checkout (read there, never copied)."""
    root = resources.source_root()
    return None if root is None else root.parent / "shared" / "data" / "aerial_cc0"


def held_out_photos(folder: str | Path, val_fraction: float, seed: int) -> list[Path]:
    """The photos a training run with this photo source held out (train/amcf.py build_sources:
    a permutation of the sorted list seeded by the source's split_seed, its first round(f n)
    entries)."""
    from ..data.pairs import list_images

    photos = list_images(folder)
    order = np.random.default_rng(seed).permutation(len(photos))
    n_val = min(int(round(val_fraction * len(photos))), len(photos) - 1)
    return [photos[j] for j in sorted(order[:n_val])]


def photo_map(photo: Path, gsd_m: float, work: Path) -> Path:
    """The photo as a north-up COG at `gsd_m` (UTM at a fixed origin), cached in `work`."""
    from affine import Affine

    from ..data.images import read_rgb
    from ..geo.cog import write_cog
    from ..geo.frames import utm_crs_for, wgs84_to_utm

    out = work / f"photo_{photo.parent.name}_{photo.stem}_{gsd_m:g}.tif"
    if out.exists():
        return out
    img = read_rgb(photo)
    lat, lon = WorldConfig.origin_lat, WorldConfig.origin_lon
    crs = utm_crs_for(lat, lon)
    e0, n0, _ = wgs84_to_utm(lat, lon, crs)
    h, w = img.shape[:2]
    tr = Affine(gsd_m, 0.0, float(e0) - 0.5 * w * gsd_m, 0.0, -gsd_m, float(n0) + 0.5 * h * gsd_m)
    tmp = out.with_name(out.stem + ".partial.tif")
    write_cog(tmp, img, tr, crs, compress="JPEG", quality=95)
    tmp.replace(out)
    return out


def _camera_map(path: Path, gap: str, seed: int, work: Path, world: WorldConfig | None) -> Path:
    """The camera's map: `path` with the gap's ground changes painted in (cached)."""
    from .simulate import changed_world_file

    changes = AppearanceGap(preset=gap).world_changes(seed)
    if not changes.active:
        return path
    return changed_world_file(path, changes, work, world=world, epoch=2 if world is not None else 1, verbose=False)


def _split(n: int, k: int) -> list[int]:
    """n frames over k sources, as evenly as possible."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def _prior(rng: np.random.Generator, radius: float) -> tuple:
    """Uniform in the disc of `radius` (area-uniform: a prior's error is rarely tiny)."""
    r, a = radius * math.sqrt(rng.uniform()), rng.uniform(0.0, 2.0 * math.pi)
    return (r * math.cos(a), r * math.sin(a))


def _photometric(cfg: OneShotConfig, gap: str, rng: np.random.Generator) -> Photometric:
    base = Photometric.random(rng, cfg.random_photometric) if cfg.random_photometric > 0 else Photometric()
    return AppearanceGap(preset=gap).photometric(base)


def _render(cam_map, pose: CameraPose, cfg: OneShotConfig, gap: str, rng: np.random.Generator) -> np.ndarray:
    img = render_view(cam_map, pose, cfg.intrinsics, _photometric(cfg, gap, rng), rng)
    if cfg.frame_noise > 0:
        img = np.clip(img + rng.standard_normal(img.shape, dtype=np.float32) * cfg.frame_noise, 0, 255)
    return img.astype(np.uint8)


def _flight_poses(cfg: OneShotConfig, seed: int, n: int, safe_m: float):
    """(east, north, agl, yaw, pitch, roll) of n frames spread over one lap of a random flight."""
    from ..data.flight import CameraConfig, Trajectory, TrajectoryConfig, YawConfig

    tc = TrajectoryConfig(kind="random", radius_m=max(safe_m / 1.3, 1.0), seed=seed, speed_mps=cfg.speed_mps,
                          altitude_m=cfg.altitude_m, altitude_wave_m=cfg.altitude_wave_m,
                          altitude_period_s=60.0)
    traj = Trajectory(tc, YawConfig(policy="along_track"),
                      CameraConfig(width=cfg.width, height=cfg.height, hfov_deg=cfg.hfov_deg), seed=seed)
    t = (np.arange(n) + 0.5) * traj.one_pass_s / n
    tr = traj.sample(t)
    return np.stack([tr.east, tr.north, tr.agl, tr.yaw, tr.pitch, tr.roll], 1)


def procedural_shots(cfg: OneShotConfig, gap: str, work: Path, sat_over_uav: float) -> Iterator[tuple[Shot, Any]]:
    """Rendered flight frames over the benchmark worlds (map: epoch 1; camera: epoch 2 + gap)."""
    from ..geo.orthomap import OrthoMap
    from .simulate import world_files

    counts = _split(cfg.frames_per_part, len(cfg.world_seeds))
    for seed, n in zip(cfg.world_seeds, counts):
        if n == 0:
            continue
        world = WorldConfig(seed=seed, size_m=cfg.world_size_m, gsd_m=cfg.world_gsd_m)
        files = world_files(world, work, (1, 2), verbose=False)
        cam_path = _camera_map(files[2], gap, seed, work, world)
        safe = 0.5 * cfg.world_size_m - cfg.window_half_m(sat_over_uav)
        if safe <= 0:
            raise ValueError(f"oneshot world of {cfg.world_size_m:g} m is too small for the search window")
        poses = _flight_poses(cfg, seed, n, safe)
        rng_prior = np.random.default_rng([cfg.seed, seed, 1])  # the same for both gaps
        rng_img = np.random.default_rng([cfg.seed, seed, 2, list(GAP_PRESETS).index(gap)])
        with OrthoMap.open(files[1]) as omap, OrthoMap.open(cam_path) as cam:
            enu = LocalENU(*omap.center_latlon, 0.0)
            for e, nn, agl, yaw, pitch, roll in poses:
                lat, lon, _ = enu.to_geodetic(e, nn, 0.0)
                pose = CameraPose(float(lat), float(lon), float(agl), float(yaw), float(pitch), float(roll))
                prior = _prior(rng_prior, cfg.max_prior_m)
                yaw_err = math.radians(rng_prior.normal(0.0, cfg.yaw_sigma_deg)) if cfg.yaw_sigma_deg > 0 else 0.0
                img = _render(cam, pose, cfg, gap, rng_img)
                shot = Shot(f"procedural/{gap}", f"world {seed}", img, pose, prior, cfg.intrinsics, yaw_err)
                yield shot, omap


def photo_shots(cfg: OneShotConfig, gap: str, work: Path, sat_over_uav: float) -> Iterator[tuple[Shot, Any]]:
    """Frames rendered from held-out photos (map: the photo; camera: the photo + gap)."""
    from ..geo.orthomap import OrthoMap

    folder = Path(cfg.photos) if cfg.photos else default_photo_dir()
    if folder is None or not folder.is_dir():
        raise FileNotFoundError(f"photo folder not found: {folder} (set OneShotConfig.photos)")
    photos = held_out_photos(folder, cfg.photo_val_fraction, cfg.photo_split_seed)[:max(1, cfg.photo_count)]
    margin = cfg.window_half_m(sat_over_uav)
    for k, (photo, n) in enumerate(zip(photos, _split(cfg.frames_per_part, len(photos)))):
        if n == 0:
            continue
        map_path = photo_map(photo, cfg.photo_gsd_m, work)
        cam_path = _camera_map(map_path, gap, cfg.seed + k, work, None)
        rng_pose = np.random.default_rng([cfg.seed, 77, k])  # the same for both gaps
        rng_img = np.random.default_rng([cfg.seed, 78, k, list(GAP_PRESETS).index(gap)])
        with OrthoMap.open(map_path) as omap, OrthoMap.open(cam_path) as cam:
            half_e = 0.5 * omap.width * cfg.photo_gsd_m - margin
            half_n = 0.5 * omap.height * cfg.photo_gsd_m - margin
            if min(half_e, half_n) <= 0:
                raise ValueError(f"{photo.name} at {cfg.photo_gsd_m:g} m/px is too small for the search window")
            enu = LocalENU(*omap.center_latlon, 0.0)
            for _ in range(n):
                e, nn = rng_pose.uniform(-half_e, half_e), rng_pose.uniform(-half_n, half_n)
                lat, lon, _ = enu.to_geodetic(e, nn, 0.0)
                tilt = np.radians(rng_pose.normal(0.0, cfg.tilt_sigma_deg, 2))
                agl = cfg.altitude_m + rng_pose.uniform(-cfg.altitude_wave_m, cfg.altitude_wave_m)
                pose = CameraPose(float(lat), float(lon), float(agl), float(rng_pose.uniform(-math.pi, math.pi)),
                                  float(tilt[0]), float(tilt[1]))
                prior = _prior(rng_pose, cfg.max_prior_m)
                yaw_err = math.radians(rng_pose.normal(0.0, cfg.yaw_sigma_deg)) if cfg.yaw_sigma_deg > 0 else 0.0
                img = _render(cam, pose, cfg, gap, rng_img)
                name = f"{photo.parent.name}/{photo.name}"
                yield Shot(f"photo/{gap}", name, img, pose, prior, cfg.intrinsics, yaw_err), omap


# ----------------------------------------------------------------------------- measuring
class NodePath:
    """The localizer's per-frame steps for one window (a Localizer built without a map, so
    its model call, decoder and settings are the node's own)."""

    def __init__(self, net, lcfg=None) -> None:
        from ..localize.config import LocalizerConfig
        from ..localize.localizer import Localizer

        self.loc = Localizer(lcfg or LocalizerConfig(), None, net, device="cpu")
        self.cfg = self.loc.cfg

    def warm_up(self, runs: int = 3) -> None:
        """A few untimed forwards: the first CPU calls are several times slower (allocator, caches)."""
        u, s = self.loc.uav_size, self.loc.sat_size
        for _ in range(runs):
            self.loc._run_model(np.zeros((u, u, 3), np.uint8), [np.zeros((s, s, 3), np.uint8)])

    def measure(self, shot: Shot, omap) -> dict[str, Any]:
        """One frame through prepare -> window -> crop -> model -> decode -> metres."""
        from ..localize.measurement import peak_measurement

        cfg, loc, p = self.cfg, self.loc, shot.pose
        t0 = time.perf_counter()
        att = (p.pitch, p.roll) if cfg.use_attitude else (0.0, 0.0)
        prep, window_m = loc.prepare_view(shot.image, shot.intr, p.alt_agl, p.yaw + shot.yaw_error, *att)
        enu = LocalENU(p.lat, p.lon, 0.0)  # the truth is the origin: a measurement is its own error
        c_lat, c_lon, _ = enu.to_geodetic(shot.prior_en[0], shot.prior_en[1], 0.0)
        crop = omap.crop((float(c_lat), float(c_lon)), window_m, loc.sat_size)
        t1 = time.perf_counter()
        logits = loc._run_model(prep.image, [crop.image])
        t2 = time.perf_counter()
        dec = loc._decode(logits, max_modes=cfg.max_modes)
        peak = dec[0] if isinstance(dec, (list, tuple)) else dec
        meas = peak_measurement(peak, crop, enu, 0, cfg, prep.center_offset_en)
        t3 = time.perf_counter()
        err = np.asarray(meas.z, dtype=np.float64)
        g = window_m / loc.sat_size
        return {"part": shot.part, "source": shot.source, "error_m": float(np.hypot(*err)),
                "error_en": [float(err[0]), float(err[1])], "prior_m": float(np.hypot(*shot.prior_en)),
                "rds": float(ul14_rds(err[1] / g, err[0] / g, 0.0, 0.0, loc.sat_size)),
                "confidence": float(meas.confidence), "window_m": float(window_m),
                "valid_fraction": float(crop.valid_fraction), "model_ms": (t2 - t1) * 1e3,
                "frame_ms": (t3 - t0) * 1e3}


def summarise(rows: list[dict], min_confidence: float, bins: tuple) -> dict[str, Any]:
    """MA@5/10, RDS, confident share and their MA@10, model ms and MA@10 per prior bin."""
    if not rows:
        return {"n": 0}
    e = np.array([r["error_m"] for r in rows])
    conf = np.array([r["confidence"] for r in rows]) >= min_confidence
    prior = np.array([r["prior_m"] for r in rows])
    out: dict[str, Any] = {"n": len(rows), **ma_at_k(e, (5, 10)), "RDS": float(np.mean([r["rds"] for r in rows])),
                           "median_error_m": float(np.median(e)), "confident_share": float(conf.mean()),
                           "confident_MA@10": float(np.mean(e[conf] <= 10.0)) if conf.any() else float("nan"),
                           "model_ms": float(np.median([r["model_ms"] for r in rows])),
                           "frame_ms": float(np.median([r["frame_ms"] for r in rows]))}
    lo, by_bin = 0.0, {}
    for hi in bins:
        sel = (prior >= lo) & (prior < hi + 1e-9)
        by_bin[f"{lo:g}-{hi:g} m"] = {"n": int(sel.sum()),
                                       "MA@10": float(np.mean(e[sel] <= 10.0)) if sel.any() else float("nan")}
        lo = hi
    out["by_prior"] = by_bin
    return out


def _shots(cfg: OneShotConfig, part: str, work: Path, sat_over_uav: float) -> Iterator[tuple[Shot, Any]]:
    kind, gap = part.split("/")
    return (procedural_shots if kind == "procedural" else photo_shots)(cfg, gap, work, sat_over_uav)


def run_oneshot(net, cfg: OneShotConfig | None = None, work_dir: str | Path | None = None, lcfg=None,
                progress: bool = False) -> dict[str, Any]:
    """The benchmark for `net` (an AMCFNet, e.g. load_weights(...)): per part and pooled
    summaries, the settings, the photos used and every frame's row. `work_dir` keeps the
    generated maps for the next run (None: a temporary folder)."""
    import torch

    cfg = cfg or OneShotConfig()
    node = NodePath(net, lcfg)
    node.warm_up()
    sat_over_uav = node.loc.sat_size / node.loc.uav_size * node.cfg.gsd_ratio
    rows: list[dict] = []
    missing: dict[str, str] = {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="geoloc_oneshot_") as tmp:
        work = Path(work_dir) if work_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        work = work.resolve()
        for part in cfg.parts:
            if progress:
                print(f"oneshot {part} ...", file=sys.stderr, flush=True)
            try:
                for shot, omap in _shots(cfg, part, work, sat_over_uav):
                    rows.append(node.measure(shot, omap))
            except FileNotFoundError as exc:  # no photos beside this checkout: the other parts still count
                missing[part] = str(exc)
    bins = cfg.prior_bins_m
    thr = node.cfg.min_confidence
    parts = {p: summarise([r for r in rows if r["part"] == p], thr, bins) for p in cfg.parts}
    for p, why in missing.items():
        parts[p]["note"] = f"skipped: {why}"
    photos = sorted({r["source"] for r in rows if r["part"].startswith("photo")})
    gaps = [g for g in GAP_PRESETS if sum(p.endswith("/" + g) for p in cfg.parts) > 1]
    by_gap = {f"all {g}": summarise([r for r in rows if r["part"].endswith("/" + g)], thr, bins) for g in gaps}
    return {"parts": parts, "gaps": by_gap, "pooled": summarise(rows, thr, bins), "min_confidence": thr,
            "settings": asdict(cfg), "photos": photos, "torch_threads": torch.get_num_threads(),
            "uav_size": node.loc.uav_size, "sat_size": node.loc.sat_size, "gsd_ratio": node.cfg.gsd_ratio,
            "elapsed_s": time.perf_counter() - t_start, "rows": rows}


def _pct(v: float) -> str:
    return "" if v is None or not np.isfinite(v) else f"{100.0 * v:.0f} %"


def to_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table: one line per part and the pooled line."""
    bins = list(report["pooled"].get("by_prior", {}))
    head = ("| part | frames | MA@5 | MA@10 | RDS | median error | confident | MA@10 confident | "
            + " | ".join(f"MA@10 prior {b}" for b in bins) + " | model ms | frame ms |")
    lines = [head, "|" + "---|" * (10 + len(bins))]
    for name, s in [*report["parts"].items(), *report.get("gaps", {}).items(), ("pooled", report["pooled"])]:
        if not s.get("n"):
            lines.append(f"| {name} | 0 |" + " |" * (8 + len(bins)))
            continue
        by = " | ".join(_pct(s["by_prior"][b]["MA@10"]) + f" ({s['by_prior'][b]['n']})" for b in bins)
        lines.append(f"| {name} | {s['n']} | {_pct(s['MA@5'])} | {_pct(s['MA@10'])} | {s['RDS']:.2f} | "
                     f"{s['median_error_m']:.1f} m | {_pct(s['confident_share'])} | {_pct(s['confident_MA@10'])} | "
                     f"{by} | {s['model_ms']:.1f} | {s['frame_ms']:.1f} |")
    lines.append("")
    lines.append(f"Confident: decode confidence >= LocalizerConfig.min_confidence ({report['min_confidence']:g}). "
                 f"Prior error uniform in a disc of {report['settings']['max_prior_m']:g} m (frames per bin in "
                 f"brackets). Model {report['uav_size']}/{report['sat_size']} px, gsd_ratio {report['gsd_ratio']:g}, "
                 f"{report['torch_threads']} torch threads; {report['elapsed_s']:.0f} s in all.")
    return "\n".join(lines)


def load_net(weights: str | None = None, model_config: str | None = None, seed: int = 0):
    """Trained weights ('default': the packaged ones), or a random init of a model YAML (a baseline)."""
    import torch

    from ..model import load_model_config
    from ..model.net import AMCFNet
    from ..model.weights import load_weights, resolve_weights

    if model_config:
        torch.manual_seed(seed)
        cfg = load_model_config(model_config)
        cfg.pretrained_path = None
        return AMCFNet(cfg).eval()
    return load_weights(resolve_weights(weights or "default"), device="cpu")


def build_parser() -> argparse.ArgumentParser:
    ap = cli.tool_parser("python -m geoloc_ros.tools.oneshot", __doc__)
    cli.add_weights(ap, "weights (x.safetensors + x.json); default: the packaged ones", default="default")
    cli.add_model_config(ap, "a model YAML to measure at random init instead (a chance-level baseline)")
    ap.add_argument("--quick", action="store_true", help="a few frames on one small world and two photos")
    ap.add_argument("--frames", type=int, default=None, help="frames per part (default 160; quick 8)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated parts of {','.join(PARTS)}")
    ap.add_argument("--work", default=None, help="keep / reuse the generated maps in this folder")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--json", dest="json_out", help="write the report (with every frame's row) as JSON here")
    return ap


def config_from_args(args: argparse.Namespace) -> OneShotConfig:
    """The OneShotConfig that --quick / --frames / --parts ask for."""
    kw: dict[str, Any] = {"parts": tuple(p.strip() for p in args.parts.split(",") if p.strip())}
    if args.frames is not None:
        kw["frames_per_part"] = args.frames
    try:
        return OneShotConfig.quick(**kw) if args.quick else OneShotConfig(**kw)
    except ValueError as exc:
        from ..errors import GeolocError

        raise GeolocError(str(exc)) from None


def run(args: argparse.Namespace) -> int | None:
    import torch

    torch.set_num_threads(args.threads)
    cfg = config_from_args(args)
    rep = run_oneshot(load_net(args.weights, args.model_config), cfg, args.work, progress=True)
    rep["weights"] = args.model_config and f"random init of {args.model_config}" or str(args.weights)
    print(to_markdown(rep))
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(rep, indent=2, default=str) + "\n")
    return 0


main = cli.entry_point(build_parser, run)

__all__ = ["OneShotConfig", "PARTS", "run_oneshot", "summarise", "to_markdown", "load_net", "held_out_photos"]

if __name__ == "__main__":
    raise SystemExit(main())
