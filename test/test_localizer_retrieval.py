"""Relocalization with a retrieval index (issue 8): the localizer asks the coarse stage for
candidate places, runs the heatmap model inside their windows, confirms over frames, and
falls back to the window sweep when the index is absent, returns nothing, or its candidates
are all rejected. The heatmap model is test_localizer's NCC oracle; the coarse stage is either
a scripted stand-in (so the test controls where the candidates are) or a real
RetrievalRelocalizer with a tiny random model and an index of the test map.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from geoloc_ros.geo.distance import haversine_m
from geoloc_ros.geo.frames import LocalENU
from geoloc_ros.geo.orthomap import OrthoMap
from geoloc_ros.localize import Localizer, LocalizerConfig, LocalizerState
from geoloc_ros.localize.search import footprint_side_m
from geoloc_ros.retrieval import RetrievalRelocalizer, build_index, build_model, save_model
from geoloc_ros.retrieval.relocalizer import place_recognizer_from_config
from test_localizer import INTR, SAT, UAV, OracleNet, make_texture_map, simulate

TINY = {"head": "mean", "img_size": 32,
        "backbone": {"name": "convnext_tiny", "kwargs": {"dims": [8, 16, 32, 64], "depths": [1, 1, 1, 1]}},
        "head_kwargs": {"bottleneck": 8, "pee_steps": 1, "cea_dim": 4, "cea_hidden": 16}}
ALT = 80.0
FOOT = footprint_side_m(INTR.width, INTR.height, INTR.fx, INTR.fy, INTR.cx, INTR.cy, ALT)  # ~113 m
KIDNAP_EN = np.array([260.0, -180.0])  # the localizer believes it is here (m) relative to the truth


@pytest.fixture(scope="module")
def texture_map(tmp_path_factory):
    path = make_texture_map(tmp_path_factory.mktemp("reloc_map") / "texture.tif")
    with OrthoMap.open(path) as m:
        yield m


@pytest.fixture(scope="module")
def tiny_index(texture_map, tmp_path_factory):
    """A tiny random retrieval model (saved) and an index of the texture map built with it."""
    d = tmp_path_factory.mktemp("reloc_index")
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    weights = save_model(model, d / "tiny")
    js = build_index(texture_map.path, model, tile_m=FOOT, stride_m=FOOT, out=d / "texture.retrieval", batch=64,
                     device="cpu", progress=False)
    return model, weights, js


def cfg(**kw) -> LocalizerConfig:
    return LocalizerConfig(uav_size=UAV, sat_size=SAT, keep_heatmap=False, **kw)


def kidnapped_flight(omap, n=12, seed=3):
    """A flight and a wrong prior 300 m off: the localizer starts RELOCALIZING around it."""
    flight = simulate(omap, n=n, seed=seed, start_en=(-100.0, 50.0), turn_rate=0.02)
    enu = LocalENU(*omap.center_latlon)
    e0, n0, _ = enu.to_enu(flight.truth[0][0], flight.truth[0][1], 0.0)
    lat, lon, _ = enu.to_geodetic(e0 + KIDNAP_EN[0], n0 + KIDNAP_EN[1], 0.0)
    return flight, (lat, lon)


def run_kidnapped(loc: Localizer, flight, prior, per_frame=None):
    loc.set_initial_fix(prior[0], prior[1], 500.0, 120.0, flight.frames[0].stamp, relocalize=True)
    out = []
    for f in flight.frames:
        out.append(loc.step(f))
        if per_frame is not None:
            per_frame.append(dict(loc.reloc_counts))
    return out


def errors(ests, flight) -> np.ndarray:
    return np.array([haversine_m(e.lat, e.lon, t[0], t[1]) for e, t in zip(ests, flight.truth)])


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32).ravel()
    b = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float32).ravel()
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


class ScriptedRelocalizer:
    """Coarse stage whose answers the test controls: decoys, optionally the true place (with a
    retrieval-sized error of a few tens of metres). Records what the localizer asked."""

    img_size = 48

    def __init__(self, flight, omap, include_truth=True, empty=False):
        self.flight, self.enu, self.include_truth, self.empty = flight, LocalENU(*omap.center_latlon), include_truth, empty
        self.queries: list[np.ndarray] = []
        self.calls: list[dict] = []
        self.resets = 0

    def reset(self):
        self.resets += 1

    def add_frame(self, image, position=None):
        self.queries.append(image.copy())

    def candidates_multi(self, k=5, footprint_m=None, position=None, max_shift_m=None, within=None):
        self.calls.append(dict(k=k, footprint_m=footprint_m, position=position, max_shift_m=max_shift_m,
                               within=within))
        if self.empty:
            return []
        lat, lon = self.flight.truth[len(self.queries) - 1]
        e, n, _ = self.enu.to_enu(lat, lon, 0.0)
        out = []
        for de, dn in ((-420.0, 300.0), (380.0, 350.0)):  # decoys: well inside the map, far from the UAV
            la, lo, _ = self.enu.to_geodetic(e + de, n + dn, 0.0)
            out.append((float(la), float(lo), 0.6))
        if self.include_truth:
            la, lo, _ = self.enu.to_geodetic(e + 25.0, n - 20.0, 0.0)
            out.insert(1, (float(la), float(lo), 0.5))
        return out[:k]


def test_retrieval_candidates_relocalize_without_sweep(texture_map):
    flight, prior = kidnapped_flight(texture_map)
    reloc = ScriptedRelocalizer(flight, texture_map)
    loc = Localizer(cfg(relocalization="retrieval", retrieval_top_k=3), texture_map, OracleNet(), device="cpu",
                    relocalizer=reloc)
    ests = run_kidnapped(loc, flight, prior)
    states = [e.state for e in ests]
    assert states[0] == LocalizerState.RELOCALIZING
    first = states.index(LocalizerState.TRACKING)  # confirmed over reloc_confirm_frames frames
    assert first == loc.cfg.reloc_confirm_frames - 1, [str(s) for s in states]
    assert errors(ests, flight)[first:].max() < 10.0
    c = loc.reloc_counts
    assert c["sweep_windows"] == 0 and c["fallback_frames"] == 0
    assert c["retrieval_queries"] == first + 1 and c["retrieval_windows"] >= first + 1
    # heatmap windows only at the candidates (+ the hypotheses being confirmed): far fewer than a sweep
    assert c["windows"] <= (first + 1) * (3 + loc.cfg.reloc_max_hypotheses)
    assert "retrieval" in ests[0].timings_ms and "retrieval" not in ests[-1].timings_ms
    # the query is the UAV image turned north-up by the heading estimate, one footprint wide
    call = reloc.calls[0]
    # (the window side, and the footprint with it, goes down the cache's ladder of 2^(1/steps))
    steps = loc.cfg.window_scale_steps
    lo = FOOT * 2.0 ** (-1.0 / steps) if steps > 0 else FOOT
    assert lo * (1 - 1e-6) <= call["footprint_m"] <= FOOT * (1 + 1e-6) and call["k"] == 3
    assert call["max_shift_m"] == pytest.approx(loc.cfg.retrieval_max_shift_frac * call["footprint_m"])
    north_up = texture_map.crop(flight.truth[0], FOOT, ScriptedRelocalizer.img_size).image
    turned = texture_map.crop(flight.truth[0], FOOT, ScriptedRelocalizer.img_size, rotation_deg=90.0).image
    assert ncc(reloc.queries[0], north_up) > 0.6 > ncc(reloc.queries[0], turned)
    # the index is asked only for places the UAV can have reached: a circle around the prior
    lat, lon, radius = call["within"]
    assert haversine_m(lat, lon, *prior) < 1.0
    assert radius >= math.hypot(*KIDNAP_EN) and radius < 3.0 * loc.cfg.n_sigma * 120.0


def test_rejected_candidates_fall_back_to_sweep(texture_map):
    flight, prior = kidnapped_flight(texture_map, n=14)
    reloc = ScriptedRelocalizer(flight, texture_map, include_truth=False)
    patience = 3
    loc = Localizer(cfg(relocalization="retrieval", retrieval_patience=patience), texture_map, OracleNet(),
                    device="cpu", relocalizer=reloc)
    per_frame: list[dict] = []
    ests = run_kidnapped(loc, flight, prior, per_frame)
    assert all(per_frame[i].get("sweep_windows", 0) == 0 for i in range(patience))  # candidates only
    assert all(e.state == LocalizerState.RELOCALIZING for e in ests[:patience])     # decoys never confirmed
    assert per_frame[patience]["sweep_windows"] > 0 and per_frame[patience]["fallback_frames"] == 1
    states = [e.state for e in ests]
    assert LocalizerState.TRACKING in states  # the sweep found it
    first = states.index(LocalizerState.TRACKING)
    assert errors(ests, flight)[first:].max() < 10.0


def test_empty_candidates_sweep_at_once(texture_map):
    flight, prior = kidnapped_flight(texture_map, n=6)
    reloc = ScriptedRelocalizer(flight, texture_map, empty=True)
    loc = Localizer(cfg(relocalization="retrieval"), texture_map, OracleNet(), device="cpu", relocalizer=reloc)
    per_frame: list[dict] = []
    run_kidnapped(loc, flight, prior, per_frame)
    assert per_frame[0]["retrieval_queries"] == 1 and per_frame[0]["sweep_windows"] > 0
    assert loc.reloc_counts["retrieval_windows"] == 0


def test_missing_index_falls_back_to_the_plain_sweep(texture_map, tiny_index, tmp_path):
    _, weights, _ = tiny_index
    flight, prior = kidnapped_flight(texture_map, n=8)
    c = cfg(relocalization="retrieval", retrieval_model=str(weights.with_suffix("")),
            retrieval_index=str(tmp_path / "absent.retrieval.json"))
    recognizer, why = place_recognizer_from_config(c, texture_map.path)
    assert recognizer is None and "no retrieval index" in why
    loc = Localizer(c, texture_map, OracleNet(), device="cpu", relocalization=recognizer)
    assert loc.relocalizer is None and "no place recognizer" in loc.relocalizer_error
    ests = run_kidnapped(loc, flight, prior)
    ref_loc = Localizer(cfg(), texture_map, OracleNet(), device="cpu")  # relocalization: sweep
    ref = run_kidnapped(ref_loc, flight, prior)
    assert [e.state for e in ests] == [e.state for e in ref]
    assert np.allclose([(e.lat, e.lon) for e in ests], [(e.lat, e.lon) for e in ref])
    assert loc.reloc_counts["sweep_windows"] == ref_loc.reloc_counts["sweep_windows"] > 0
    assert loc.reloc_counts["retrieval_queries"] == 0
    with pytest.raises(ValueError, match="relocalization"):
        LocalizerConfig(relocalization="index")


def test_real_retrieval_relocalizer_from_config(texture_map, tiny_index):
    """Index next to the map by name? No: explicit paths from the config, built by the caller
    (retrieval.relocalizer.place_recognizer_from_config, as the node and the replay do)."""
    _, weights, js = tiny_index
    flight, prior = kidnapped_flight(texture_map, n=5)
    c = cfg(relocalization="retrieval", retrieval_model=str(weights.with_suffix("")), retrieval_index=str(js),
            retrieval_top_k=4, retrieval_patience=3)
    recognizer, why = place_recognizer_from_config(c, texture_map.path)
    loc = Localizer(c, texture_map, OracleNet(), device="cpu", relocalization=recognizer)
    assert isinstance(loc.relocalizer, RetrievalRelocalizer), why
    per_frame: list[dict] = []
    ests = run_kidnapped(loc, flight, prior, per_frame)
    assert per_frame[0]["retrieval_queries"] == 1 and per_frame[0]["retrieval_windows"] >= 1
    assert per_frame[0].get("sweep_windows", 0) == 0
    assert ests[0].timings_ms["retrieval"] > 0
    for e, t in zip(ests, flight.truth):  # a random descriptor model must not cause a wrong fix
        if e.fix_valid:
            assert haversine_m(e.lat, e.lon, *t) < 15.0


def test_descriptor_average_over_frames(texture_map, tiny_index):
    model, _, js = tiny_index
    reloc = RetrievalRelocalizer(js, model, device="cpu", history=3)
    centers = [texture_map.center_latlon]
    enu = LocalENU(*texture_map.center_latlon)
    for de in (30.0, 60.0, 400.0):
        la, lo, _ = enu.to_geodetic(de, 0.0, 0.0)
        centers.append((la, lo))
    imgs = [texture_map.crop(c, FOOT, 32).image for c in centers]
    with torch.no_grad():
        ref = torch.nn.functional.normalize(model.describe(torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)
                                                           .float() / 255.0), dim=-1).numpy()
    pos = [np.array([0.0, 0.0]), np.array([30.0, 0.0]), np.array([60.0, 0.0]), np.array([400.0, 0.0])]
    for im, p in zip(imgs[:3], pos[:3]):
        reloc.add_frame(im, p)

    def unit(v):
        return v / np.linalg.norm(v)

    q, n = reloc.mean_descriptor()
    assert n == 3 and np.allclose(q, unit(ref[:3].mean(0)), atol=1e-5)
    q, n = reloc.mean_descriptor(position=pos[2], max_shift_m=35.0)  # the frame 60 m back shows another view
    assert n == 2 and np.allclose(q, unit(ref[1:3].mean(0)), atol=1e-5)
    reloc.add_frame(imgs[3], pos[3])  # history 3: the oldest frame leaves
    q, n = reloc.mean_descriptor()
    assert n == 3 and np.allclose(q, unit(ref[1:4].mean(0)), atol=1e-5)
    q, n = reloc.mean_descriptor(position=pos[3], max_shift_m=50.0)  # only the newest one is near
    assert n == 1 and np.allclose(q, ref[3], atol=1e-5)
    # the averaged query is what candidates_multi searches with, inside the reachable circle only
    la, lo = centers[0]
    cands = reloc.candidates_multi(k=5, footprint_m=FOOT, within=(la, lo, 300.0))
    assert 1 <= len(cands) <= 5 and all(haversine_m(la, lo, c[0], c[1]) <= 300.0 for c in cands)
    assert [c[2] for c in cands] == sorted((c[2] for c in cands), reverse=True)
    reloc.reset()
    with pytest.raises(ValueError):
        reloc.mean_descriptor()
