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


def test_per_sample_norm_matches_eq_12_13_by_hand():
    """AMCF eq. 12-13: weights normalised within each sample, the sample losses summed; the DRL
    code's batch-wide weights differ as soon as samples have different positive counts."""
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 2, (2, 1, 6, 7))
    centers = [(1, 2), (5, 6)]  # 9 positives, and 4 (clipped by the corner)
    target = np.zeros_like(logits)
    target[0, 0, 0:3, 1:4] = 1
    target[1, 0, 4:6, 5:7] = 1
    bce = bce_logits(logits, target)
    per_sample = []
    for b, n_pos in ((0, 9), (1, 4)):
        w = np.where(target[b] == 1, 1 / n_pos, 130 / (42 - n_pos))
        per_sample.append(float((w / w.sum() * bce[b]).sum()))
    x, c = torch.tensor(logits, dtype=torch.float32), torch.tensor(centers)
    got_sum = float(weighted_balance_loss(x, c, radius=1, norm="sample"))
    got_mean = float(weighted_balance_loss(x, c, radius=1, norm="sample_mean"))
    batch = float(weighted_balance_loss(x, c, radius=1))
    assert got_sum == pytest.approx(sum(per_sample), rel=1e-5)
    assert got_mean == pytest.approx(sum(per_sample) / 2, rel=1e-5)
    assert abs(got_mean - batch) > 1e-3 * batch  # different positive counts: the two disagree
    with pytest.raises(ValueError, match="loss norm"):
        weighted_balance_loss(x, c, norm="pixel")


@pytest.mark.parametrize("loss", [weighted_balance_loss, hanning_balance_loss])
def test_per_sample_norm_equals_batch_norm_when_samples_alike(loss):
    """Whole squares (same positive count everywhere): sample_mean == batch, sample == B x batch."""
    rng = np.random.default_rng(5)
    x = torch.tensor(rng.normal(0, 2, (3, 1, 24, 20)), dtype=torch.float32)
    c = torch.tensor([[8.0, 6.0], [12.0, 10.0], [15.0, 13.0]])
    kw = {"radius": 2} if loss is weighted_balance_loss else {"side": 5}
    batch = float(loss(x, c, **kw))
    assert float(loss(x, c, norm="sample_mean", **kw)) == pytest.approx(batch, rel=1e-6)
    assert float(loss(x, c, norm="sample", **kw)) == pytest.approx(3 * batch, rel=1e-6)
    clipped = torch.tensor([[0.0, 0.0], [12.0, 10.0], [15.0, 13.0]])  # first square clipped to a quarter
    x = torch.where(positive_mask(clipped, (24, 20), kw.get("radius", 2)), 6.0, -6.0)
    x[0] = -6.0  # only the clipped square is missed: per sample its positives weigh more than batch-wide
    assert float(loss(x, clipped, norm="sample_mean", **kw)) > 1.5 * float(loss(x, clipped, **kw))
