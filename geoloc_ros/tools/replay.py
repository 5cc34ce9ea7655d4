"""geoloc-replay: run the Localizer over a recorded rosbag2 and report how well it did.

    geoloc-replay runs/loop_bag --weights geoloc_ros/weights/amcf_small --out runs/loop_replay
    geoloc-replay flight.mcap_dir --map ortho.tif --initial-fix 47.40,8.55 --max-frames 500
    geoloc-replay runs/loop_bag --live --weights default --rate 1.0 --out runs/loop_live

Offline: reads the bag (MCAP or sqlite3) with `rosbags` and feeds its messages, in order,
through the node's own input path (geoloc_ros/runtime: decoding, skip rules, the
GPS-denial rule, restarts) into the same `localize.Localizer`, with the bag time as the
clock, then compares the fixes with the ground-truth topic. The map comes from --map or the
bag's scenario.json sidecar (bags written by geoloc-simulate); the bag's GPS seeds the
localizer through the node's GPS-denial rule (--node-param sets its parameters), else
--initial-fix or the sidecar's fix seeds it at the first image. The weights default to the
packaged ones, as the node's. Writes frames.csv (skipped frames with their reason),
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
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from .. import cli
from ..bags import DEFAULT_TOPICS
from ..config import ConfigError, load_dataclass, read_yaml
from ..errors import GeolocError
from ..runtime.session import ODOM_WAIT_S


def node_parameters(overrides: dict | None = None) -> dict:
    """localize_node's parameter values: the table's defaults, then `overrides` (checked
    names and types, as `--node-param`). The offline replay applies the same input and GPS
    rules as the node with these values, so offline and live replays agree."""
    from ..ros.params import all_param_specs

    values = {s.name: s.default for s in all_param_specs()}
    for k, v in (overrides or {}).items():
        if k not in values:
            raise ConfigError(f"unknown node parameter {k!r} (see config/localize.yaml)")
        values[k] = v
    return values


def _parse_fix(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise GeolocError(f"--initial-fix must be lat,lon[,alt], got {text!r}") from None
    if len(vals) not in (2, 3) or not (-90 <= vals[0] <= 90 and -180 <= vals[1] <= 180):
        raise GeolocError(f"--initial-fix must be lat,lon[,alt] in degrees, got {text!r}")
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


@dataclass
class _SeedPlan:
    """Who seeds the localizer: the bag's GPS through the node's rule, or one operator fix."""

    seed: object | None  # runtime.Seed at the first image, or None (the GPS rule seeds)
    source: str
    gps_rows: list  # the bag's valid GPS fixes (empty when an operator fix replaces them)


def _seed_plan(bag: Path, topics: dict, side, initial_fix: str | None, initial_sigma_m: float) -> _SeedPlan:
    from ..bags import read_fixes
    from ..runtime import Seed

    if initial_fix:
        v = _parse_fix(initial_fix)
        return _SeedPlan(Seed(v[0], v[1], v[2] if len(v) > 2 else 0.0, initial_sigma_m, math.nan, "operator"),
                         "--initial-fix", [])
    gps_rows = read_fixes(bag, topics["gps"])
    if gps_rows:
        return _SeedPlan(None, f"{topics['gps']} through the node's GPS-denial rule", gps_rows)
    if side is None or "initial_fix" not in side.data:
        raise GeolocError(f"{bag}: no initial fix: no {topics['gps']} messages and no sidecar; pass --initial-fix "
                         f"lat,lon")
    f = side.initial_fix
    yaw, stamp = f.get("yaw"), f.get("stamp")
    seed = Seed(f["lat"], f["lon"], f.get("alt", 0.0), f.get("sigma_m", initial_sigma_m),
                math.nan if stamp is None else stamp, "operator", yaw=None if yaw is None else float(yaw))
    return _SeedPlan(seed, "scenario.json", [])


def _scenario_events(side) -> list[tuple[str, float]]:
    """The simulated odometry teleports of a bag's sidecar, as (name, stamp) events."""
    if side is None:
        return []
    start = float(side.data.get("start_stamp", 0.0))
    tps = (side.data.get("scenario", {}).get("odometry", {}) or {}).get("teleports", []) or []
    return [(f"odometry teleport (t = {float(tp['t_s']):g} s)", start + float(tp["t_s"])) for tp in tps]


