"""geoloc-eval: fly the project's scenario suite, replay every flight offline, print one table.

    geoloc-eval test                                   # the held-out test set (report only)
    geoloc-eval calib --set meas_cov_inflation=0.6     # the calibration set (tune on this one)
    geoloc-eval ci --quiet                             # two short flights, ~1.5 min
    geoloc-eval config/scenarios/suite/test/vio_150s.yaml --weights default --out runs/eval/one

Why: accuracy and covariance numbers only mean something on flights the filter was not
tuned on. The suite (config/scenarios/suite/{calib,test,ci}) never shares a world between
its calibration and test sets; tune on `calib`, report `test`.

Each scenario's bag is simulated once into --work (keyed by a hash of the scenario and the
simulator version, so an edited scenario or simulator re-simulates; procedural world COGs
are shared between scenarios), then `geoloc-replay`'s offline replay runs it with the given
weights and LocalizerConfig (--config / --set, as geoloc-replay) and the scenario's forced
losses (`eval: {relocalize_at: [...]}`). Per flight, over every camera frame after GPS
denial: frames with a fix within 5 m / 10 m, the same for odometry alone (aligned at denial
with the heading of the GPS track: what a UAV trusting its VIO would believe), error of the
published fixes, availability, time RELOCALIZING, 95 % ellipse coverage, mean NEES and the
recovery time after each forced loss or odometry teleport. Writes table.md and
summary.json (plus each flight's replay report) to --out.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import cli
from ..config import load_dataclass, to_dict
from ..data.flight import ScenarioConfig

SETS = ("calib", "test", "ci")
DEFAULT_WORK = Path("runs/eval/work")
#: marker file: the cached bag next to it was simulated completely
DONE_NAME = "done.json"


def suite_dir() -> Path:
    """config/scenarios/suite of this checkout or of the installed package (geoloc_ros.resources)."""
    from ..resources import find

    return find(Path("config") / "scenarios" / "suite")


@dataclass
class Flight:
    """One scenario of the suite: its name (set/stem), file and parsed configuration."""

    name: str
    path: Path
    scenario: ScenarioConfig

    @property
    def set_name(self) -> str:
        return self.name.split("/")[0] if "/" in self.name else ""


def load_flights(targets: list[str]) -> list[Flight]:
    """Scenario files of the named sets (calib, test, ci), directories and YAML paths, in order."""
    files: list[tuple[str, Path]] = []
    for t in targets:
        p = suite_dir() / t if t in SETS else Path(t)
        if p.is_dir():
            found = sorted(p.rglob("*.yaml"))
            if not found:
                raise FileNotFoundError(f"no scenario YAML files under {p}")
            files += [(f"{f.parent.name}/{f.stem}", f) for f in found]
        elif p.is_file():
            files.append((f"{p.parent.name}/{p.stem}", p))
        else:
            raise FileNotFoundError(f"not a suite set ({'|'.join(SETS)}), scenario directory or YAML: {t}")
    seen: set[Path] = set()
    out = []
    for name, f in files:
        if f.resolve() in seen:
            continue
        seen.add(f.resolve())
        out.append(Flight(name, f, load_dataclass(ScenarioConfig, f)))
    return out


def scenario_key(flight: Flight) -> str:
    """Hash of everything that decides the simulated bag: the scenario (without its `eval`
    section), the maps it names and the simulator version."""
    from .simulate import simulator_version

    d = to_dict(flight.scenario)
    d.pop("eval", None)
    base = flight.path.resolve().parent
    for k in ("map", "camera_map"):
        if d["world"][k]:
            d["world"][k] = str((base / d["world"][k]).resolve())
    blob = json.dumps(d, sort_keys=True) + simulator_version()
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


@contextlib.contextmanager
def _flock(path: Path, exclusive: bool, wait: bool = True) -> Iterator[bool]:
    """flock on `path` (created if missing); yields whether it was taken (always, when
    waiting). The kernel drops it when the block ends or the process dies: no stale locks."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
            got = True
        except BlockingIOError:
            got = False
        yield got
    finally:
        os.close(fd)


