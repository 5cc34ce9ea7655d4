"""Weighted balance loss against the formula of ul14_protocol.md section 3, computed by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from geoloc_ros.model.decode import hanning_kernel as hanning_window
from geoloc_ros.model.loss import (centers_to_fractions, fractions_to_centers, hanning_balance_loss, positive_mask,
                                   positive_side_for_stride, radius_for_stride, weighted_balance_loss)


def bce_logits(x, t):
    """Numerically stable BCE-with-logits, written out: max(x,0) - x t + log(1 + exp(-|x|))."""
    return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


def test_wbl_matches_hand_computation_with_border_clipping():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (2, 1, 6, 7))
    centers = [(1, 2), (5, 6)]  # the second square is clipped by the bottom-right corner
    r = 1
    target = np.zeros_like(logits)
    target[0, 0, 0:3, 1:4] = 1        # rows 0..2, cols 1..3: 9 pixels
    target[1, 0, 4:6, 5:7] = 1        # rows 4..5, cols 5..6: 4 pixels (clipped)
    n_pos, n_neg = 13, 2 * 6 * 7 - 13
    w = np.where(target == 1, 1 / n_pos, 130 / n_neg)
    w /= w.sum()
    expected = float((w * bce_logits(logits, target)).sum())

    got = weighted_balance_loss(torch.tensor(logits, dtype=torch.float32), torch.tensor(centers), radius=r, nw=130)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert int(positive_mask(torch.tensor(centers), (6, 7), r).sum()) == n_pos
    # the weights really are normalised: total weight of negatives = nw x positives
    assert w[target == 0].sum() / w[target == 1].sum() == pytest.approx(130)


def test_wbl_prefers_the_right_heatmap_and_counts_over_the_batch():
    centers = torch.tensor([[20.0, 30.0], [40.0, 10.0]])
    mask = positive_mask(centers, (64, 64), 15)
    good = torch.where(mask, 8.0, -8.0)
    bad = torch.where(positive_mask(centers.flip(0), (64, 64), 15), 8.0, -8.0)
    assert float(weighted_balance_loss(good, centers)) < 0.01 < float(weighted_balance_loss(bad, centers))
    # batch normalisation: duplicating the batch leaves the loss unchanged
    l1 = weighted_balance_loss(good[:1] * 0.1, centers[:1])
    l2 = weighted_balance_loss(torch.cat([good[:1], good[:1]]) * 0.1, centers[:1].repeat(2, 1))
    assert float(l1) == pytest.approx(float(l2), rel=1e-6)


def test_hanning_variant_matches_hand_computation():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1, (1, 1, 9, 8))
    side, r = 5, 2
    c = (1, 6)
    k = np.outer(np.hanning(side + 2), np.hanning(side + 2))
    k = (k / k.sum())[1:-1, 1:-1]
    pos = np.zeros((9, 8))
    for i in range(side):
        for j in range(side):
            y, x = c[0] + i - r, c[1] + j - r
            if 0 <= y < 9 and 0 <= x < 8:
                pos[y, x] = k[i, j]
    target = (pos > 0).astype(float)
    n_neg = 72 - target.sum()
    w = pos / pos.sum() + (1 - target) * 130 / n_neg
    w /= w.sum()
    expected = float((w * bce_logits(logits[0, 0], target)).sum())
    got = hanning_balance_loss(torch.tensor(logits, dtype=torch.float32), torch.tensor([c]), side=side)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_hanning_window_and_stride_helpers():
    k = hanning_window(31)
    assert k.shape == (31, 31) and (k > 0).all() and k.sum() == pytest.approx(1.0)
    assert k[15, 15] == k.max()
    assert [positive_side_for_stride(s) for s in (1, 2, 4, 8, 16)] == [31, 15, 7, 3, 1]
    assert [radius_for_stride(s) for s in (1, 2, 4, 8, 16)] == [15, 7, 3, 1, 0]


def test_fraction_helpers_follow_ul14_rounding():
    frac = torch.tensor([[0.5, 0.075], [0.925, 1.0]])
    c = fractions_to_centers(frac, (384, 384))
    assert c.tolist() == [[round(0.5 * 383), round(0.075 * 383)], [round(0.925 * 383), 383]]
    back = centers_to_fractions(c, (384, 384))
    assert torch.allclose(back, frac, atol=0.5 / 383)
    with pytest.raises(ValueError, match="centres for a batch"):
        weighted_balance_loss(torch.zeros(2, 1, 8, 8), torch.zeros(3, 2))
