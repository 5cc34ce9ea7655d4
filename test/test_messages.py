"""runtime/messages.py: Image -> RGB for every encoding, CameraInfo / Odometry / NavSatFix in,
each bad input refused with its own one-line InputError."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geoloc_ros.geo.angles import quaternion_from_yaw
from geoloc_ros.runtime import messages
from geoloc_ros.runtime.messages import ImageConversionError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (3, 5, 3), dtype=np.uint8)  # hand-made 5x3 RGB image


def img(h, w, enc, data, step=None, big=0):
    return SimpleNamespace(height=h, width=w, encoding=enc, step=step, data=data, is_bigendian=big)


def packed(arr: np.ndarray, pad: int = 0) -> tuple[bytes, int]:
    """Rows of `arr` as bytes with `pad` junk bytes after each row -> (data, step)."""
    rows = arr.reshape(arr.shape[0], -1).view(np.uint8)
    junk = np.full((rows.shape[0], pad), 0xAB, np.uint8)
    out = np.concatenate([rows, junk], axis=1)
    return out.tobytes(), out.shape[1]


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("enc,make", [
    ("rgb8", lambda a: a),
    ("8UC3", lambda a: a[:, :, ::-1]),  # OpenCV order: BGR
    ("bgr8", lambda a: a[:, :, ::-1]),
    ("rgba8", lambda a: np.dstack([a, np.full(a.shape[:2], 7, np.uint8)])),
    ("bgra8", lambda a: np.dstack([a[:, :, ::-1], np.full(a.shape[:2], 7, np.uint8)])),
])
def test_color_encodings_to_rgb(enc, make, pad):
    raw = np.ascontiguousarray(make(RGB))
    data, step = packed(raw, pad)
    out = messages.image_to_rgb(img(3, 5, enc, data, step))
    assert out.dtype == np.uint8 and out.shape == (3, 5, 3)
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize("enc", ["mono8", "8UC1"])
def test_mono8(enc):
    g = RGB[:, :, 1].copy()
    data, step = packed(g, 2)
    out = messages.image_to_rgb(img(3, 5, enc, data, step))
    np.testing.assert_array_equal(out, np.repeat(g[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(messages.image_to_numpy(img(3, 5, enc, data, step)), g)


@pytest.mark.parametrize("big", [0, 1])
def test_mono16_endianness(big):
    v = np.array([[0, 257, 65535], [1000, 40000, 12345]], dtype=np.uint16)
    raw = v.astype(">u2" if big else "<u2")
    data, step = packed(raw, 4)
    msg = img(2, 3, "mono16", data, step, big)
    np.testing.assert_array_equal(messages.image_to_numpy(msg), v)
    rgb = messages.image_to_rgb(msg)
    np.testing.assert_array_equal(rgb[:, :, 0], np.round(v / 257.0).astype(np.uint8))
    # the same bytes read with the other byte order give other values: endianness is honoured
    other = messages.image_to_numpy(img(2, 3, "16UC1", data, step, 1 - big))
    assert not np.array_equal(other, v)


def test_yuv422_both_orders():
    # a uniform grey (Y=128, U=V=128) must come back grey in both byte orders
    w, h = 4, 2
    uyvy = np.tile(np.array([128, 128, 128, 128], np.uint8), (h, w // 2))
    for enc in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        out = messages.image_to_rgb(img(h, w, enc, uyvy.tobytes(), w * 2))
        assert out.shape == (h, w, 3)
        assert np.all(np.abs(out.astype(int) - 128) <= 2), enc
    # Y differs per pixel: check that the luma lands on the right pixels for each order
    y = np.array([10, 200, 60, 250], np.uint8)
    uyvy_row = np.array([128, y[0], 128, y[1], 128, y[2], 128, y[3]], np.uint8)
    yuyv_row = np.array([y[0], 128, y[1], 128, y[2], 128, y[3], 128], np.uint8)
    a = messages.image_to_rgb(img(1, 4, "yuv422", uyvy_row.tobytes(), 8))[0, :, 1]
    b = messages.image_to_rgb(img(1, 4, "yuyv", yuyv_row.tobytes(), 8))[0, :, 1]
    np.testing.assert_array_equal(a, b)
    assert np.argsort(a).tolist() == np.argsort(y).tolist()


@pytest.mark.parametrize("msg,needle", [
    (img(3, 5, "rgb8", bytes(14 * 3), 14), "shorter than one row"),
    (img(3, 5, "weird8", bytes(45), 15), "unsupported image encoding"),
    (img(3, 5, "rgb8", bytes(44), 15), "truncated"),
    (img(3, 5, "rgb8", bytes(46), 15), "too long"),
    (img(0, 5, "rgb8", b"", 15), "zero size"),
    (img(3, 0, "rgb8", b"", 0), "zero size"),
    (img(1, 3, "yuyv", bytes(6), 6), "even width"),
])
def test_errors_are_clear(msg, needle):
    with pytest.raises(ImageConversionError, match=needle):
        messages.image_to_rgb(msg)


ENCS = sorted(messages.ENCODINGS) + ["bogus", ""]


@st.composite
def image_msgs(draw):
    enc = draw(st.sampled_from(ENCS))
    info = messages.ENCODINGS.get(enc)
    bpp = (info.channels * (2 if info.dtype == "u2" else 1)) if info else 3
    h = draw(st.integers(-1, 6))
    w = draw(st.integers(-1, 6))
    step = draw(st.one_of(st.just(max(w, 0) * bpp), st.integers(-2, 40)))
    n = max(h, 0) * max(step, 0)
    size = draw(st.one_of(st.just(n), st.integers(0, n + 8)))
    data = draw(st.binary(min_size=size, max_size=size))
    big = draw(st.integers(0, 1))
    return img(h, w, enc, data, step, big)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image_msgs())
def test_fuzz_image_conversion(msg):
    """Any message: a correct RGB array or ImageConversionError, never another exception."""
    try:
        out = messages.image_to_rgb(msg)
    except ImageConversionError:
        return
    enc = messages.ENCODINGS[msg.encoding]
    assert out.shape == (msg.height, msg.width, 3) and out.dtype == np.uint8
    assert len(msg.data) == msg.step * msg.height
    # cross-check against an independent per-pixel decode for the plain byte layouts
    if enc.to_rgb in ("rgb", "bgr", "mono") and enc.dtype == "u1":
        raw = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
        for r in range(msg.height):
            for c in range(msg.width):
                px = raw[r, c * enc.channels:(c + 1) * enc.channels]
                want = {"rgb": px, "bgr": px[::-1], "mono": np.repeat(px, 3)}[enc.to_rgb]
                assert out[r, c].tolist() == want.tolist()


def odom(x=1.0, y=2.0, z=30.0, yaw=0.7, q=None, stamp=(12, 500_000_000)):
    qx, qy, qz, qw = q if q is not None else quaternion_from_yaw(yaw)
    P = SimpleNamespace
    return P(header=P(stamp=P(sec=stamp[0], nanosec=stamp[1])),
             pose=P(pose=P(position=P(x=x, y=y, z=z), orientation=P(x=qx, y=qy, z=qz, w=qw))))


def test_odometry_yaw_and_rejection():
    s = messages.odometry_sample(odom(yaw=2.5))
    assert s.xyz.tolist() == [1.0, 2.0, 30.0] and math.isclose(s.yaw, 2.5, abs_tol=1e-12) and s.stamp == 12.5
    assert s.roll == pytest.approx(0.0) and s.pitch == pytest.approx(0.0)
    # a quaternion off unit norm by rounding still gives the yaw; one far from unit is broken
    qx, qy, qz, qw = quaternion_from_yaw(-1.0)
    assert math.isclose(messages.odometry_sample(odom(q=(0, 0, 1.05 * qz, 1.05 * qw))).yaw, -1.0, abs_tol=1e-12)
    for bad, needle in ((odom(x=float("nan")), "position is not finite"), (odom(z=float("inf")), "not finite"),
                        (odom(q=(0, 0, float("nan"), 1)), "orientation is not finite"),
                        (odom(q=(0, 0, 0, 0)), "norm 0"), (odom(q=(0, 0, 3 * qz, 3 * qw)), "norm 3")):
        with pytest.raises(messages.OdometryError, match=needle):
            messages.odometry_sample(bad)
    with pytest.raises(messages.StampError):
        messages.odometry_sample(odom(stamp=(-5, 0)))


def test_camera_info_to_intrinsics():
    ci = SimpleNamespace(width=640, height=480, k=[500.0, 0, 319.5, 0, 510.0, 239.5, 0, 0, 1],
                         binning_x=0, binning_y=0)
    intr = messages.camera_info_to_intrinsics(ci)
    assert (intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy) == (640, 480, 500.0, 510.0, 319.5, 239.5)
    half = messages.scale_intrinsics(intr, 320, 240)
    assert math.isclose(half.fx, 250.0) and math.isclose(half.cx, 159.5)
    binned = messages.camera_info_to_intrinsics(SimpleNamespace(**{**vars(ci), "binning_x": 2, "binning_y": 2}))
    assert (binned.width, binned.fx, binned.cx) == (320, 250.0, 159.75)
    for bad, needle in ((dict(width=0), "zero size"), (dict(k=[0.0] * 9), "non-positive"),
                        (dict(k=[float("nan")] * 9), "not 9 finite"),
                        (dict(k=[1e7, 0, 319.5, 0, 1e7, 239.5, 0, 0, 1]), "field of view"),  # fx = 1e7: implausible
                        (dict(k=[500.0, 0, 900.0, 0, 510.0, 239.5, 0, 0, 1]), "principal point"),
                        (dict(k="abc"), "not numbers")):
        with pytest.raises(messages.CameraInfoError, match=needle):
            messages.camera_info_to_intrinsics(SimpleNamespace(**{**vars(ci), **bad}))


def navsat(lat=47.0, lon=8.0, alt=500.0, status=0, cov=(4.0, 0, 0, 0, 9.0, 0, 0, 0, 16.0), ctype=2):
    P = SimpleNamespace
    return P(header=P(stamp=P(sec=3, nanosec=0)), status=P(status=status), latitude=lat, longitude=lon, altitude=alt,
             position_covariance=list(cov), position_covariance_type=ctype)


def test_navsatfix_reading():
    r = messages.navsatfix_reading(navsat(), 1.0)
    assert r.ok and r.sigma_m == 3.0 and r.stamp == 3.0 and (r.lat, r.lon, r.alt) == (47.0, 8.0, 500.0)
    assert messages.navsatfix_reading(navsat(ctype=0), 2.5).sigma_m == 2.5  # unknown covariance: the floor
    assert not messages.navsatfix_reading(navsat(status=-1), 1.0).ok
    assert not messages.navsatfix_reading(navsat(lat=float("nan")), 1.0).ok
    assert not messages.navsatfix_reading(navsat(lat=95.0), 1.0).ok
    assert not messages.navsatfix_reading(navsat(cov=(float("inf"),) * 9), 1.0).ok
    assert messages.navsatfix_reading(navsat(alt=float("nan")), 1.0).alt == 0.0
    huge = messages.navsatfix_reading(navsat(cov=(1e12, 0, 0, 0, 1e12, 0, 0, 0, 1e12)), 1.0)
    assert huge.ok and huge.sigma_m == 1e6  # a position claim; the GPS rule refuses it as a seed


@pytest.mark.parametrize("enc,code", [("bayer_rggb8", "COLOR_BayerBG2RGB"), ("bayer_bggr8", "COLOR_BayerRG2RGB"),
                                      ("bayer_gbrg8", "COLOR_BayerGR2RGB"), ("bayer_grbg8", "COLOR_BayerGB2RGB")])
def test_bayer_patterns_demosaic_to_the_right_colour(enc, code):
    """A flat red scene seen through each ROS Bayer pattern comes out red."""
    h, w = 8, 8
    pattern = enc[6:10]  # e.g. "rggb": colours of (0,0) (0,1) (1,0) (1,1)
    red = {"r": 200, "g": 20, "b": 10}
    mosaic = np.zeros((h, w), np.uint8)
    for (dy, dx), c in zip(((0, 0), (0, 1), (1, 0), (1, 1)), pattern):
        mosaic[dy::2, dx::2] = red[c]
    out = messages.image_to_rgb(img(h, w, enc, mosaic.tobytes(), w))
    centre = out[2:6, 2:6].reshape(-1, 3).mean(0)
    assert centre[0] > 150 and centre[1] < 60 and centre[2] < 60, (enc, centre)


def test_oversized_image_is_refused_before_copying():
    msg = img(5000, 10000, "rgb8", b"", 30000)  # 50 MP claimed, no data: refused on the size alone
    with pytest.raises(ImageConversionError, match="exceeds"):
        messages.image_to_rgb(msg)
    with pytest.raises(ImageConversionError, match="exceeds"):
        messages.image_to_rgb(img(10, 10, "rgb8", bytes(300), 30), max_pixels=50)
