"""Fuzzing the one input path (runtime.Session) and Localizer.step with hypothesis.

Properties (issue "bad input never crashes the replay or the node"):
- no exception leaves the Session: a malformed message is reported and skipped;
- Localizer.step never raises for any Frame: an invalid one comes back skipped;
- never a published fix (fix_valid) containing NaN, never a fix for an invalid frame;
- nothing allocates without bound: every run here stays small and fast.
"""
from __future__ import annotations

import math
from types import SimpleNamespace as NS

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geoloc_ros.geo.orthomap import OrthoMap
from geoloc_ros.localize import Frame, Localizer, LocalizerConfig
from geoloc_ros.ros.convert import estimate_is_publishable
from geoloc_ros.runtime import GpsRuleConfig, InputConfig, Session
from geoloc_ros.runtime.messages import ENCODINGS
from test_localizer import CENTER, RandomNet, make_texture_map
from test_runtime import stamp

FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                   st.sampled_from([0.0, -1.0, 1e-9, 1e12, -1e12, 120.0, 0.5]))
SMALL = dict(uav_size=64, sat_size=192, keep_heatmap=False, max_windows=4, reloc_batch=4, max_sweep_windows=64)


@pytest.fixture(scope="module")
def fuzz_map(tmp_path_factory):
    path = make_texture_map(tmp_path_factory.mktemp("fuzz") / "map.tif", size_px=400)
    with OrthoMap.open(path) as m:
        yield m


def _fix_ok(est) -> bool:
    """A fix the node would publish must be all finite."""
    if not estimate_is_publishable(est):
        return True
    return all(math.isfinite(v) for v in (est.lat, est.lon, est.alt)) and bool(np.all(np.isfinite(est.cov_enu)))


# ----------------------------------------------------------------------------- message streams
@st.composite
def stamps(draw, base):
    kind = draw(st.sampled_from(["ok", "ok", "ok", "back", "zero", "nan", "neg", "far"]))
    t = {"ok": base, "back": base - draw(st.floats(0.01, 100.0)), "zero": 0.0, "nan": math.nan, "neg": -5.0,
         "far": base + 1e6}[kind]
    if not math.isfinite(t) or t < 0:
        return NS(sec=t, nanosec=0)
    return stamp(t)


@st.composite
def image_msgs(draw, base):
    enc = draw(st.sampled_from(sorted(ENCODINGS) + ["rgb8"] * 6 + ["bogus"]))
    info = ENCODINGS.get(enc)
    bpp = (info.channels * (2 if info.dtype == "u2" else 1)) if info else 3
    w = draw(st.sampled_from([64, 64, 63, 0, -3, 2]))
    h = draw(st.sampled_from([48, 48, 1, 0]))
    step = draw(st.one_of(st.just(max(w, 0) * bpp), st.integers(-2, 400)))
    n = max(h, 0) * max(step, 0)
    size = draw(st.one_of(st.just(n), st.integers(0, n + 8)))
    data = draw(st.one_of(st.binary(min_size=size, max_size=size), st.just(bytes(size))))
    return NS(header=NS(stamp=draw(stamps(base))), height=h, width=w, encoding=enc, is_bigendian=draw(st.integers(0, 1)),
              step=step, data=data)


@st.composite
def odom_msgs(draw, base):
    good = draw(st.booleans())
    fl = (lambda: 1.0) if good else (lambda: draw(FLOATS))
    q = draw(st.sampled_from([(0, 0, 0, 1), (0, 0, 0, 0), (0, 0, 3, 3), (0.1, 0, 0, 1)])) if not good else (0, 0, 0, 1)
    z = 100.0 if good else draw(st.sampled_from([100.0, 0.0, -50.0, 1e9, math.nan]))
    return NS(header=NS(stamp=draw(stamps(base)) if not good else stamp(base)),
              pose=NS(pose=NS(position=NS(x=base * 5 + fl() - 1.0, y=fl() - 1.0, z=z),
                              orientation=NS(x=q[0], y=q[1], z=q[2], w=q[3]))))


@st.composite
def camera_infos(draw):
    f = draw(st.sampled_from([50.0, 50.0, 0.0, -10.0, 1e7, math.nan, 1e-3]))
    w = draw(st.sampled_from([64, 64, 0, -1, 100000]))
    return NS(width=w, height=48, k=[f, 0, 31.5, 0, f, 23.5, 0, 0, 1], binning_x=draw(st.sampled_from([0, 0, 2, 999])),
              binning_y=0)