def _stamp_of(msg) -> float:
    from ..runtime.messages import InputError, stamp_to_float

    try:
        return stamp_to_float(msg.header.stamp)
    except (InputError, AttributeError):
        return math.nan


class _BagFeed:
    """A bag's messages through a runtime.Session as the node receives them.

    Messages go in recording order, the bag time is the clock; an image is processed once
    the odometry at or after its stamp has been read, after the messages recorded at the same
    time (its CameraInfo), or when ODOM_WAIT_S of bag time passed: what the node's worker does
    when it waits for odometry. Each image becomes a FrameRecord (estimate or skip)."""

    def __init__(self, session, plan: _SeedPlan, topics: dict, relocalize_at, truth_at, max_frames, bar) -> None:
        self.session, self.plan, self.topics = session, plan, topics
        self.forced = sorted(float(x) for x in relocalize_at)
        self.truth_at, self.max_frames, self.bar = truth_at, max_frames, bar
        self.records: list = []
        self.events: list[tuple[str, float]] = []
        self.pending: deque = deque()
        self.n = 0
        self.t_first: float | None = None

    def done(self) -> bool:
        return bool(self.max_frames) and self.n >= self.max_frames

    def _frame(self, msg, arrival: float) -> None:
        from ..localize.evaluate import record_from_estimate, record_from_skip

        st = _stamp_of(msg)
        if self.t_first is None and math.isfinite(st):
            self.t_first = st
            seed = self.plan.seed
            if seed is not None:
                if not math.isfinite(seed.stamp):
                    seed.stamp = st
                self.session.seed(seed)
        while self.forced and math.isfinite(st) and st - self.t_first >= self.forced[0]:
            why = self.session.request_relocalization()
            self.events.append((f"forced relocalization (t = {self.forced.pop(0):g} s)" + (f": {why}" if why else ""),
                                st))
        res = self.session.step(msg, arrival)
        self.n += 1
        if self.bar is not None:
            self.bar.update(1)
        if res.estimate is not None:
            self.records.append(record_from_estimate(res.estimate, self.truth_at(res.estimate.stamp)))
        else:
            self.records.append(record_from_skip(st, self.session.localizer_state, res.skip.reason, res.skip.text,
                                                 self.truth_at(st) if math.isfinite(st) else None))

    def _flush(self, now: float) -> None:
        while self.pending and not self.done():
            msg, arrival, st = self.pending[0]
            last = self.session.assembler.odom.last_stamp()
            covered = not math.isfinite(st) or (last is not None and last >= st)
            if not ((covered and arrival < now) or now - arrival >= ODOM_WAIT_S):
                return
            self.pending.popleft()
            self._frame(msg, arrival)

    def run(self, messages) -> None:
        """Feed (topic, bag time ns, message) in recording order, to the end (or max_frames)."""
        t, s = self.topics, self.session
        last_now = None
        for topic, t_ns, msg in messages:
            now = t_ns * 1e-9
            if last_now is not None and now > last_now:
                self._flush(now)  # the batch recorded at last_now is complete
            last_now = now
            if topic == t["odom"]:
                s.on_odometry(msg)
            elif topic == t["camera_info"]:
                s.on_camera_info(msg)
            elif topic == t["gps"]:
                s.on_gps_fix(msg, now)
            elif topic == t["image"]:
                self.pending.append((msg, now, _stamp_of(msg)))
            s.tick(now)
            self._flush(now)
            if self.done():
                break
        self._flush(math.inf)


