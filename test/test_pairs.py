"""Pair generator: the label stays on the UAV centre under rotation, the gsd ratio holds."""
import math

import cv2
import numpy as np
import pytest

from geoloc_ros.data.pairs import PairConfig, PairDataset, PhotoPairSource, sample_pair, ArrayMap

H, W = 900, 1200


def _gradient(h=H, w=W):
    """R encodes the map row, G the column: a pixel's colour tells where on the map it is."""
    r, c = np.mgrid[0:h, 0:w]
    return np.stack([r * 255.0 / (h - 1), c * 255.0 / (w - 1), np.full((h, w), 90.0)], -1).astype(np.uint8)


def _grads(img, ch):
    """Mean d(channel)/d(row) and d(channel)/d(col) over the image interior."""
    x = img[..., ch].astype(np.float64)
    return float(np.mean(x[2:, 1:-1] - x[:-2, 1:-1]) / 2), float(np.mean(x[1:-1, 2:] - x[1:-1, :-2]) / 2)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    assert cv2.imwrite(str(d / "a.png"), cv2.cvtColor(_gradient(), cv2.COLOR_RGB2BGR))
    return d


def _check_label_and_geometry(s, cfg, tol_colour=4.0):
    n = cfg.sat_size
    r, c = s.center_frac[0] * (n - 1), s.center_frac[1] * (n - 1)
    ri, ci = int(round(r)), int(round(c))
    h = cfg.uav_size // 2
    uav_centre = s.uav[h - 1:h + 1, h - 1:h + 1, :2].astype(float).mean((0, 1))
    assert np.abs(uav_centre - s.sat[ri, ci, :2].astype(float)).max() < tol_colour
    # heading: R grows towards map south, so its gradient in UAV pixels points along (cos t, sin t)
    dri, drj = _grads(s.uav, 0)
    dgi, dgj = _grads(s.uav, 1)
    theta = math.degrees(math.atan2(drj, dri))
    assert abs((theta - s.info["rotation_deg"] + 180) % 360 - 180) < 3.0
    theta_g = math.degrees(math.atan2(-dgi, dgj))
    assert abs((theta_g - s.info["rotation_deg"] + 180) % 360 - 180) < 3.0
    # gsd ratio from content: gradient magnitude per pixel scales with metres per pixel
    gu = math.hypot(dri, drj) / (255.0 / (H - 1))
    sr = _grads(s.sat, 0)
    gs = math.hypot(*sr) / (255.0 / (H - 1))
    assert gs / gu == pytest.approx(s.info["gsd_ratio"], rel=0.05)
    assert abs(sr[1]) < 0.02 * abs(sr[0]) + 1e-3  # satellite window is north-up


def test_rotation_keeps_label_and_gsd_ratio_holds(photo_dir):
    cfg = PairConfig(uav_size=64, sat_size=128, photometric=None, footprint_frac=(0.15, 0.3))
    src = PhotoPairSource(photo_dir, cfg)
    rng = np.random.default_rng(1)
    ratios, rots = [], []
    for _ in range(25):
        s = src.sample_with_info(rng)
        assert s.uav.shape == (64, 64, 3) and s.sat.shape == (128, 128, 3)
        lo, hi = 0.5 - 0.85 / 2, 0.5 + 0.85 / 2
        assert lo <= s.center_frac[0] <= hi and lo <= s.center_frac[1] <= hi
        _check_label_and_geometry(s, cfg)
        ratios.append(s.info["gsd_ratio"])
        rots.append(s.info["rotation_deg"])
    # default: gsd_ratio 1.0 +- 25 %, headings spread all round
    assert min(ratios) >= 0.75 - 1e-9 and max(ratios) <= 1.25 + 1e-9
    assert np.ptp(ratios) > 0.2 and np.ptp(rots) > 180


def test_gsd_ratio_and_scale_range_knobs():
    g = ArrayMap(_gradient(), gsd_m=0.5)
    rng = np.random.default_rng(2)
    cfg = PairConfig(uav_size=64, sat_size=128, gsd_ratio=1.6, gsd_ratio_jitter=0.0, photometric=None,
                     rotate=False)
    for _ in range(5):
        s = sample_pair(g, cfg, (40.0, 80.0), rng)
        assert s.info["gsd_ratio"] == pytest.approx(1.6)
        assert s.info["side"] / s.info["footprint"] == pytest.approx(1.6 * 128 / 64)
        _check_label_and_geometry(s, cfg)
    cfg = PairConfig(uav_size=64, sat_size=128, scale_range=(2.0, 2.5), photometric=None)
    for _ in range(5):
        s = sample_pair(g, cfg, (40.0, 80.0), rng)
        assert 2.0 <= s.info["side"] / s.info["footprint"] <= 2.5


