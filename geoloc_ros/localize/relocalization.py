"""Finding the UAV again after a loss: where to look, and when a candidate is believed.

A strategy proposes satellite windows for each relocalizing frame and keeps the candidates
their peaks suggest; a candidate is believed only after `reloc_confirm_frames` frames whose
peaks moved the way odometry says (within `reloc_tol_m` per frame), with at most
`reloc_max_misses` frames in a row without such a peak in between (one weak frame does not
restart the count). A candidate the lost track's own covariance cannot reach (squared
Mahalanobis distance from the dead-reckoned position above `jump_d2`, the tracker's jump
gate) is a jump, and its peaks must reach `strong_confidence`, the bar a challenger meets
while tracking; inside that gate `reloc_min_confidence` is enough. After a real loss the
covariance is wide (`lost_sigma_m`) and every candidate meets the lower bar; after a forced
loss with a tight track, a look-alike 100 m away no longer wins on three middling peaks
while the true place shows nothing (the CI smoke flight with the 160/480 weights: three
peaks of 0.32-0.43 at a look-alike 115 m away, none within 40 m of the truth). Strategies:
- `WindowSweep`: windows tiled over the square the UAV can be in (n_sigma of the track's
  uncertainty, grown with the fastest flight since the loss), nearest first, `reloc_batch`
  per frame;
- `PlaceRecognitionSearch`: first the top-k places a coarse place recognizer (retrieval
  descriptors over map tiles, geoloc_ros.retrieval) proposes for the frame, one window
  each; the sweep joins when the recognizer has nothing or after `retrieval_patience`
  frames without a confirmed candidate.
The localizer takes a strategy from its caller (`Localizer(..., relocalization=...)`); it
never builds one from files itself (the node and the replay do, see
geoloc_ros.retrieval.relocalizer.place_recognizer_from_config).
"""
from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from .search import grid_offsets
from .types import Peak

log = logging.getLogger(__name__)


class PlaceRecognizer(Protocol):
    """What a coarse place recognizer offers (e.g. retrieval.RetrievalRelocalizer)."""

    img_size: int

    def add_frame(self, image: np.ndarray, position: np.ndarray) -> None: ...

    def candidates_multi(self, k: int, *, footprint_m: float, position: np.ndarray, max_shift_m: float,
                         within: tuple[float, float, float]) -> list[tuple[float, float, float]]: ...

    def reset(self) -> None: ...


@dataclass
class Candidate:
    """A place the UAV may be, moved with the odometry, confirmed by consecutive peaks."""

    z: np.ndarray  # (2,) ENU
    r: np.ndarray  # 2x2 m^2
    confidence: float
    hits: int = 1
    misses: int = 0  # frames in a row without a supporting peak (a candidate survives `reloc_max_misses`)
    contested: int = 0  # challengers: frames since it appeared in which the track found support of its own


@dataclass
class SearchContext:
    """What a strategy may use to propose windows for one frame."""

    position: np.ndarray  # dead-reckoned ENU position
    sigma_m: float  # the track's 1-sigma (major axis)
    stamp: float
    window_m: float
    enu: Any  # geo.frames.LocalENU of the track
    orthomap: Any
    footprint_m: float
    prepare: Callable[[int], Any]  # size -> localize.prepare.PreparedUAV of this frame, north-up
    cov: np.ndarray | None = None  # the track's 2x2 position covariance (m^2); None: no prior (any candidate may jump)


class Relocalization(Protocol):
    """A relocalization strategy (module docstring)."""

    counts: Counter

    def start(self, stamp: float) -> None: ...

    def shift(self, d_world: np.ndarray) -> None: ...

    def proposals(self, ctx: SearchContext, timings: dict) -> tuple[np.ndarray, list[str]]: ...

    def update(self, peaks: list[Peak], kinds: list[str]) -> Candidate | None: ...


