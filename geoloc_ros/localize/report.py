"""Replay results as files: frames.csv (every camera frame), summary.json, report.md.

The file side of localize.evaluate: what a user reads after `geoloc-replay` / `geoloc-eval`.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path

from .evaluate import EVENT_WINDOW_S, STAGE_KEYS, FrameRecord

CSV_FIELDS = ["stamp", "state", "fix_valid", "lat", "lon", "cov_ee", "cov_en", "cov_nn", "confidence", "accepted",
              "rejections", "search_size_m", "truth_lat", "truth_lon", "error_m", "d2"] + \
             [f"t_{k}_ms" for k in STAGE_KEYS] + ["message", "skip_reason"]


def write_csv(records: list[FrameRecord], path: str | Path) -> Path:
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        for r in records:
            d = asdict(r)
            row = [d[k] for k in CSV_FIELDS[:16]] + [r.timings_ms.get(k, "") for k in STAGE_KEYS] + [r.message, r.skip_reason]
            w.writerow(row)
    return path


def _f(x, nd=2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"


def markdown_report(summary: dict, title: str = "Replay report", context: dict | None = None,
                    plots: list[str] = ()) -> str:
    s = summary
    lines = [f"# {title}", ""]
    for k, v in (context or {}).items():
        lines.append(f"- **{k}**: {v}")
    if s.get("frames", 0) == 0:
        return "\n".join(lines + ["", "No frames were processed."]) + "\n"
    e = s["error_m"]
    lines += ["", "## Accuracy (published fixes vs. ground truth)", "",
              "| fixes | mean | median | p95 | max | " + " | ".join(s["MA"]) + " | 95 % ellipse coverage |",
              "|---|---|---|---|---|" + "---|" * len(s["MA"]) + "---|",
              f"| {e['n']} | {_f(e['mean'])} m | {_f(e['median'])} m | {_f(e['p95'])} m | {_f(e['max'])} m | "
              + " | ".join(f"{100 * v:.1f} %" if math.isfinite(v) else "n/a" for v in s["MA"].values())
              + f" | {_f(100 * s['ellipse95_coverage'], 1)} % |", "",
              f"Covariance calibration: mean NEES {_f(s.get('nees_mean'))} (honest: 2.00); the covariances would "
              f"need x{_f(s.get('cov_scale_for_95'))} for exactly 95 % coverage.", "",
              "## Availability", "",
              f"- frames: {s['frames']} over {_f(s['duration_s'], 1)} s; fixes: {s['fixes']}; "
              f"accepted measurements: {s['accepted_measurements']}; rejected: {s['rejections']}",
              f"- fix availability after the first fix: {_f(100 * s['fix_fraction_after_first_fix'], 2)} %",
              "- frames skipped before the localizer: " + (", ".join(f"{k} {v}" for k, v in s.get("skipped", {}).items())
                                                           or "none"),
              f"- time to first fix: {_f(s['time_to_first_fix_s'])} s",
              f"- loss episodes: {s['loss_episodes']} (unrecovered: {s['unrecovered_losses']}); recovery median "
              f"{_f(s['recovery_s']['median'])} s, max {_f(s['recovery_s']['max'])} s",
              f"- relocalizations (LOST/RELOCALIZING episodes): {s['relocalizations']['episodes']}, recovery times "
              f"{[round(x, 2) for x in s['relocalizations']['recovery_s']]} s",
              *[f"- {ev['event']} at stamp {ev['stamp']:.1f}: fix back and stable after "
                f"{_f(ev['recovery_s'], 1)} s; worst published error in the {EVENT_WINDOW_S:g} s after: "
                f"{_f(ev['max_error_after_m'])} m" for ev in s.get("events", [])],
              "- states: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in s["state_fractions"].items() if v > 0),
              "", "## Latency per stage (ms)", "", "| stage | median | p95 |", "|---|---|---|"]
    for k, v in s["latency_ms"].items():
        lines.append(f"| {k} | {_f(v['median'])} | {_f(v['p95'])} |")
    lines += ["", "Definitions: errors count only published fixes (state TRACKING); availability counts "
              "frames from the first fix on; recovery = seconds from the last fix before a gap to the "
              "first fix after it; ellipse coverage = share of fixes whose truth lies in their 95 % "
              "ellipse (chi2(2) = 5.991; honest: ~95 %)."]
    for p in plots:
        lines += ["", f"![{Path(p).stem}]({Path(p).name})"]
    return "\n".join(lines) + "\n"


def write_summary_json(summary: dict, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(summary, indent=2, default=float))
    return path


def read_csv(path: str | Path) -> list[FrameRecord]:
    """frames.csv (write_csv) back into FrameRecords, so a finished replay can be scored
    again; columns the file lacks keep their defaults, unknown ones are ignored."""
    from dataclasses import fields as dc_fields

    kinds = {f.name: f.type for f in dc_fields(FrameRecord)}
    out = []
    with Path(path).open(newline="") as fh:
        for row in csv.DictReader(fh):
            kw: dict = {}
            for name, kind in kinds.items():
                if name == "timings_ms" or name not in row:
                    continue
                text = row[name]
                if kind in ("bool", bool):
                    kw[name] = text.strip().lower() == "true"
                elif kind in ("int", int):
                    kw[name] = int(float(text)) if text.strip() else 0
                elif kind in ("float", float):
                    kw[name] = float(text) if text.strip() else float("nan")
                else:
                    kw[name] = text
            kw["timings_ms"] = {k: float(row[f"t_{k}_ms"]) for k in STAGE_KEYS
                                if row.get(f"t_{k}_ms", "").strip()}
            out.append(FrameRecord(**kw))
    return out
