"""geoloc_ros.runtime: the one input path of the node and the replays (no DDS here).

Buffers, the frame assembler's skip rules, the GPS-denial rule and the Session that ties
them to a Localizer; the cases the issue tracker found crashing or ending a flight's
localization are each a test here.
"""
from __future__ import annotations

import math
from types import SimpleNamespace as NS

import numpy as np
import pytest

from geoloc_ros.geo.angles import quaternion_from_yaw
from geoloc_ros.geo.frames import LocalENU
from geoloc_ros.localize import Estimate, LocalizerState
from geoloc_ros.runtime import FrameAssembler, GpsRuleConfig, InitialFixPolicy, InputConfig, Session
from geoloc_ros.timeseries import StampedSeries
from geoloc_ros.runtime.gps import GPS_TRACK_WINDOW_S, consistent_fixes
from geoloc_ros.runtime.messages import FixReading, OdometryError


# ----------------------------------------------------------------------------- message fakes
def stamp(t: float):
    ns = int(round(t * 1e9))
    return NS(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def odom_msg(t, x=0.0, y=0.0, z=100.0, yaw=0.0, q=None):
    qx, qy, qz, qw = q if q is not None else quaternion_from_yaw(yaw)
    return NS(header=NS(stamp=stamp(t)), pose=NS(pose=NS(position=NS(x=x, y=y, z=z),
                                                           orientation=NS(x=qx, y=qy, z=qz, w=qw))))


def image_msg(t, w=64, h=48, data=None, step=None, enc="rgb8"):
    data = bytes(w * h * 3) if data is None else data
    return NS(header=NS(stamp=stamp(t)), height=h, width=w, encoding=enc, is_bigendian=0,
              step=w * 3 if step is None else step, data=data)


def camera_info(w=64, h=48, f=50.0):
    return NS(width=w, height=h, k=[f, 0, (w - 1) / 2, 0, f, (h - 1) / 2, 0, 0, 1], binning_x=0, binning_y=0)


def fix_msg(t, lat, lon, alt=500.0, status=0, var=4.0):
    return NS(header=NS(stamp=stamp(t)), status=NS(status=status), latitude=lat, longitude=lon, altitude=alt,
              position_covariance=[var, 0, 0, 0, var, 0, 0, 0, var], position_covariance_type=2)


def reading(t, lat=47.0, lon=8.0, ok=True, sigma=1.0):
    return FixReading(stamp=t, ok=ok, lat=lat, lon=lon, alt=500.0, sigma_m=sigma)


# ----------------------------------------------------------------------------- buffers
def test_stamped_series_interpolates_on_the_circle_and_refuses_old_samples():
    b = StampedSeries(4, angle_columns=(3,))
    with pytest.raises(LookupError):
        b.at(1.0, 0.5)
    b.add(10.0, (0.0, 0.0, 50.0, math.radians(170)))
    b.add(11.0, (10.0, 2.0, 52.0, math.radians(-170)))
    v = b.at(10.5, 0.5)
    assert np.allclose(v[:3], [5.0, 1.0, 51.0]) and math.isclose(abs(v[3]), math.pi, abs_tol=1e-9)
    assert np.allclose(b.at(11.3, 0.5)[:3], [10.0, 2.0, 52.0])  # the newest within max age
    with pytest.raises(LookupError, match="after the last"):
        b.at(12.0, 0.5)
    assert not b.add(9.0, (0, 0, 0, 0))  # older sample refused
    b.add(20.0, (0, 0, 0, 0))
    with pytest.raises(LookupError, match="gap"):
        b.at(15.5, 0.5)  # 9 s without odometry around the stamp
    b.replace([(1.0, (1, 1, 1, 0))])
    assert len(b) == 1 and b.last_stamp() == 1.0


# ----------------------------------------------------------------------------- the frame assembler
def assembler(**kw) -> FrameAssembler:
    a = FrameAssembler(InputConfig(**kw))
    a.on_camera_info(camera_info())
    return a


def feed_odom(a: FrameAssembler, t0: float, t1: float, rate: float = 20.0, z: float = 100.0) -> None:
    for t in np.arange(t0, t1 + 1e-9, 1.0 / rate):
        a.on_odometry(odom_msg(float(t), x=float(t), z=z))


def test_frame_gets_interpolated_odometry_and_attitude():
    a = assembler()
    a.on_odometry(odom_msg(10.0, x=0.0, q=(math.sin(0.05), 0.0, 0.0, math.cos(0.05))))  # roll 0.1
    a.on_odometry(odom_msg(11.0, x=10.0))
    got = a.assemble(image_msg(10.5), now=10.5)
    assert got.skip is None and got.frame.odom_xyz[0] == pytest.approx(5.0)
    assert got.frame.roll == pytest.approx(0.05, abs=1e-6) and got.frame.altitude_agl == pytest.approx(100.0)


@pytest.mark.parametrize("z, reason", [(0.3, "below min_altitude_m 2"), (5000.0, "above max_altitude_m 3000")])
def test_height_outside_the_bounds_is_a_skip(z, reason):
    """VIO started in the air reads ~0 m until ground_offset_m is set: skipped, never a grid."""
    a = assembler()
    feed_odom(a, 0.0, 2.0, z=z)
    got = a.assemble(image_msg(1.0), now=1.0)
    assert got.frame is None and got.skip.reason == "altitude" and reason in got.skip.text


def test_one_stamp_in_the_past_is_skipped_not_a_restart():
    a = assembler()
    feed_odom(a, 100.0, 110.0)
    assert a.assemble(image_msg(105.0), 105.0).frame is not None
    for bad in (0.0, 103.0):  # stamped zero, or 2 s in the past
        got = a.assemble(image_msg(bad), 105.1)
        assert got.skip.reason == "stamp" and not got.restarted and "odometry did not" in got.skip.text
    got = a.assemble(image_msg(104.99), 105.1)
    assert got.skip.reason == "out_of_order"
    assert a.assemble(image_msg(105.5), 105.6).frame is not None  # the flight goes on


def test_a_real_restart_needs_the_odometry_to_go_back_too():
    a = assembler()
    feed_odom(a, 100.0, 110.0)
    assert a.assemble(image_msg(109.0), 109.0).frame is not None
    a.on_odometry(odom_msg(50.0))  # one odometry sample with an old stamp: not yet a restart
    assert a.assemble(image_msg(50.0), 110.0).skip.reason == "stamp"
    feed_odom(a, 50.05, 51.0)  # the odometry clearly restarted (bag loop)
    got = a.assemble(image_msg(50.5), 111.0)
    assert got.restarted and got.frame is not None and got.frame.odom_xyz[0] == pytest.approx(50.5)
    # a glitch (a few old samples followed by a current one) is not a restart
    b = assembler()
    feed_odom(b, 100.0, 101.0)
    b.on_odometry(odom_msg(10.0))
    b.on_odometry(odom_msg(101.05, x=101.05))
    assert b.odom.last_stamp() == pytest.approx(101.05) and b.odom_restarts == 0


def test_bad_inputs_are_refused_with_their_reason():
    a = FrameAssembler(InputConfig())
    feed_odom(a, 0.0, 1.0)
    assert a.assemble(image_msg(0.5), 0.5).skip.reason == "camera_info"  # none yet
    a.on_camera_info(camera_info())
    assert a.assemble(image_msg(0.6, step=64 * 3 - 7, data=bytes(64 * 48 * 3)), 0.6).skip.reason == "image"
    with pytest.raises(OdometryError):
        a.on_odometry(odom_msg(1.1, x=float("nan")))
    with pytest.raises(OdometryError):
        a.on_odometry(odom_msg(1.2, q=(0, 0, 0, 0)))
    assert a.assemble(image_msg(5.0), 5.0).skip.reason == "odometry"  # 4 s after the last odometry
    assert a.assemble(NS(header=NS(stamp=NS(sec=float("nan"), nanosec=0))), 5.0).skip.reason == "stamp"


def test_external_altitude_must_be_fresh():
    a = assembler(altitude_source="float64", altitude_max_age_s=1.0)
    feed_odom(a, 0.0, 5.0)
    assert a.assemble(image_msg(1.0), 1.0).skip.text.startswith("no altitude")
    a.on_altitude(80.0, now=1.0)
    assert a.assemble(image_msg(1.5), 1.5).frame.altitude_agl == 80.0
    assert "old" in a.assemble(image_msg(3.0), 3.0).skip.text


# ----------------------------------------------------------------------------- the GPS rule
def test_initial_fix_policy_rules():
    p = InitialFixPolicy(GpsRuleConfig(denied_after_s=10.0, timeout_s=2.0, reseed_interval_s=5.0, sigma_floor_m=3.0))
    assert p.on_fix(reading(0.0, ok=False), 0.0) is None and p.state == "waiting"  # receiver still acquiring
    s = p.on_fix(reading(1.0), 1.0)
    assert s is not None and s.sigma_m == 3.0 and s.source == "gps" and p.state == "trusted"
    assert p.on_fix(reading(2.0), 2.0, "TRACKING") is None
    assert p.on_fix(reading(3.0), 3.0, "LOST") is None  # < 5 s since the seed
    r = p.on_fix(reading(6.5), 6.5, "LOST")
    assert r is not None and r.source == "gps-reseed"
    assert not p.tick(8.0) and p.tick(8.6) and p.denied and "no fix" in p.denied_reason
    assert p.on_fix(reading(9.0), 9.0) is None and p.ignored == 1
    q = InitialFixPolicy(GpsRuleConfig(denied_after_s=10.0, timeout_s=0.0))
    q.on_fix(reading(100.0), 0.0)
    assert q.on_fix(reading(110.0), 10.0) is None and q.denied  # by time since the first fix
    r2 = InitialFixPolicy(GpsRuleConfig(timeout_s=0.0))
    r2.on_fix(reading(1.0), 1.0)
    r2.on_fix(reading(2.0, ok=False), 2.0)
    assert r2.denied and r2.denied_reason == "GPS reported no fix"
    r2.reset()
    assert r2.state == "waiting" and r2.on_fix(reading(3.0), 3.0) is not None
    # a fix claiming a 1e6 m sigma is no position: ignored, it does not seed
    big = InitialFixPolicy(GpsRuleConfig(max_sigma_m=1000.0))
    assert big.on_fix(reading(1.0, sigma=1e6), 1.0) is None and big.state == "waiting" and big.ignored == 1


def test_denial_seeds_from_the_last_trusted_fix():
    p = InitialFixPolicy(GpsRuleConfig(timeout_s=2.0, sigma_floor_m=3.0))
    for k in range(30):  # 1 Hz fixes for 30 s
        p.on_fix(reading(100.0 + k, lat=47.0 + k * 1e-5), float(k))
    track = p.track()
    assert track[-1][0] == 129.0 and track[0][0] >= 129.0 - GPS_TRACK_WINDOW_S
    assert p.denial_seed(29.5) == (None, "")  # not denied yet
    assert p.tick(31.5)
    s, note = p.denial_seed(31.5)
    assert s.source == "gps-denial" and s.stamp == 129.0 and s.lat == pytest.approx(47.00029) and note == ""
    assert p.denial_seed(29.0 + 2.0 + 1.5)[0] is None  # the last fix is too old to pull a running track back
    q = InitialFixPolicy(GpsRuleConfig(timeout_s=0.0))
    for st in (100.0, 101.0, 102.0, 50.0):  # stamps going back (a bag loop) drop the old track
        q.on_fix(reading(st), st)
    assert [r[0] for r in q.track()] == [50.0]


def test_a_gps_outlier_just_before_denial_is_not_the_seed():
    """10 m/s eastwards for 20 s; the last fix is 150 m off (multipath): the seed is the one before."""
    enu = LocalENU(47.0, 8.0)
    p = InitialFixPolicy(GpsRuleConfig(timeout_s=2.0, sigma_floor_m=2.0))
    rows = []
    for k in range(21):
        e, n = 10.0 * k, (150.0 if k == 20 else 0.0)
        lat, lon, _ = enu.to_geodetic(e, n, 0.0)
        p.on_fix(reading(float(k), lat=float(lat), lon=float(lon), sigma=2.0), float(k))
        rows.append(k)
    odom = lambda t: (10.0 * t, 0.0)  # noqa: E731  (odometry flew straight east)
    assert consistent_fixes(p.track(), odom)[-1] is False and all(consistent_fixes(p.track(), odom)[:-1])
    p.tick(22.5)
    seed, note = p.denial_seed(22.5, odom)
    e, n, _ = enu.to_enu(seed.lat, seed.lon, 0.0)
    assert seed.stamp == 19.0 and abs(e - 190.0) < 1e-6 and abs(n) < 1e-6 and "passed over" in note


# ----------------------------------------------------------------------------- the session
class FakeLocalizer:
    """Records what the Session asks; steps into TRACKING once seeded."""

    def __init__(self) -> None:
        from geoloc_ros.localize import LocalizerConfig

        self.cfg = LocalizerConfig()
        self.seeds, self.relocs, self.frames = [], 0, []
        self.state = LocalizerState.INITIALIZING

    def set_initial_fix(self, lat, lon, alt, sigma_m, stamp, yaw=None, relocalize=False):
        if sigma_m > self.cfg.max_initial_sigma_m:
            raise ValueError("sigma too large")
        self.seeds.append((lat, lon, sigma_m, stamp, yaw))
        self.state = LocalizerState.TRACKING

    def request_relocalization(self):
        self.relocs += 1

    def step(self, frame):
        self.frames.append(frame.stamp)
        return Estimate(stamp=frame.stamp, lat=47.0, lon=8.0, alt=0.0, cov_enu=np.eye(3), yaw=0.0, state=self.state,
                        fix_valid=self.state == LocalizerState.TRACKING, confidence=1.0, accepted=True,
                        rejections=0, consecutive_rejections=0, search_size_m=100.0)


def make_session(**gps):
    made = []

    def factory():
        made.append(FakeLocalizer())
        return made[-1]

    problems = []
    s = Session(factory, InputConfig(), GpsRuleConfig(**gps), report=lambda k, t: problems.append((k, t)))
    s.on_camera_info(camera_info())
    return s, made, problems


def test_one_bad_stamp_after_denial_does_not_end_the_flight():
    s, made, problems = make_session(timeout_s=1.0)
    for k in range(40):  # 20 Hz odometry, 5 Hz GPS for 2 s, 4 Hz camera
        t = 100.0 + 0.05 * k
        s.on_odometry(odom_msg(t, x=10 * (t - 100)))
        if k % 4 == 0 and t < 101.0:
            s.on_gps_fix(fix_msg(t, 47.0, 8.0 + (t - 100) * 1e-4), t)
        s.tick(t)
        if k % 5 == 0:
            s.step(image_msg(t), t)
    assert s.policy.denied and len(made) == 1 and made[0].seeds, "seeded by GPS, then denied"
    bad = s.step(image_msg(0.0), 102.0)  # one image stamped zero
    assert bad.skip is not None and bad.skip.reason == "stamp" and not bad.restarted
    s.on_odometry(odom_msg(102.05, x=20.5))
    ok = s.step(image_msg(102.02), 102.05)
    assert ok.estimate is not None and ok.estimate.fix_valid and len(made) == 1  # same localizer, still tracking
    assert ("stamp", bad.skip.text) in problems


def test_huge_covariances_are_refused_as_seeds():
    s, made, problems = make_session()
    s.on_odometry(odom_msg(1.0))
    s.on_gps_fix(fix_msg(1.0, 47.0, 8.0, var=1e12), 1.0)  # GPS claiming a 1e6 m sigma
    s.step(image_msg(1.0), 1.0)
    assert made[0].seeds == [] and s.policy.state == "waiting"
    err = s.operator_fix(fix_msg(1.0, 47.0, 8.0, var=1e12))
    assert "max_initial_sigma_m" in err
    assert s.operator_fix(fix_msg(1.0, float("nan"), 8.0)).startswith("set_initial_fix with invalid")
    assert "outside the map" in s.operator_fix(fix_msg(1.0, 47.0, 8.0), contains=lambda la, lo: False)
    assert s.operator_fix(fix_msg(1.0, 47.0, 8.0)) == ""
    s.on_odometry(odom_msg(1.2))
    s.step(image_msg(1.2), 1.2)
    assert len(made[0].seeds) == 1


def test_a_restart_gives_a_fresh_localizer_and_gps_rule():
    s, made, _ = make_session(timeout_s=0.0)
    for k in range(21):
        t = 200.0 + 0.1 * k
        s.on_odometry(odom_msg(t))
        s.on_gps_fix(fix_msg(t, 47.0, 8.0), t)
        s.step(image_msg(t), t)
    assert s.seeded and len(made) == 1
    s.declare_gps_denied("test", 202.0)
    for k in range(4):  # the bag loops: odometry and images back at 10 s
        s.on_odometry(odom_msg(10.0 + 0.05 * k))
    res = s.step(image_msg(10.1), 203.0)
    assert res.restarted and len(made) == 2 and not s.policy.denied and s.restarts == 1
    assert not s.seeded  # waits for the new run's GPS
