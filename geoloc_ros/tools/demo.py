"""geoloc-demo: a procedural world, a simulated flight with GPS denial, the real node over DDS.

    geoloc-demo                              (packaged scenario short_demo, shipped weights)
    geoloc-demo --out demo_out --rate 2 --device cuda --keep
    geoloc-demo --weights runs/train/best.safetensors --frames 60

Stages (each printed with its time): (1) generate the procedural world (two epochs: the
map the localizer knows and the "year later" world the camera sees), (2) simulate the
flight into a rosbag2 (camera, odometry with drift, GPS that stops after the scenario's
`gps.denial_s`), (3) start localize_node with the weights, (4) replay the bag into it over
DDS in real time (x --rate) and record its ~/fix and ~/status, (5) report: error after GPS
denial, availability, TRACKING share, 95 % ellipse coverage, latency; `demo.png` shows the
estimate against the ground truth over the map and the error over time. Nothing is tuned
after the fact: a diverged estimate is reported as such.
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from .. import cli, resources
from ..errors import GeolocError
from ..geo.errors import GeoError

#: a packaged scenario (config/scenarios/<name>.yaml, found through geoloc_ros.resources)
DEFAULT_SCENARIO = "short_demo"
#: after GPS denial, a p95 error above this (or no fix at all) is called a divergence
DIVERGED_P95_M = 50.0


class DemoError(RuntimeError):
    """The demo could not produce a result (node failed, published nothing)."""


def _scenario_path(text: str) -> Path:
    """--scenario: a YAML file (relative to the working directory), a packaged scenario's name
    (`short_demo`, `suite/ci/smoke_40s`), or a path inside the package's share directory
    (`config/scenarios/x.yaml`, what earlier versions documented); works the same from a
    checkout and an install."""
    p = Path(text).expanduser()
    if p.is_file():
        return p
    if p.is_absolute():
        raise resources.ResourceNotFoundError(f"scenario not found: {text}")
    try:
        return resources.scenario_file(text)
    except resources.ResourceNotFoundError as exc:
        packaged = exc
    if len(p.parts) > 1:
        try:
            return resources.find(p)
        except resources.ResourceNotFoundError:
            pass
    raise resources.ResourceNotFoundError(f"scenario not found: {text}: no such file, and {packaged}") from None


def _weights_param(text: str) -> tuple[str, str]:
    """(node parameter value, what to print) for --weights."""
    if text.lower() in ("none", ""):
        return "", "none (dead reckoning only)"
    if text == "default":
        from ..model.weights import WeightsError, packaged_weights_path
        try:
            found = packaged_weights_path()
        except WeightsError as exc:
            raise FileNotFoundError(f"{exc}; pass --weights PATH to a trained model") from None
        return "default", f"packaged {found.name}"
    p = Path(text).expanduser()
    cand = [p, p.with_suffix(".safetensors"), Path(str(p) + ".safetensors")]
    if not any(c.is_file() for c in cand):
        raise FileNotFoundError(f"weights not found: {text} (want PATH.safetensors with PATH.json next to it)")
    return str(p.resolve()), str(p)


class _Stages:
    def __init__(self, total: int) -> None:
        self.total, self.k, self.t0 = total, 0, time.perf_counter()
        self.times: dict[str, float] = {}

    def start(self, name: str) -> float:
        self.k += 1
        print(f"[{self.k}/{self.total}] {name} ...", flush=True)
        return time.perf_counter()

    def done(self, name: str, t: float, detail: str = "") -> None:
        dt = time.perf_counter() - t
        self.times[name] = dt
        print(f"      {name}: {dt:.1f} s" + (f" ({detail})" if detail else ""), flush=True)


def build_parser() -> argparse.ArgumentParser:
    ap = cli.tool_parser("geoloc-demo", __doc__)
    cli.add_out(ap, "output folder (default: ./demo_out)", default="demo_out")
    cli.add_weights(ap, "'default' (packaged geoloc_ros/weights), a path to .safetensors(+.json), or 'none'",
                    default="default")
    ap.add_argument("--scenario", default=DEFAULT_SCENARIO,
                    help=f"scenario YAML, or the name of a packaged one (default {DEFAULT_SCENARIO})")
    ap.add_argument("--rate", type=float, default=1.0, help="replay speed factor (1 = real time)")
    cli.add_device(ap)
    ap.add_argument("--frames", type=int, default=None, help="cut the flight to this many camera frames")
    ap.add_argument("--keep", action="store_true", help="keep the generated world and bag in <out>/work")
    ap.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: a random one)")
    ap.add_argument("--node-param", action="append", default=[], metavar="NAME=VALUE",
                    help="extra localize_node parameter (typed as in config/localize.yaml)")
    ap.add_argument("--startup-timeout", type=float, default=180.0, help="seconds for the node to come up")
    return ap


def _check_args(args) -> None:
    if not args.rate > 0:
        raise GeolocError(f"--rate must be > 0, got {args.rate}")
    if args.frames is not None and args.frames < 2:
        raise GeolocError(f"--frames must be >= 2, got {args.frames}")
    if args.domain_id is not None and not 0 <= args.domain_id <= 232:
        raise GeolocError(f"--domain-id must be in 0..232, got {args.domain_id}")
    import re
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", args.device):
        raise GeolocError(f"--device must be auto, cpu, cuda or cuda:N, got {args.device!r}")


def _world_and_flight(sc, sc_path: Path, work: Path, st: _Stages) -> tuple[Path, Path]:
    """Stages 1 and 2: the procedural world (or the scenario's map) and the simulated bag;
    returns (bag, the localizer's map)."""
    from ..tools.simulate import run_scenario, world_files

    t = st.start("world")
    ws = sc.world
    if ws.map:
        detail = f"existing map {ws.map}"
    else:
        files = world_files(ws.generate, work.resolve(), sorted({ws.map_epoch, ws.camera_epoch}), verbose=False)
        detail = (f"{ws.generate.n_px}x{ws.generate.n_px} px at {ws.generate.gsd_m:g} m/px, epochs "
                  f"{', '.join(str(e) for e in files)}")
    st.done("world", t, detail)
    t = st.start("simulate flight")
    bag = work / "bag"
    side = run_scenario(sc, bag, scenario_dir=sc_path.resolve().parent, progress=False)
    st.done("simulate flight", t, f"{side['frames_written']} frames, {side['duration_s']:.0f} s")
    return bag, (bag / side["map_path"]).resolve()


def _node_and_replay(args, params: dict, bag: Path, out: Path, dur: float, st: _Stages):
    """Stages 3 and 4: localize_node as a subprocess, the bag replayed into it over DDS;
    returns (the live replay's result, the node's exit code)."""
    from ..ros.live_replay import default_domain_id, replay_into_node

    domain = args.domain_id if args.domain_id is not None else default_domain_id()
    t = st.start("start localize_node")
    t_replay = None

    def say(msg: str) -> None:
        nonlocal t_replay
        if msg.startswith("matched"):
            st.done("start localize_node", t, f"ROS_DOMAIN_ID {domain}, log {out / 'node.log'}")
            t_replay = st.start(f"live replay over DDS (x{args.rate:g}, ~{dur / args.rate:.0f} s)")

    res, rc_node = replay_into_node(bag, params, domain, out / "node.log", rate=args.rate,
                                    startup_timeout=args.startup_timeout, progress=say)
    st.done("live replay over DDS", t_replay, f"{res.images_published} images published")
    return res, rc_node


def run_demo(args) -> tuple[int, dict]:
    """The five stages; returns (exit code, summary)."""
    _check_args(args)
    sc_path = _scenario_path(args.scenario)  # before the heavy imports: a wrong name fails at once
    from ..data.flight import Trajectory, flight_duration
    from ..ros.live_replay import write_live_report
    from ..tools.replay import parse_node_params
    from ..tools.simulate import load_scenario

    sc = load_scenario(sc_path)
    weights, weights_text = _weights_param(args.weights)
    extra = parse_node_params(args.node_param)
    if args.frames is not None:
        sc.duration_s = args.frames / sc.camera.rate_hz
    dur = flight_duration(sc, Trajectory(sc.trajectory, sc.yaw, sc.camera, seed=sc.seed))
    out = Path(args.out)
    work = out / "work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    st = _Stages(5)
    t_all = time.perf_counter()
    print(f"geoloc-demo: scenario {sc.name} ({sc_path}), {dur:.0f} s flight, GPS denied after "
          f"{sc.gps.denial_s if sc.gps.denial_s is not None else 'never'} s; weights {weights_text}; out {out}/")

    bag, map_path = _world_and_flight(sc, sc_path, work, st)
    params = {"map": str(map_path), "weights": weights, "device": args.device, **extra}
    res, rc_node = _node_and_replay(args, params, bag, out, dur, st)

    # 5. report
    t = st.start("report")
    context = {"scenario": f"{sc.name} ({sc_path.name})", "weights": weights_text, "device": args.device,
               "mode": f"live over DDS, x{args.rate:g}", "node exit code": str(rc_node)}
    summary = write_live_report(res, out, title=f"geoloc-demo: {sc.name}", context=context, map_path=map_path)
    png = plot_demo(res, map_path, out / "demo.png", denial_stamp=res.eval_start_stamp)
    st.done("report", t, f"{png}")
    total = time.perf_counter() - t_all
    summary["demo"] = {"stage_s": st.times, "total_s": total}
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    code, lines = report_lines(summary, total)
    print("\n".join(lines))
    print(f"files: {out}/demo.png, {out}/report.md, {out}/frames.csv, {out}/summary.json, {out}/node.log"
          + (f", {work}/ (world + bag)" if args.keep else ""))
    return code, summary


def report_lines(summary: dict, total_s: float) -> tuple[int, list[str]]:
    """The printed report and the exit code (0; 1 when the node published no fix at all)."""
    lv = summary["live"]
    e = summary.get("error_m", {"n": 0})

    def f(x, nd=1):
        return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"

    recv = lv["node_counters"].get("frames_received")
    lines = ["", "==== geoloc-demo report (frames after GPS denial) ====",
             f"horizontal error     median {f(e.get('median'))} m, p95 {f(e.get('p95'))} m, max {f(e.get('max'))} m "
             f"(n = {e.get('n', 0)} fixes)",
             f"frames with a fix    {f(100 * lv['fix_fraction_of_images_after_denial'])} % of "
             f"{lv['images_after_denial']} camera images",
             f"TRACKING             {f(100 * summary.get('state_fractions', {}).get('TRACKING', float('nan')))} % "
             f"of processed frames ({lv['frames_processed']} processed, node received {recv or 'n/a'}, "
             f"dropped {lv['frames_dropped_by_node']})",
             f"95 % ellipse cover.  {f(100 * summary.get('ellipse95_coverage', float('nan')))} % (honest: ~95 %)",
             f"latency image->fix   median {f(lv['latency_e2e_ms']['median'], 0)} ms, p95 "
             f"{f(lv['latency_e2e_ms']['p95'], 0)} ms (inside the node: median "
             f"{f(lv['latency_node_ms']['median'], 0)} ms, p95 {f(lv['latency_node_ms']['p95'], 0)} ms)",
             f"total time           {total_s:.0f} s"]
    code = 0
    if lv["fixes_received"] == 0:
        lines.append("RESULT: FAILED - the node published no fix (see node.log and report.md)")
        code = 1
    elif e.get("n", 0) == 0 or not e.get("p95", math.inf) <= DIVERGED_P95_M:
        lines.append(f"RESULT: DIVERGED - after GPS denial the estimate did not stay on the ground truth "
                     f"(p95 error {f(e.get('p95'))} m > {DIVERGED_P95_M:g} m); see demo.png")
    else:
        lines.append("RESULT: the estimate followed the ground truth after GPS denial")
    if recv is not None and lv["images_published"] and int(recv) < 0.9 * lv["images_published"]:
        lines.append(f"warning: the node received only {recv} of {lv['images_published']} images: DDS lost large "
                     "messages (Fast DDS shared-memory segment too small for the image size?)")
    return code, lines


def _track_en(recs) -> tuple[tuple[float, float], np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(centre lat/lon, truth east/north, published-fix east/north, fix mask) in metres around
    the centre of the ground truth."""
    from ..geo.frames import LocalENU
    from ..localize.plots import east_north

    tl = np.array([[r.truth_lat, r.truth_lon] for r in recs], dtype=np.float64)
    ok = np.all(np.isfinite(tl), axis=1)
    if not ok.any():
        raise DemoError("no ground truth at the processed frames: nothing to plot")
    clat, clon = float(np.mean(tl[ok, 0])), float(np.mean(tl[ok, 1]))
    enu = LocalENU(clat, clon)
    te, tn = east_north(enu, tl[:, 0], tl[:, 1])
    fix = np.array([r.fix_valid for r in recs])
    ee, en_ = east_north(enu, [r.lat for r in recs], [r.lon for r in recs])
    ee[~fix], en_[~fix] = np.nan, np.nan
    return (clat, clon), te, tn, ee, en_, fix


def _map_panel(ax, track, recs, map_path, denial_stamp: float | None) -> None:
    """Estimate vs ground truth (`_track_en`) over a crop of the map, with the start and the
    GPS-denial point."""
    from ..geo.orthomap import OrthoMap
    from ..localize.plots import square_map_axes

    centre, te, tn, ee, en_, _ = track
    span = np.nanmax(np.abs(np.concatenate([te, tn]))) * 1.25 + 60
    try:
        with OrthoMap.open(map_path) as omap:
            crop = omap.crop(centre, 2 * span, 1024)
        ax.imshow(crop.image, extent=(-span, span, -span, span), origin="upper")
    except (GeoError, OSError):
        pass
    ax.plot(te, tn, "-", color="white", lw=3.5, alpha=0.9)
    ax.plot(te, tn, "-", color="black", lw=1.5, label="ground truth")
    ax.plot(ee, en_, ".", color="#e0218a", ms=4, label="published fix (estimate)")
    t = np.array([r.stamp for r in recs])
    if denial_stamp is not None and len(t):
        k = int(np.argmin(np.abs(t - denial_stamp)))
        if np.isfinite(te[k]):
            ax.plot(te[k], tn[k], "X", color="yellow", mec="black", ms=14, label="GPS denied")
    if np.isfinite(te[0]):
        ax.plot(te[0], tn[0], "o", color="cyan", mec="black", ms=9, label="start")
    square_map_axes(ax, span)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Estimate vs ground truth over the map")


def _error_panel(ax, recs, denial_stamp: float | None) -> None:
    """Horizontal error over flight time, published or not, over the localizer's states."""
    from ..localize.plots import STATE_COLOURS, scale_error_axis, shade_states

    t = np.array([r.stamp for r in recs])
    tt = t - t[0]
    fix = np.array([r.fix_valid for r in recs])
    err = np.array([r.error_m for r in recs])
    states = [r.state for r in recs]
    shade_states(ax, tt, states)
    ax.plot(tt, np.where(fix, err, np.nan), ".-", color="black", ms=3, lw=0.8, label="error of published fix")
    ax.plot(tt, np.where(fix, np.nan, err), ".", color="grey", ms=2, label="estimate, not published")
    if denial_stamp is not None:
        ax.axvline(denial_stamp - t[0], color="red", ls="--", label="GPS denied")
    scale_error_axis(ax, err)
    for st, col in STATE_COLOURS.items():
        if st in states:
            ax.plot([], [], "s", color=col, alpha=0.4, label=st)
    ax.set_xlabel("flight time (s)")
    ax.set_ylabel("horizontal error (m)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Error over time (background: localizer state)")


def plot_demo(res, map_path, path: Path, denial_stamp: float | None = None) -> Path:
    """demo.png: trajectory over the map (estimate vs truth, GPS-denial point) + error over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    track = _track_en(res.records)  # no ground truth: say so before drawing anything
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(15, 7), gridspec_kw={"width_ratios": [1, 1.15]})
    try:
        _map_panel(ax, track, res.records, map_path, denial_stamp)
        _error_panel(ax2, res.records, denial_stamp)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def _main(args: argparse.Namespace) -> int:
    """The demo's exit code: 0 = tracked, 1 = the node failed or diverged."""
    from ..ros.live_replay import LiveReplayError

    try:
        return run_demo(args)[0]
    except (DemoError, LiveReplayError) as exc:  # the node failed: a result, not a usage error
        print(f"error: {exc}", file=sys.stderr)
        return 1


main = cli.entry_point(build_parser, _main)


if __name__ == "__main__":
    sys.exit(main())
