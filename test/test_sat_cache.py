"""Satellite feature cache: the window ladder and grid, the LRU, and that the localizer's
cached path gives the logits and estimates of the uncached one on the same windows."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geoloc_ros.localize import Localizer, LocalizerConfig
from geoloc_ros.localize.sat_cache import SatFeatureCache, WindowGrid, ladder_side_m, ladder_step
from test_localizer import run, simulate, texture_map  # noqa: F401  (fixture)


@pytest.mark.parametrize("side", [3.7, 55.0, 150.2, 333.3, 1024.0])
def test_ladder_rounds_down_by_at_most_one_step(side):
    for steps in (4, 16):
        q = ladder_side_m(side, steps)
        assert q <= side * (1 + 1e-12) and q > side * 2 ** (-1 / steps) * (1 - 1e-12)
        k = ladder_step(q, steps)
        assert math.isclose(2 ** (k / steps), q, rel_tol=1e-12)
        assert ladder_side_m(q, steps) == pytest.approx(q, rel=1e-12)  # a ladder side stays put
    assert ladder_side_m(side, 0) == side


def test_grid_snaps_to_nearest_node_and_names_it():
    grid = WindowGrid(side_m=160.0, grid_frac=0.125, step_index=7)  # 20 m spacing
    pts = np.array([[9.9, -10.1], [10.1, 29.0], [-0.2, 0.3]])
    snapped, keys = grid.snap(pts)
    assert np.allclose(snapped, [[0.0, -20.0], [20.0, 20.0], [0.0, 0.0]])
    assert keys == [(7, 0, -1), (7, 1, 1), (7, 0, 0)]
    assert np.all(np.abs(snapped - pts) <= 10.0 + 1e-9)
    same, no_keys = WindowGrid(160.0, 0.0).snap(pts)
    assert np.array_equal(same, pts) and no_keys == []


def test_lru_is_bounded_in_bytes_and_evicts_the_oldest():
    f = [torch.zeros(1, 4, 8, 8)]  # 1 KiB
    cache = SatFeatureCache(max_bytes=3 * 1024)
    for k in range(3):
        cache.put(k, object(), f)
    assert cache.get(0) is not None  # 0 becomes the most recent
    cache.put(3, object(), f)  # evicts 1, the least recently used
    assert cache.get(1) is None and cache.get(0) is not None and cache.get(3) is not None
    assert len(cache) == 3 and cache.nbytes == 3 * 1024 and cache.stats.evictions == 1
    cache.put("off-map", None, None)  # a window known to be off the map costs nothing
    assert cache.nbytes <= 3 * 1024
    off = SatFeatureCache(max_bytes=0)
    off.put(0, object(), f)
    assert not off.enabled and len(off) == 0


@pytest.fixture(scope="module")
def packaged_net():
    from geoloc_ros.model.weights import load_weights, resolve_weights

    return load_weights(resolve_weights("default"), device="cpu")


def test_cached_logits_equal_the_full_model(packaged_net):
    net = packaged_net
    torch.manual_seed(0)
    uav = torch.rand(1, 3, net.cfg.uav_size, net.cfg.uav_size)
    sat = torch.rand(3, 3, net.cfg.sat_size, net.cfg.sat_size)
    with torch.inference_mode():
        full = net(uav.expand(3, -1, -1, -1), sat)
        # features of each window encoded on its own (as the cache stores them), then batched
        feats = [net.encode(sat[i:i + 1], "sat") for i in range(3)]
        stacked = [torch.cat([f[s] for f in feats]) for s in range(len(feats[0]))]
        cached = net.forward_features(net.encode(uav, "uav"), stacked, sat.shape[-2:])
    assert cached.shape == full.shape
    assert torch.allclose(cached, full, atol=1e-4, rtol=1e-5), (cached - full).abs().max()


def test_prepared_satellite_side_gives_the_same_logits(packaged_net):
    """What the cache keeps since the satellite half of the fusion is cached too (prepare_sat:
    projected, normalised maps and their FFTs): windows prepared one by one, then batched
    (window_of / windows_cat, as the localizer does), give the full model's logits; a window
    prepared for another UAV size is refused, not silently mis-correlated."""
    from geoloc_ros.localize.sat_cache import SatFeatureCache, window_of, windows_cat
    from geoloc_ros.model.fusion import SatSide
    from geoloc_ros.model.net import AMCFNet

    net = packaged_net
    torch.manual_seed(1)
    uav = torch.rand(1, 3, net.cfg.uav_size, net.cfg.uav_size)
    sat = torch.rand(3, 3, net.cfg.sat_size, net.cfg.sat_size)
    with torch.inference_mode():
        full = net(uav.expand(3, -1, -1, -1), sat)
        batch = net.prepare_sat(net.encode(sat, "sat"))
        assert isinstance(batch, SatSide) and len(batch.spectra) == len(batch.maps) == 3
        sides = [net.prepare_sat(net.encode(sat[i:i + 1], "sat")) for i in range(3)]
        got = net.forward_features(net.encode(uav, "uav"), windows_cat(sides), sat.shape[-2:])
        again = net.forward_features(net.encode(uav, "uav"), windows_cat([window_of(batch, i) for i in range(3)]),
                                     sat.shape[-2:])
    assert torch.allclose(got, full, atol=1e-4, rtol=1e-5), (got - full).abs().max()
    assert torch.allclose(again, full, atol=1e-4, rtol=1e-5)
    cache = SatFeatureCache(10 * 2 ** 20)
    cache.put((0, 0, 0), "crop", sides[0])
    assert cache.nbytes == sides[0].nbytes > sum(m.numel() * 4 for m in sides[0].maps)
    # half the UAV side: a smaller kernel needs a smaller transform at every scale (a UAV size whose
    # transform rounds to the same 5-smooth size may reuse the spectrum, and rightly so)
    other = AMCFNet(net.cfg.__class__(**{**net.cfg.__dict__, "uav_size": net.cfg.uav_size // 2})).eval()
    other.load_state_dict(net.state_dict())
    with torch.inference_mode(), pytest.raises(ValueError, match="another UAV size"):
        small = torch.rand(1, 3, other.cfg.uav_size, other.cfg.uav_size)
        other.forward_features(other.encode(small, "uav"), sides[0], sat.shape[-2:])


def test_localizer_with_cache_gives_the_uncached_estimates(texture_map, packaged_net):  # noqa: F811
    flight = simulate(texture_map, n=14, dt=0.3, speed=8.0, seed=4)
    runs = {}
    for mb in (64.0, 0.0):
        cfg = LocalizerConfig(keep_heatmap=False, sat_cache_mb=mb, min_windows=2, max_windows=4,
                              window_grid_frac=0.125, window_scale_steps=16)
        loc = Localizer(cfg, texture_map, packaged_net, device="cpu")
        runs[mb] = (run(loc, flight), loc)
    (cached, loc_c), (plain, loc_p) = runs[64.0], runs[0.0]
    assert loc_c.sat_cache.stats.hits > loc_c.sat_cache.stats.misses > 0  # windows were reused
    assert len(loc_p.sat_cache) == 0 and loc_p.sat_cache.stats.hits == 0
    for a, b in zip(cached, plain):
        assert a.state == b.state and a.accepted == b.accepted
        assert a.lat == pytest.approx(b.lat, abs=1e-8) and a.lon == pytest.approx(b.lon, abs=1e-8)
        assert np.allclose(a.cov_enu, b.cov_enu, rtol=1e-4, atol=1e-3)  # float rounding of batched encodes
    # the windows were snapped: every tracking window of the cache sits on its grid
    k = next(iter(loc_c.sat_cache._items))
    assert len(k) == 3 and all(isinstance(v, int) for v in k)


def test_grid_leaves_enough_of_the_window_trusted(texture_map):  # noqa: F811
    with pytest.raises(ValueError, match="window_grid_frac"):
        Localizer(LocalizerConfig(useful_frac=0.5, window_grid_frac=0.4), texture_map, None)


def test_default_windows_are_cached_and_the_cache_can_be_turned_off(texture_map, packaged_net):  # noqa: F811
    """On by default (README 'Satellite windows are reused'): consecutive frames reuse the
    snapped windows, and the trusted part pays for the snap and the dither. With
    window_grid_frac 0 and window_scale_steps 0 the windows follow the prediction, uncached."""
    flight = simulate(texture_map, n=4, dt=0.3, speed=8.0, seed=5)
    loc = Localizer(LocalizerConfig(keep_heatmap=False), texture_map, packaged_net, device="cpu")
    run(loc, flight)
    assert loc.sat_cache.enabled and loc.sat_cache.stats.misses >= 1 and loc.sat_cache.stats.hits >= 1
    assert loc.track_useful_frac == pytest.approx(
        loc.cfg.useful_frac - loc.cfg.window_grid_frac - 2 * loc.cfg.window_dither_frac)
    off = Localizer(LocalizerConfig(keep_heatmap=False, window_grid_frac=0.0, window_scale_steps=0), texture_map,
                    packaged_net, device="cpu")
    run(off, flight)
    assert len(off.sat_cache) == 0 and off.sat_cache.stats.hits == 0 and off.sat_cache.stats.misses == 0
    assert off.track_useful_frac == pytest.approx(off.cfg.useful_frac - 2 * off.cfg.window_dither_frac)