@st.composite
def fixes(draw, base):
    lat = draw(st.sampled_from([CENTER[0], CENTER[0], math.nan, 95.0, CENTER[0] + 0.01]))
    var = draw(st.sampled_from([4.0, 4.0, 1e12, math.inf, -1.0, 0.0]))
    return NS(header=NS(stamp=draw(stamps(base))), status=NS(status=draw(st.sampled_from([0, 0, -1, 2]))),
              latitude=lat, longitude=CENTER[1], altitude=draw(FLOATS),
              position_covariance=[var, 0, 0, 0, var, 0, 0, 0, var], position_covariance_type=2)


@st.composite
def streams(draw):
    events = []
    t = 1000.0
    for _ in range(draw(st.integers(5, 25))):
        t += 0.1
        kind = draw(st.sampled_from(["odom", "odom", "image", "image", "info", "fix", "tick", "reloc"]))
        if kind == "odom":
            events.append(("odom", draw(odom_msgs(t))))
        elif kind == "image":
            events.append(("image", draw(image_msgs(t))))
        elif kind == "info":
            events.append(("info", draw(camera_infos())))
        elif kind == "fix":
            events.append(("fix", draw(fixes(t))))
        else:
            events.append((kind, t))
    return events


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(streams(), st.booleans())
def test_session_survives_any_message_stream(fuzz_map, events, with_net):
    made = []

    def factory():
        made.append(Localizer(LocalizerConfig(**SMALL), fuzz_map, RandomNet(sharp=True) if with_net else None,
                              device="cpu"))
        return made[-1]

    reports = []
    s = Session(factory, InputConfig(default_hfov_deg=60.0), GpsRuleConfig(timeout_s=0.5),
                report=lambda k, t: reports.append(k))
    good = NS(width=64, height=48, k=[50.0, 0, 31.5, 0, 50.0, 23.5, 0, 0, 1], binning_x=0, binning_y=0)
    s.on_camera_info(good)
    for kind, msg in events:
        if kind == "odom":
            s.on_odometry(msg)
        elif kind == "info":
            s.on_camera_info(msg)
        elif kind == "fix":
            s.on_gps_fix(msg, 1000.0)
        elif kind == "tick":
            s.tick(msg)
        elif kind == "reloc":
            s.request_relocalization()
        else:
            res = s.step(msg, 1000.0)
            assert (res.estimate is None) != (res.skip is None)
            if res.estimate is not None:
                assert _fix_ok(res.estimate)
    assert len(made) >= 1


# ----------------------------------------------------------------------------- Localizer.step itself
@st.composite
def frames(draw, t):
    img = draw(st.sampled_from(["ok", "ok", "ok", "gray", "float", "tiny", "none"]))
    image = {"ok": np.full((48, 64, 3), 120, np.uint8), "gray": np.zeros((48, 64), np.uint8),
             "float": np.zeros((48, 64, 3), np.float32), "tiny": np.zeros((1, 1, 3), np.uint8), "none": None}[img]
    bad = draw(st.booleans())
    f = (lambda v: draw(st.one_of(st.just(v), FLOATS))) if bad else (lambda v: v)
    intr = NS(width=draw(st.sampled_from([64, 64, 0, -5])) if bad else 64, height=48, fx=f(50.0), fy=f(50.0),
              cx=31.5, cy=23.5)
    return Frame(image=image, stamp=f(t), odom_xyz=np.array([f(t * 5.0), f(0.0), f(100.0)]), odom_yaw=f(0.3),
                 altitude_agl=f(100.0), intrinsics=intr, roll=f(0.0), pitch=f(0.0))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.data(), st.booleans(), st.sampled_from([5.0, 1e12, 0.0]))
def test_localizer_step_never_raises_and_never_fixes_invalid_frames(fuzz_map, data, with_net, sigma):
    from geoloc_ros.localize.validate import frame_problem

    loc = Localizer(LocalizerConfig(**SMALL), fuzz_map, RandomNet(sharp=True) if with_net else None, device="cpu")
    try:
        loc.set_initial_fix(CENTER[0], CENTER[1], 500.0, sigma, 1000.0)
    except ValueError:
        assert sigma > loc.cfg.max_initial_sigma_m or sigma <= 0  # refused with a reason, nothing else
    for k in range(data.draw(st.integers(3, 12))):
        fr = data.draw(frames(1000.0 + 0.2 * k))
        est = loc.step(fr)
        assert _fix_ok(est)
        if frame_problem(fr):
            assert not est.fix_valid and est.message.startswith("frame skipped")
