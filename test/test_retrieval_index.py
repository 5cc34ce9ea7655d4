"""Map index round trip over a small synthetic map, and the relocalizer built on it."""
import json

import cv2
import numpy as np
import pytest
import torch
from affine import Affine

from geoloc_ros.geo.cog import write_cog
from geoloc_ros.geo.distance import haversine_m
from geoloc_ros.geo.orthomap import OrthoMap
from geoloc_ros.retrieval import MapIndex, RetrievalRelocalizer, build_index, build_model
from geoloc_ros.retrieval.index import MapIndexError, rotations_of, tile_grid

TINY = {"head": "mean", "img_size": 32,
        "backbone": {"name": "convnext_tiny", "kwargs": {"dims": [8, 16, 32, 64], "depths": [1, 1, 1, 1]}},
        "head_kwargs": {"bottleneck": 8, "pee_steps": 1, "cea_dim": 4, "cea_hidden": 16}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 512 m x 512 m UTM map at 2 m/px with distinct texture everywhere, and a tiny model."""
    d = tmp_path_factory.mktemp("ret_index")
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 255, (32, 32, 3)).astype(np.uint8), (256, 256), interpolation=cv2.INTER_CUBIC)
    for _ in range(40):
        x, y = (int(v) for v in rng.integers(0, 240, 2))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(4, 16)), y + int(rng.integers(4, 16))),
                      tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    path = write_cog(d / "map.tif", img, Affine(2.0, 0, 500000.0, 0, -2.0, 5300000.0), "EPSG:32632")
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    js = build_index(path, model, tile_m=160.0, stride_m=80.0, scales=(1.0, 1.5), out=d / "idx", batch=16,
                     device="cpu", progress=False)
    return path, model, js


def test_grid_covers_map_edge_to_edge(world):
    path, _, _ = world
    with OrthoMap.open(path) as om:
        t = tile_grid(om, 160.0, 80.0, (1.0,))
        assert len(t) == 6 * 6                         # (512 - 160) / 80 = 4.4 -> 6 centres per axis
        assert np.all(t[:, 2] == 160.0)
        r, c = om.latlon_to_pixel(t[:, 0], t[:, 1])
        assert r.min() == pytest.approx(39.5, abs=0.1) and r.max() == pytest.approx(255.5 - 40, abs=0.1)
        steps = np.diff(np.unique(np.round(c, 3)))
        assert np.all(steps <= 40.0 + 1e-6)             # stride never exceeded
        big = tile_grid(om, 1000.0, 500.0)              # bigger than the map: one tile at the centre
        assert len(big) == 1


def test_index_files_and_memory_map(world):
    path, model, js = world
    meta = json.loads(js.read_text())
    ix = MapIndex.load(js)
    assert isinstance(ix.desc, np.memmap) and ix.desc.dtype == np.float16
    assert len(ix) == meta["count"] == 36 + 16          # 6x6 tiles of 160 m + 4x4 tiles of 240 m
    assert ix.desc.shape[1] == meta["dim"] == model.descriptor_dim
    assert np.allclose(np.linalg.norm(ix.desc.astype(np.float32), axis=1), 1.0, atol=2e-3)
    assert sorted(set(ix.size_m.tolist())) == [160.0, 240.0]
    ix.check_model(model)
    q = np.asarray(ix.desc[7], np.float32)
    chunked = MapIndex.load(js, cache_mb=0)             # float16 memory map, converted per chunk
    assert chunked.search(q, 4)[0].tolist() == ix.search(q, 4)[0].tolist() and chunked._f32 is None
    assert ix._f32 is not None and ix.search(q, 1)[0][0] == 7
    torch.manual_seed(5)
    with pytest.raises(MapIndexError, match="different retrieval model"):
        ix.check_model(build_model(TINY))
    with pytest.raises(MapIndexError, match="no retrieval index"):
        MapIndex.load(js.with_name("nothing.json"))


def test_query_cut_from_tile_returns_that_tile(world):
    path, model, js = world
    ix = MapIndex.load(js)
    reloc = RetrievalRelocalizer(ix, model, device="cpu")
    rng = np.random.default_rng(1)
    with OrthoMap.open(path) as om:
        for i in rng.choice(len(ix), 8, replace=False):
            q = om.crop((ix.lat[i], ix.lon[i]), float(ix.size_m[i]), 32).image
            ids, scores = ix.search(reloc.describe(q), k=5)
            assert ids[0] == i and scores[0] > 0.99 and np.all(np.diff(scores) <= 0)
            # restricting to the UAV footprint's scale keeps the answer
            ids, _ = ix.search(reloc.describe(q), k=3, size_m=float(ix.size_m[i]))
            assert ids[0] == i and np.all(ix.size_m[ids] == ix.size_m[i])
            # heading unknown: the query arrives rotated by 90 degrees; max over 4 rotations finds it
            qr = np.ascontiguousarray(np.rot90(q, 1))
            ids, _ = ix.search(reloc.describe(qr, rotations=4), k=1)
            assert ids[0] == i
        # relocalizer API: (lat, lon, score), best first, merged neighbours at least nms_m apart
        i = int(rng.integers(36))
        q = om.crop((ix.lat[i], ix.lon[i]), 160.0, 32).image
        cands = reloc.candidates(q, k=3, footprint_m=160.0)
        assert len(cands) == 3
        assert cands[0][:2] == pytest.approx((ix.lat[i], ix.lon[i]))
        assert cands[0][2] >= cands[1][2] >= cands[2][2]
        for a in range(3):
            for b in range(a):
                assert haversine_m(cands[a][0], cands[a][1], cands[b][0], cands[b][1]) >= reloc.nms_m
        # multi-query: the mean descriptor of frames around one place still finds it
        reloc.reset()
        for dn in (-4.0, 0.0, 4.0):
            reloc.add_frame(om.crop((ix.lat[i] + dn / 111_320.0, ix.lon[i]), 160.0, 32).image)
        assert reloc.candidates_multi(k=1, footprint_m=160.0)[0][:2] == pytest.approx((ix.lat[i], ix.lon[i]))


def test_rotations_are_exact_for_right_angles():
    img = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    r = rotations_of(img, 4)
    assert np.array_equal(r[1], np.rot90(img)) and np.array_equal(r[2], np.rot90(img, 2))
    r8 = rotations_of(img, 8)
    assert len(r8) == 8 and r8[1].shape == img.shape and np.array_equal(r8[0], img)


def test_prepare_map_hook_options():
    import argparse
    from geoloc_ros.tools.prepare_map import add_index_args, index_from_args
    ap = argparse.ArgumentParser()
    add_index_args(ap)
    a = ap.parse_args(["--index-tile-m", "150", "--index-scales", "0.75", "1.5"])
    assert a.index_tile_m == 150.0 and a.index_scales == [0.75, 1.5]
    old = ap.parse_args(["--index-batch", "8", "--index-device", "cpu"])  # the older spellings still work
    assert old.batch_size == 8 and old.device == "cpu"
    assert index_from_args(a, "unused.tif") is None       # no --index: nothing is built
