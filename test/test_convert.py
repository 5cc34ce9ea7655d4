"""ros/convert.py: Estimate -> NavSatFix / pose / odometry / heatmap image, Image from numpy."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from geoloc_ros.geo.angles import yaw_from_quaternion
from geoloc_ros.ros import convert
from geoloc_ros.ros.convert import ImageConversionError
from geoloc_ros.runtime.messages import image_to_numpy, stamp_to_float

RGB = np.random.default_rng(0).integers(0, 256, (3, 5, 3), dtype=np.uint8)

def test_numpy_image_roundtrip_real_message():
    from sensor_msgs.msg import Image

    for arr in (RGB, RGB[:, :, 0].copy(), np.arange(15, dtype=np.uint16).reshape(3, 5) * 4000):
        msg = convert.numpy_to_image(arr, stamp=12.5, frame_id="cam")
        assert isinstance(msg, Image) and msg.header.frame_id == "cam"
        assert stamp_to_float(msg.header.stamp) == 12.5
        np.testing.assert_array_equal(image_to_numpy(msg), arr)
    with pytest.raises(ImageConversionError):
        convert.numpy_to_image(np.zeros((2, 2, 3), np.float32), "rgb8")


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
    assert stamp_to_float(fix.header.stamp) == 100.25
    assert convert.estimate_to_navsatfix(estimate(fix_valid=False)).status.status == NavSatStatus.STATUS_NO_FIX
    enu = LocalENU(47.0, 8.0, 450.0)
    pose = convert.estimate_to_pose(estimate(lat=47.0 + 100 / 111_200), enu)
    assert abs(pose.pose.pose.position.y - 100.0) < 0.5 and abs(pose.pose.pose.position.x) < 1e-6
    assert math.isclose(yaw_from_quaternion(*[getattr(pose.pose.pose.orientation, a) for a in "xyzw"]), 0.3)
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
    out = image_to_numpy(msg)
    assert msg.encoding == "mono8" and out[0, 0] == 0 and out[-1, -1] == 255
    assert convert.estimate_to_geopose(estimate()) is None or convert.HAVE_GEOGRAPHIC_MSGS
