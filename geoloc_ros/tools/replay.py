"""geoloc-replay: run the Localizer over a recorded rosbag2 and report how well it did.

    geoloc-replay runs/loop_bag --weights geoloc_ros/weights/amcf_small --out runs/loop_replay
    geoloc-replay flight.mcap_dir --map ortho.tif --initial-fix 47.40,8.55 --max-frames 500
    geoloc-replay runs/loop_bag --live --weights default --rate 1.0 --out runs/loop_live

Offline: reads the bag (MCAP or sqlite3) with `rosbags`, interpolates odometry at every image
stamp, feeds the same `localize.Localizer` the node runs, and compares the published fixes
with the ground-truth topic. The map comes from --map or the bag's scenario.json sidecar
(bags written by geoloc-simulate); the initial fix is --initial-fix, else the last GPS
message of the bag (GPS stops at denial), else the sidecar's. Writes frames.csv,
summary.json, report.md and plots (trajectory over the map, error over time, ellipse
coverage) to --out.

--live: starts localize_node as a subprocess (config/localize.yaml + -p map/weights/...,
its log in <out>/node.log), publishes the bag into it over DDS in real time (x --rate) on
its own ROS_DOMAIN_ID, records ~/fix and ~/status (and the latency image -> fix), stops it
(SIGINT), and writes the same report (geoloc_ros/ros/live_replay.py). The initial fix is
whatever GPS the bag has; the node's own GPS-denial rule decides when it stops trusting it.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import ConfigError, load_dataclass, read_yaml
from ..geo.attitude import roll_pitch_from_quaternion  # noqa: F401 (re-exported: the node and replay agree)
from ..geo.errors import GeoError

DEFAULT_TOPICS = {"image": "/camera/image_raw", "camera_info": "/camera/camera_info", "odom": "/odom",
                  "gps": "/gps/fix", "truth": "/ground_truth/fix"}


@dataclass
class Track:
    """A time series (stamps sorted) with columns, interpolated at arbitrary stamps."""

    t: np.ndarray
    cols: np.ndarray  # [N, K]

    def at(self, stamps) -> np.ndarray:
        s = np.atleast_1d(np.asarray(stamps, dtype=np.float64))
        return np.stack([np.interp(s, self.t, self.cols[:, k]) for k in range(self.cols.shape[1])], axis=1)

    def covers(self, stamp: float, max_gap: float) -> bool:
        if len(self.t) == 0 or stamp < self.t[0] - max_gap or stamp > self.t[-1] + max_gap:
            return False
        i = int(np.searchsorted(self.t, stamp))
        near = min(abs(self.t[min(i, len(self.t) - 1)] - stamp), abs(self.t[max(i - 1, 0)] - stamp))
        return near <= max_gap


def _track(rows: list[tuple]) -> Track:
    if not rows:
        return Track(np.zeros(0), np.zeros((0, 1)))
    rows.sort(key=lambda r: r[0])
    a = np.array(rows, dtype=np.float64)
    return Track(a[:, 0], a[:, 1:])


@dataclass
class BagData:
    odom: Track  # x, y, z, unwrapped yaw, roll, pitch
    gps: list  # (stamp, lat, lon, alt, sigma_h)
    truth: Track  # lat, lon, alt
    intrinsics: object | None
    n_images: int


def read_bag_streams(bag: Path, topics: dict) -> BagData:
    """Everything but the images (small): odometry, GPS, truth, the first CameraInfo."""
    from ..bags import bag_topics, intrinsics_from_msg, read_messages, stamp_to_s, yaw_from_quaternion

    present = bag_topics(bag)
    if topics["image"] not in present:
        raise ValueError(f"{bag}: no image topic {topics['image']} (topics: {', '.join(sorted(present))})")
    if topics["odom"] not in present:
        raise ValueError(f"{bag}: no odometry topic {topics['odom']} (topics: {', '.join(sorted(present))})")
    odom, gps, truth, intr = [], [], [], None
    wanted = [topics[k] for k in ("odom", "gps", "truth", "camera_info") if topics[k] in present]
    for topic, _t, msg in read_messages(bag, wanted):
        st = stamp_to_s(msg.header.stamp)
        if topic == topics["odom"]:
            p, q = msg.pose.pose.position, msg.pose.pose.orientation
            roll, pitch = roll_pitch_from_quaternion(q.x, q.y, q.z, q.w)
            odom.append((st, p.x, p.y, p.z, yaw_from_quaternion(q.x, q.y, q.z, q.w), roll, pitch))
        elif topic == topics["camera_info"]:
            if intr is None:
                intr = intrinsics_from_msg(msg)
        elif topic in (topics["gps"], topics["truth"]):
            if msg.status.status < 0 or not (math.isfinite(msg.latitude) and math.isfinite(msg.longitude)):
                continue
            if topic == topics["truth"]:
                truth.append((st, msg.latitude, msg.longitude, msg.altitude))
            if topic == topics["gps"]:
                cov = np.asarray(msg.position_covariance, dtype=np.float64)
                sig = math.sqrt(max(cov[0], cov[4])) if msg.position_covariance_type > 0 else float("nan")
                gps.append((st, msg.latitude, msg.longitude, msg.altitude, sig))
    ot = _track(odom)
    if len(ot.t):
        ot.cols[:, 3] = np.unwrap(ot.cols[:, 3])
    gps.sort(key=lambda r: r[0])
    return BagData(ot, gps, _track(truth), intr, int(present[topics["image"]][1]))


def yaw_offset_from_gps(gps: list, odom: Track, window_s: float = 20.0, min_travel_m: float = 20.0):
    """Odom->world yaw offset from the GPS track before denial (see localize.alignment,
    which the node uses too); None when the UAV barely moved."""
    from ..localize.alignment import odom_yaw_offset

    if len(odom.t) < 2:
        return None

    def xy_at(t: float):
        return odom.at(t)[0, :2] if odom.t[0] <= t <= odom.t[-1] else None

    return odom_yaw_offset(gps, xy_at, window_s=window_s, min_travel_m=min_travel_m)


def _parse_fix(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--initial-fix must be lat,lon[,alt], got {text!r}") from None
    if len(vals) not in (2, 3) or not (-90 <= vals[0] <= 90 and -180 <= vals[1] <= 180):
        raise ValueError(f"--initial-fix must be lat,lon[,alt] in degrees, got {text!r}")
    return vals


def load_localizer_config(path: str | None, sets: list[str]):
    """LocalizerConfig from a YAML (top-level `localizer:` section or plain fields) + key=value.

    Every value is typed and range-checked here, before any bag is read: a wrong type used to
    pass and fail as a TypeError deep in the run. A --set value is read as YAML, typed by its
    field (strings are taken as written; `1e6` is a float); unknown keys name the closest field."""
    import dataclasses

    import yaml

    from ..config import did_you_mean, typed_scalar
    from ..localize import LocalizerConfig

    values: dict[str, tuple[object, str, str | None]] = {}  # field -> (value, where from, --set text)
    if path:
        raw = read_yaml(path)
        section = raw.get("localizer", raw)
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: 'localizer' must be a mapping of LocalizerConfig fields")
        values.update({str(k): (v, path, None) for k, v in section.items()})
    for item in sets:
        key, eq, text = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set wants KEY=VALUE, got {item!r}")
        try:
            v = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            v = text
        values[key.strip()] = (v, f"--set {item}", text.strip())
    fields = {f.name for f in dataclasses.fields(LocalizerConfig)}
    data: dict = {}
    for key, (v, where, text) in values.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r} for LocalizerConfig{did_you_mean(key, fields)}")
        try:
            want = LocalizerConfig.field_type(key)
        except KeyError:  # a tuple such as initial_fix: the dataclass checks it
            data[key] = tuple(v) if isinstance(v, list) else v
            continue
        if want is str and text is not None and not isinstance(v, str):
            v = text  # `--set retrieval_model=2024` names a file, not a number
        try:
            data[key] = typed_scalar(key, want, v, LocalizerConfig.RANGES.get(key))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return load_dataclass(LocalizerConfig, data, where=path or "--set")


def replay_offline(bag: str | Path, *, map_path: str | None = None, weights: str | None = None, device: str = "auto",
                   max_frames: int | None = None, topics: dict | None = None, initial_fix: str | None = None,
                   initial_sigma_m: float = 5.0, cfg=None, out_dir: str | Path | None = None, plots: bool = True,
                   progress: bool = True, net=None, ground_offset_m: float = 0.0, odom_max_gap_s: float = 0.5,
                   relocalize_at: list[float] = ()) -> dict:
    """Run the Localizer over `bag`; write the report files to `out_dir`; return the summary.
    `relocalize_at`: seconds after the first image at which to force a loss (the operator's
    ~/relocalize); the report gives the recovery from each, and from the scenario's teleports."""
    from ..bags import image_from_msg, load_sidecar, read_messages, stamp_to_s
    from ..geo.orthomap import OrthoMap
    from ..localize import Frame, Localizer, LocalizerConfig
    from ..localize.evaluate import markdown_report, plot_all, record_from_estimate, summarize, write_csv, \
        write_summary_json

    bag = Path(bag)
    if not bag.exists():
        raise FileNotFoundError(f"bag not found: {bag}")
    topics = {**DEFAULT_TOPICS, **(topics or {})}
    try:
        side = load_sidecar(bag)
    except (FileNotFoundError, ValueError):
        side = None
    if map_path is None:
        if side is None:
            raise ValueError(f"{bag}: no --map given and no scenario.json sidecar to take it from")
        map_path = str(side.map_path)
    data = read_bag_streams(bag, topics)
    if len(data.odom.t) < 2:
        raise ValueError(f"{bag}: fewer than 2 odometry messages on {topics['odom']}")

    # initial fix: CLI > last GPS message > sidecar
    yaw_off = yaw_offset_from_gps(data.gps, data.odom)
    if initial_fix:
        v = _parse_fix(initial_fix)
        fix = dict(lat=v[0], lon=v[1], alt=v[2] if len(v) > 2 else 0.0, sigma_m=initial_sigma_m, stamp=None,
                   source="--initial-fix")
    elif data.gps:
        st, la, lo, al, sg = data.gps[-1]
        fix = dict(lat=la, lon=lo, alt=al, sigma_m=max(initial_sigma_m, sg if math.isfinite(sg) else 0.0), stamp=st,
                   source=f"last {topics['gps']} message")
    elif side is not None and "initial_fix" in side.data:
        f = side.initial_fix
        fix = dict(lat=f["lat"], lon=f["lon"], alt=f.get("alt", 0.0), sigma_m=f.get("sigma_m", initial_sigma_m),
                   stamp=f.get("stamp"), source="scenario.json")
    else:
        raise ValueError(f"{bag}: no initial fix: no {topics['gps']} messages and no sidecar; pass --initial-fix lat,lon")
    fix_yaw_source = "none (prior)"

    cfg = cfg or LocalizerConfig()
    if net is None and weights and weights.lower() != "none":
        from ..model.weights import load_weights, resolve_weights

        net = load_weights(resolve_weights(weights), device="cpu")
    out_dir = Path(out_dir) if out_dir else bag.parent / f"{bag.name}_replay"
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    with OrthoMap.open(map_path) as omap:
        loc = Localizer(cfg, omap, net, device=device)
        intr = data.intrinsics
        fix_sent = False
        bar = None
        total = min(data.n_images, max_frames) if max_frames else data.n_images
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="frame", desc="replay", file=sys.stderr)
        first_stamp = None
        n = 0
        t_first_image = None
        forced = sorted(float(x) for x in relocalize_at)
        events: list[tuple[str, float]] = []
        if side is not None:
            start = float(side.data.get("start_stamp", 0.0))
            for tp in (side.data.get("scenario", {}).get("odometry", {}) or {}).get("teleports", []) or []:
                events.append((f"odometry teleport (t = {float(tp['t_s']):g} s)", start + float(tp["t_s"])))
        for _topic, _t, msg in read_messages(bag, [topics["image"]]):
            if max_frames and n >= max_frames:
                break
            st = stamp_to_s(msg.header.stamp)
            if intr is None or not data.odom.covers(st, odom_max_gap_s):
                continue
            n += 1
            if bar is not None:
                bar.update(1)
            o = data.odom.at(st)[0]
            odom_yaw = float((o[3] + math.pi) % (2 * math.pi) - math.pi)
            if not fix_sent and (fix["stamp"] is None or st >= fix["stamp"]):
                fstamp = fix["stamp"] if fix["stamp"] is not None else st
                yaw = None
                if yaw_off is not None and fix["source"] != "--initial-fix":
                    o_fix = data.odom.at(fstamp)[0]
                    yaw, fix_yaw_source = float(o_fix[3] + yaw_off), "GPS track vs odometry"
                elif side is not None and side.data.get("initial_fix", {}).get("yaw") is not None:
                    yaw, fix_yaw_source = float(side.initial_fix["yaw"]), "scenario.json"
                loc.set_initial_fix(fix["lat"], fix["lon"], fix["alt"], fix["sigma_m"], fstamp, yaw=yaw)
                fix_sent = True
                first_stamp = st
            frame = Frame(image=image_from_msg(msg), stamp=st, odom_xyz=o[:3].copy(), odom_yaw=odom_yaw,
                          altitude_agl=float(o[2] - ground_offset_m), intrinsics=intr,
                          roll=float(o[4]), pitch=float(o[5]))
            t_first_image = st if t_first_image is None else t_first_image
            while forced and st - t_first_image >= forced[0]:
                loc.request_relocalization()
                events.append((f"forced relocalization (t = {forced.pop(0):g} s)", st))
            est = loc.step(frame)
            truth = tuple(data.truth.at(st)[0][:2]) if data.truth.covers(st, 1.0) else None
            records.append(record_from_estimate(est, truth))
        if bar is not None:
            bar.close()
        summary = summarize(records, start_stamp=first_stamp, events=sorted(events, key=lambda e: e[1]))
        summary["gate_counts"] = dict(loc.gate.counts)
        summary["odom_resets_absorbed"] = loc.odom_jumps
        context = {"bag": str(bag), "map": str(map_path), "model": weights or ("custom net" if net else "none"),
                   "device": str(loc.device) if loc.device is not None else "n/a (no model)",
                   "initial fix": f"{fix['lat']:.6f}, {fix['lon']:.6f} +- {fix['sigma_m']:.1f} m ({fix['source']})",
                   "initial yaw": fix_yaw_source, "frames": f"{len(records)} ({max_frames or 'all'} requested)"}
        summary["context"] = context
        write_csv(records, out_dir / "frames.csv")
        write_summary_json(summary, out_dir / "summary.json")
        plot_paths = plot_all(records, out_dir, omap) if plots else []
    (out_dir / "report.md").write_text(markdown_report(summary, f"geoloc-replay: {bag.name}", context,
                                                       [str(p) for p in plot_paths]))
    summary["out_dir"] = str(out_dir)
    return summary


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="geoloc-replay", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bag", help="rosbag2 directory (MCAP or sqlite3)")
    ap.add_argument("--map", default=None, help="GeoTIFF/COG to localize against (default: the bag's scenario.json)")
    ap.add_argument("--weights", default=None, help="AMCF-Net weights (path without extension) or 'none'")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--max-frames", type=int, default=None, help="stop after this many image frames")
    ap.add_argument("--initial-fix", default=None, help="lat,lon[,alt] instead of the bag's last GPS fix")
    ap.add_argument("--initial-sigma", type=float, default=5.0, help="1-sigma of the initial fix (m); lower bound")
    ap.add_argument("--config", default=None, help="YAML with LocalizerConfig fields (optionally under 'localizer:')")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a LocalizerConfig field")
    ap.add_argument("--ground-offset", type=float, default=0.0,
                    help="terrain height minus take-off ground height (m): AGL = odom z - this")
    for k, v in DEFAULT_TOPICS.items():
        ap.add_argument(f"--{k.replace('_', '-')}-topic", default=v, help=f"default {v}")
    ap.add_argument("--relocalize-at", type=float, action="append", default=[], metavar="SECONDS",
                    help="force a loss (as ~/relocalize) this many seconds after the first image; repeatable; "
                         "the report gives the time to recover (offline mode)")
    ap.add_argument("--out", default=None, help="output directory (default: <bag>_replay next to the bag)")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    live = ap.add_argument_group("live replay (a real localize_node over DDS)")
    live.add_argument("--live", action="store_true", help="replay into a localize_node subprocess over DDS")
    live.add_argument("--rate", type=float, default=1.0, help="replay speed factor (1 = real time)")
    live.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID of the node and the replay "
                      "(default: a random one, away from a robot's graph)")
    live.add_argument("--params-file", default=None, help="node parameter YAML (default: config/localize.yaml)")
    live.add_argument("--node-param", action="append", default=[], metavar="NAME=VALUE",
                      help="extra node parameter, e.g. gps_denied_after=5.0 (typed as in the YAML)")
    live.add_argument("--startup-timeout", type=float, default=120.0, help="seconds for the node to come up")
    return ap


