"""Relocalization candidates: confirmation by odometry-consistent peaks, and the jump bar.

A candidate the lost track's covariance cannot reach needs peaks of `strong_confidence` (the
challenger bar while tracking); inside the track's gate `reloc_min_confidence` is enough, and
after a real loss (wide covariance) every candidate is inside it."""
import numpy as np
import pytest

from geoloc_ros.localize import LocalizerConfig
from geoloc_ros.localize.relocalization import WindowSweep
from geoloc_ros.localize.types import Peak

R = np.eye(2) * 1.0  # 1 m^2 peak covariance


def _peak(z, conf, window=0):
    return Peak(z=np.asarray(z, dtype=np.float64), r=R, confidence=conf, window=window, valid=True)


def _run(sweep, position, cov, place, conf, frames=6, step=(3.0, 1.0)):
    """Feed `frames` frames in which the sweep sees `place` (moving with the odometry `step`);
    return the frame index (1-based) of confirmation, or None."""
    place = np.asarray(place, dtype=np.float64)
    position = np.asarray(position, dtype=np.float64)
    for i in range(1, frames + 1):
        sweep.set_prior(position, cov)
        kinds = [f"hyp{j}" for j in range(len(sweep.candidates))] + ["sweep"]
        peaks = [_peak(c.z, conf) if np.hypot(*(c.z - place)) < 1.0 else _peak(c.z + 50.0, 0.0)
                 for c in sweep.candidates] + [_peak(place, conf)]
        found = sweep.update(peaks, kinds)
        if found is not None:
            return i, found
        d = np.asarray(step)
        sweep.shift(d)
        place, position = place + d, position + d
    return None, None


@pytest.fixture
def cfg():
    return LocalizerConfig()


def test_middling_peaks_confirm_inside_the_tracks_gate(cfg):
    sweep = WindowSweep(cfg)
    sweep.start(0.0)
    i, found = _run(sweep, (0.0, 0.0), np.eye(2) * 1.5, (2.0, -1.0), 0.40)
    assert i == cfg.reloc_confirm_frames and np.hypot(*(found.z - (2.0 + 3.0 * (i - 1), -1.0 + (i - 1)))) < 1e-9


def test_a_far_look_alike_needs_strong_peaks_while_the_track_is_tight(cfg):
    far = (115.0, -36.0)
    sweep = WindowSweep(cfg)
    sweep.start(0.0)
    i, _ = _run(sweep, (0.0, 0.0), np.eye(2) * 1.5, far, 0.40, frames=10)
    assert i is None and sweep.counts["jump_peaks_below_strong"] >= 10 and not sweep.candidates
    sweep.start(0.0)
    i, found = _run(sweep, (0.0, 0.0), np.eye(2) * 1.5, far, cfg.strong_confidence + 0.05)
    assert i == cfg.reloc_confirm_frames and np.hypot(*found.z) > 100.0


def test_after_a_real_loss_the_far_place_is_within_reach(cfg):
    """A lost track (sigma past lost_sigma_m) reaches 115 m within its jump gate: middling
    peaks confirm as before. Without a prior at all, too."""
    sigma = cfg.lost_sigma_m
    far = (115.0, -36.0)
    assert (115.0 ** 2 + 36.0 ** 2) / (sigma ** 2 + 1.0) < cfg.jump_d2
    for cov in (np.eye(2) * sigma ** 2, None, np.full((2, 2), np.nan)):
        sweep = WindowSweep(cfg)
        sweep.start(0.0)
        i, _ = _run(sweep, (0.0, 0.0), cov, far, 0.40)
        assert i == cfg.reloc_confirm_frames, cov
        assert sweep.counts["jump_peaks_below_strong"] == 0


def test_weak_peaks_never_start_a_candidate(cfg):
    sweep = WindowSweep(cfg)
    sweep.start(0.0)
    i, _ = _run(sweep, (0.0, 0.0), np.eye(2) * 1.5, (1.0, 1.0), cfg.reloc_min_confidence - 0.05)
    assert i is None and not sweep.candidates
