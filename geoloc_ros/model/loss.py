"""Weighted balance loss (WBL) of UL14 / AMCF-Net (ul14_protocol.md section 3).

Targets are squares of side 2*radius+1 (31 at full 384 resolution) around the true centre,
clipped at the borders. Two normalisations (`norm`):
- "batch" (default; the DRL reference code, ul14_protocol.md section 3): pixel weights over
  the WHOLE batch, w_pos = 1/N_pos, w_neg = nw/N_neg (nw = 130), then w /= sum(w);
  loss = sum(w * BCE-with-logits). The negatives carry nw times the weight of the positives
  in the batch as a whole, so a sample whose square is clipped at a border (fewer positives)
  weighs less than one whose square is whole.
- "sample" (AMCF-Net eq. 12-13): the same weights and normalisation PER SAMPLE (each sample's
  weights sum to 1), and the per-sample losses are SUMMED over the batch, as the paper writes;
  the loss and its gradient are then about B times the batch-normalised one, which matters for
  gradient clipping (grad_clip 1.0) though hardly for AdamW. "sample_mean" = the same divided
  by B. With equal positive counts in every sample, sample_mean equals batch exactly.

Centres: `centers_rc` are (row, col) pixel coordinates on the logits grid, integer values at
pixel centres (DESIGN.md); non-integer values are rounded to the nearest pixel, which is what
UL14 does with its fractions: `fractions_to_centers` gives round(frac * (side - 1)).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def fractions_to_centers(frac_rc: torch.Tensor | np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
    """(row_frac, col_frac) in [0, 1] -> (row, col) pixels, UL14 rule round(frac * (side - 1)).

    frac_rc: [B, 2] -> [B, 2] float tensor of integer-valued pixel coordinates.
    """
    f = torch.as_tensor(frac_rc, dtype=torch.float64).reshape(-1, 2)
    scale = torch.tensor([hw[0] - 1, hw[1] - 1], dtype=torch.float64)
    return torch.round(f * scale).to(torch.float32)


def centers_to_fractions(centers_rc: torch.Tensor | np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of `fractions_to_centers`: (row, col) pixels -> fractions row / (side - 1)."""
    c = torch.as_tensor(centers_rc, dtype=torch.float64).reshape(-1, 2)
    return (c / torch.tensor([hw[0] - 1, hw[1] - 1], dtype=torch.float64)).to(torch.float32)


