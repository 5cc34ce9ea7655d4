"""Search sizing: windows cover 3 sigma, are bounded, and tile a relocalization area."""
import math

import numpy as np
import pytest

from geoloc_ros.localize.search import (footprint_side_m, grid_count, grid_offsets, plan_tracking_windows,
                                        sat_window_side_m, single_window_covers)


def _covered(points, offsets, half):
    d = np.abs(points[:, None, :] - offsets[None, :, :]).max(axis=2)
    return (d <= half + 1e-9).any(axis=1)


def test_footprint_and_window_side():
    f = footprint_side_m(640, 480, 500.0, 500.0, 319.5, 239.5, 100.0)
    assert math.isclose(f, 480 * 100 / 500 / math.sqrt(2), rel_tol=1e-9)
    # off-centre principal point: the nearest edge limits the square
    f2 = footprint_side_m(640, 480, 500.0, 500.0, 319.5, 139.5, 100.0)
    assert math.isclose(f2, math.sqrt(2) * 140 * 100 / 500, rel_tol=1e-9)
    assert math.isclose(sat_window_side_m(100.0, 128, 384, 1.0), 300.0)
    assert math.isclose(sat_window_side_m(100.0, 128, 384, 1.2), 360.0)


def test_single_window_while_certain_more_when_uncertain():
    s = 300.0
    plan = plan_tracking_windows(10.0, s, 1, 9)
    assert len(plan.offsets) == 1 and single_window_covers(10.0, s)
    for sigma in (45.0, 80.0, 120.0):
        plan = plan_tracking_windows(sigma, s, 1, 50)
        assert len(plan.offsets) > 1 and not plan.truncated
        rng = np.random.default_rng(0)
        ang = rng.uniform(0, 2 * np.pi, 2000)
        rad = 3 * sigma * np.sqrt(rng.uniform(0, 1, 2000))
        pts = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
        assert _covered(pts, plan.offsets, 0.4 * s).all()


def test_window_count_bounded_nearest_kept():
    plan = plan_tracking_windows(500.0, 300.0, 1, 9)
    assert len(plan.offsets) == 9 and plan.truncated
    assert np.allclose(plan.offsets[0], 0.0)  # the prediction itself is searched first
    plan = plan_tracking_windows(1.0, 300.0, 4, 9)
    assert len(plan.offsets) == 4


def test_relocalization_tiling_covers_area_with_overlap():
    s, r = 300.0, 700.0
    off = grid_offsets(r, s, useful_frac=0.8, min_overlap=0.1)
    g = np.linspace(-r, r, 81)
    pts = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    assert _covered(pts, off, 0.4 * s).all()
    xs = np.unique(np.round(off[:, 0], 6))
    assert np.all(np.diff(xs) <= 0.8 * s * 0.9 + 1e-6)  # neighbours overlap by >= 10 %
    assert len(off) == len(xs) ** 2
    # nearest first
    dist = np.hypot(off[:, 0], off[:, 1])
    assert np.all(np.diff(dist) >= -1e-9)


def test_absurd_inputs_are_bounded_before_allocation():
    """A 1e12 covariance or a millimetre window (fx = 1e7, AGL ~0) used to build a 58119^2 grid."""
    import time

    t = time.perf_counter()
    off = grid_offsets(3e6, 0.01, max_count=1000)
    assert len(off) <= 1000 and np.allclose(off[0], 0.0)
    # the kept windows are the central ones of the full grid: its spacing, not a stretched grid
    spacing = np.diff(np.unique(np.round(off[:, 0], 9)))
    assert np.allclose(spacing, 0.8 * 0.01 * 0.9, rtol=1e-3)
    plan = plan_tracking_windows(1e6, 0.01, 1, 9)
    assert len(plan.offsets) == 9 and plan.truncated
    assert grid_count(3e6, 0.01) > 10 ** 12  # what it would have been
    assert time.perf_counter() - t < 1.0
    with pytest.raises(ValueError):
        grid_offsets(float("nan"), 10.0)
    with pytest.raises(ValueError):
        grid_offsets(10.0, 10.0, min_overlap=1.0)  # used to divide by zero
