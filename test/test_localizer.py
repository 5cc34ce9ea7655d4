"""Localizer integration: the whole step() loop over a simulated flight with odometry drift.

An "oracle" net (normalised cross-correlation of the UAV input inside each satellite window,
returned as logits) stands in for a trained AMCF-Net: it localizes only if the localizer
prepares the UAV image (north-up rotation, scale) and crops the right windows, so the loop is
tested end to end. A net with random outputs and net=None must never produce TRACKING fixes
that are wrong. Helpers here are reused by test_states.py and test_replay.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from affine import Affine

from geoloc_ros.geo.cog import write_cog
from geoloc_ros.geo.distance import haversine_m
from geoloc_ros.geo.errors import GeoError
from geoloc_ros.geo.frames import LocalENU, wgs84_to_utm
from geoloc_ros.geo.orthomap import OrthoMap
from geoloc_ros.localize import Frame, Localizer, LocalizerConfig, LocalizerState

CENTER = (46.95, 7.45)
UAV, SAT = 64, 192


def make_texture_map(path: Path, center=CENTER, size_px=900, gsd_m=2.0, seed=0) -> Path:
    """A COG of multi-scale coloured noise (unique everywhere, so correlation localizes)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size_px, size_px, 3), np.float32)
    for cell, wgt in ((90, 1.0), (30, 0.8), (10, 0.6), (4, 0.3)):
        n = size_px // cell + 2
        small = rng.random((n, n, 3)).astype(np.float32)
        img += wgt * cv2.resize(small, (size_px, size_px), interpolation=cv2.INTER_CUBIC)
    img = (img - img.min()) / (img.max() - img.min()) * 255.0
    e, n, crs = wgs84_to_utm(center[0], center[1])
    half = size_px * gsd_m / 2
    transform = Affine(gsd_m, 0, e - half, 0, -gsd_m, n + half)
    return write_cog(path, img.astype(np.uint8), transform, crs.to_wkt())


def _highpass(x: torch.Tensor) -> np.ndarray:
    g = (x.mean(0).numpy() * 255).astype(np.float32)
    return g - cv2.GaussianBlur(g, (0, 0), 3.0)


class OracleNet(torch.nn.Module):
    """Stand-in for a trained model: NCC of the UAV input inside each satellite window."""

    def __init__(self, gain: float = 30.0, thr: float = 0.5):
        super().__init__()
        self.gain, self.thr = gain, thr

    def forward(self, uav: torch.Tensor, sat: torch.Tensor) -> torch.Tensor:
        out = torch.full((sat.shape[0], 1, sat.shape[2], sat.shape[3]), -20.0)
        u = uav.shape[-1]
        for b in range(sat.shape[0]):
            s_img, u_img = _highpass(sat[b]), _highpass(uav[b])
            res = cv2.matchTemplate(s_img, u_img, cv2.TM_CCOEFF_NORMED)
            logit = self.gain * (res - self.thr)
            # template centre is at +(u-1)/2: average the two integer shifts on each axis
            acc = np.zeros(sat.shape[2:], np.float32)
            lo = (u - 1) // 2
            for dr in (lo, lo + 1):
                for dc in (lo, lo + 1):
                    acc[dr:dr + res.shape[0], dc:dc + res.shape[1]] += logit / 4
            m = np.full(sat.shape[2:], -20.0, np.float32)
            m[lo + 1:lo + res.shape[0], lo + 1:lo + res.shape[1]] = acc[lo + 1:lo + res.shape[0], lo + 1:lo + res.shape[1]]
            out[b, 0] = torch.from_numpy(m)
        return out


class RandomNet(torch.nn.Module):
    """Random logits (an untrained, useless model): must never yield confident wrong fixes."""

    def __init__(self, seed=0, sharp=False):
        super().__init__()
        self.g = torch.Generator().manual_seed(seed)
        self.sharp = sharp

    def forward(self, uav, sat):
        b, _, h, w = sat.shape
        x = torch.randn((b, 1, h, w), generator=self.g) * 2.0 - 6.0
        if self.sharp:  # a confident peak at a random place
            for i in range(b):
                r, c = torch.randint(20, h - 20, (2,), generator=self.g).tolist()
                x[i, 0, r - 3:r + 4, c - 3:c + 4] = 12.0
        return x


