"""geoloc-simulate end to end: a small flight -> rosbag2 that rosbags and rclpy both decode."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from geoloc_ros.bags import (TOPIC_CAMERA_INFO, TOPIC_GPS, TOPIC_GROUND_TRUTH, TOPIC_IMAGE, TOPIC_ODOM, bag_topics,
                             load_sidecar, read_messages, read_raw)
from geoloc_ros.geo.angles import yaw_from_quaternion
from geoloc_ros.runtime.messages import image_to_rgb
from geoloc_ros.data.flight import Trajectory
from geoloc_ros.geo.frames import LocalENU
from geoloc_ros.tools.simulate import load_scenario, main

SMALL = """
name: small
seed: 1
duration_s: 6
world:
  generate: {seed: 1, size_m: 300, gsd_m: 0.5, town_density_per_km2: 8, town_radius_m: [125, 140],
             farm_cell_m: 110, lake_probability: 0, river_probability: 0, main_roads: 1}
trajectory: {kind: figure8, radius_m: 50, speed_mps: 10, altitude_m: 80}
camera: {width: 160, height: 120, hfov_deg: 70, rate_hz: 5}
odometry: {rate_hz: 20, initial_yaw_error_deg: 10}
gps: {rate_hz: 5, denial_s: 3}
"""


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    (d / "small.yaml").write_text(SMALL)
    out = {}
    for storage in ("mcap", "sqlite3"):
        bag = d / f"bag_{storage}"
        assert main(["--scenario", str(d / "small.yaml"), "--out", str(bag), "--storage", storage,
                     "--no-progress"]) == 0
        out[storage] = bag
    return d, out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_topics_and_counts(bags, storage):
    _, b = bags
    topics = bag_topics(b[storage])
    assert topics[TOPIC_IMAGE] == ("sensor_msgs/msg/Image", 30)
    assert topics[TOPIC_CAMERA_INFO] == ("sensor_msgs/msg/CameraInfo", 30)
    assert topics[TOPIC_ODOM] == ("nav_msgs/msg/Odometry", 120)
    assert topics[TOPIC_GROUND_TRUTH] == ("sensor_msgs/msg/NavSatFix", 30)
    assert topics[TOPIC_GPS] == ("sensor_msgs/msg/NavSatFix", 15)  # 0.0 .. 2.8 s at 5 Hz


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_rclpy_decodes_every_message(bags, storage):
    from rclpy.serialization import deserialize_message
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CameraInfo, Image, NavSatFix

    _, b = bags
    types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CameraInfo": CameraInfo,
             "nav_msgs/msg/Odometry": Odometry, "sensor_msgs/msg/NavSatFix": NavSatFix}
    ours = {(t, ns): m for t, ns, m in read_messages(b[storage], [TOPIC_IMAGE, TOPIC_ODOM])}
    n = 0
    for topic, mtype, t_ns, raw in read_raw(b[storage]):
        msg = deserialize_message(raw, types[mtype])
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        assert abs(stamp_ns - t_ns) < 1000
        if topic == TOPIC_IMAGE:
            assert msg.encoding == "rgb8" and msg.step == msg.width * 3 and (msg.width, msg.height) == (160, 120)
            arr = np.frombuffer(bytes(msg.data), np.uint8).reshape(120, 160, 3)
            assert np.array_equal(arr, image_to_rgb(ours[(topic, t_ns)]))
            assert arr.std() > 5  # a real picture, not a blank frame
        elif topic == TOPIC_ODOM:
            o = ours[(topic, t_ns)]
            assert msg.header.frame_id == "odom" and msg.child_frame_id == "base_link"
            assert msg.pose.pose.position.x == pytest.approx(o.pose.pose.position.x)
        elif topic == TOPIC_CAMERA_INFO:
            assert msg.k[0] == pytest.approx(80 / math.tan(math.radians(35)))
        n += 1
    assert n == 30 + 30 + 120 + 30 + 15


def test_ground_truth_matches_trajectory_and_gps_stops(bags):
    d, b = bags
    sc = load_scenario(d / "small.yaml")
    side = load_sidecar(b["mcap"])
    assert side.map_path.is_file() and side.camera_map_path.is_file() and side.map_path != side.camera_map_path
    enu = LocalENU(side.data["origin"]["lat"], side.data["origin"]["lon"], 0.0)
    traj = Trajectory(sc.trajectory, sc.yaw, sc.camera, seed=sc.seed)
    t0 = side.data["start_stamp"]
    gps_t = []
    for topic, t_ns, msg in read_messages(b["mcap"], [TOPIC_GROUND_TRUTH, TOPIC_GPS]):
        t = t_ns * 1e-9 - t0
        e, n, _ = enu.to_enu(msg.latitude, msg.longitude, 0.0)
        tr = traj.sample([t])
        if topic == TOPIC_GROUND_TRUTH:
            assert math.hypot(e - tr.east[0], n - tr.north[0]) < 0.01
            assert msg.altitude == pytest.approx(400.0 + tr.agl[0], abs=1e-6)
        else:
            gps_t.append(t)
            assert math.hypot(e - tr.east[0], n - tr.north[0]) < 15.0
            assert msg.position_covariance_type == 2 and msg.position_covariance[0] > 1.0
    assert max(gps_t) < 3.0
    fix = side.initial_fix
    assert fix["stamp"] - t0 == pytest.approx(max(gps_t))
    assert fix["sigma_m"] >= 1.5


def test_odometry_starts_at_origin_with_yaw_error(bags):
    d, b = bags
    odo = [(t_ns, m) for _, t_ns, m in read_messages(b["mcap"], [TOPIC_ODOM])]
    p0 = odo[0][1].pose.pose.position
    assert math.hypot(p0.x, p0.y) < 0.5 and p0.z == pytest.approx(80.0, abs=0.5)
    sc = load_scenario(d / "small.yaml")
    traj = Trajectory(sc.trajectory, sc.yaw, sc.camera, seed=sc.seed)
    tr = traj.sample([0.0])
    q = odo[0][1].pose.pose.orientation
    err = math.degrees(yaw_from_quaternion(q.x, q.y, q.z, q.w) - tr.yaw[0])
    assert ((err + 180) % 360 - 180) == pytest.approx(10.0, abs=1.0)


def test_sidecar_is_json_and_cli_errors(bags, tmp_path, capsys):
    d, b = bags
    data = json.loads((b["mcap"] / "scenario.json").read_text())
    assert data["topics"]["/odom"] == "nav_msgs/msg/Odometry" and data["camera"]["width"] == 160
    assert main(["--scenario", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "x")]) == 2
    assert "error:" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("trajectory: {kind: spiral}\n")
    assert main(["--scenario", str(bad), "--out", str(tmp_path / "y")]) == 2
    bad.write_text("trajectori: {}\n")
    assert main(["--scenario", str(bad), "--out", str(tmp_path / "z")]) == 2
    assert main(["--scenario", str(d / "small.yaml"), "--out", str(b["mcap"])]) == 2  # bag exists
    assert "already exists" in capsys.readouterr().err


def _images(bag):
    return [bytes(m.data) for _, _, m in read_messages(bag, [TOPIC_IMAGE])]


def test_appearance_gap_changes_only_the_camera_and_is_deterministic(bags, tmp_path, capsys):
    d, b = bags
    (d / "gap.yaml").write_text(SMALL + "appearance_gap: strong\n")
    for name in ("gap_a", "gap_b"):
        assert main(["--scenario", str(d / "gap.yaml"), "--out", str(d / name), "--no-progress"]) == 0
    side = load_sidecar(d / "gap_a")
    assert "_chg" in side.camera_map_path.name and side.map_path == load_sidecar(b["mcap"]).map_path
    assert side.data["camera_photometric"]["detail_loss"] == 2.5
    gap_a, gap_b, plain = _images(d / "gap_a"), _images(d / "gap_b"), _images(b["mcap"])
    assert gap_a == gap_b and len(gap_a) == len(plain)
    assert sum(x != y for x, y in zip(gap_a, plain)) == len(plain)
    odo = lambda bag: [(m.pose.pose.position.x, m.pose.pose.position.y)  # noqa: E731
                       for _, _, m in read_messages(bag, [TOPIC_ODOM])]
    assert odo(d / "gap_a") == odo(b["mcap"])  # the gap is the camera's only
    bad = tmp_path / "bad_gap.yaml"
    bad.write_text(SMALL + "appearance_gap: {preset: medium}\n")
    assert main(["--scenario", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "appearance_gap" in capsys.readouterr().err
    ok = tmp_path / "weak_no_patches.yaml"
    ok.write_text(SMALL + "appearance_gap: {preset: weak, changed_fraction: 0, cloud_shadow_cover: 0}\n")
    sc = load_scenario(ok)
    assert sc.appearance_gap.active and not sc.appearance_gap.world_changes(sc.seed).active


def test_lookalike_field_options_are_additive():
    """field_uniformity / crop_types draw from their own stream: everything else in the layout,
    and the cache key of every world made without them, stays as it was."""
    from geoloc_ros.data.world import WorldConfig, world_layout

    base = WorldConfig(seed=5, size_m=800, gsd_m=0.5)
    same = WorldConfig(seed=5, size_m=800, gsd_m=0.5, field_uniformity=0.0, crop_types=())
    assert base.cache_key() == same.cache_key() == "world_s5_800m_0.5_" + base.cache_key().rsplit("_", 1)[1]
    look = WorldConfig(seed=5, size_m=800, gsd_m=0.5, field_uniformity=1.0, crop_types=(2, 5))
    assert look.cache_key() != base.cache_key()
    a, b = world_layout(base), world_layout(look)
    np.testing.assert_array_equal(a.seeds, b.seeds)
    np.testing.assert_array_equal(a.seed_kind, b.seed_kind)
    assert len(a.buildings) == len(b.buildings) and len(a.trees) == len(b.trees)
    assert len(set(np.round(b.seed_angle, 9))) == 1 and len(set(b.seed_w)) == 1
    assert len(set(np.round(a.seed_angle, 9))) > 3
    with pytest.raises(ValueError):
        WorldConfig(crop_types=(42,))