def _node_value(name: str, text: str):
    """A --node-param value typed like the parameter's declared default (ints for ints, ...)."""
    import yaml

    from ..ros.params import all_param_specs

    spec = {s.name: s for s in all_param_specs()}.get(name)
    if spec is None:
        raise ConfigError(f"--node-param: unknown node parameter {name!r} (see config/localize.yaml)")
    if isinstance(spec.default, str):
        return text
    v = yaml.safe_load(text)
    if isinstance(v, str) and isinstance(spec.default, float):
        try:
            v = float(text)  # YAML 1.1 reads 1e6 as a string
        except ValueError:
            pass
    if isinstance(spec.default, bool):
        if not isinstance(v, bool):
            raise ConfigError(f"--node-param {name} must be true or false, got {text!r}")
        return v
    if isinstance(spec.default, float) and isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(spec.default, int) and isinstance(v, int) and not isinstance(v, bool):
        return v
    raise ConfigError(f"--node-param {name} must be of type {spec.type_name}, got {text!r}")


def live_node_params(args, cfg, topics: dict, map_path: str) -> dict:
    """localize_node parameters for a live replay from the replay's own options."""
    import dataclasses

    from ..localize import LocalizerConfig

    w = args.weights
    p = {"map": str(Path(map_path).resolve()), "weights": "" if not w or w.lower() == "none" else w,
         "device": args.device, "ground_offset_m": float(args.ground_offset),
         "image_topic": topics["image"], "camera_info_topic": topics["camera_info"], "odom_topic": topics["odom"],
         "initial_fix_topic": topics["gps"]}
    if p["weights"] not in ("", "default"):
        p["weights"] = str(Path(p["weights"]).expanduser().resolve())
    default = LocalizerConfig()
    for f in dataclasses.fields(LocalizerConfig):
        v = getattr(cfg, f.name)
        if v == getattr(default, f.name):
            continue
        if type(v) not in (bool, int, float, str):
            raise ConfigError(f"localizer field {f.name!r} cannot be passed to the node (not a scalar)")
        p[f"localizer.{f.name}"] = v
    for item in args.node_param:
        if "=" not in item:
            raise ConfigError(f"--node-param wants NAME=VALUE, got {item!r}")
        k, v = (x.strip() for x in item.split("=", 1))
        p[k] = _node_value(k, v)
    return p