@dataclass
class SimFlight:
    frames: list
    truth: list  # (lat, lon) per frame
    start: tuple  # (lat, lon, stamp)


INTR = SimpleNamespace(width=128, height=128, fx=64.0, fy=64.0, cx=63.5, cy=63.5)


def simulate(omap: OrthoMap, n=60, dt=0.5, speed=10.0, alt=80.0, yaw_offset_deg=5.0, scale=1.03,
             start_en=(-150.0, -100.0), turn_rate=0.04, seed=0, heading0=0.3, teleport_at=None,
             teleport_en=(0.0, 0.0), heading_fn=None, odom_reset=None, yaw_rate_deg_per_s=0.0) -> SimFlight:
    """Fly over the texture map: UAV images are rotated map crops (up = heading) with photometric
    changes; odometry has a yaw offset (growing at `yaw_rate_deg_per_s`, as VIO's heading
    drifts), a scale error and a random walk."""
    rng = np.random.default_rng(seed)
    enu = LocalENU(*omap.center_latlon)
    pos = np.array(start_en, dtype=float)
    yaw = heading0
    d_off = math.radians(yaw_offset_deg)
    odom = np.zeros(2)
    frames, truth = [], []
    for k in range(n):
        if heading_fn is not None:
            yaw = heading_fn(k)
        if odom_reset is not None and k == odom_reset[0]:  # VIO reset: the odom frame jumps
            odom = odom + np.asarray(odom_reset[1:3], dtype=float)
            d_off -= math.radians(odom_reset[3])
        if teleport_at is not None and k == teleport_at:
            pos = pos + np.asarray(teleport_en)  # truth jumps, odometry does not see it
        lat, lon, _ = enu.to_geodetic(pos[0], pos[1], 0.0)
        bearing = 90.0 - math.degrees(yaw)
        try:
            view = omap.crop((lat, lon), INTR.width * alt / INTR.fx, INTR.width, rotation_deg=bearing).image
        except GeoError:  # flying beyond the map: the camera sees something unmapped
            view = np.full((INTR.height, INTR.width, 3), 80, np.uint8)
        img = np.clip(view.astype(np.float32) * rng.uniform(0.85, 1.1) + rng.uniform(-15, 15)
                      + rng.normal(0, 4, view.shape), 0, 255).astype(np.uint8)
        frames.append(Frame(image=img, stamp=100.0 + k * dt, odom_xyz=np.array([odom[0], odom[1], alt]),
                            odom_yaw=yaw - d_off, altitude_agl=alt, intrinsics=INTR))
        truth.append((lat, lon))
        step = speed * dt * np.array([math.cos(yaw), math.sin(yaw)])
        pos = pos + step
        c, s = math.cos(-d_off), math.sin(-d_off)
        odom = odom + scale * np.array([[c, -s], [s, c]]) @ step + rng.normal(0, 0.05, 2)
        yaw += turn_rate
        d_off += math.radians(yaw_rate_deg_per_s) * dt
    lat0, lon0, _ = enu.to_geodetic(start_en[0], start_en[1], 0.0)
    return SimFlight(frames, truth, (lat0, lon0, 100.0))


def run(loc: Localizer, flight: SimFlight, init_sigma=5.0):
    loc.set_initial_fix(flight.start[0], flight.start[1], 500.0, init_sigma, flight.start[2])
    out = []
    for f in flight.frames:
        out.append(loc.step(f))
    return out


def ellipse_d2(est, lat, lon) -> float:
    e, n, _ = LocalENU(est.lat, est.lon).to_enu(lat, lon, 0.0)
    d = np.array([e, n])
    return float(d @ np.linalg.solve(est.cov_enu[:2, :2], d))


@pytest.fixture(scope="module")
def texture_map(tmp_path_factory):
    path = make_texture_map(tmp_path_factory.mktemp("map") / "texture.tif")
    with OrthoMap.open(path) as m:
        yield m


def small_cfg(**kw) -> LocalizerConfig:
    return LocalizerConfig(uav_size=UAV, sat_size=SAT, keep_heatmap=False, **kw)