class WindowSweep:
    """Candidates from a sweep of windows over the reachable square (module docstring)."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.counts: Counter = Counter()
        self.candidates: list[Candidate] = []
        self._sweep: np.ndarray | None = None
        self._sweep_idx = 0
        self._t_start = 0.0
        self.frames = 0  # frames spent in the current episode
        self._prior: tuple[np.ndarray, np.ndarray] | None = None  # (position, covariance) of this frame's context

    def start(self, stamp: float) -> None:
        """A new relocalization episode."""
        self._t_start = float(stamp)
        self.candidates, self._sweep, self._sweep_idx, self.frames = [], None, 0, 0
        self._prior = None
        self.counts["episodes"] += 1

    def shift(self, d_world: np.ndarray) -> None:
        """Candidates move with the odometry (world-frame displacement of this step)."""
        for c in self.candidates:
            c.z = c.z + d_world

    def radius(self, sigma_m: float, stamp: float) -> float:
        """Half-side (m) of the area the UAV can be in: n_sigma of the track's uncertainty (at
        least reloc_min_radius_m), grown with the fastest flight since the loss, bounded."""
        cfg = self.cfg
        r = max(cfg.n_sigma * sigma_m, cfg.reloc_min_radius_m)
        return min(r + cfg.max_speed_mps * max(0.0, stamp - self._t_start), cfg.reloc_max_radius_m)

    def _candidate_windows(self) -> tuple[list[np.ndarray], list[str]]:
        return [c.z.copy() for c in self.candidates], [f"hyp{i}" for i in range(len(self.candidates))]

    def _sweep_windows(self, ctx: SearchContext, n: int) -> list[np.ndarray]:
        cfg = self.cfg
        if self._sweep is None or self._sweep_idx >= len(self._sweep):
            off = grid_offsets(self.radius(ctx.sigma_m, ctx.stamp), ctx.window_m, cfg.useful_frac, cfg.window_overlap,
                               max_count=cfg.max_sweep_windows)
            x = ctx.position
            lat, lon, _ = ctx.enu.to_geodetic(x[0] + off[:, 0], x[1] + off[:, 1], np.zeros(len(off)))
            lat, lon = np.atleast_1d(lat), np.atleast_1d(lon)
            on_map = [ctx.orthomap.coverage_fraction((float(a), float(b)), ctx.window_m) >= cfg.min_valid_fraction
                      for a, b in zip(lat, lon)]
            self._sweep = (x + off[np.array(on_map, dtype=bool)]) if any(on_map) else x + off[:1]
            self._sweep_idx = 0
        chunk = self._sweep[self._sweep_idx:self._sweep_idx + max(1, n)]
        self._sweep_idx += max(1, n)
        return [c for c in chunk]

    def proposals(self, ctx: SearchContext, timings: dict) -> tuple[np.ndarray, list[str]]:
        """Candidate windows (to confirm) + the next chunk of the sweep, as ENU centres."""
        self.frames += 1
        self.set_prior(ctx.position, ctx.cov)
        centers, kinds = self._candidate_windows()
        sweep = self._sweep_windows(ctx, self.cfg.reloc_batch - len(centers))
        return np.array(centers + sweep, dtype=np.float64).reshape(-1, 2), kinds + ["sweep"] * len(sweep)

    def set_prior(self, position: np.ndarray | None, cov: np.ndarray | None) -> None:
        """Where the lost track says the UAV is this frame (ENU, 2x2 m^2); None: nowhere in particular."""
        ok = (position is not None and cov is not None and np.shape(cov) == (2, 2)
              and np.all(np.isfinite(cov)) and np.all(np.isfinite(position)))
        self._prior = (np.asarray(position, dtype=np.float64)[:2].copy(), np.asarray(cov, dtype=np.float64)) \
            if ok else None

    def is_jump(self, peak: Peak) -> bool:
        """True when the lost track's covariance cannot reach the peak (module docstring)."""
        if self._prior is None:
            return False
        x, cov = self._prior
        s = cov + np.asarray(peak.r, dtype=np.float64)
        d = np.asarray(peak.z, dtype=np.float64)[:2] - x
        try:
            d2 = float(d @ np.linalg.solve(s, d))
        except np.linalg.LinAlgError:
            return False
        return not np.isfinite(d2) or d2 > self.cfg.jump_d2

    def _supports(self, p: Peak | None) -> bool:
        """A peak good enough to start or extend a candidate where it lies."""
        if p is None or not p.valid:
            return False
        if p.confidence < self.cfg.reloc_min_confidence:
            return False
        if p.confidence < self.cfg.strong_confidence and self.is_jump(p):
            self.counts["jump_peaks_below_strong"] += 1
            return False
        return True

    def update(self, peaks: list[Peak], kinds: list[str]) -> Candidate | None:
        """Keep the candidates this frame's peaks support; the first with enough consecutive
        odometry-consistent hits is returned (and the episode ends)."""
        cfg = self.cfg
        by_kind = {k: p for k, p in zip(kinds, peaks)}
        survivors: list[Candidate] = []
        for i, c in enumerate(self.candidates):
            p = by_kind.get(f"hyp{i}")
            hit = (self._supports(p)
                   and float(np.hypot(*(p.z - c.z))) <= cfg.reloc_tol_m)  # moved as odometry says
            if hit:
                survivors.append(Candidate(p.z, p.r, p.confidence, c.hits + 1, 0))
            elif c.misses < cfg.reloc_max_misses:
                survivors.append(Candidate(c.z, c.r, c.confidence, c.hits, c.misses + 1))
        for k, p in zip(kinds, peaks):
            if k not in ("sweep", "cand") or not self._supports(p):
                continue
            near = [c for c in survivors if np.hypot(*(p.z - c.z)) <= cfg.reloc_tol_m]
            if not near:
                survivors.append(Candidate(p.z, p.r, p.confidence, 1))
            elif near[0].misses:  # seen again through another window
                c = near[0]
                c.z, c.r, c.confidence, c.hits, c.misses = p.z, p.r, p.confidence, c.hits + 1, 0
        survivors.sort(key=lambda c: (c.hits, c.confidence), reverse=True)
        self.candidates = survivors[:cfg.reloc_max_hypotheses]
        confirmed = [c for c in self.candidates if c.hits >= cfg.reloc_confirm_frames and c.misses == 0]
        if confirmed:
            self.candidates, self._sweep = [], None
            return confirmed[0]
        return None

    def describe(self) -> str:
        best = max((c.hits for c in self.candidates), default=0)
        return f"relocalizing: {len(self.candidates)} candidate(s), best {best}/{self.cfg.reloc_confirm_frames}"