def run_live(args, cfg, topics: dict) -> dict:
    """`geoloc-replay --live`: node subprocess + live replay + report; returns the summary."""
    from ..bags import load_sidecar

    bag = Path(args.bag)
    if not bag.exists():
        raise FileNotFoundError(f"bag not found: {bag}")
    if args.initial_fix:
        raise ValueError("--initial-fix is for the offline replay; live, the node seeds from the bag's GPS "
                         f"({topics['gps']}) or its ~/set_initial_fix topic")
    if not args.rate > 0:
        raise ValueError(f"--rate must be > 0, got {args.rate}")
    map_path = args.map
    if map_path is None:
        try:
            map_path = str(load_sidecar(bag).map_path)
        except (FileNotFoundError, ValueError, KeyError):
            raise ValueError(f"{bag}: no --map given and no scenario.json sidecar to take it from") from None
    if not Path(map_path).is_file():
        raise FileNotFoundError(f"map not found: {map_path}")
    from ..ros.live_replay import PARAMS_FILE, LiveReplayError, NodeProcess, default_domain_id, replay_live, \
        write_live_report

    params = live_node_params(args, cfg, topics, map_path)
    out_dir = Path(args.out) if args.out else bag.parent / f"{bag.name}_live"
    out_dir.mkdir(parents=True, exist_ok=True)
    domain = args.domain_id if args.domain_id is not None else default_domain_id()
    params_file = Path(args.params_file) if args.params_file else PARAMS_FILE
    if args.params_file and not params_file.is_file():
        raise FileNotFoundError(f"--params-file not found: {params_file}")
    log = out_dir / "node.log"
    say = None if args.no_progress else (lambda m: print(m, file=sys.stderr))
    node = NodeProcess(params, domain, log, params_file)
    try:
        res = replay_live(bag, domain, rate=args.rate, topics=topics, max_frames=args.max_frames,
                          startup_timeout=args.startup_timeout, node_alive=node.alive, node_log=node.log_tail,
                          progress=say is not None)
    finally:
        rc = node.stop()
    if not res.records:
        raise LiveReplayError(f"localize_node processed no frame (no ~/status received); see {log}:\n"
                              + node.log_tail())
    context = {"bag": str(bag), "map": str(map_path), "model": params["weights"] or "none",
               "mode": f"live over DDS (ROS_DOMAIN_ID {domain}, x{args.rate:g})", "node exit code": str(rc),
               "node log": str(log), "frames": f"{len(res.records)} processed ({args.max_frames or 'all'} requested)"}
    return write_live_report(res, out_dir, title=f"geoloc-replay --live: {bag.name}", context=context,
                             map_path=map_path, plots=not args.no_plots)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    topics = {k: getattr(args, f"{k}_topic") for k in DEFAULT_TOPICS}
    try:
        cfg = load_localizer_config(args.config, args.set)
        if args.live:
            if args.relocalize_at:
                raise ValueError("--relocalize-at works offline only (live: call the node's ~/relocalize service)")
            return _main_live(args, cfg, topics)
        s = replay_offline(args.bag, map_path=args.map, weights=args.weights, device=args.device,
                           max_frames=args.max_frames, topics=topics, initial_fix=args.initial_fix,
                           initial_sigma_m=args.initial_sigma, cfg=cfg, out_dir=args.out, plots=not args.no_plots,
                           progress=not args.no_progress, ground_offset_m=args.ground_offset,
                           relocalize_at=args.relocalize_at)
    except (ValueError, FileNotFoundError, GeoError, ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    e = s.get("error_m", {})
    print(f"frames {s.get('frames', 0)}, fixes {s.get('fixes', 0)}, error median {e.get('median', float('nan')):.2f} m "
          f"p95 {e.get('p95', float('nan')):.2f} m, availability "
          f"{100 * s.get('fix_fraction_after_first_fix', 0):.1f} %, 95 % ellipse coverage "
          f"{100 * s.get('ellipse95_coverage', float('nan')):.1f} % -> {s['out_dir']}/report.md")
    for ev in s.get("events", []):
        print(f"{ev['event']}: fix back and stable after {ev['recovery_s']:.1f} s, worst error after it "
              f"{ev['max_error_after_m']:.1f} m")
    return 0


def _main_live(args, cfg, topics) -> int:
    from ..ros.live_replay import LiveReplayError

    try:
        s = run_live(args, cfg, topics)
    except LiveReplayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    e, lv = s.get("error_m", {}), s["live"]
    le = lv["latency_e2e_ms"]
    print(f"live: images {lv['images_published']}, processed {lv['frames_processed']}, fixes {lv['fixes_received']}; "
          f"after GPS denial: error median {e.get('median', float('nan')):.2f} m p95 {e.get('p95', float('nan')):.2f} m, "
          f"fix for {100 * lv['fix_fraction_of_images_after_denial']:.1f} % of images, 95 % ellipse coverage "
          f"{100 * s.get('ellipse95_coverage', float('nan')):.1f} %, latency median {le['median']:.0f} ms p95 "
          f"{le['p95']:.0f} ms -> {s['out_dir']}/report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