def positive_side_for_stride(stride: int, side_full: int = 31) -> int:
    """Side of the positive square on a grid of output stride `stride` (31, 15, 7, 3, 1 for 1..16)."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return max(1, side_full // int(stride))


def radius_for_stride(stride: int, radius_full: int = 15) -> int:
    """Half side (|d| <= radius) of the positive square at output stride `stride`: 15, 7, 3, 1, 0."""
    return positive_side_for_stride(stride, 2 * radius_full + 1) // 2


def positive_mask(centers_rc: torch.Tensor, hw: tuple[int, int], radius: int = 15) -> torch.Tensor:
    """[B, 2] centres -> bool [B, 1, H, W], True where |row - r| <= radius and |col - c| <= radius."""
    c = torch.round(torch.as_tensor(centers_rc, dtype=torch.float32).reshape(-1, 2))
    rows = torch.arange(hw[0], dtype=torch.float32, device=c.device).view(1, -1, 1)
    cols = torch.arange(hw[1], dtype=torch.float32, device=c.device).view(1, 1, -1)
    inside = ((rows - c[:, 0].view(-1, 1, 1)).abs() <= radius) & ((cols - c[:, 1].view(-1, 1, 1)).abs() <= radius)
    return inside.unsqueeze(1)


def _check(logits: torch.Tensor, centers_rc) -> torch.Tensor:
    if logits.dim() != 4 or logits.shape[1] != 1:
        raise ValueError(f"logits must be [B,1,H,W], got {tuple(logits.shape)}")
    c = torch.as_tensor(centers_rc, dtype=torch.float32, device=logits.device).reshape(-1, 2)
    if c.shape[0] != logits.shape[0]:
        raise ValueError(f"{c.shape[0]} centres for a batch of {logits.shape[0]}")
    return c


LOSS_NORMS = ("batch", "sample", "sample_mean")
_PER_SAMPLE = (1, 2, 3)


def _check_norm(norm: str) -> None:
    if norm not in LOSS_NORMS:
        raise ValueError(f"loss norm must be one of {', '.join(LOSS_NORMS)}, got {norm!r}")


def _normalise(m: torch.Tensor, norm: str, floor: float) -> torch.Tensor:
    """m divided by its sum over the batch ("batch") or over each sample (otherwise)."""
    if norm == "batch":
        return m / m.sum().clamp(min=floor)
    return m / m.sum(dim=_PER_SAMPLE, keepdim=True).clamp(min=floor)


def _balanced(logits: torch.Tensor, target: torch.Tensor, pos_weight_map: torch.Tensor, nw: float,
              norm: str = "batch") -> torch.Tensor:
    """Sum of normalised-weight BCE; pos_weight_map already sums to 1 over the positives of the
    batch ("batch") or of each sample (per-sample norms)."""
    neg = ~target.bool()
    if norm == "batch":  # kept verbatim: the packaged recipe's numbers stay bit-identical
        n_neg = neg.sum()
        w = pos_weight_map + neg.to(logits.dtype) * (nw / n_neg.clamp(min=1).to(logits.dtype))
        w = w / w.sum()
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), weight=w.detach(),
                                                  reduction="sum")
    n_neg = neg.sum(dim=_PER_SAMPLE, keepdim=True).clamp(min=1).to(logits.dtype)
    w = pos_weight_map + neg.to(logits.dtype) * (nw / n_neg)
    w = w / w.sum(dim=_PER_SAMPLE, keepdim=True)
    per_sample = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), weight=w.detach(),
                                                    reduction="none").sum(dim=_PER_SAMPLE)
    return per_sample.sum() if norm == "sample" else per_sample.mean()


def weighted_balance_loss(logits: torch.Tensor, centers_rc, radius: int = 15, nw: float = 130.0,
                          norm: str = "batch") -> torch.Tensor:
    """UL14 weighted balance loss. logits [B,1,H,W]; centers_rc [B,2] (row, col) pixels -> scalar.

    `radius` is the half side at this grid (15 at full resolution; `radius_for_stride` for
    coarser grids). norm "batch": counts N_pos / N_neg and the normalisation run over the
    whole batch (DRL code); "sample" / "sample_mean": per sample (AMCF eq. 12-13), then
    summed / averaged over the batch (module docstring).
    """
    _check_norm(norm)
    c = _check(logits, centers_rc)
    target = positive_mask(c, logits.shape[-2:], radius).to(logits.device)
    if norm == "batch":
        n_pos = target.sum().clamp(min=1).to(logits.dtype)
        return _balanced(logits.float(), target, target.float() / n_pos.float(), nw)
    return _balanced(logits.float(), target, _normalise(target.float(), norm, 1.0), nw, norm)


def hanning_balance_loss(logits: torch.Tensor, centers_rc, side: int = 31, nw: float = 130.0,
                         norm: str = "batch") -> torch.Tensor:
    """WBL variant: positive pixels weighted by the Hanning window (`model.decode.hanning_kernel(side)`) around
    the centre, renormalised so the positives of the batch (or of each sample, per `norm`) sum
    to 1 like `1/N_pos` does; negatives and the final normalisation as in
    `weighted_balance_loss`. Targets stay 1 on the square."""
    _check_norm(norm)
    c = _check(logits, centers_rc)
    h, w = logits.shape[-2:]
    r = side // 2
    # the window is separable: k[i, j] = h1[i] * h1[j] / sum(hanning(side + 2))^2
    full = np.hanning(side + 2)
    h1 = torch.as_tensor(full[1:-1] / full.sum(), dtype=torch.float32, device=logits.device)
    ci = torch.round(c)
    dr = torch.arange(h, device=logits.device).view(1, -1) - ci[:, :1]   # [B, H]
    dc = torch.arange(w, device=logits.device).view(1, -1) - ci[:, 1:]   # [B, W]
    wr = torch.where(dr.abs() <= r, h1[(dr + r).clamp(0, side - 1).long()], 0.0)
    wc = torch.where(dc.abs() <= r, h1[(dc + r).clamp(0, side - 1).long()], 0.0)
    pos = (wr[:, :, None] * wc[:, None, :]).unsqueeze(1)                 # [B, 1, H, W]
    target = positive_mask(c, (h, w), r).to(logits.device)
    if norm == "batch":
        return _balanced(logits.float(), target, pos / pos.sum().clamp(min=1e-12), nw)
    return _balanced(logits.float(), target, _normalise(pos, norm, 1e-12), nw, norm)
