"""localize.evidence and localize.tracker on hand-made peaks (no model, no map).

The data association against its closed form, then each honesty mechanism of the tracker
provoked by a synthetic stream of peaks: covariance matching (NIS), innovation whiteness,
challengers that replace a track, and look-alikes that must not.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from geoloc_ros.localize import LocalizerConfig
from geoloc_ros.localize.evidence import Mode, associate, peak_probability
from geoloc_ros.localize.tracker import Tracker
from geoloc_ros.localize.types import Peak


# ----------------------------------------------------------------------------- association
def test_one_certain_mode_is_a_kalman_update():
    p, r = np.diag([9.0, 4.0]), np.diag([1.0, 2.0])
    z = np.array([2.0, -1.0])
    a = associate([Mode(z, r, 0.999)], 1e6, np.zeros(2), p)
    k = p @ np.linalg.inv(p + r)
    np.testing.assert_allclose(a.mean, k @ z, atol=1e-3)
    np.testing.assert_allclose(a.cov, (np.eye(2) - k) @ p, atol=1e-3)
    assert a.best == 0 and a.info_nats > 0.5


def test_a_far_strong_peak_moves_nothing_and_a_near_weak_one_does():
    p = np.eye(2) * 4.0
    far = associate([Mode(np.array([40.0, 0.0]), np.eye(2), 0.95)], 40000.0, np.zeros(2), p)
    assert np.linalg.norm(far.mean) < 0.01 and far.best is None and abs(far.info_nats) < 1e-3
    near = associate([Mode(np.array([1.0, 0.0]), np.eye(2), 0.2)], 40000.0, np.zeros(2), p)
    assert near.best == 0 and near.mean[0] > 0.5 and near.info_nats > 0.5


def test_two_places_make_a_wide_posterior_not_a_jump():
    p = np.eye(2) * 400.0  # 20 m prior
    a = associate([Mode(np.array([-15.0, 0.0]), np.eye(2), 0.9), Mode(np.array([15.0, 0.0]), np.eye(2), 0.9)],
                  40000.0, np.zeros(2), p)
    assert abs(a.mean[0]) < 1.0 and math.sqrt(a.cov[0, 0]) > 12.0  # both kept: east-west uncertainty
    assert a.cov[1, 1] < 2.0  # but north is pinned by both


def test_peak_probability_is_monotone_and_capped():
    ps = [peak_probability(c, 0.22, 0.06, 0.98) for c in np.linspace(0, 1, 21)]
    assert all(b >= a for a, b in zip(ps, ps[1:])) and ps[0] < 0.05 and max(ps) <= 0.98


# ----------------------------------------------------------------------------- the tracker
def tracker(**kw) -> Tracker:
    t = Tracker(LocalizerConfig(**kw))
    t.ekf.reset(0.0, 0.0, 0.0, 1.0, 0.01, scale_sigma=0.0)
    return t


def step(t: Tracker, k: int, z, conf=0.6, r=1.0):
    """One frame: the UAV flies 5 m east (odometry says the same); one peak at z."""
    t.predict(np.array([5.0, 0.0]), 0.5)
    z = np.asarray(z, dtype=float)
    mode = Mode(z, np.eye(2) * r, peak_probability(conf, 0.22, 0.06, 0.98))
    return t.update([mode], 40000.0, [Peak(z, np.eye(2) * r, conf, 0, True)], 0.5 * (k + 1))


def test_process_noise_follows_the_innovations():
    """Peaks scattered 3x wider than the filter expects raise q_scale; consistent ones bring
    it back to 1 (never below)."""
    rng = np.random.default_rng(0)
    t = tracker(nis_window=6, gate_probability=0.9999)
    for k in range(40):
        x = t.ekf.x[:2].copy()
        s = t.ekf.pos_cov + np.eye(2)
        step(t, k, x + rng.multivariate_normal(np.zeros(2), 6.0 * s))
    high = t.ekf.q_scale
    assert high > 2.0 and t.counts["process_noise_adapted"] >= 1
    for k in range(40, 200):
        x = t.ekf.x[:2].copy()
        step(t, k, x + rng.multivariate_normal(np.zeros(2), 0.3 * (t.ekf.pos_cov + np.eye(2))))
    assert 1.0 <= t.ekf.q_scale < high


def test_correlated_innovations_raise_the_process_noise():
    """A bias that persists frame after frame (the track lags behind its evidence) vs white
    noise: the first raises the process noise and widens the track, the second does not."""
    rng = np.random.default_rng(1)
    biased, white = tracker(), tracker()
    bias = np.zeros(2)
    for k in range(120):
        bias = 0.97 * bias + rng.normal(0, 0.5, 2)
        step(biased, k, np.array([5.0 * (k + 1), 0.0]) + bias, r=0.5)
        step(white, k, np.array([5.0 * (k + 1), 0.0]) + rng.normal(0, 0.7, 2), r=0.5)
    assert biased.correlation_factor > 1.2 and white.correlation_factor < 1.1
    assert biased.ekf.q_scale > 1.2 and white.ekf.q_scale < 1.1
    assert biased.ekf.pos_sigma_major() > white.ekf.pos_sigma_major()


def test_a_consistent_offset_replaces_the_track_random_far_peaks_do_not():
    t = tracker(challenger_frames=3, challenger_frames_per_doubling=0)
    for k in range(5):
        step(t, k, [5.0 * (k + 1), 0.0])
    switched = [step(t, k, [5.0 * (k + 1) + 40.0, 10.0]).switched for k in range(5, 8)]
    assert switched == [False, False, True] and abs(t.ekf.x[0] - (40.0 + 40.0)) < 3.0
    rng = np.random.default_rng(2)
    u = tracker(challenger_frames=3)
    for k in range(30):
        far = rng.uniform(30, 80) * np.array([math.cos(k), math.sin(k)])
        up = step(u, k, np.array([5.0 * (k + 1), 0.0]) + far)
        assert not up.switched
    assert u.counts["track_switches"] == 0 and u.rejections == 30


def _first_switch(t: Tracker, offsets, start: int = 5) -> int | None:
    """Frame index (from `start`) at which a stream of peaks at these offsets from the flown
    path replaced the track; None if it never did."""
    for i, off in enumerate(offsets):
        k = start + i
        if step(t, k, np.array([5.0 * (k + 1), 0.0]) + np.asarray(off, dtype=float)).switched:
            return i
    return None


def test_a_farther_jump_needs_more_frames_a_near_one_does_not():
    """The jump-size prior: a challenger 60 m from a ~1 m track (~40 sigma, 10x sqrt(jump_d2))
    needs challenger_frames plus one per doubling (3 + 4); one just past the jump gate needs
    challenger_frames + 1. Either still wins when it persists."""
    def settled(**kw) -> Tracker:
        t = tracker(challenger_frames=3, **kw)
        for k in range(5):
            step(t, k, [5.0 * (k + 1), 0.0])
        return t

    far = [(45.0, -40.0)] * 12
    assert _first_switch(settled(challenger_frames_per_doubling=0), far) == 2
    t = settled(challenger_frames_per_doubling=1)
    i = _first_switch(t, far)
    assert i is not None and 5 <= i <= 8, i
    assert abs(t.ekf.x[1] + 40.0) < 3.0  # it moved to the persistent place
    near = [(7.0, 0.0)] * 12
    j = _first_switch(settled(challenger_frames_per_doubling=1), near)
    assert j is not None and j <= 3, j  # one frame more than before


def test_a_look_alike_winning_three_frames_while_the_track_shows_nothing_is_held():
    """The satellite cache's failure with the stage-1 weights: a look-alike 60 m away wins the
    best peak three frames running while the true place has no peak, then the true place is
    back. Without the jump-size prior the look-alike replaces the track; with it, the track
    stays and the challenger is dropped."""
    stream = [(45.0, -40.0)] * 3 + [(0.3, 0.2)] * 6
    assert _first_switch(tracker(challenger_frames=3, challenger_frames_per_doubling=0), [(0, 0)] * 5 + stream,
                         start=0) is not None
    t = tracker(challenger_frames=3, challenger_frames_per_doubling=1)
    assert _first_switch(t, [(0, 0)] * 5 + stream, start=0) is None
    assert t.counts["track_switches"] == 0 and not t.challengers and abs(t.ekf.x[1]) < 2.0


@pytest.mark.parametrize("conf", [0.1, 0.25])
def test_weak_peaks_near_the_track_narrow_it(conf):
    t = tracker()
    t.ekf.P[:2, :2] = np.eye(2) * 100.0  # a 10 m prior
    for k in range(6):
        up = step(t, k, [5.0 * (k + 1) + 1.0, 0.5], conf=conf)
        assert up.informative
    assert t.ekf.pos_sigma_major() < 3.0


def test_a_look_alike_does_not_replace_a_track_that_keeps_its_own_support():
    """The best peak sits on a look-alike 60 m away frame after frame, but the true place
    keeps a weaker peak of its own near the prediction: the track is fused and kept. Once the
    track's own peak is gone, the same look-alike replaces it after `challenger_frames`."""
    t = tracker(challenger_frames=3, challenger_frames_per_doubling=0)
    for k in range(5):
        step(t, k, [5.0 * (k + 1), 0.0])
    for k in range(5, 15):
        t.predict(np.array([5.0, 0.0]), 0.5)
        here, far = np.array([5.0 * (k + 1) + 0.3, 0.2]), np.array([5.0 * (k + 1) + 40.0, -45.0])
        modes = [Mode(far, np.eye(2), peak_probability(0.6, 0.22, 0.06, 0.98)),
                 Mode(here, np.eye(2), peak_probability(0.35, 0.22, 0.06, 0.98))]
        up = t.update(modes, 40000.0, [Peak(far, np.eye(2), 0.6, 0, True), Peak(here, np.eye(2), 0.35, 1, True)],
                      0.5 * (k + 1))
        assert not up.switched and up.informative
    assert t.counts["track_switches"] == 0 and abs(t.ekf.x[1]) < 2.0
    switched = [step(t, k, [5.0 * (k + 1) + 40.0, -45.0]).switched for k in range(15, 25)]
    assert True in switched and t.ekf.x[1] < -40.0