def test_oracle_tracks_drifting_odometry_with_honest_covariance(texture_map):
    flight = simulate(texture_map, n=60)
    loc = Localizer(small_cfg(), texture_map, OracleNet(), device="cpu")
    ests = run(loc, flight)
    err = np.array([haversine_m(e.lat, e.lon, t[0], t[1]) for e, t in zip(ests, flight.truth)])
    states = [e.state for e in ests]
    assert all(s == LocalizerState.TRACKING for s in states), [str(s) for s in states]
    assert all(e.fix_valid for e in ests)
    assert np.median(err) < 3.0 and err.max() < 10.0, err.round(1)
    # dead reckoning alone would be far off (3 % scale + 5 deg yaw over 300 m)
    assert sum(e.accepted for e in ests) >= 55
    d2 = np.array([ellipse_d2(e, *t) for e, t in zip(ests, flight.truth)])
    inside = float(np.mean(d2 <= 5.991))
    assert 0.8 <= inside <= 1.0, (inside, d2.round(1))
    assert abs(math.degrees(loc.ekf.yaw_offset) - 5.0) < 2.0  # odom yaw offset estimated
    t = ests[-1].timings_ms
    assert set(t) == {"predict", "prepare", "crop", "model", "decode", "update", "total"} and t["total"] > 0
    assert ests[-1].search_size_m > 0 and ests[-1].message.startswith("evidence fused")


def test_random_net_never_claims_wrong_tracking_fixes(texture_map):
    flight = simulate(texture_map, n=24, seed=1)
    for net in (RandomNet(0), RandomNet(1, sharp=True)):
        loc = Localizer(small_cfg(), texture_map, net, device="cpu")
        ests = run(loc, flight)
        for e, t in zip(ests, flight.truth):
            if e.fix_valid:  # a published fix must contain the truth in its (99.9 %) ellipse
                assert ellipse_d2(e, *t) < 13.8, (e.state, e.message)
        # random heatmaps are no evidence: the track coasts, then withholds the fix
        assert not any(e.fix_valid for e in ests[-4:]), [str(e.state) for e in ests]


def test_no_net_runs_and_decays_to_lost(texture_map):
    flight = simulate(texture_map, n=20, seed=2)
    loc = Localizer(small_cfg(coast_sigma_m=3.5, lost_sigma_m=6.0, odom_drift_var_per_m=0.3), texture_map, None)
    ests = run(loc, flight, init_sigma=3.0)
    states = [e.state for e in ests]
    assert states[0] == LocalizerState.TRACKING  # the fresh fix itself
    assert LocalizerState.DEGRADED in states and states[-1] == LocalizerState.LOST
    assert not any(e.fix_valid for e in ests[3:])
    assert all(e.rejections == 0 for e in ests)  # no measurement is not a rejection


def test_untrained_amcfnet_does_not_fake_tracking(texture_map):
    """The real (reduced, random-weight) model: runs through the pipeline batched."""
    net_mod = pytest.importorskip("geoloc_ros.model.net")
    torch.manual_seed(0)
    cfg = net_mod.AMCFConfig(backbone_kwargs={"embed_dim": 16, "depths": [1, 1, 1, 1]}, uav_size=UAV, sat_size=SAT,
                             proj_dim=16, head_dims=(8,))
    net = net_mod.AMCFNet(cfg)
    flight = simulate(texture_map, n=8, seed=3)
    loc = Localizer(LocalizerConfig(keep_heatmap=True, reloc_batch=3, max_windows=3), texture_map, net,
                    device="cpu")
    assert (loc.uav_size, loc.sat_size) == (UAV, SAT)  # taken from the net's config
    ests = run(loc, flight)
    for e, t in zip(ests, flight.truth):
        if e.fix_valid:
            assert ellipse_d2(e, *t) < 13.8, (e.state, e.message)
    assert ests[-1].heatmap is not None and ests[-1].heatmap.shape == (SAT, SAT)


