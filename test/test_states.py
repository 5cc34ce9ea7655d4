"""State machine: INITIALIZING -> TRACKING -> DEGRADED -> LOST -> RELOCALIZING -> TRACKING
(only after k odometry-consistent frames), OFF_MAP, covariance-bound loss, teleport recovery.

A puppet net switches between a correct answer (the NCC oracle), no answer (flat logits) and
confident wrong answers, so each transition is provoked on purpose.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from geoloc_ros.geo.distance import haversine_m
from geoloc_ros.localize import Localizer, LocalizerState as S
from test_localizer import OracleNet, RandomNet, simulate, small_cfg, texture_map  # noqa: F401  (fixture)


class PuppetNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mode = "oracle"
        self.oracle, self.wrong = OracleNet(), RandomNet(5, sharp=True)

    def forward(self, uav, sat):
        if self.mode == "oracle":
            return self.oracle(uav, sat)
        if self.mode == "wrong":
            return self.wrong(uav, sat)
        if self.mode == "far":  # a confident peak far from the window centre
            x = torch.full((sat.shape[0], 1, sat.shape[2], sat.shape[3]), -8.0)
            x[:, :, 22:29, 22:29] = 12.0
            return x
        return torch.full((sat.shape[0], 1, sat.shape[2], sat.shape[3]), -8.0)


def _cfg(**kw):
    base = dict(degraded_after_s=1.5, lost_after_s=3.0, recover_frames=2, reloc_confirm_frames=3, reloc_batch=9)
    base.update(kw)
    return small_cfg(**base)


def test_full_cycle(texture_map):
    flight = simulate(texture_map, n=40, seed=4, turn_rate=0.0, start_en=(-200.0, -50.0), heading0=0.1)
    net = PuppetNet()
    loc = Localizer(_cfg(), texture_map, net, device="cpu")
    fr = flight.frames
    e = loc.step(fr[0])
    assert e.state == S.INITIALIZING and not e.fix_valid and np.isnan(e.lat)
    loc.set_initial_fix(*flight.truth[1], 500.0, 5.0, fr[1].stamp)
    states = []
    script = ["oracle"] * 4 + ["far"] * 6 + ["oracle"] * 5 + ["far"] * 3 + ["oracle"] * 4
    for f, mode in zip(fr[1:], script):
        net.mode = mode
        states.append(loc.step(f))
    st = [x.state for x in states]
    assert st[:4] == [S.TRACKING] * 4
    assert st[4:6] == [S.TRACKING] * 2 and st[6] == S.DEGRADED  # 3rd confident rejection
    assert st[7:9] == [S.DEGRADED] * 2 and st[9] == S.LOST  # 6th rejection
    assert not any(x.fix_valid for x in states[6:12])
    # oracle back: relocalizing, TRACKING only at the 3rd consistent frame
    assert st[10:12] == [S.RELOCALIZING] * 2 and st[12] == S.TRACKING, [str(s) for s in st]
    assert haversine_m(states[12].lat, states[12].lon, *flight.truth[13]) < 5.0
    # 3 confident wrong frames -> DEGRADED, then 2 accepted -> TRACKING again
    assert st[17] == S.DEGRADED and st[18] == S.DEGRADED and st[19] == S.TRACKING, [str(s) for s in st]
    assert states[-1].rejections == 9 and states[-1].consecutive_rejections == 0
    assert loc.gate.counts["mahalanobis"] == 9


def test_coasting_keeps_the_fix_while_the_covariance_is_small(texture_map):
    """No answer from the model (flat heatmaps) is not a contradiction: the fix stays valid on
    odometry until the covariance passes coast_sigma_m, then DEGRADED (no fix)."""
    flight = simulate(texture_map, n=30, seed=10)
    net = PuppetNet()
    loc = Localizer(_cfg(coast_sigma_m=4.0, odom_drift_var_per_m=0.3), texture_map, net, device="cpu")
    loc.set_initial_fix(flight.start[0], flight.start[1], 500.0, 5.0, flight.start[2])
    ests = []
    for k, f in enumerate(flight.frames):
        net.mode = "oracle" if k < 8 else "flat"
        ests.append(loc.step(f))
    sig = [float(np.sqrt(np.linalg.eigvalsh(e.cov_enu[:2, :2])[-1])) for e in ests]
    coast = [k for k in range(8, 30) if ests[k].state == S.TRACKING]
    assert len(coast) >= 3 and all(sig[k] <= 4.0 for k in coast), sig  # coasted with a valid fix
    assert ests[-1].state == S.DEGRADED and sig[-1] > 4.0 and not ests[-1].fix_valid
    assert loc.gate.counts["low_confidence"] == 22 and ests[-1].consecutive_rejections == 22


def test_wrong_confident_peaks_never_confirm(texture_map):
    flight = simulate(texture_map, n=18, seed=5)
    net = PuppetNet()
    loc = Localizer(_cfg(), texture_map, net, device="cpu")
    loc.set_initial_fix(flight.start[0], flight.start[1], 500.0, 5.0, flight.start[2])
    net.mode = "oracle"
    loc.step(flight.frames[0])
    loc.request_relocalization()
    net.mode = "wrong"
    ests = [loc.step(f) for f in flight.frames[1:]]
    assert all(e.state == S.RELOCALIZING and not e.fix_valid for e in ests)


def test_lost_by_covariance_bound(texture_map):
    flight = simulate(texture_map, n=30, seed=6)
    loc = Localizer(_cfg(lost_after_s=500.0, lost_sigma_m=4.0, odom_drift_var_per_m=0.2), texture_map, None)
    loc.set_initial_fix(flight.start[0], flight.start[1], 500.0, 2.0, flight.start[2])
    ests = [loc.step(f) for f in flight.frames]
    i = next(k for k, e in enumerate(ests) if e.state == S.LOST)
    assert np.sqrt(np.linalg.eigvalsh(ests[i].cov_enu[:2, :2])[-1]) > 4.0
    assert np.sqrt(np.linalg.eigvalsh(ests[i - 1].cov_enu[:2, :2])[-1]) <= 4.0
    assert all(e.state == S.LOST for e in ests[i:])  # no net: nothing to relocalize with


def test_off_map_and_back(texture_map):
    # map half-side 900 m: fly east from 650 m past the edge to ~1000 m, turn, come back
    flight = simulate(texture_map, n=70, seed=7, start_en=(650.0, 0.0), speed=20.0,
                      heading_fn=lambda k: float(np.clip((k - 30) / 8.0, 0.0, 1.0)) * np.pi)  # 45 deg/s turn
    loc = Localizer(_cfg(), texture_map, OracleNet(), device="cpu")
    loc.set_initial_fix(flight.start[0], flight.start[1], 500.0, 3.0, flight.start[2])
    ests = [loc.step(f) for f in flight.frames]
    st = [e.state for e in ests]
    assert st[0] == S.TRACKING and S.OFF_MAP in st and st[-1] == S.TRACKING, [str(s) for s in st]
    assert not any(e.fix_valid for e in ests if e.state == S.OFF_MAP)
    last_off = max(k for k, s in enumerate(st) if s == S.OFF_MAP)
    assert st[last_off + 1] != S.TRACKING  # re-entering the map needs measurements first
    for e, t in zip(ests, flight.truth):
        if e.fix_valid:
            assert haversine_m(e.lat, e.lon, *t) < 10.0


def test_teleport_recovers_at_the_new_place(texture_map):
    """Truth jumps 64 m (odometry does not see it; the new place is still inside the search
    window, so the model contradicts the track): rejections, LOST, sweep, TRACKING again."""
    flight = simulate(texture_map, n=40, seed=8, teleport_at=10, teleport_en=(50.0, -40.0), turn_rate=0.0,
                      heading0=0.0, start_en=(-300.0, 0.0))
    loc = Localizer(_cfg(lost_after_s=2.5), texture_map, OracleNet(), device="cpu")
    loc.set_initial_fix(flight.start[0], flight.start[1], 500.0, 5.0, flight.start[2])
    ests = [loc.step(f) for f in flight.frames]
    for i, (e, t) in enumerate(zip(ests, flight.truth)):
        if e.fix_valid and not 10 <= i < 12:  # two frames pass before 3 rejections degrade the track
            assert haversine_m(e.lat, e.lon, *t) < 10.0, (i, e.state, e.message)
    assert [e.accepted for e in ests[10:12]] == [False, False]
    after = [e.state for e in ests[10:]]
    assert S.LOST in after and S.RELOCALIZING in after and after[-1] == S.TRACKING, [str(s) for s in after]
    k = next(i for i, s in enumerate(after) if s == S.TRACKING)
    assert k * 0.5 <= 10.0  # recovered within 10 s of flight at 2 Hz


def test_odometry_reset_is_absorbed_without_losing_track(texture_map):
    """The odometry frame jumps 120 m and 25 deg (a VIO reset): no wrong fix, track kept."""
    flight = simulate(texture_map, n=30, seed=9, odom_reset=(12, 90.0, -80.0, 25.0))
    loc = Localizer(_cfg(), texture_map, OracleNet(), device="cpu")
    loc.set_initial_fix(flight.start[0], flight.start[1], 500.0, 5.0, flight.start[2])
    ests = [loc.step(f) for f in flight.frames]
    assert loc.odom_jumps == 1 and "odometry reset" in ests[12].message
    err = [haversine_m(e.lat, e.lon, *t) for e, t in zip(ests, flight.truth)]
    assert max(err) < 8.0 and all(e.state == S.TRACKING for e in ests[14:])


def test_relocalization_request_after_a_pending_fix_wins(texture_map):
    """The node queues commands between frames: a fix and then ~/relocalize before the next
    frame must end RELOCALIZING (from that fix), and a fix after the request must win."""
    flight = simulate(texture_map, n=6, seed=3)
    loc = Localizer(_cfg(), texture_map, PuppetNet(), device="cpu")
    loc.set_initial_fix(flight.start[0], flight.start[1], 500.0, 2.0, flight.start[2])
    loc.request_relocalization()
    assert loc.step(flight.frames[0]).state == S.RELOCALIZING
    loc2 = Localizer(_cfg(), texture_map, PuppetNet(), device="cpu")
    loc2.set_initial_fix(flight.start[0], flight.start[1], 500.0, 2.0, flight.start[2])
    loc2.step(flight.frames[0])
    loc2.request_relocalization()
    loc2.set_initial_fix(flight.start[0], flight.start[1], 500.0, 2.0, flight.frames[1].stamp)
    assert loc2.step(flight.frames[1]).state == S.TRACKING


def test_degraded_recovers_from_one_confident_and_several_agreeing_weak_matches(texture_map):
    """Weak matches are never fused while DEGRADED, but those landing within the tight
    recover_weak_d2 gate of the track count as evidence; far ones and a confident rejection don't."""
    from geoloc_ros.localize.localizer import _Measurement

    flight = simulate(texture_map, n=4, seed=2)
    loc = Localizer(_cfg(recover_frames=2, recover_weak_frames=3, recover_weak_d2=2.0), texture_map,
                    PuppetNet(), device="cpu")
    loc.set_initial_fix(flight.start[0], flight.start[1], 500.0, 2.0, flight.start[2])
    loc.step(flight.frames[0])
    loc.state, loc._accepted_run, loc._weak_agree = S.DEGRADED, 0, 0
    sig = math.sqrt(loc.ekf.pos_sigma_major() ** 2 + 1.0)

    def meas(conf, offset_sigmas):
        x0 = loc.ekf.x[:2].copy()
        return _Measurement(x0 + np.array([offset_sigmas * sig, 0.0]), np.eye(2), conf, 0, True)

    t = flight.frames[0].stamp
    x_before = loc.ekf.x[:2].copy()
    loc._track_update([meas(0.4, 0.5)], t + 0.1)  # weak, close: counts, not fused
    assert loc.state == S.DEGRADED and np.allclose(loc.ekf.x[:2], x_before)
    loc._track_update([meas(0.4, 2.5)], t + 0.2)  # weak, inside the gate but not the tight one: no
    loc._track_update([meas(0.6, 0.2)], t + 0.3)  # confident: fused
    assert loc.state == S.DEGRADED and loc._accepted_run == 1
    loc._track_update([meas(0.4, 0.3)], t + 0.4)
    assert loc.state == S.DEGRADED and loc._weak_agree == 2
    loc._track_update([meas(0.4, -0.3)], t + 0.5)
    assert loc.state == S.TRACKING
    # a confident rejection wipes the evidence
    loc.state, loc._accepted_run, loc._weak_agree = S.DEGRADED, 1, 2
    loc._track_update([meas(0.9, 40.0)], t + 0.6)
    assert loc._accepted_run == 0 and loc._weak_agree == 0 and loc.state == S.DEGRADED