@contextlib.contextmanager
def cached_bag(flight: Flight, work: Path, *, quiet: bool = False,
               resimulate: bool = False) -> Iterator[tuple[Path, float, bool]]:
    """The flight's bag from the cache, simulated first when missing, stale or asked for;
    yields (bag, seconds simulating, whether it was cached) while holding a shared lock on it.

    Why the locks: several geoloc-eval runs may share one --work (the team tunes in
    parallel). A bag is simulated under an exclusive lock (and one simulation at a time, so
    two never write the same world COG), read under a shared one, and an older version of
    the scenario is deleted only when nobody holds its lock."""
    from .simulate import run_scenario

    key = scenario_key(flight)
    stem = flight.name.replace("/", "__")
    bags = work / "bags"
    bags.mkdir(parents=True, exist_ok=True)
    d, lock = bags / f"{stem}__{key}", bags / f"{stem}__{key}.lock"
    sim_s, cached, again = 0.0, True, resimulate
    while True:
        if again or not (d / DONE_NAME).is_file():
            with _flock(lock, exclusive=True), _flock(bags / "simulate.lock", exclusive=True):
                if again or not (d / DONE_NAME).is_file():
                    shutil.rmtree(d, ignore_errors=True)
                    d.mkdir()
                    t0 = time.perf_counter()
                    run_scenario(flight.scenario, d / "bag", scenario_dir=flight.path.resolve().parent,
                                 progress=not quiet, world_dir=work / "worlds")
                    sim_s, cached, again = time.perf_counter() - t0, False, False
                    (d / DONE_NAME).write_text(json.dumps({"scenario": str(flight.path), "key": key,
                                                           "simulate_s": sim_s}))
            for old in bags.glob(f"{stem}__*"):  # older versions of this scenario nobody is using
                if old.is_dir() and old != d:
                    with _flock(bags / f"{old.name}.lock", exclusive=True, wait=False) as free:
                        if free:
                            shutil.rmtree(old, ignore_errors=True)
        with _flock(lock, exclusive=False):
            if (d / DONE_NAME).is_file():  # else another run replaced it just now: once more
                yield d / "bag", sim_s, cached
                return


def odometry_only(bag: Path, stamps: np.ndarray, denial_stamp: float) -> dict:
    """Odometry alone after denial: aligned at the last GPS fix (position) with the heading of
    the GPS track against the odometry (localize.alignment, as the localizer's seed), never
    corrected again; errors at the camera frame stamps."""
    from ..bags import TOPIC_GPS, TOPIC_GROUND_TRUTH, TOPIC_ODOM, read_messages, stamp_to_s
    from ..geo.frames import LocalENU
    from ..localize.alignment import odom_yaw_offset
    from ..localize.evaluate import SUITE_THRESHOLDS_M, dead_reckoning_errors

    odom, gps, truth = [], [], []
    for topic, _t, msg in read_messages(bag, [TOPIC_ODOM, TOPIC_GPS, TOPIC_GROUND_TRUTH]):
        st = stamp_to_s(msg.header.stamp)
        if topic == TOPIC_ODOM:
            p = msg.pose.pose.position
            odom.append((st, p.x, p.y))
        elif msg.status.status >= 0 and math.isfinite(msg.latitude) and math.isfinite(msg.longitude):
            (gps if topic == TOPIC_GPS else truth).append((st, msg.latitude, msg.longitude))
    odom.sort()
    gps.sort()
    truth.sort()
    if len(odom) < 2 or not gps or len(truth) < 2:
        return {"within_5m": float("nan"), "within_10m": float("nan"), "note": "no odometry, GPS or truth"}
    o = np.asarray(odom)
    g = [r for r in gps if r[0] <= denial_stamp] or gps[:1]

    def odom_xy(t: float):
        return (np.interp(t, o[:, 0], o[:, 1]), np.interp(t, o[:, 0], o[:, 2])) if o[0, 0] <= t <= o[-1, 0] else None

    yaw = odom_yaw_offset(g, odom_xy)
    st_fix, lat_fix, lon_fix = g[-1]
    enu = LocalENU(lat_fix, lon_fix)
    tr = np.asarray(truth)
    s = np.asarray(stamps, dtype=np.float64)
    s = s[(s >= denial_stamp) & (s >= o[0, 0]) & (s <= o[-1, 0])]
    te, tn, _ = enu.to_enu(np.interp(s, tr[:, 0], tr[:, 1]), np.interp(s, tr[:, 0], tr[:, 2]), 0.0)
    oxy = np.stack([np.interp(s, o[:, 0], o[:, 1]), np.interp(s, o[:, 0], o[:, 2])], 1)
    err = dead_reckoning_errors(oxy, np.stack([np.atleast_1d(te), np.atleast_1d(tn)], 1), odom_xy(st_fix),
                                (0.0, 0.0), 0.0 if yaw is None else yaw)
    out = {f"within_{t:g}m": float(np.mean(err <= t)) if err.size else float("nan") for t in SUITE_THRESHOLDS_M}
    out.update(final_error_m=float(err[-1]) if err.size else float("nan"),
               max_error_m=float(err.max()) if err.size else float("nan"),
               yaw_offset_deg=float("nan") if yaw is None else math.degrees(yaw))
    return out


