"""ros/convert.py: Image <-> numpy for every encoding, CameraInfo/Odometry in, Estimate out."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geoloc_ros.ros import convert
from geoloc_ros.ros.convert import ImageConversionError

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
    out = convert.image_to_rgb(img(3, 5, enc, data, step))
    assert out.dtype == np.uint8 and out.shape == (3, 5, 3)
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize("enc", ["mono8", "8UC1"])
def test_mono8(enc):
    g = RGB[:, :, 1].copy()
    data, step = packed(g, 2)
    out = convert.image_to_rgb(img(3, 5, enc, data, step))
    np.testing.assert_array_equal(out, np.repeat(g[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(convert.image_to_numpy(img(3, 5, enc, data, step)), g)


@pytest.mark.parametrize("big", [0, 1])
def test_mono16_endianness(big):
    v = np.array([[0, 257, 65535], [1000, 40000, 12345]], dtype=np.uint16)
    raw = v.astype(">u2" if big else "<u2")
    data, step = packed(raw, 4)
    msg = img(2, 3, "mono16", data, step, big)
    np.testing.assert_array_equal(convert.image_to_numpy(msg), v)
    rgb = convert.image_to_rgb(msg)
    np.testing.assert_array_equal(rgb[:, :, 0], np.round(v / 257.0).astype(np.uint8))
    # the same bytes read with the other byte order give other values: endianness is honoured
    other = convert.image_to_numpy(img(2, 3, "16UC1", data, step, 1 - big))
    assert not np.array_equal(other, v)


def test_yuv422_both_orders():
    # a uniform grey (Y=128, U=V=128) must come back grey in both byte orders
    w, h = 4, 2
    uyvy = np.tile(np.array([128, 128, 128, 128], np.uint8), (h, w // 2))
    for enc in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        out = convert.image_to_rgb(img(h, w, enc, uyvy.tobytes(), w * 2))
        assert out.shape == (h, w, 3)
        assert np.all(np.abs(out.astype(int) - 128) <= 2), enc
    # Y differs per pixel: check that the luma lands on the right pixels for each order
    y = np.array([10, 200, 60, 250], np.uint8)
    uyvy_row = np.array([128, y[0], 128, y[1], 128, y[2], 128, y[3]], np.uint8)
    yuyv_row = np.array([y[0], 128, y[1], 128, y[2], 128, y[3], 128], np.uint8)
    a = convert.image_to_rgb(img(1, 4, "yuv422", uyvy_row.tobytes(), 8))[0, :, 1]
    b = convert.image_to_rgb(img(1, 4, "yuyv", yuyv_row.tobytes(), 8))[0, :, 1]
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
        convert.image_to_rgb(msg)


def test_numpy_image_roundtrip_real_message():
    from sensor_msgs.msg import Image

    for arr in (RGB, RGB[:, :, 0].copy(), np.arange(15, dtype=np.uint16).reshape(3, 5) * 4000):
        msg = convert.numpy_to_image(arr, stamp=12.5, frame_id="cam")
        assert isinstance(msg, Image) and msg.header.frame_id == "cam"
        assert convert.stamp_to_float(msg.header.stamp) == 12.5
        np.testing.assert_array_equal(convert.image_to_numpy(msg), arr)
    with pytest.raises(ImageConversionError):
        convert.numpy_to_image(np.zeros((2, 2, 3), np.float32), "rgb8")


ENCS = sorted(convert.ENCODINGS) + ["bogus", ""]


@st.composite
def image_msgs(draw):
    enc = draw(st.sampled_from(ENCS))
    info = convert.ENCODINGS.get(enc)
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
        out = convert.image_to_rgb(msg)
    except ImageConversionError:
        return
    enc = convert.ENCODINGS[msg.encoding]
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


def odom(x=1.0, y=2.0, z=30.0, yaw=0.7, q=None):
    qx, qy, qz, qw = q if q is not None else convert.quaternion_from_yaw(yaw)
    P = SimpleNamespace
    return P(pose=P(pose=P(position=P(x=x, y=y, z=z), orientation=P(x=qx, y=qy, z=qz, w=qw))))


def test_odometry_yaw_and_rejection():
    xyz, yaw = convert.odometry_to_pose(odom(yaw=2.5))
    assert xyz.tolist() == [1.0, 2.0, 30.0] and math.isclose(yaw, 2.5, abs_tol=1e-12)
    # unnormalised quaternion still gives the yaw
    qx, qy, qz, qw = convert.quaternion_from_yaw(-1.0)
    assert math.isclose(convert.odometry_to_pose(odom(q=(0, 0, 3 * qz, 3 * qw)))[1], -1.0, abs_tol=1e-12)
    for bad in (odom(x=float("nan")), odom(z=float("inf")), odom(q=(0, 0, float("nan"), 1)), odom(q=(0, 0, 0, 0))):
        with pytest.raises(convert.OdometryError):
            convert.odometry_to_pose(bad)


def test_camera_info_to_intrinsics():
    ci = SimpleNamespace(width=640, height=480, k=[500.0, 0, 319.5, 0, 510.0, 239.5, 0, 0, 1],
                         binning_x=0, binning_y=0)
    intr = convert.camera_info_to_intrinsics(ci)
    assert (intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy) == (640, 480, 500.0, 510.0, 319.5, 239.5)
    half = convert.scale_intrinsics(intr, 320, 240)
    assert math.isclose(half.fx, 250.0) and math.isclose(half.cx, 159.5)
    for bad in (dict(width=0), dict(k=[0.0] * 9), dict(k=[float("nan")] * 9)):
        with pytest.raises(convert.CameraInfoError):
            convert.camera_info_to_intrinsics(SimpleNamespace(**{**vars(ci), **bad}))


def estimate(**kw):
    base = dict(stamp=100.25, lat=47.0, lon=8.0, alt=450.0, cov_enu=np.diag([4.0, 9.0, 25.0]), yaw=0.3,
                fix_valid=True, state="TRACKING")
    base.update(kw)
    return SimpleNamespace(**base)


def test_estimate_to_navsatfix_and_pose():
    from sensor_msgs.msg import NavSatFix, NavSatStatus

    from geoloc_ros.geo.frames import LocalENU

    e = estimate()
    fix = convert.estimate_to_navsatfix(e, "base_link")
    assert fix.status.status == NavSatStatus.STATUS_FIX
    assert fix.position_covariance_type == NavSatFix.COVARIANCE_TYPE_KNOWN
    assert list(fix.position_covariance) == [4.0, 0, 0, 0, 9.0, 0, 0, 0, 25.0]
    assert convert.stamp_to_float(fix.header.stamp) == 100.25
    assert convert.estimate_to_navsatfix(estimate(fix_valid=False)).status.status == NavSatStatus.STATUS_NO_FIX
    enu = LocalENU(47.0, 8.0, 450.0)
    pose = convert.estimate_to_pose(estimate(lat=47.0 + 100 / 111_200), enu)
    assert abs(pose.pose.pose.position.y - 100.0) < 0.5 and abs(pose.pose.pose.position.x) < 1e-6
    assert math.isclose(convert.yaw_from_quaternion(*[getattr(pose.pose.pose.orientation, a) for a in "xyzw"]), 0.3)
    c = np.array(pose.pose.covariance).reshape(6, 6)
    assert c[0, 0] == 4.0 and c[1, 1] == 9.0 and c[5, 5] == convert.UNKNOWN_VARIANCE
    od = convert.estimate_to_odometry(e, enu, "map", "base_link")
    assert od.child_frame_id == "base_link" and od.header.frame_id == "map"


@pytest.mark.parametrize("kw", [dict(fix_valid=False), dict(lat=float("nan")),
                                dict(cov_enu=np.full((3, 3), np.nan)), dict(cov_enu=np.zeros((3, 3))),
                                dict(lat=95.0)])
def test_bad_estimates_are_not_publishable(kw):
    assert not convert.estimate_is_publishable(estimate(**kw))
    assert convert.estimate_is_publishable(estimate())


def test_heatmap_image():
    h = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    msg = convert.heatmap_to_image(h, stamp=1.0)
    out = convert.image_to_numpy(msg)
    assert msg.encoding == "mono8" and out[0, 0] == 0 and out[-1, -1] == 255
    assert convert.estimate_to_geopose(estimate()) is None or convert.HAVE_GEOGRAPHIC_MSGS
