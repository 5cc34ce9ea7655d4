"""Satellite windows on a fixed grid, and an LRU of their encoded features.

Why: the satellite window of a frame depends only on the map and on where the window is,
yet it is the larger of the model's two inputs (192 px against 64 px for the packaged
model, 384 against 128 for the full one), so encoding it is most of the per-pair cost.
Consecutive frames look at nearly the same ground; if their windows are the SAME windows,
the satellite features can be computed once and reused. So tracking windows are snapped:

- the window side goes DOWN to the next step of a geometric ladder (`steps` per octave;
  16 steps: at most 4.3 % smaller), and the UAV footprint shrinks with it, so the
  satellite / UAV ground sampling ratio the model was trained for is kept exactly;
- the window centre goes to the nearest node of an east/north grid of spacing
  `grid_frac` x side in the local ENU frame. The prediction is then up to
  `grid_frac / 2` of a side off the window centre on each axis, so the central part the
  model is trusted in shrinks by `grid_frac` (`effective_useful_frac`).

A window is then named by integers (ladder step, grid column, grid row); the cache maps that
key to the map crop and the backbone's features of the crop. A hit skips both the crop and
the satellite branch; the logits are those of the uncached model on the same crop (the
same tensors go into `AMCFNet.forward_features`).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def ladder_side_m(side_m: float, steps: int) -> float:
    """`side_m` rounded down to 2^(k/steps) m (k integer); `steps` 0 = unchanged."""
    if steps <= 0:
        return float(side_m)
    if not (math.isfinite(side_m) and side_m > 0):
        raise ValueError(f"window side must be finite and > 0, got {side_m}")
    k = math.floor(math.log2(side_m) * steps + 1e-9)
    return float(2.0 ** (k / steps))


def ladder_step(side_m: float, steps: int) -> int:
    """The ladder index k of a side returned by `ladder_side_m` (0 when steps is 0)."""
    return int(round(math.log2(side_m) * steps)) if steps > 0 else 0


def effective_useful_frac(useful_frac: float, grid_frac: float, dither_frac: float = 0.0) -> float:
    """The central fraction of a snapped (and dithered by up to `dither_frac` of a side per
    axis) window that is still trusted around the prediction."""
    return useful_frac - grid_frac - 2.0 * dither_frac


@dataclass(frozen=True)
class WindowGrid:
    """Snap window centres (ENU, m) to a grid of spacing `grid_frac` x `side_m`."""

    side_m: float
    grid_frac: float
    step_index: int = 0

    @property
    def spacing_m(self) -> float:
        return self.grid_frac * self.side_m

    def snap(self, centers: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """(N, 2) centres -> the snapped centres and each one's key (ladder step, col, row);
        duplicates are kept (the caller decides). grid_frac 0 = unchanged, keys None-like."""
        centers = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
        if self.grid_frac <= 0:
            return centers.copy(), []
        idx = np.round(centers / self.spacing_m).astype(np.int64)
        keys = [(self.step_index, int(i), int(j)) for i, j in idx]
        return idx * self.spacing_m, keys


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0

    @property
    def hit_rate(self) -> float:
        n = self.hits + self.misses
        return self.hits / n if n else 0.0


@dataclass
class CachedWindow:
    crop: Any  # geo.orthomap.MapCrop, or None: the window is off the map (remembered too)
    # what the net's `prepare_sat` made of the window (model.fusion.SatSide: the satellite half
    # of the fusion), or per-scale tensors [1, C_i, H_i, W_i]; on the model's device; None with crop None
    feats: Any = None
    nbytes: int = 0


def window_of(batch: Any, i: int) -> Any:
    """Window i of an encoded batch (a SatSide or per-scale tensors), as a batch of one."""
    if hasattr(batch, "select"):
        return batch.select(i)
    return [f[i:i + 1] for f in batch]


def windows_cat(items: list) -> Any:
    """Cached windows side by side in one batch, in the form they were stored."""
    if hasattr(items[0], "select"):
        return type(items[0]).cat(items)
    import torch

    return [torch.cat([w[s] for w in items]) for s in range(len(items[0]))]


def _nbytes(feats: Any) -> int:
    if feats is None:
        return 0
    if hasattr(feats, "nbytes") and not hasattr(feats, "numel"):
        return int(feats.nbytes)
    return sum(int(f.numel() * f.element_size()) for f in feats)


@dataclass
class SatFeatureCache:
    """Least-recently-used windows, bounded in bytes (features live on the model's device).

    The cache belongs to one localizer and one map and ENU origin: `clear()` whenever the
    ENU frame, the map or the model changes (keys are ENU grid indices)."""

    max_bytes: int
    stats: CacheStats = field(default_factory=CacheStats)
    _items: OrderedDict = field(default_factory=OrderedDict)
    _bytes: int = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key) -> CachedWindow | None:
        item = self._items.get(key)
        if item is None:
            self.stats.misses += 1
            return None
        self._items.move_to_end(key)
        self.stats.hits += 1
        return item

    def put(self, key, crop, feats) -> CachedWindow:
        """Store one window (replacing any older entry) and evict the oldest past the bound."""
        nbytes = _nbytes(feats)
        item = CachedWindow(crop, feats, nbytes)
        if not self.enabled:
            return item
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        self._items[key] = item
        self._bytes += nbytes
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, gone = self._items.popitem(last=False)
            self._bytes -= gone.nbytes
            self.stats.evictions += 1
        return item

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0