def test_correlated_measurements_are_fused_with_less_weight(texture_map):
    """Matches dt apart whose errors are correlated over meas_correlation_s carry less than a
    frame's worth of information: the same flight ends with a wider covariance (and still
    tracks), and the factor vanishes once dt exceeds the correlation time."""
    flight = simulate(texture_map, n=30)  # dt = 0.5 s between frames

    def sigmas(corr: float) -> np.ndarray:
        # the inflation the comparison was set up with: at smaller ones the map_sigma_m floor of
        # the published covariance hides part of the difference
        loc = Localizer(small_cfg(meas_correlation_s=corr, meas_cov_inflation=0.25), texture_map, OracleNet(),
                        device="cpu")
        ests = run(loc, flight)
        assert all(e.fix_valid for e in ests[5:])
        return np.array([math.sqrt(np.linalg.eigvalsh(e.cov_enu[:2, :2])[-1]) for e in ests[5:]])

    independent, correlated, short = sigmas(0.0), sigmas(2.0), sigmas(0.4)
    assert np.median(correlated) > 1.3 * np.median(independent)
    np.testing.assert_allclose(short, independent, rtol=1e-6)  # 0.4 s < 0.5 s between frames: factor 1
    with pytest.raises(ValueError, match="meas_correlation_s"):
        LocalizerConfig(meas_correlation_s=-1.0)


@pytest.mark.parametrize("jump_at,jump", [(0, 1e6), (20, 1e6), (20, 600.0), (0, 5.4e152), (20, 5.4e152)])
def test_a_stamp_jump_neither_overflows_nor_ends_localization(texture_map, jump_at, jump):
    """The clock jumps forward (a long camera outage, a clock change, a corrupt but finite
    stamp), before the first frame after the initial fix or mid-flight: no exception, no
    overflow warning (5.4e152 s once overflowed the initial covariance). Where the float stamps
    still resolve: no fix off by more than 10 m, and the track comes back. The time-driven drift counts for at most `max_predict_gap_s`: extrapolating the
    yaw-rate estimate over the whole gap turned the image by 37 deg after 600 s, and the model
    never matched again."""
    import dataclasses
    import warnings

    flight = simulate(texture_map, n=45)
    frames = [f if k < jump_at else dataclasses.replace(f, stamp=f.stamp + jump) for k, f in enumerate(flight.frames)]
    loc = Localizer(small_cfg(), texture_map, OracleNet(), device="cpu")
    loc.set_initial_fix(flight.start[0], flight.start[1], 500.0, 5.0, flight.start[2])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ests = [loc.step(f) for f in frames]
    assert all(np.all(np.isfinite(e.cov_enu)) for e in ests)
    if jump > 1e100:  # past 1e16 s consecutive stamps are equal: time stands still, every step is an odometry reset
        return
    fixes = [(e, t) for e, t in zip(ests, flight.truth) if e.fix_valid]
    assert all(haversine_m(e.lat, e.lon, *t) < 10.0 for e, t in fixes)
    assert all(e.fix_valid for e in ests[jump_at + 5:]), "".join(str(e.state)[0] for e in ests)


def test_relocalization_tries_headings_when_the_yaw_estimate_is_lost(texture_map):
    """600 s of an extrapolated yaw rate (max_predict_gap_s raised to let it happen) leave the
    yaw-offset estimate 30 deg off with a 1-sigma of ~160 deg: the north-up image no longer
    matches anywhere. Heading hypotheses (reloc_yaw_step_deg) find the place and the heading
    again; without them the track never comes back."""
    import dataclasses

    flight = simulate(texture_map, n=90, turn_rate=0.01)
    frames = [f if k < 20 else dataclasses.replace(f, stamp=f.stamp + 600.0) for k, f in enumerate(flight.frames)]
    runs = {}
    for step_deg in (15.0, 0.0):
        loc = Localizer(small_cfg(max_predict_gap_s=600.0, reloc_yaw_step_deg=step_deg), texture_map, OracleNet(),
                        device="cpu")
        loc.set_initial_fix(flight.start[0], flight.start[1], 500.0, 5.0, flight.start[2])
        runs[step_deg] = ([loc.step(f) for f in frames], loc)
    ests, loc = runs[15.0]
    assert ests[21].state == LocalizerState.RELOCALIZING
    fixes = [(e, t) for e, t in zip(ests[21:], flight.truth[21:]) if e.fix_valid]
    assert len(fixes) >= 20 and all(haversine_m(e.lat, e.lon, *t) < 10.0 for e, t in fixes)
    assert abs(math.degrees(loc.tracker.ekf.yaw_offset) - 5.0) < 5.0  # the simulated odometry's offset
    assert not any(e.fix_valid for e in runs[0.0][0][21:])
