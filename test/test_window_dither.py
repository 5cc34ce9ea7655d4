"""Tracking windows dithered around the prediction (LocalizerConfig.window_dither_frac)."""
from __future__ import annotations

import numpy as np
import pytest

from geoloc_ros.localize import Localizer, LocalizerConfig
from geoloc_ros.localize.search import dither_offset
from test_localizer import run, simulate, texture_map  # noqa: F401  (fixture)
from test_sat_cache import packaged_net  # noqa: F401  (fixture)


def test_dither_is_bounded_repeatable_and_changes_every_frame():
    stamps = 1_700_000_000.0 + np.arange(200) / 3.0
    shifts = np.array([dither_offset(t, 200.0, 0.05) for t in stamps])
    assert np.abs(shifts).max() <= 10.0 + 1e-9  # +-0.05 x 200 m per axis
    assert np.abs(shifts).max() > 8.0  # and it uses the range
    assert np.allclose(shifts, [dither_offset(t, 200.0, 0.05) for t in stamps])  # a replay repeats
    assert np.abs(shifts.mean(axis=0)).max() < 1.5  # centred on the prediction on average
    assert np.all(np.abs(np.diff(shifts, axis=0)).max(axis=1) > 0)  # a new shift each frame
    assert abs(np.corrcoef(shifts[:-1, 0], shifts[1:, 0])[0, 1]) < 0.2  # ... unrelated to the last
    assert not np.any(dither_offset(stamps[0], 200.0, 0.0)) and not np.any(dither_offset(float("nan"), 200.0, 0.1))


def test_dither_shrinks_the_trusted_part_and_is_checked(texture_map):  # noqa: F811
    loc = Localizer(LocalizerConfig(useful_frac=0.8, window_dither_frac=0.05, window_grid_frac=0.0), texture_map, None)
    assert loc.track_useful_frac == pytest.approx(0.7)
    snapped = Localizer(LocalizerConfig(useful_frac=0.8, window_dither_frac=0.05, window_grid_frac=0.125),
                        texture_map, None)
    assert snapped.track_useful_frac == pytest.approx(0.575)  # the grid's snap costs its share too
    with pytest.raises(ValueError, match="window_dither_frac"):
        Localizer(LocalizerConfig(useful_frac=0.5, window_dither_frac=0.2), texture_map, None)


def test_dithered_windows_track_and_replays_repeat(texture_map, packaged_net):  # noqa: F811
    flight = simulate(texture_map, n=10, dt=0.3, speed=8.0, seed=6)
    runs = {}
    for frac in (0.0, 0.06, 0.06):
        loc = Localizer(LocalizerConfig(keep_heatmap=False, window_dither_frac=frac), texture_map, packaged_net,
                        device="cpu")
        runs.setdefault(frac, []).append(run(loc, flight))
    centred, (dith, again) = runs[0.0][0], runs[0.06]
    assert [e.lat for e in dith] == [e.lat for e in again]  # seeded by the stamps
    assert any(abs(a.lat - b.lat) > 1e-9 for a, b in zip(dith, centred))  # the windows moved
    assert sum(e.fix_valid for e in dith) >= sum(e.fix_valid for e in centred) - 1
