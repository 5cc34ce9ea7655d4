"""Heatmap -> position, sub-pixel refinement, confidence and pixel covariance (what the tracker needs).

Steps for one map (logits [H, W], pixel grid of the satellite crop):
1. p = sigmoid(logits) (float64).
2. UL14 Hanning filter (ul14_protocol.md section 4): K = outer(hanning(n+2), hanning(n+2)),
   K /= K.sum(), cropped to n x n (n = `hanning`, 31 by default); q = cv2.filter2D(p, K,
   BORDER_REFLECT_101); skipped when n <= 1 (q = p).
3. (row, col) = first maximum of q, row-major (np.argmax) - exactly the UL14 decision.
4. Sub-pixel: soft-argmax of p in the `window` x `window` square around (row, col), clipped
   at the borders, with weights p - min(p in window) so that a flat pedestal does not pull
   the estimate to the window centre.
5. peak = max of p in that window; peak_ratio = q[row, col] / q2, where q2 = max of q outside
   the disc of radius `suppress_radius` around (row, col) (inf when nothing lies outside, or
   q2 == 0); entropy = -sum(m log m) / log(H W) with m = p / sum(p) (0 = all mass on one
   pixel, 1 = flat).
6. confidence = cbrt(peak * distinct * (1 - entropy)) in [0, 1], distinct = 1 - 1/peak_ratio
   (0 for two equal peaks, -> 1 for a unique peak): a geometric mean, so any one bad sign
   (weak peak, rival peak, mass spread all over) pulls the confidence down.
7. cov_px (2x2, row/col, px^2): second central moments of p within the disc of radius
   `cov_radius` around (row, col), eigenvalues floored at `cov_floor_px`^2.
8. modes (`max_modes` > 1): the peak above, then further maxima of the filtered map, each
   outside the suppression discs of those before it and at least `mode_min_ratio` of the
   first's height, each with its own sub-pixel position and covariance (steps 4 and 7): a
   multi-modal heatmap is a set of places, not one (localize.evidence weighs them).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

try:
    import torch
except ImportError:  # numpy-only use
    torch = None


@dataclass
class HeatmapPeak:
    """Decoded heatmap of one pair; pixel coordinates (row, col) on the satellite crop grid."""

    row: int                 # Hanning-filtered argmax row (UL14's decision)
    col: int
    row_sub: float           # sub-pixel refinement (soft-argmax around the peak)
    col_sub: float
    peak: float              # peak probability in [0, 1]
    peak_ratio: float        # filtered peak / best rival outside the suppression radius (>= 1)
    entropy: float           # normalised entropy of the probability mass, [0, 1]
    confidence: float        # [0, 1], see module docstring
    cov_px: np.ndarray       # 2x2 covariance (row, col) in px^2
    modes: list = field(default_factory=list)  # HeatmapMode of each maximum, the peak first (step 8)


@dataclass
class HeatmapMode:
    """One maximum of a heatmap: sub-pixel position, filtered height, covariance (px)."""

    row_sub: float
    col_sub: float
    height: float  # Hanning-filtered probability at the maximum
    cov_px: np.ndarray  # 2x2 (row, col) px^2


#: output grid side (px) the UL14 pixel sizes are tuned for: the 31 px Hanning filter, the
#: 15 px half side of the training positives, the decoder's radii
UL14_GRID_PX = 384


def scale_to_grid(px: float, size: int) -> float:
    """A pixel length tuned at the 384 px UL14 output, on an output grid of `size` px.

    Why one rule: the model's geometry is set in UL14 pixels while the reduced models run at
    other sizes (192 px); the loss, validation and the localizer must scale alike.
    """
    return px * size / UL14_GRID_PX


def hanning_for_grid(size_at_384: int, size: int) -> int:
    """Hanning filter side for a `size` px grid: scaled, rounded and made odd; <= 1 (off) stays 0."""
    if size_at_384 <= 1:
        return 0
    return int(round(scale_to_grid(size_at_384, size))) | 1


def hanning_kernel(size: int = 31) -> np.ndarray:
    """UL14's filter: outer(hanning(size+2))/sum, cropped to size x size (float64)."""
    h = np.hanning(size + 2)
    k = np.outer(h, h)
    k /= k.sum()
    return k[1:-1, 1:-1]