def replay_offline(bag: str | Path, *, map_path: str | None = None, weights: str | None = "default",
                   device: str = "auto", max_frames: int | None = None, topics: dict | None = None,
                   initial_fix: str | None = None, initial_sigma_m: float = 5.0, cfg=None,
                   node_params: dict | None = None, out_dir: str | Path | None = None, plots: bool = True,
                   progress: bool = True, net=None, ground_offset_m: float | None = None,
                   relocalize_at: list[float] = ()) -> dict:
    """Run the Localizer over `bag` exactly as the node would; write the report files to
    `out_dir`; return the summary.

    The bag's messages go through the same `runtime.Session` the node runs (decoding, skip
    rules, the GPS-denial rule, restarts; `_BagFeed`). `node_params`: node parameter
    overrides (the input and GPS rules). `initial_fix` ("lat,lon[,alt]"): an operator fix at
    the first image instead of the bag's GPS. `relocalize_at`: seconds after the first image
    at which to force a loss (the operator's ~/relocalize); the report gives the recovery
    from each, and from the scenario's teleports."""
    from collections import Counter

    from ..bags import load_sidecar, read_messages, replayable_topics, truth_series
    from ..geo.orthomap import OrthoMap
    from ..localize import Localizer, LocalizerConfig
    from ..localize.evaluate import skip_counts, summarize
    from ..localize.plots import plot_all
    from ..localize.report import markdown_report, write_csv, write_summary_json
    from ..runtime import GpsRuleConfig, InputConfig, Session

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
            raise GeolocError(f"{bag}: no --map given and no scenario.json sidecar to take it from")
        map_path = str(side.map_path)
    present = replayable_topics(bag, topics)
    p = node_parameters(node_params)
    if ground_offset_m is not None:
        p["ground_offset_m"] = float(ground_offset_m)
    inputs, gps_rule = InputConfig.from_params(p), GpsRuleConfig.from_params(p)
    plan = _seed_plan(bag, topics, side, initial_fix, initial_sigma_m)
    cfg = cfg or LocalizerConfig()
    model_name = "custom net" if net is not None else (weights or "none")
    if net is None and weights and weights.lower() != "none":
        from ..model.weights import load_weights, resolve_weights

        net = load_weights(resolve_weights(weights), device="cpu")
    out_dir = Path(out_dir) if out_dir else bag.parent / f"{bag.name}_replay"
    out_dir.mkdir(parents=True, exist_ok=True)
    truth = truth_series(bag, topics["truth"])
    problems: Counter = Counter()

    def truth_at(stamp: float):
        try:
            return tuple(truth.at(stamp, 1.0)[:2])
        except LookupError:
            return None

    with OrthoMap.open(map_path) as omap:
        recognizer = _place_recognizer(cfg, map_path, device if net is not None else "cpu")
        session = Session(lambda: Localizer(cfg, omap, net, device=device, relocalization=recognizer), inputs,
                          gps_rule, report=lambda kind, text: problems.update([kind]))
        n_images = present[topics["image"]][1]
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=min(n_images, max_frames) if max_frames else n_images, unit="frame", desc="replay",
                       file=sys.stderr)
        feed = _BagFeed(session, plan, topics, relocalize_at, truth_at, max_frames, bar)
        wanted = [topics[k] for k in ("image", "camera_info", "odom") if topics[k] in present]
        feed.run(read_messages(bag, wanted + ([topics["gps"]] if plan.gps_rows else [])))
        if bar is not None:
            bar.close()
        records, loc = feed.records, session.localizer
        start_stamp = plan.gps_rows[-1][0] if plan.gps_rows else (records[0].stamp if records else None)
        events = sorted(_scenario_events(side) + feed.events, key=lambda e: e[1])
        summary = summarize(records, start_stamp=start_stamp, events=events)
        summary.update(counts={**dict(loc.counts), **dict(loc.tracker.counts)}, odom_resets_absorbed=loc.odom_jumps,
                       input_problems=dict(problems), restarts=session.restarts,
                       skipped_all_frames=skip_counts(records))  # "skipped": frames after GPS denial only
        context = {"bag": str(bag), "map": str(map_path), "model": model_name,
                   "device": str(loc.device) if loc.device is not None else "n/a (no model)",
                   "initial fix": plan.source, "seeds": "; ".join(session.seed_log) or "none",
                   "evaluated from": "the last GPS message (denial)" if plan.gps_rows else "the first frame",
                   "frames": f"{len(records)} ({max_frames or 'all'} requested)"}
        summary["context"] = context
        write_csv(records, out_dir / "frames.csv")
        write_summary_json(summary, out_dir / "summary.json")
        plot_paths = plot_all(records, out_dir, omap) if plots else []
    (out_dir / "report.md").write_text(markdown_report(summary, f"geoloc-replay: {bag.name}", context,
                                                       [str(q) for q in plot_paths]))
    summary["out_dir"] = str(out_dir)
    return summary