def test_photometric_changes_uav_only_and_dataset_is_reproducible(photo_dir):
    cfg = PairConfig(uav_size=32, sat_size=64)
    plain = PairConfig(uav_size=32, sat_size=64, photometric=None)
    a = PairDataset([PhotoPairSource(photo_dir, cfg)], seed=7)
    b = PairDataset([PhotoPairSource(photo_dir, plain)], seed=7)
    ia, ib = a[5], b[5]
    assert ia["sat"].equal(ib["sat"]) and ia["center"].equal(ib["center"])
    assert not ia["uav"].equal(ib["uav"])
    assert a[5]["uav"].equal(ia["uav"])  # same (seed, index) -> same pair
    assert ia["uav"].shape == (3, 32, 32) and ia["sat"].dtype.is_floating_point


def test_mixed_sources_weights_and_bad_photo(photo_dir, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    assert cv2.imwrite(str(tmp_path / "ok.png"), cv2.cvtColor(_gradient(300, 400), cv2.COLOR_RGB2BGR))
    cfg = PairConfig(uav_size=16, sat_size=48, photometric=None)
    with pytest.raises(ValueError, match="broken.jpg"):
        src = PhotoPairSource(tmp_path, cfg, on_error="stop")
        for i in range(20):
            src.sample(np.random.default_rng(i))
    skip = PhotoPairSource(tmp_path, cfg, on_error="skip")
    for i in range(10):
        skip.sample(np.random.default_rng(i))
    ds = PairDataset([PhotoPairSource(photo_dir, cfg), skip], weights=[3, 1], seed=0)
    picks = [ds.sample(i)[3] for i in range(80)]
    assert 0.6 < picks.count(0) / len(picks) < 0.9
    with pytest.raises(ValueError, match="image sizes"):
        PairDataset([PhotoPairSource(photo_dir, cfg), PhotoPairSource(photo_dir, PairConfig(uav_size=32, sat_size=48))])


def test_ortho_source_on_a_geotiff(tmp_path):
    pytest.importorskip("rasterio")
    from affine import Affine

    from geoloc_ros.geo.cog import write_cog
    from geoloc_ros.data.pairs import OrthoPairSource

    path = write_cog(tmp_path / "map.tif", _gradient(), Affine(0.5, 0, 500000.0, 0, -0.5, 3320000.0), "EPSG:32614",
                     compress="DEFLATE")
    cfg = PairConfig(uav_size=64, sat_size=128, photometric=None, footprint_m=(60.0, 100.0))
    src = OrthoPairSource(path, cfg)
    rng = np.random.default_rng(3)
    for _ in range(6):
        s = src.sample_with_info(rng)
        assert s.info["valid"] >= cfg.min_valid
        # UTM grid north differs from true north by the meridian convergence (< 1 deg here)
        _check_label_and_geometry(s, cfg, tol_colour=5.0)


def test_ortho_source_cuts_the_uav_side_from_the_second_epoch(tmp_path):
    """With `uav_map`, the UAV image comes from the co-registered second map at the label."""
    from affine import Affine

    from geoloc_ros.geo.cog import write_cog
    from geoloc_ros.data.pairs import OrthoPairSource

    tr = Affine(0.5, 0, 500000.0, 0, -0.5, 3320000.0)
    g = _gradient()
    epoch2 = g.copy()
    epoch2[..., 2] = 200  # same place, other "season": only the blue channel differs
    p1 = write_cog(tmp_path / "e1.tif", g, tr, "EPSG:32614", compress="DEFLATE")
    p2 = write_cog(tmp_path / "e2.tif", epoch2, tr, "EPSG:32614", compress="DEFLATE")
    cfg = PairConfig(uav_size=64, sat_size=128, photometric=None, footprint_m=(60.0, 100.0))
    src = OrthoPairSource(p1, cfg, uav_map=p2)
    rng = np.random.default_rng(5)
    for _ in range(4):
        s = src.sample_with_info(rng)
        assert abs(float(s.sat[..., 2].mean()) - 90.0) < 3.0
        assert abs(float(s.uav[..., 2].mean()) - 200.0) < 3.0
        _check_label_and_geometry(s, cfg, tol_colour=5.0)  # R/G still say where: geometry unchanged
