"""UL14 metrics against hand-computed cases, and trajectory error statistics."""
import math

import numpy as np
import pytest

from geoloc_ros.metrics import error_stats, ma_at_k, pixel_metrics, ul14_error_m, ul14_pixel_to_latlon, ul14_rds, ul14_scale_label
from geoloc_ros.model.decode import hanning_kernel as ul14_hanning_kernel
from geoloc_ros.model.decode import ul14_peak, ul14_peaks


def test_rds_known_offset():
    # dx = 38.4/384 = 0.1, dy = 0 -> exp(-10 * sqrt(0.01 / 2))
    assert ul14_rds(100, 50, 100 - 38.4, 50) == pytest.approx(math.exp(-10 * math.sqrt(0.005)))
    # 3-4-5 offsets in units of the grid: dx = 0.03, dy = 0.04 -> sqrt((0.0009 + 0.0016)/2)
    assert ul14_rds(11.52 + 10, 15.36 + 20, 10, 20) == pytest.approx(math.exp(-10 * math.sqrt(0.00125)))
    assert ul14_rds(7, 9, 7, 9) == 1.0
    # on another grid size the offsets are relative to it
    assert ul14_rds(19.2, 0, 0, 0, size=192) == pytest.approx(math.exp(-10 * math.sqrt(0.005)))


def test_ma_thresholds_inclusive():
    errs = [0.5, 3.0, 3.0001, 20.0, 150.0]
    ma = ma_at_k(errs, ks=(1, 3, 5, 20, 100))
    assert ma == {"MA@1": 0.2, "MA@3": 0.4, "MA@5": 0.6, "MA@20": 0.8, "MA@100": 0.8}


def test_corner_mapping_row_north_col_east_non_square_box():
    tl_n, tl_e, br_n, br_e = 30.010, 120.000, 30.000, 120.030  # 0.01 deg tall, 0.03 deg wide
    n, e = ul14_pixel_to_latlon(0, 0, tl_n, tl_e, br_n, br_e)
    assert (n, e) == (tl_n, tl_e)
    n, e = ul14_pixel_to_latlon(96, 0, tl_n, tl_e, br_n, br_e)  # a quarter down: latitude only
    assert n == pytest.approx(30.0075) and e == pytest.approx(120.0)
    n, e = ul14_pixel_to_latlon(0, 288, tl_n, tl_e, br_n, br_e)  # three quarters right: longitude only
    assert n == pytest.approx(30.010) and e == pytest.approx(120.0225)
    n, e = ul14_pixel_to_latlon(384, 384, tl_n, tl_e, br_n, br_e)
    assert (n, e) == (pytest.approx(br_n), pytest.approx(br_e))


def test_haversine_uses_ul14_radius():
    # one degree of latitude on a sphere of 6378.137 km
    assert ul14_error_m(10.0, 20.0, 11.0, 20.0) == pytest.approx(6378137.0 * math.pi / 180.0, rel=1e-9)


def test_label_scaling_truncates():
    assert ul14_scale_label(767, 1) == (383, 0)
    assert ul14_scale_label(3, 5) == (1, 2)  # 1.5 -> 1, 2.5 -> 2


def test_hanning_kernel_shape_and_normalisation():
    k = ul14_hanning_kernel(31)
    assert k.shape == (31, 31)
    full = np.outer(np.hanning(33), np.hanning(33))
    # normalised over the 33x33 window, the cut border was zero, so the sum stays 1
    assert k.sum() == pytest.approx(1.0)
    assert k[15, 15] == pytest.approx(full[16, 16] / full.sum())


def test_peak_first_argmax_and_filter_shift():
    h = np.full((64, 64), -10.0, np.float32)
    assert ul14_peak(h) == (0, 0)  # constant map: first maximum, row-major
    h[10, 40] = 10.0
    assert ul14_peak(h, hanning=1) == (10, 40)
    assert ul14_peak(h) == (10, 40)
    # two equal blobs: the first in row-major order wins
    h2 = np.full((64, 64), -10.0, np.float32)
    h2[30, 50] = 10.0
    h2[31, 5] = 10.0
    assert ul14_peak(h2, hanning=1) == (30, 50)
    # hanning smoothing prefers a broad blob over a single taller pixel
    h3 = np.full((64, 64), -10.0, np.float32)
    h3[20:27, 20:27] = 3.0
    h3[50, 50] = 10.0
    assert ul14_peak(h3, hanning=1) == (50, 50)
    assert ul14_peak(h3) == (23, 23)
    torch = pytest.importorskip("torch")
    b = torch.from_numpy(np.stack([h, h3]))[:, None]
    assert ul14_peaks(b).tolist() == [[10, 40], [23, 23]]


def test_error_stats_and_pixel_metrics():
    s = error_stats([1.0, 2.0, 3.0, 4.0, 100.0], ks=(3, 10))
    assert s["mean"] == 22.0 and s["median"] == 3.0 and s["max"] == 100.0
    assert s["p95"] == pytest.approx(np.percentile([1, 2, 3, 4, 100], 95))
    assert s["MA@3"] == 0.6 and s["MA@10"] == 0.8
    assert error_stats([])["n"] == 0
    pm = pixel_metrics([[0, 0], [10, 10]], [[3, 4], [10, 10]], size=100, ks_px=(5, 4))
    assert pm["mean_px"] == 2.5 and pm["within5px"] == 1.0 and pm["within4px"] == 0.5
    assert pm["RDS"] == pytest.approx((math.exp(-10 * math.sqrt((0.0009 + 0.0016) / 2)) + 1.0) / 2)
