"""Heatmap decoding on synthetic maps whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from geoloc_ros.model.decode import HeatmapPeak, decode_heatmap, hanning_filter, hanning_kernel, ul14_argmax


def logit(p):
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def blob(shape, r, c, sr, sc=None, amp=0.95, floor=1e-6):
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    sc = sr if sc is None else sc
    return floor + amp * np.exp(-0.5 * (((rr - r) / sr) ** 2 + ((cc - c) / sc) ** 2))


def test_hanning_filter_is_ul14_reflect101_correlation():
    rng = np.random.default_rng(0)
    p = rng.random((40, 45))
    k = np.outer(np.hanning(33), np.hanning(33))
    k = (k / k.sum())[1:-1, 1:-1]
    assert np.allclose(hanning_kernel(31), k)
    padded = np.pad(p, 15, mode="reflect")  # numpy "reflect" == OpenCV BORDER_REFLECT_101
    ref = (sliding_window_view(padded, (31, 31)) * k).sum(axis=(-2, -1))
    assert np.allclose(hanning_filter(p, 31), ref, atol=1e-12)
    idx = int(np.argmax(ref))
    assert ul14_argmax(p, 31) == (idx // 45, idx % 45)
    assert decode_heatmap(logit(p), hanning=31).row == idx // 45


def test_first_maximum_row_major_without_filter():
    p = np.full((20, 20), 0.1)
    p[12, 3] = p[5, 17] = p[5, 18] = 0.9
    peak = decode_heatmap(logit(p), hanning=1)
    assert (peak.row, peak.col) == (5, 17)


def test_gaussian_blob_subpixel_and_covariance():
    r, c, sr, sc = 40.3, 55.7, 2.0, 3.5
    peak = decode_heatmap(logit(blob((96, 128), r, c, sr, sc)), hanning=1, window=9, suppress_radius=20,
                          cov_radius=16)
    assert isinstance(peak, HeatmapPeak)
    assert (peak.row, peak.col) == (40, 56)
    assert abs(peak.row_sub - r) < 0.2 and abs(peak.col_sub - c) < 0.2
    assert peak.cov_px.shape == (2, 2)
    assert peak.cov_px[0, 0] == pytest.approx(sr ** 2, rel=0.1)
    assert peak.cov_px[1, 1] == pytest.approx(sc ** 2, rel=0.1)
    assert abs(peak.cov_px[0, 1]) < 0.1
    assert peak.peak > 0.9 and peak.peak_ratio > 100 and peak.confidence > 0.6


def test_hanning_filtered_decode_of_a_blob_on_384():
    r, c = 200.4, 123.6
    peak = decode_heatmap(torch.tensor(logit(blob((384, 384), r, c, 4.0)), dtype=torch.float32))
    assert abs(peak.row - r) <= 1 and abs(peak.col - c) <= 1
    assert np.hypot(peak.row_sub - r, peak.col_sub - c) < 0.5
    assert 0.5 < peak.confidence <= 1.0


def test_covariance_floor_and_rotation():
    # a one-pixel spike: moments are ~0, the floor keeps the covariance positive definite
    p = np.full((64, 64), 1e-6)
    p[30, 20] = 0.99
    peak = decode_heatmap(logit(p), hanning=1, cov_floor_px=1.5)
    assert np.allclose(peak.cov_px, np.eye(2) * 2.25, atol=1e-6)
    # an elongated blob along the diagonal: positive row/col covariance
    rr, cc = np.mgrid[:64, :64]
    u, v = (rr - 32 + cc - 32) / np.sqrt(2), (rr - 32 - (cc - 32)) / np.sqrt(2)
    diag = 1e-6 + 0.9 * np.exp(-0.5 * ((u / 4) ** 2 + (v / 1.5) ** 2))
    cov = decode_heatmap(logit(diag), hanning=1, cov_radius=20).cov_px
    assert cov[0, 1] > 3 and np.allclose(cov, cov.T)
    assert np.linalg.eigvalsh(cov).max() == pytest.approx(16, rel=0.15)


def test_flat_map_has_low_confidence():
    peak = decode_heatmap(np.zeros((128, 128)))
    assert peak.entropy == pytest.approx(1.0, abs=1e-6)
    assert peak.confidence < 0.05 and peak.peak_ratio == pytest.approx(1.0, abs=1e-6)
    noisy = decode_heatmap(np.random.default_rng(0).normal(-3, 0.3, (128, 128)))
    assert noisy.confidence < 0.2


def test_two_equal_peaks_have_low_ratio_and_confidence():
    p = blob((128, 128), 30, 30, 3) + blob((128, 128), 90, 100, 3)
    two = decode_heatmap(logit(p), suppress_radius=24)
    one = decode_heatmap(logit(blob((128, 128), 30, 30, 3)), suppress_radius=24)
    assert two.peak_ratio < 1.05 and two.confidence < 0.25
    assert one.peak_ratio > 5 and one.confidence > 2 * two.confidence
    # a weaker rival: intermediate
    p2 = blob((128, 128), 30, 30, 3) + blob((128, 128), 90, 100, 3, amp=0.4)
    mid = decode_heatmap(logit(p2), suppress_radius=24)
    assert two.confidence < mid.confidence < one.confidence


def test_batch_api_torch_and_numpy_agree():
    rng = np.random.default_rng(3)
    maps = np.stack([logit(blob((64, 80), rng.uniform(10, 50), rng.uniform(10, 70), 3)) for _ in range(3)])
    out = decode_heatmap(torch.tensor(maps[:, None], dtype=torch.float64), hanning=7, suppress_radius=12)
    assert isinstance(out, list) and len(out) == 3
    for m, pk in zip(maps, out):
        single = decode_heatmap(m, hanning=7, suppress_radius=12)
        assert (single.row, single.col) == (pk.row, pk.col)
        assert single.confidence == pytest.approx(pk.confidence)
    assert len(decode_heatmap(maps, hanning=7)) == 3  # [B, H, W] also accepted
    for x in rng.normal(0, 3, (5, 32, 32)):
        pk = decode_heatmap(x, hanning=5, suppress_radius=8)
        assert 0.0 <= pk.confidence <= 1.0 and 0.0 <= pk.entropy <= 1.0 and pk.peak_ratio >= 1.0
    with pytest.raises(ValueError, match="logits must be"):
        decode_heatmap(np.zeros((2, 3, 8, 8)))


def test_ul14_pixel_sizes_scale_with_the_grid():
    """One rule for every pixel size tuned at the 384 px UL14 output (filter, positives, radii)."""
    from geoloc_ros.model.decode import hanning_for_grid, scale_to_grid

    assert hanning_for_grid(31, 384) == 31 and hanning_for_grid(31, 192) == 17  # round(15.5) = 16, made odd
    assert hanning_for_grid(31, 128) == 11 and hanning_for_grid(1, 192) == hanning_for_grid(0, 384) == 0
    assert scale_to_grid(32.0, 192) == 16.0 and scale_to_grid(15, 384) == 15