class PlaceRecognitionSearch(WindowSweep):
    """Candidates proposed by a place recognizer first, the sweep as fallback (module docstring)."""

    def __init__(self, cfg, recognizer: PlaceRecognizer) -> None:
        super().__init__(cfg)
        self.recognizer = recognizer

    def start(self, stamp: float) -> None:
        super().start(stamp)
        self.recognizer.reset()

    def _recognized(self, ctx: SearchContext, timings: dict) -> np.ndarray | None:
        """ENU centres (N, 2) of the recognizer's best places for this frame, or None when it
        failed or found nothing (the sweep then takes over)."""
        cfg = self.cfg
        t = time.perf_counter()
        try:
            q = ctx.prepare(int(self.recognizer.img_size))
            pos = ctx.position.copy()  # dead-reckoned: moves with the odometry, like the frames do
            self.recognizer.add_frame(q.image, pos)
            lat, lon, _ = ctx.enu.to_geodetic(pos[0], pos[1], 0.0)
            # a square of half-side r is reachable; the circle through its corners holds it
            within = (float(lat), float(lon), math.sqrt(2.0) * self.radius(ctx.sigma_m, ctx.stamp))
            found = self.recognizer.candidates_multi(cfg.retrieval_top_k, footprint_m=q.footprint_m, position=pos,
                                                     max_shift_m=cfg.retrieval_max_shift_frac * q.footprint_m,
                                                     within=within)
        except Exception as exc:  # noqa: BLE001  (a failing coarse stage must never stop the localizer)
            self.counts["retrieval_failures"] += 1
            if self.counts["retrieval_failures"] == 1:
                log.warning("retrieval query failed, sweeping instead: %s", exc)
            timings["retrieval"] = (time.perf_counter() - t) * 1e3
            return None
        self.counts["retrieval_queries"] += 1
        found = [c for c in found if c[2] >= cfg.retrieval_min_score]
        timings["retrieval"] = (time.perf_counter() - t) * 1e3
        if not found:
            return None
        e, n, _ = ctx.enu.to_enu(np.array([c[0] for c in found]), np.array([c[1] for c in found]),
                                 np.zeros(len(found)))
        # the tile centre shows the ground under the image centre; the UAV (nadir) is offset
        # from it by the tilt offset
        cen = np.stack([np.atleast_1d(e), np.atleast_1d(n)], 1) - np.asarray(q.center_offset_en)[None, :2]
        near = 0.25 * cfg.useful_frac * ctx.window_m  # a candidate window already looks there
        keep = [c for c in cen if all(np.hypot(*(c - h.z)) > near for h in self.candidates)]
        return np.array(keep).reshape(-1, 2)

    def proposals(self, ctx: SearchContext, timings: dict) -> tuple[np.ndarray, list[str]]:
        self.frames += 1
        self.set_prior(ctx.position, ctx.cov)
        cfg = self.cfg
        centers, kinds = self._candidate_windows()
        cand = self._recognized(ctx, timings)
        if cand is not None and len(cand):
            cand = cand[:max(0, cfg.reloc_batch - len(centers))]
            centers += [c for c in cand]
            kinds += ["cand"] * len(cand)
        if cand is not None and self.frames <= cfg.retrieval_patience:
            return np.array(centers, dtype=np.float64).reshape(-1, 2), kinds
        self.counts["fallback_frames"] += 1
        sweep = self._sweep_windows(ctx, cfg.reloc_batch - len(centers))
        return np.array(centers + sweep, dtype=np.float64).reshape(-1, 2), kinds + ["sweep"] * len(sweep)


def make_relocalization(cfg, recognizer: Any = None) -> tuple[Relocalization, str]:
    """The strategy for `cfg.relocalization` and an optional place recognizer; (strategy,
    why the configured one is not used, '' when it is)."""
    if recognizer is not None and hasattr(recognizer, "proposals"):
        return recognizer, ""  # a strategy given as is
    if cfg.relocalization == "retrieval":
        if recognizer is None:
            return WindowSweep(cfg), "no place recognizer was given (see retrieval.relocalizer)"
        return PlaceRecognitionSearch(cfg, recognizer), ""
    return WindowSweep(cfg), ""
