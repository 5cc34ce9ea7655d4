"""Trajectory evaluation of localizer estimates against ground truth: per-frame records and
the statistics over them. Shared by `geoloc-replay` offline and live modes and `geoloc-eval`,
so all report the same numbers the same way (files: localize.report, figures: localize.plots).

Definitions (also written into every report):
- error: horizontal great-circle distance (m) between a published fix and the truth
  interpolated at the image stamp; only frames with `fix_valid` count.
- fix availability: fraction of frames with a fix, counted from the first fix on.
- time to first fix: first fix stamp - stamp of the first frame after the initial fix.
- loss episodes: maximal runs of frames without a fix after the first fix; recovery time =
  first fix after the run - last fix before it (seconds of flight without a fix).
- 95 % ellipse coverage: fraction of fixes whose truth lies inside the fix's 95 % error
  ellipse (d^T C^-1 d <= chi2_2(0.95) = 5.991); an honest covariance gives ~0.95.
- events (an odometry teleport, a forced relocalization): recovery = seconds from the
  event to the start of the first run of `EVENT_STABLE_FRAMES` consecutive fixes at or
  after it (0 when the fix stays valid through the event); worst error of the fixes
  published in the `EVENT_WINDOW_S` after it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..geo.distance import haversine_m
from ..geo.frames import LocalENU
from .gating import CHI2_2_95
from .states import LocalizerState

STAGE_KEYS = ("predict", "prepare", "crop", "model", "decode", "update", "total")
MA_KS = (3, 5, 10, 20)
EVENT_STABLE_FRAMES = 10
EVENT_WINDOW_S = 20.0


@dataclass
class FrameRecord:
    """One processed frame: the estimate and, when known, the truth."""

    stamp: float
    state: str
    fix_valid: bool
    lat: float
    lon: float
    cov_ee: float
    cov_en: float
    cov_nn: float
    confidence: float
    accepted: bool
    rejections: int
    search_size_m: float
    truth_lat: float = float("nan")
    truth_lon: float = float("nan")
    error_m: float = float("nan")
    d2: float = float("nan")  # Mahalanobis distance^2 of the truth w.r.t. the estimate's covariance
    timings_ms: dict = field(default_factory=dict)
    message: str = ""
    skip_reason: str = ""  # the frame never reached the localizer (runtime.inputs.SKIP_REASONS)


def record_from_skip(stamp: float, state: str, reason: str, text: str,
                     truth_latlon: tuple[float, float] | None = None) -> FrameRecord:
    """FrameRecord of a camera frame that was skipped before the localizer (no estimate)."""
    nan = float("nan")
    rec = FrameRecord(stamp=float(stamp), state=str(state), fix_valid=False, lat=nan, lon=nan, cov_ee=nan, cov_en=nan,
                      cov_nn=nan, confidence=0.0, accepted=False, rejections=0, search_size_m=0.0,
                      message=f"skipped ({reason}): {text}", skip_reason=str(reason))
    if truth_latlon is not None and np.all(np.isfinite(truth_latlon)):
        rec.truth_lat, rec.truth_lon = float(truth_latlon[0]), float(truth_latlon[1])
    return rec


def skip_counts(records: list[FrameRecord]) -> dict[str, int]:
    """How many frames were skipped before the localizer, by reason."""
    skips = [r.skip_reason for r in records if r.skip_reason]
    return {k: skips.count(k) for k in sorted(set(skips))}


def record_from_estimate(est, truth_latlon: tuple[float, float] | None = None) -> FrameRecord:
    """FrameRecord from a localize.Estimate (+ the truth at its stamp, if known)."""
    c = np.asarray(est.cov_enu, dtype=np.float64)
    rec = FrameRecord(stamp=float(est.stamp), state=str(est.state), fix_valid=bool(est.fix_valid),
                      lat=float(est.lat), lon=float(est.lon), cov_ee=float(c[0, 0]), cov_en=float(c[0, 1]),
                      cov_nn=float(c[1, 1]), confidence=float(est.confidence), accepted=bool(est.accepted),
                      rejections=int(est.rejections), search_size_m=float(est.search_size_m),
                      timings_ms=dict(est.timings_ms), message=str(est.message))
    if truth_latlon is not None and np.all(np.isfinite(truth_latlon)):
        rec.truth_lat, rec.truth_lon = float(truth_latlon[0]), float(truth_latlon[1])
        if np.isfinite(rec.lat) and np.isfinite(rec.lon):
            rec.error_m = float(haversine_m(rec.lat, rec.lon, rec.truth_lat, rec.truth_lon))
            rec.d2 = mahalanobis2_truth(rec)
    return rec


def mahalanobis2_truth(rec: FrameRecord) -> float:
    e, n, _ = LocalENU(rec.lat, rec.lon).to_enu(rec.truth_lat, rec.truth_lon, 0.0)
    cov = np.array([[rec.cov_ee, rec.cov_en], [rec.cov_en, rec.cov_nn]])
    d = np.array([e, n])
    try:
        return float(d @ np.linalg.solve(cov, d))
    except np.linalg.LinAlgError:
        return float("inf")


def _pct(x, q):
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(np.percentile(x, q)) if x.size else float("nan")


def event_recovery(records: list[FrameRecord], events: list[tuple[str, float]]) -> list[dict]:
    """Per event (name, stamp): how long until the fix is back and stable, and how wrong the
    fixes published right after it were (module docstring)."""
    stamps = np.array([r.stamp for r in records])
    fix = np.array([r.fix_valid for r in records], dtype=bool)
    err = np.array([r.error_m for r in records], dtype=float)
    out = []
    for name, t in events:
        k0 = int(np.searchsorted(stamps, t))
        rec = float("nan")
        run = 0
        for k in range(k0, len(fix)):
            run = run + 1 if fix[k] else 0
            if run >= EVENT_STABLE_FRAMES:
                start = k - run + 1
                rec = 0.0 if start == k0 and (k0 == 0 or fix[k0 - 1]) else float(stamps[start] - t)
                break
        after = fix & (stamps >= t) & (stamps <= t + EVENT_WINDOW_S) & np.isfinite(err)
        out.append({"event": name, "stamp": float(t), "recovered": bool(math.isfinite(rec)), "recovery_s": rec,
                    "max_error_after_m": float(err[after].max()) if after.any() else float("nan")})
    return out


def summarize(records: list[FrameRecord], start_stamp: float | None = None,
              events: list[tuple[str, float]] | None = None) -> dict:
    """Summary statistics (see the module docstring for the definitions)."""
    recs = [r for r in records if start_stamp is None or r.stamp >= start_stamp]
    out: dict = {"frames": len(recs)}
    if not recs:
        return out
    stamps = np.array([r.stamp for r in recs])
    fix = np.array([r.fix_valid for r in recs])
    err = np.array([r.error_m for r in recs])
    d2 = np.array([r.d2 for r in recs])
    states = [r.state for r in recs]
    out["duration_s"] = float(stamps[-1] - stamps[0])
    out["state_fractions"] = {s.value: float(np.mean([x == s.value for x in states])) for s in LocalizerState}
    out["fixes"] = int(fix.sum())
    out["skipped"] = skip_counts(recs)
    out["accepted_measurements"] = int(sum(r.accepted for r in recs))
    out["rejections"] = int(max(r.rejections for r in recs))
    first = int(np.argmax(fix)) if fix.any() else None
    out["time_to_first_fix_s"] = float(stamps[first] - stamps[0]) if first is not None else float("nan")
    out["fix_fraction_after_first_fix"] = float(fix[first:].mean()) if first is not None else 0.0
    fe = err[fix & np.isfinite(err)]
    out["error_m"] = {"n": int(fe.size), "mean": float(fe.mean()) if fe.size else float("nan"),
                      "median": _pct(fe, 50), "p95": _pct(fe, 95), "max": float(fe.max()) if fe.size else float("nan")}
    out["MA"] = {f"MA@{k}": float(np.mean(fe <= k)) if fe.size else float("nan") for k in MA_KS}
    fd = d2[fix & np.isfinite(d2)]
    out["ellipse95_coverage"] = float(np.mean(fd <= CHI2_2_95)) if fd.size else float("nan")
    # calibration aids: mean NEES (2 for an honest 2-D covariance) and the factor the
    # covariances would need for exactly 95 % coverage (<1: too cautious, >1: overconfident)
    out["nees_mean"] = float(fd.mean()) if fd.size else float("nan")
    out["cov_scale_for_95"] = float(np.percentile(fd, 95) / CHI2_2_95) if fd.size else float("nan")
    # loss episodes after the first fix
    episodes = []
    if first is not None:
        k = first
        while k < len(fix):
            if not fix[k]:
                j = k
                while j < len(fix) and not fix[j]:
                    j += 1
                t_lost = stamps[k - 1]
                episodes.append({"start": float(stamps[k]), "recovered": bool(j < len(fix)),
                                 "recovery_s": float(stamps[j] - t_lost) if j < len(fix) else float("nan"),
                                 "states": sorted(set(states[k:j]))})
                k = j
            k += 1
    rec_t = [e["recovery_s"] for e in episodes if e["recovered"]]
    out["loss_episodes"] = len(episodes)
    out["unrecovered_losses"] = sum(not e["recovered"] for e in episodes)
    out["recovery_s"] = {"median": _pct(rec_t, 50), "max": float(max(rec_t)) if rec_t else float("nan")}
    lost_eps = [e for e in episodes if set(e["states"]) & {"LOST", "RELOCALIZING"}]
    out["relocalizations"] = {"episodes": len(lost_eps),
                              "recovery_s": [e["recovery_s"] for e in lost_eps]}
    if events:
        out["events"] = event_recovery(recs, events)
    out["latency_ms"] = {}
    for key in STAGE_KEYS:
        v = [r.timings_ms.get(key, float("nan")) for r in recs if r.state != "INITIALIZING"]
        out["latency_ms"][key] = {"median": _pct(v, 50), "p95": _pct(v, 95)}
    return out


# ----------------------------------------------------------------------------- scenario suite (geoloc-eval)
#: the suite's accuracy thresholds (m): share of all camera frames after GPS denial with a fix this close
SUITE_THRESHOLDS_M = (5.0, 10.0)


def _after_denial(records: list[FrameRecord], denial_stamp: float) -> dict:
    """Per-frame arrays of the frames at or after `denial_stamp`; `dt` is each frame's share
    of the flight (the gap to the next frame; the last one gets the median gap)."""
    recs = [r for r in records if r.stamp >= denial_stamp]
    stamps = np.array([r.stamp for r in recs], dtype=np.float64)
    dt = np.diff(stamps)
    dt = np.append(dt, np.median(dt) if dt.size else 0.0)
    return {"stamps": stamps, "dt": dt, "fix": np.array([r.fix_valid for r in recs], dtype=bool),
            "err": np.array([r.error_m for r in recs], dtype=np.float64),
            "d2": np.array([r.d2 for r in recs], dtype=np.float64), "state": np.array([r.state for r in recs])}


def _denial_stats(a: dict, thresholds) -> dict:
    n = int(a["fix"].size)
    fix, err, d2 = a["fix"], a["err"], a["d2"]
    fe = err[fix & np.isfinite(err)]
    fd = d2[fix & np.isfinite(d2)]
    out: dict = {"frames": n, "duration_s": float(a["dt"].sum())}
    for thr in thresholds:
        out[f"within_{thr:g}m"] = float(np.mean(fix & (err <= thr))) if n else float("nan")
    out["availability"] = float(fix.mean()) if n else float("nan")
    out["error_m"] = {"n": int(fe.size), "median": _pct(fe, 50), "p95": _pct(fe, 95),
                      "max": float(fe.max()) if fe.size else float("nan")}
    out["ellipse95_coverage"] = float(np.mean(fd <= CHI2_2_95)) if fd.size else float("nan")
    out["nees_mean"] = float(fd.mean()) if fd.size else float("nan")
    total = float(a["dt"].sum())
    out["state_time_s"] = {s.value: float(a["dt"][a["state"] == s.value].sum()) for s in LocalizerState}
    out["state_time_fraction"] = {k: (v / total if total > 0 else float("nan")) for k, v in out["state_time_s"].items()}
    out["relocalizing_s"] = out["state_time_s"][LocalizerState.RELOCALIZING.value]
    out["relocalizing_fraction"] = out["state_time_fraction"][LocalizerState.RELOCALIZING.value]
    return out


def denial_metrics(records: list[FrameRecord], denial_stamp: float, thresholds=SUITE_THRESHOLDS_M) -> dict:
    """The suite's per-flight numbers over every camera frame at or after GPS denial.

    Unlike `summarize` (fixes only, availability from the first fix on), the denominators
    here are all camera frames after denial, skipped ones included: `within_<X>m` = share of
    those frames with a published fix less than X m from the truth; `availability` = share
    with a fix; error median/p95/max, 95 % ellipse coverage and mean NEES over their fixes;
    time per state in seconds of flight (`relocalizing_s`, `relocalizing_fraction`)."""
    return _denial_stats(_after_denial(records, denial_stamp), thresholds)


def pooled_denial_metrics(flights: list[tuple[list[FrameRecord], float]], thresholds=SUITE_THRESHOLDS_M) -> dict:
    """`denial_metrics` over several flights at once ((records, denial_stamp) each): every
    frame after denial weighs the same, whichever flight it comes from."""
    parts = [_after_denial(r, d) for r, d in flights]
    if not parts:
        return _denial_stats(_after_denial([], 0.0), thresholds)
    pooled = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return _denial_stats(pooled, thresholds)


def dead_reckoning_errors(odom_xy, truth_en, anchor_odom_xy, anchor_en, yaw_offset: float) -> np.ndarray:
    """Horizontal errors (m) of odometry alone, aligned once at GPS denial: world position =
    anchor_en + Rz(yaw_offset) (odom_xy - anchor_odom_xy), against `truth_en` ((N, 2) each,
    metres in one local ENU frame). The baseline a filter must beat: what a UAV that trusts
    its VIO after the last GPS fix would believe."""
    o = np.asarray(odom_xy, dtype=np.float64).reshape(-1, 2) - np.asarray(anchor_odom_xy, dtype=np.float64)
    c, s = math.cos(yaw_offset), math.sin(yaw_offset)
    p = np.asarray(anchor_en, dtype=np.float64) + o @ np.array([[c, s], [-s, c]])
    return np.hypot(*(p - np.asarray(truth_en, dtype=np.float64).reshape(-1, 2)).T)
