"""Replay results as figures: the trajectory over the map, the error over time with the
localizer's state shaded, and the 95 % ellipse check (localize.evaluate's records)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..geo.frames import LocalENU
from .evaluate import FrameRecord
from .gating import CHI2_2_95


STATE_COLOURS = {"INITIALIZING": "#bbbbbb", "TRACKING": "#2ca02c", "DEGRADED": "#ffbf00", "LOST": "#d62728",
                 "RELOCALIZING": "#9467bd", "OFF_MAP": "#7f7f7f"}


def plot_all(records: list[FrameRecord], out_dir: str | Path, orthomap=None) -> list[Path]:
    """trajectory.png (over the map), error.png (with state shading), ellipse.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    recs = [r for r in records if np.isfinite(r.lat) or np.isfinite(r.truth_lat)]
    paths: list[Path] = []
    if not recs:
        return paths
    lats = np.array([v for r in recs for v in (r.lat, r.truth_lat) if np.isfinite(v)])
    lons = np.array([v for r in recs for v in (r.lon, r.truth_lon) if np.isfinite(v)])
    clat, clon = float(np.mean(lats)), float(np.mean(lons))
    enu = LocalENU(clat, clon)

    te, tn = east_north(enu, [r.truth_lat for r in recs], [r.truth_lon for r in recs])
    ee, en = east_north(enu, [r.lat for r in recs], [r.lon for r in recs])
    fix = np.array([r.fix_valid for r in recs])
    fig, ax = plt.subplots(figsize=(8, 8))
    ext = np.nanmax(np.abs(np.concatenate([te, tn, ee[fix], en[fix]]))) * 1.15 + 50 if len(recs) else 500
    if orthomap is not None:
        try:
            crop = orthomap.crop((clat, clon), 2 * ext, 1024)
            ax.imshow(crop.image, extent=(-ext, ext, -ext, ext), origin="upper")
        except Exception:  # background is decoration only
            pass
    ax.plot(te, tn, "-", color="white", lw=3, alpha=0.8)
    ax.plot(te, tn, "-", color="black", lw=1.2, label="ground truth")
    for st, col in STATE_COLOURS.items():
        m = np.array([r.state == st for r in recs]) & np.isfinite(ee)
        if m.any():
            ax.scatter(ee[m], en[m], s=6 if st == "TRACKING" else 10, c=col, label=f"estimate: {st}", zorder=3)
    square_map_axes(ax, ext)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Trajectory over the map")
    paths.append(_save(fig, out_dir / "trajectory.png"))

    t = np.array([r.stamp for r in recs])
    t = t - t[0]
    err = np.array([r.error_m for r in recs])
    sig = np.sqrt(np.maximum([max(np.linalg.eigvalsh([[r.cov_ee, r.cov_en], [r.cov_en, r.cov_nn]])[-1], 0)
                              if np.isfinite(r.cov_ee) else np.nan for r in recs], 0))
    fig, ax = plt.subplots(figsize=(11, 4))
    shade_states(ax, t, [r.state for r in recs])
    ax.plot(t, np.where(fix, err, np.nan), "-", color="black", lw=1, label="error of published fix")
    ax.plot(t, np.where(fix, np.nan, err), ":", color="grey", lw=1, label="error, no fix (not published)")
    ax.plot(t, 2.45 * sig, "--", color="tab:blue", lw=0.8, label="95 % radius (major axis)")
    scale_error_axis(ax, err, 2.45 * sig)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("horizontal error (m)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Error over time (background: state)")
    paths.append(_save(fig, out_dir / "error.png"))

    d2 = np.sort(np.array([r.d2 for r in recs if r.fix_valid and np.isfinite(r.d2)]))
    fig, ax = plt.subplots(figsize=(5, 4))
    if d2.size:
        x = np.linspace(0, max(15.0, float(np.percentile(d2, 99))), 200)
        ax.plot(x, 1 - np.exp(-x / 2), color="tab:blue", label="chi2(2) (honest covariance)")
        ax.step(d2, np.arange(1, d2.size + 1) / d2.size, where="post", color="black", label="fixes")
        ax.axvline(CHI2_2_95, color="grey", ls="--")
        cov = float(np.mean(d2 <= CHI2_2_95))
        ax.set_title(f"95 % ellipse contains truth: {100 * cov:.1f} %")
    ax.set_xlabel("Mahalanobis d^2 of the truth")
    ax.set_ylabel("fraction of fixes")
    ax.legend(loc="lower right", fontsize=8)
    paths.append(_save(fig, out_dir / "ellipse.png"))
    return paths


def _save(fig, path: Path) -> Path:
    """All three figures are written alike, and closed so that long evaluations do not pile them up."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def east_north(enu: LocalENU, lat, lon) -> tuple[np.ndarray, np.ndarray]:
    """East/north metres of lat/lon sequences in `enu`; NaN where either coordinate is missing
    (so gaps stay gaps in the plotted line)."""
    la, lo = np.asarray(lat, float), np.asarray(lon, float)
    good = np.isfinite(la) & np.isfinite(lo)
    e, n, _ = enu.to_enu(np.where(good, la, enu.lat0), np.where(good, lo, enu.lon0), 0.0)
    e, n = np.atleast_1d(e).astype(float), np.atleast_1d(n).astype(float)
    e[~good], n[~good] = np.nan, np.nan
    return e, n


def _top(values: np.ndarray) -> float:
    """The largest finite value, at least 1 (an axis needs some height)."""
    return np.nanmax(np.concatenate([values[np.isfinite(values)], [1.0]]))


def scale_error_axis(ax, err: np.ndarray, band: np.ndarray | None = None) -> None:
    """Error panels: symlog once an error exceeds 100 m (one wild fix must not flatten the rest),
    else linear from 0 to a tenth above the largest error (or `band`, e.g. the 95 % radius)."""
    top = _top(err)
    if top > 100:
        ax.set_yscale("symlog", linthresh=10)
    else:
        ax.set_ylim(0, (top if band is None else max(top, _top(band))) * 1.1)


def square_map_axes(ax, half_span: float) -> None:
    """The map panels' frame: equal-aspect metres east/north of the centre, +-half_span each way."""
    ax.set_xlim(-half_span, half_span)
    ax.set_ylim(-half_span, half_span)
    ax.set_aspect("equal")
    ax.set_xlabel("east (m)")
    ax.set_ylabel("north (m)")


def shade_states(ax, t, states) -> None:
    """Background spans coloured by the localizer state (STATE_COLOURS) over times `t`."""
    if len(t) == 0:
        return
    k = 0
    while k < len(t):
        j = k
        while j + 1 < len(t) and states[j + 1] == states[k]:
            j += 1
        t1 = t[j + 1] if j + 1 < len(t) else t[j]
        ax.axvspan(t[k], t1, color=STATE_COLOURS.get(states[k], "white"), alpha=0.18, lw=0)
        k = j + 1