def evaluate_flight(flight: Flight, bag: Path, out_dir: Path, *, weights: str, cfg, device: str,
                    quiet: bool) -> tuple[dict, list, float]:
    """Replay one cached bag and score it: (row, frame records, denial stamp)."""
    from ..bags import load_sidecar
    from ..localize.evaluate import denial_metrics
    from ..localize.report import read_csv
    from .replay import replay_offline

    side = load_sidecar(bag)
    denial = side.data.get("gps_denial_stamp")
    t0 = time.perf_counter()
    summary = replay_offline(bag, weights=weights, cfg=cfg, out_dir=out_dir, plots=False, progress=not quiet,
                             relocalize_at=list(flight.scenario.eval.relocalize_at), device=device)
    replay_s = time.perf_counter() - t0
    records = read_csv(out_dir / "frames.csv")
    if denial is None:  # GPS never denied: score the whole flight
        denial = records[0].stamp if records else 0.0
    m = denial_metrics(records, float(denial))
    odo = odometry_only(bag, np.array([r.stamp for r in records]), float(denial))
    events = [{k: ev.get(k) for k in ("event", "recovered", "recovery_s", "max_error_after_m")}
              for ev in summary.get("events", [])]
    row = {"name": flight.name, "scenario": str(flight.path), "stresses": flight.scenario.eval.stresses,
           "flight_s": float(side.data.get("duration_s", float("nan"))), **m, "odometry_only": odo,
           "events": events, "replay_s": replay_s, "replay_dir": str(out_dir)}
    return row, records, float(denial)


# ----------------------------------------------------------------------------- table
COLUMNS = ("flight", "s", "frames", "≤5 m", "≤10 m", "odom ≤10 m", "err med", "p95", "max", "avail",
           "RELOC s (%)", "ell95", "NEES", "recovery s")


def _pct(x) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.0f} %"


def _num(x, nd: int = 1) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"


def _recovery(events: list[dict]) -> str:
    if not events:
        return "–"
    return ", ".join(_num(e["recovery_s"]) if e.get("recovered") else "never" for e in events)


def table_row(name: str, r: dict) -> list[str]:
    e = r["error_m"]
    return [name, _num(r.get("flight_s"), 0), str(r["frames"]), _pct(r["within_5m"]), _pct(r["within_10m"]),
            _pct(r["odometry_only"].get("within_10m")), _num(e["median"]), _num(e["p95"]), _num(e["max"]),
            _pct(r["availability"]), f"{_num(r['relocalizing_s'], 0)} ({_pct(r['relocalizing_fraction'])})",
            _pct(r["ellipse95_coverage"]), _num(r["nees_mean"]), _recovery(r.get("events", []))]


def markdown_table(rows: list[dict], pooled: dict | None) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(table_row(r["name"], r)) + " |" for r in rows]
    if pooled is not None:
        lines.append("| " + " | ".join(table_row(f"**all {len(rows)} flights**", pooled)) + " |")
    return "\n".join(lines)


TABLE_NOTE = ("Frames: camera frames after GPS denial (the denominator of every share). ≤5 m / ≤10 m: frames with a "
              "published fix that close to the truth; odom ≤10 m: odometry alone, aligned at denial with the GPS "
              "track's heading. err med/p95/max (m): published fixes. avail: frames with a fix. RELOC: time "
              "RELOCALIZING. ell95: fixes whose truth lies in their 95 % ellipse (honest: 95 %). NEES: mean "
              "squared Mahalanobis error (honest: 2). recovery: seconds from each forced loss / odometry teleport "
              "until the fix is back and stable. Pooled row: all frames of all flights; recovery there is the "
              "median.")


def pooled_row(rows: list[dict], flights: list[tuple[list, float]]) -> dict:
    from ..localize.evaluate import pooled_denial_metrics

    p = pooled_denial_metrics(flights)
    w = np.array([r["frames"] for r in rows], dtype=np.float64)
    odo = {}
    for k in ("within_5m", "within_10m"):
        v = np.array([r["odometry_only"].get(k, float("nan")) for r in rows], dtype=np.float64)
        ok = np.isfinite(v)
        odo[k] = float(np.sum(v[ok] * w[ok]) / np.sum(w[ok])) if ok.any() else float("nan")
    rec = [e["recovery_s"] for r in rows for e in r.get("events", []) if e.get("recovered")]
    never = sum(1 for r in rows for e in r.get("events", []) if not e.get("recovered"))
    events = []
    if rec or never:
        events = [{"recovered": True, "recovery_s": float(np.median(rec))}] if rec else []
        events += [{"recovered": False}] * (1 if never else 0)
    return {**p, "flight_s": float(sum(r.get("flight_s", 0.0) for r in rows)), "odometry_only": odo,
            "events": events, "events_total": sum(len(r.get("events", [])) for r in rows), "events_never": never}