def _place_recognizer(cfg, map_path, device):
    """The retrieval place recognizer the config asks for, or None (then the window sweep)."""
    if cfg.relocalization != "retrieval":
        return None
    from ..retrieval.relocalizer import place_recognizer_from_config

    recognizer, why = place_recognizer_from_config(cfg, map_path, device)
    if why:
        print(f"warning: retrieval relocalization unavailable, using the window sweep: {why}", file=sys.stderr)
    return recognizer


def build_parser() -> argparse.ArgumentParser:
    ap = cli.tool_parser("geoloc-replay", __doc__)
    ap.add_argument("bag", help="rosbag2 directory (MCAP or sqlite3)")
    ap.add_argument("--map", default=None, help="GeoTIFF/COG to localize against (default: the bag's scenario.json)")
    cli.add_weights(ap, "AMCF-Net weights: 'default' (the packaged ones, as the node), a path without extension, "
                    "or 'none'", default="default")
    cli.add_device(ap)
    ap.add_argument("--max-frames", type=int, default=None, help="stop after this many image frames")
    ap.add_argument("--initial-fix", default=None, help="lat,lon[,alt]: an operator fix at the first image instead of "
                    "the bag's GPS (offline mode)")
    ap.add_argument("--initial-sigma", type=float, default=5.0, help="1-sigma of the initial fix (m); lower bound")
    cli.add_config(ap, "LocalizerConfig (optionally under 'localizer:')")
    cli.add_set(ap, "LocalizerConfig")
    ap.add_argument("--ground-offset", type=float, default=None,
                    help="terrain height minus take-off ground height (m): AGL = odom z - this (node parameter "
                         "ground_offset_m)")
    ap.add_argument("--node-param", action="append", default=[], metavar="NAME=VALUE",
                    help="node parameter for the input and GPS rules (offline) or the node (live), e.g. "
                         "gps_denied_after=5.0 (typed as in config/localize.yaml)")
    for k, v in DEFAULT_TOPICS.items():
        ap.add_argument(f"--{k.replace('_', '-')}-topic", default=v, help=f"default {v}")
    ap.add_argument("--relocalize-at", type=float, action="append", default=[], metavar="SECONDS",
                    help="force a loss (as ~/relocalize) this many seconds after the first image; repeatable; "
                         "the report gives the time to recover (offline mode)")
    cli.add_out(ap, "output directory (default: <bag>_replay next to the bag)")
    ap.add_argument("--no-plots", action="store_true")
    cli.add_quiet(ap, "no progress bar or node log lines")
    live = ap.add_argument_group("live replay (a real localize_node over DDS)")
    live.add_argument("--live", action="store_true", help="replay into a localize_node subprocess over DDS")
    live.add_argument("--rate", type=float, default=1.0, help="replay speed factor (1 = real time)")
    live.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID of the node and the replay "
                      "(default: a random one, away from a robot's graph)")
    live.add_argument("--params-file", default=None, help="node parameter YAML (default: config/localize.yaml)")
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