def hanning_filter(prob: np.ndarray, size: int = 31, dtype: type = np.float64) -> np.ndarray:
    """Filter a probability map [H, W] with UL14's Hanning kernel (BORDER_REFLECT_101), in `dtype`.

    float64 for the localizer; float32 reproduces the UL14 evaluation, which filters the
    network's float32 probabilities (cv2 keeps the input depth).
    """
    prob = np.asarray(prob, dtype=dtype)
    if size <= 1:
        return prob
    return cv2.filter2D(prob, -1, hanning_kernel(size), borderType=cv2.BORDER_REFLECT_101)


def first_max(q: np.ndarray) -> tuple[int, int]:
    """(row, col) of the first maximum of a [H, W] map in row-major order (UL14's tie rule)."""
    idx = int(np.argmax(q))
    return idx // q.shape[1], idx % q.shape[1]


def ul14_argmax(prob: np.ndarray, size: int = 31, dtype: type = np.float64) -> tuple[int, int]:
    """UL14 decision on a probability map: Hanning filter, first maximum row-major -> (row, col)."""
    return first_max(hanning_filter(prob, size, dtype))


def sigmoid(x: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Logistic function, overflow-free (tanh form), computed in float64 and returned as `dtype`."""
    x = np.asarray(x, dtype=np.float64)
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(dtype, copy=False)


def ul14_peak(heatmap: np.ndarray, hanning: int = 31, apply_sigmoid: bool = True) -> tuple[int, int]:
    """(S_X row, S_Y column) of one [H, W] logit map exactly as the UL14 evaluation decides.

    `apply_sigmoid=False` takes probabilities already. Float32 probabilities as the
    reference evaluation (shared/spec/ul14_protocol.md section 4), then `ul14_argmax`.
    """
    p = sigmoid(heatmap, np.float32) if apply_sigmoid else np.asarray(heatmap, dtype=np.float32)
    if p.ndim != 2:
        raise ValueError(f"ul14_peak wants one [H, W] map, got shape {p.shape}")
    return ul14_argmax(p, hanning, np.float32)


def ul14_peaks(heatmaps, hanning: int = 31) -> np.ndarray:
    """Batch of logits [B, 1, H, W] or [B, H, W] (numpy or torch) -> int array [B, 2] of (S_X, S_Y).

    A torch batch goes through torch.sigmoid in float32, as the UL14 evaluation code does.
    """
    if torch is not None and isinstance(heatmaps, torch.Tensor):
        probs = torch.sigmoid(heatmaps.detach().float()).cpu().numpy()
        return np.array([ul14_peak(h.reshape(h.shape[-2:]), hanning, apply_sigmoid=False) for h in probs],
                        dtype=np.int64).reshape(-1, 2)
    arr = np.asarray(heatmaps)
    return np.array([ul14_peak(h.reshape(h.shape[-2:]), hanning) for h in arr], dtype=np.int64).reshape(-1, 2)


def _to_numpy(x) -> np.ndarray:
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def decode_probability(prob: np.ndarray, hanning: int = 31, window: int = 7, suppress_radius: float = 32.0,
                       cov_radius: float = 16.0, cov_floor_px: float = 1.0, max_modes: int = 1,
                       mode_min_ratio: float = 0.3) -> HeatmapPeak:
    """Decode one probability map [H, W] (values in [0, 1]); see the module docstring."""
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim != 2 or p.size == 0:
        raise ValueError(f"expected a [H, W] map, got shape {p.shape}")
    q = hanning_filter(p, hanning)
    row, col = first_max(q)

    row_sub, col_sub, peak = _soft_argmax(p, row, col, window)

    # rival peak: the filtered map outside the suppression disc (only its bounding box is touched)
    rest = q.copy()
    _suppress(rest, row, col, suppress_radius)
    q2 = float(rest.max()) if np.isfinite(rest.max()) else 0.0
    q1 = float(q[row, col])
    peak_ratio = q1 / q2 if q2 > 0 else (float("inf") if q1 > 0 else 1.0)
    distinct = (1.0 - q2 / q1) if q1 > 0 else 0.0  # q1 is the global maximum, so q2 <= q1

    total = p.sum()
    if total > 0 and p.size > 1:
        m = p[p > 0] / total
        entropy = float(-(m * np.log(m)).sum() / np.log(p.size))
    else:
        entropy = 1.0
    entropy = min(max(entropy, 0.0), 1.0)
    confidence = float(np.cbrt(max(peak, 0.0) * max(distinct, 0.0) * (1.0 - entropy)))
    cov = _moments(p, row, col, cov_radius, cov_floor_px)
    modes = [HeatmapMode(row_sub, col_sub, q1, cov)]
    while len(modes) < max_modes:
        r, c = first_max(rest)
        qk = float(rest[r, c])
        if not (np.isfinite(qk) and qk > 0 and qk >= mode_min_ratio * q1):
            break
        rs, cs, _ = _soft_argmax(p, r, c, window)
        modes.append(HeatmapMode(rs, cs, qk, _moments(p, r, c, cov_radius, cov_floor_px)))
        _suppress(rest, r, c, suppress_radius)
    return HeatmapPeak(row, col, row_sub, col_sub, peak, float(peak_ratio), entropy,
                       min(max(confidence, 0.0), 1.0), cov, modes)


def _soft_argmax(p: np.ndarray, row: int, col: int, window: int) -> tuple[float, float, float]:
    """Sub-pixel (row, col) around an integer maximum and the peak probability there (step 4)."""
    h, w = p.shape
    half = max(0, int(window) // 2)
    r0, r1, c0, c1 = max(0, row - half), min(h, row + half + 1), max(0, col - half), min(w, col + half + 1)
    win = p[r0:r1, c0:c1]
    wts = win - win.min()
    if wts.sum() > 0:
        rr, cc = np.mgrid[r0:r1, c0:c1]
        return float((wts * rr).sum() / wts.sum()), float((wts * cc).sum() / wts.sum()), float(win.max())
    return float(row), float(col), float(win.max())


def _disc_box(shape: tuple[int, int], row: int, col: int, radius: float) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1): the bounding box of the disc of `radius` around (row, col), clipped to the map."""
    rad = int(np.ceil(radius))
    return max(0, row - rad), min(shape[0], row + rad + 1), max(0, col - rad), min(shape[1], col + rad + 1)


def _suppress(q: np.ndarray, row: int, col: int, radius: float) -> None:
    """Set the disc of `radius` around (row, col) to -inf (in place; bounding box only)."""
    b0, b1, e0, e1 = _disc_box(q.shape, row, col, radius)
    by, bx = np.ogrid[b0:b1, e0:e1]
    q[b0:b1, e0:e1][(by - row) ** 2 + (bx - col) ** 2 <= radius ** 2] = -np.inf


def _moments(p: np.ndarray, row: int, col: int, radius: float, floor_px: float) -> np.ndarray:
    """2x2 second central moments of p in the disc around (row, col), floored (step 7)."""
    b0, b1, e0, e1 = _disc_box(p.shape, row, col, radius)
    rr, cc = np.mgrid[b0:b1, e0:e1]
    mass = np.where((rr - row) ** 2 + (cc - col) ** 2 <= radius ** 2, p[b0:b1, e0:e1], 0.0)
    s = mass.sum()
    if s > 0:
        mr, mc = (mass * rr).sum() / s, (mass * cc).sum() / s
        drr, dcc = rr - mr, cc - mc
        cov = np.array([[(mass * drr * drr).sum(), (mass * drr * dcc).sum()],
                        [(mass * drr * dcc).sum(), (mass * dcc * dcc).sum()]]) / s
    else:
        cov = np.eye(2) * radius ** 2
    evals, evecs = np.linalg.eigh(cov)
    return (evecs * np.maximum(evals, floor_px ** 2)) @ evecs.T


def decode_heatmap(logits, hanning: int = 31, window: int = 7, suppress_radius: float = 32.0,
                   cov_radius: float = 16.0, cov_floor_px: float = 1.0, max_modes: int = 1,
                   mode_min_ratio: float = 0.3) -> HeatmapPeak | list[HeatmapPeak]:
    """Logits [H, W] -> HeatmapPeak; [B, 1, H, W] or [B, H, W] -> list (torch or numpy input).

    Distances (`window` side, `suppress_radius`, `cov_radius`, `cov_floor_px`) are in pixels of
    the given map; the defaults suit the 384 x 384 UL14 output (positive square side 31).
    """
    x = _to_numpy(logits)
    kw = dict(hanning=hanning, window=window, suppress_radius=suppress_radius, cov_radius=cov_radius,
              cov_floor_px=cov_floor_px, max_modes=max_modes, mode_min_ratio=mode_min_ratio)
    if x.ndim == 2:
        return decode_probability(sigmoid(x), **kw)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"logits must be [H,W], [B,H,W] or [B,1,H,W], got shape {x.shape}")
    return [decode_probability(sigmoid(m), **kw) for m in x]