# ----------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    ap = cli.tool_parser("geoloc-eval", __doc__, epilog=True)
    ap.add_argument("targets", nargs="*", default=["test"],
                    help="suite sets (calib, test, ci), scenario directories or YAML files (default: test)")
    cli.add_weights(ap, "AMCF-Net weights: 'default' (packaged), a path, or 'none'", default="default")
    cli.add_device(ap)
    cli.add_config(ap, "LocalizerConfig (optionally under 'localizer:')")
    cli.add_set(ap, "LocalizerConfig")
    cli.add_out(ap, "output directory (default: runs/eval/<targets>)")
    ap.add_argument("--work", default=None, help=f"cache of simulated bags and worlds (default: {DEFAULT_WORK})")
    ap.add_argument("--resimulate", action="store_true", help="simulate every bag again, even when cached")
    ap.add_argument("--simulate-only", action="store_true", help="only fill the bag cache (no replay, no table)")
    cli.add_quiet(ap, "no progress bars or per-flight lines; only the table")
    return ap


def _git_commit() -> str:
    import subprocess

    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
                           capture_output=True, text=True, timeout=5)
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def run_suite(targets: list[str], *, weights: str = "default", cfg=None, device: str = "auto",
              out: Path, work: Path, quiet: bool = False, resimulate: bool = False) -> dict:
    """Simulate (or reuse) and replay every flight of `targets`; write table.md and summary.json to `out`."""
    from ..localize import LocalizerConfig
    from .simulate import simulator_version

    flights = load_flights(targets)
    cfg = cfg or LocalizerConfig()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    say = (lambda m: None) if quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    rows, recs, sim_total, t_start = [], [], 0.0, time.perf_counter()
    for i, fl in enumerate(flights, 1):
        say(f"[{i}/{len(flights)}] {fl.name}: {fl.scenario.eval.stresses or fl.path}")
        with cached_bag(fl, work, quiet=quiet, resimulate=resimulate) as (bag, sim_s, cached):
            sim_total += sim_s
            say(f"  bag {'cached' if cached else f'simulated in {sim_s:.0f} s'}: {bag}")
            row, records, denial = evaluate_flight(fl, bag, out / fl.name.replace("/", "__"), weights=weights,
                                                   cfg=cfg, device=device, quiet=quiet)
        row.update(simulate_s=sim_s, bag_cached=cached, bag=str(bag))
        rows.append(row)
        recs.append((records, denial))
        say(f"  {100 * row['within_10m']:.0f} % of frames within 10 m, ellipse {100 * row['ellipse95_coverage']:.0f} %"
            f", replay {row['replay_s']:.0f} s")
    pooled = pooled_row(rows, recs) if rows else None
    default = to_dict(LocalizerConfig())
    overrides = {k: v for k, v in to_dict(cfg).items() if default.get(k) != v}
    runtime = {"simulate_s": sim_total, "replay_s": float(sum(r["replay_s"] for r in rows)),
               "total_s": time.perf_counter() - t_start}
    head = (f"geoloc-eval {' '.join(targets)}: weights {weights}, localizer overrides "
            f"{json.dumps(overrides) if overrides else 'none'}, commit {_git_commit() or 'n/a'}, "
            f"simulator {simulator_version()}")
    table = markdown_table(rows, pooled)
    (out / "table.md").write_text(f"{head}\n\n{table}\n\n{TABLE_NOTE}\n\nRuntime: simulate {runtime['simulate_s']:.0f} s, "
                                  f"replay {runtime['replay_s']:.0f} s, total {runtime['total_s']:.0f} s.\n")
    summary = {"targets": targets, "weights": weights, "localizer_overrides": overrides, "commit": _git_commit(),
               "simulator_version": simulator_version(), "flights": rows, "pooled": pooled, "runtime": runtime}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    summary["table"] = table
    summary["header"] = head
    return summary


def run(args: argparse.Namespace) -> int | None:
    """Fill the bag cache (--simulate-only) or run the suite and print its table."""
    from .replay import load_localizer_config

    cfg = load_localizer_config(args.config, args.set)
    out = Path(args.out) if args.out else Path("runs/eval") / "+".join(Path(t).stem for t in args.targets)
    work = Path(args.work) if args.work else DEFAULT_WORK
    if args.simulate_only:
        for fl in load_flights(args.targets):
            with cached_bag(fl, work, quiet=args.quiet, resimulate=args.resimulate) as (bag, sim_s, cached):
                pass
            print(f"{fl.name}: {'cached' if cached else f'simulated in {sim_s:.0f} s'} {bag}")
        return 0
    s = run_suite(args.targets, weights=args.weights, cfg=cfg, device=args.device, out=out, work=work,
                  quiet=args.quiet, resimulate=args.resimulate)
    print(s["header"])
    print()
    print(s["table"])
    rt = s["runtime"]
    print(f"\nsimulate {rt['simulate_s']:.0f} s, replay {rt['replay_s']:.0f} s, total {rt['total_s']:.0f} s "
          f"-> {out}/table.md, summary.json")


main = cli.entry_point(build_parser, run)


if __name__ == "__main__":
    sys.exit(main())
