"""Procedural worlds: deterministic, two epochs of one layout, valid georeferenced COGs."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from geoloc_ros.data.world import WorldConfig, generate_world, render_world, small_world_config, world_layout
from geoloc_ros.geo.orthomap import OrthoMap
from geoloc_ros.tools.make_world import main as make_world_main


def _grey_small(img, n=75):
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.resize(g, (n, n), interpolation=cv2.INTER_AREA).ravel()


def _corr(a, b):
    return float(np.corrcoef(a, b)[0, 1])


@pytest.fixture(scope="module")
def renders():
    cfg = small_world_config(seed=1)
    lay = world_layout(cfg)
    return cfg, render_world(cfg, 1, lay), render_world(cfg, 2, lay)


def test_same_seed_same_pixels(renders):
    cfg, e1, _ = renders
    again = render_world(small_world_config(seed=1), 1)
    assert e1.shape == (600, 600, 3) and e1.dtype == np.uint8
    assert np.array_equal(e1, again)


def test_epoch2_differs_but_layout_correlates(renders):
    cfg, e1, e2 = renders
    other = render_world(small_world_config(seed=2), 1)
    diff = np.mean(np.abs(e1.astype(int) - e2.astype(int)))
    assert diff > 5.0
    a, b, c = _grey_small(e1), _grey_small(e2), _grey_small(other)
    assert _corr(a, b) > 0.5
    assert _corr(a, b) > _corr(a, c) + 0.3


def test_world_has_structure():
    cfg = WorldConfig(seed=3, size_m=800, gsd_m=1.0, town_density_per_km2=3.0)
    lay = world_layout(cfg)
    assert len(lay.roads) >= 3 and len(lay.towns) >= 1
    assert len(lay.buildings) > 30 and len(lay.trees) > 1000
    img = render_world(cfg, 1, lay)
    # not noise: neighbouring pixels are strongly correlated, and the picture has contrast
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    assert _corr(g[:, :-1].ravel(), g[:, 1:].ravel()) > 0.7 and g.std() > 15
    # grey asphalt and green vegetation are both present
    r, gg, b = (img[..., k].astype(int) for k in range(3))
    grey = (np.abs(r - gg) < 8) & (np.abs(gg - b) < 8) & (gg > 60) & (gg < 130)
    green = (gg > r + 10) & (gg > b + 15)
    assert 0.01 < grey.mean() < 0.4 and green.mean() > 0.15


def test_generated_cog_opens_as_orthomap(tmp_path):
    cfg = small_world_config(seed=1, origin_lat=-33.9, origin_lon=18.4)
    p = generate_world(cfg, tmp_path / "w.tif", epoch=1)
    with OrthoMap.open(p) as om:
        assert om.width == om.height == 600
        assert om.gsd_m == pytest.approx(0.5, rel=0.01)
        lat, lon = om.center_latlon
        assert lat == pytest.approx(-33.9, abs=1e-6) and lon == pytest.approx(18.4, abs=1e-6)
        assert "327" in str(om.crs.to_epsg())  # UTM south
        crop = om.crop((lat, lon), 100.0, 128)
        assert crop.valid_fraction == 1.0 and crop.image.std() > 5


def test_make_world_cli(tmp_path, capsys):
    out = tmp_path / "cli.tif"
    assert make_world_main(["--out", str(out), "--seed", "1", "--size-m", "200", "--gsd", "1.0",
                            "--epoch", "both"]) == 0
    assert (tmp_path / "cli_e1.tif").is_file() and (tmp_path / "cli_e2.tif").is_file()
    assert make_world_main(["--out", str(out), "--gsd", "-1"]) == 2
    assert "error:" in capsys.readouterr().err
    with pytest.raises(ValueError):
        WorldConfig(size_m=5)