def parse_node_params(items: list[str]) -> dict:
    """`--node-param NAME=VALUE` items -> {name: typed value} (checked against the node's table)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--node-param wants NAME=VALUE, got {item!r}")
        k, v = (x.strip() for x in item.split("=", 1))
        out[k] = _node_value(k, v)
    return out


def live_node_params(args, cfg, topics: dict, map_path: str) -> dict:
    """localize_node parameters for a live replay from the replay's own options."""
    import dataclasses

    from ..localize import LocalizerConfig

    w = args.weights
    p = {"map": str(Path(map_path).resolve()), "weights": "" if not w or w.lower() == "none" else w,
         "device": args.device,
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
    if args.ground_offset is not None:
        p["ground_offset_m"] = float(args.ground_offset)
    p.update(parse_node_params(args.node_param))
    return p


def run_live(args, cfg, topics: dict) -> dict:
    """`geoloc-replay --live`: node subprocess + live replay + report; returns the summary."""
    from ..bags import load_sidecar

    bag = Path(args.bag)
    if not bag.exists():
        raise FileNotFoundError(f"bag not found: {bag}")
    if args.initial_fix:
        raise GeolocError("--initial-fix is for the offline replay; live, the node seeds from the bag's GPS "
                         f"({topics['gps']}) or its ~/set_initial_fix topic")
    if not args.rate > 0:
        raise GeolocError(f"--rate must be > 0, got {args.rate}")
    map_path = args.map
    if map_path is None:
        try:
            map_path = str(load_sidecar(bag).map_path)
        except (FileNotFoundError, ValueError, KeyError):
            raise GeolocError(f"{bag}: no --map given and no scenario.json sidecar to take it from") from None
    if not Path(map_path).is_file():
        raise FileNotFoundError(f"map not found: {map_path}")
    from ..ros.live_replay import PARAMS_FILE, default_domain_id, replay_into_node, write_live_report

    params = live_node_params(args, cfg, topics, map_path)
    out_dir = Path(args.out) if args.out else bag.parent / f"{bag.name}_live"
    out_dir.mkdir(parents=True, exist_ok=True)
    domain = args.domain_id if args.domain_id is not None else default_domain_id()
    params_file = Path(args.params_file) if args.params_file else PARAMS_FILE
    if args.params_file and not params_file.is_file():
        raise FileNotFoundError(f"--params-file not found: {params_file}")
    log = out_dir / "node.log"
    say = None if args.quiet else (lambda m: print(m, file=sys.stderr))
    res, rc = replay_into_node(bag, params, domain, log, params_file, rate=args.rate, topics=topics,
                               max_frames=args.max_frames, startup_timeout=args.startup_timeout,
                               progress=say is not None)
    context = {"bag": str(bag), "map": str(map_path), "model": params["weights"] or "none",
               "mode": f"live over DDS (ROS_DOMAIN_ID {domain}, x{args.rate:g})", "node exit code": str(rc),
               "node log": str(log), "frames": f"{len(res.records)} processed ({args.max_frames or 'all'} requested)"}
    return write_live_report(res, out_dir, title=f"geoloc-replay --live: {bag.name}", context=context,
                             map_path=map_path, plots=not args.no_plots)


def run(args: argparse.Namespace) -> int | None:
    """Offline (or --live) replay of the bag; prints the headline figures."""
    topics = {k: getattr(args, f"{k}_topic") for k in DEFAULT_TOPICS}
    cfg = load_localizer_config(args.config, args.set)
    if args.live:
        if args.relocalize_at:
            raise GeolocError("--relocalize-at works offline only (live: call the node's ~/relocalize service)")
        return _main_live(args, cfg, topics)
    s = replay_offline(args.bag, map_path=args.map, weights=args.weights, device=args.device,
                       max_frames=args.max_frames, topics=topics, initial_fix=args.initial_fix,
                       initial_sigma_m=args.initial_sigma, cfg=cfg, node_params=parse_node_params(args.node_param),
                       out_dir=args.out, plots=not args.no_plots, progress=not args.quiet,
                       ground_offset_m=args.ground_offset, relocalize_at=args.relocalize_at)
    e = s.get("error_m", {})
    print(f"frames {s.get('frames', 0)}, fixes {s.get('fixes', 0)}, error median {e.get('median', float('nan')):.2f} m "
          f"p95 {e.get('p95', float('nan')):.2f} m, availability "
          f"{100 * s.get('fix_fraction_after_first_fix', 0):.1f} %, 95 % ellipse coverage "
          f"{100 * s.get('ellipse95_coverage', float('nan')):.1f} % -> {s['out_dir']}/report.md")
    for ev in s.get("events", []):
        print(f"{ev['event']}: fix back and stable after {ev['recovery_s']:.1f} s, worst error after it "
              f"{ev['max_error_after_m']:.1f} m")
    return 0


def _main_live(args, cfg, topics) -> int | None:
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


main = cli.entry_point(build_parser, run)


if __name__ == "__main__":
    raise SystemExit(main())
