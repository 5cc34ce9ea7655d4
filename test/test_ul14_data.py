"""UL14 data: RSC geometry, test-set reading, UL14-format writer, bad files."""
import json

import cv2
import numpy as np
import pytest

from geoloc_ros.data.ul14 import (UL14Epochs, UL14Error, UL14Test, UL14Train, parse_folder,
                                  split_train_folders, write_ul14_dataset)
from geoloc_ros.metrics import UL14_MAP_SIZES, ul14_error_m, ul14_pixel_to_latlon

TINY = dict(uav_train_px=64, uav_test_px=48, sat_train_px=160, sat_test_px=96)


def _gradient(h=1200, w=1200):
    r, c = np.mgrid[0:h, 0:w]
    return np.stack([r * 255.0 / (h - 1), c * 255.0 / (w - 1), np.full((h, w), 90.0)], -1).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("ul14")
    names = write_ul14_dataset(root, n_places=2, folders_per_place=2, seed=3, **TINY)
    return root, names


def _marker_train_folder(root, size=1280):
    d = root / "train" / "Uni_90_7"
    (d / "UAV").mkdir(parents=True)
    (d / "Satellite").mkdir()
    sat = np.full((size, size, 3), 100, np.uint8)
    c = size // 2
    cv2.circle(sat, (c, c), 5, (255, 0, 0), -1)  # red marker on the UAV pixel (640, 640)
    sat[:, :40] = (0, 0, 255)  # a blue strip so out-of-map fill differs from the marker
    assert cv2.imwrite(str(d / "Satellite" / "a.tif"), cv2.cvtColor(sat, cv2.COLOR_RGB2BGR))
    assert cv2.imwrite(str(d / "UAV" / "0.JPG"), np.full((512, 512, 3), 80, np.uint8))
    return d


def test_rsc_label_fractions_and_marker(tmp_path):
    _marker_train_folder(tmp_path)
    ds = UL14Train(tmp_path, uav_size=128, sat_size=384, erasing_p=0.0)
    rng = np.random.default_rng(0)
    sat_full = cv2.cvtColor(cv2.imread(str(tmp_path / "train/Uni_90_7/Satellite/a.tif")), cv2.COLOR_BGR2RGB)
    small = UL14Train(tmp_path, uav_size=16, sat_size=16)  # same geometry, cheap resize
    fr = np.array([small.rsc(sat_full, rng)[1] for _ in range(1500)])
    # spec: RC = randint(int(640 - 0.425 ms), int(640 + 0.425 ms)) -> (0.075, 0.925]; the int()
    # truncation of the lower bound lets the fraction exceed 0.925 by less than 1/ms (<= 1/512)
    assert (fr > 0.075).all() and (fr <= 0.925 + 1 / 512).all()
    assert fr.min() < 0.09 and fr.max() > 0.91  # the whole range is used
    for i in range(12):
        item = ds[i]
        assert item["uav"].shape == (3, 128, 128) and item["sat"].shape == (3, 384, 384)
        sat = (item["sat"].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
        red = (sat[..., 0] > 180) & (sat[..., 1] < 90) & (sat[..., 2] < 90)  # RGB order: red is channel 0
        rows, cols = np.nonzero(red)
        assert rows.size > 0
        row_frac, col_frac = item["center"].tolist()
        assert abs(rows.mean() - row_frac * 384) < 1.0 and abs(cols.mean() - col_frac * 384) < 1.0


def test_train_split_by_place():
    folders = [f"U{p}_{h}_{i}" for p in range(5) for h in (80, 90) for i in range(3)]
    train, val = split_train_folders(folders, val_fraction=0.2, by="place", seed=1)
    assert set(train).isdisjoint(val) and sorted(train + val) == sorted(folders)
    assert {parse_folder(f)[0] for f in train}.isdisjoint({parse_folder(f)[0] for f in val})
    assert len(val) >= 0.2 * len(folders)


def test_writer_layout_and_test_reader(tiny_set):
    root, names = tiny_set
    f = names["test"][0]
    d = root / "test" / f
    assert sorted(p.name for p in (d / "Satellite").iterdir()) == sorted(f"{k}.jpg" for k in range(12))
    assert cv2.imread(str(d / "Satellite" / "0.jpg")).shape == (96, 96, 3)
    assert cv2.imread(str(d / "UAV" / "0.JPG")).shape == (48, 48, 3)
    tif = list((root / "train" / names["train"][0] / "Satellite").glob("*.tif"))
    assert len(tif) == 1 and cv2.imread(str(tif[0])).shape == (160, 160, 3)
    labels = json.loads((d / "labels.json").read_text())
    gps = json.loads((d / "GPS_info.json").read_text())
    assert [gps["Satellite"][f"{k}.jpg"]["map_size"] for k in range(12)] == list(UL14_MAP_SIZES)

    ds = UL14Test(root, uav_size=32, sat_size=64)
    assert len(ds) == 12 * len(names["test"])
    item = ds[0]
    m = item["meta"]
    assert (m.folder, m.sat_name, m.stored_size) == (f, "0.jpg", 96)
    assert m.height == parse_folder(f)[1]
    assert list(m.label_rc) == labels["0.jpg"]
    assert item["label"].tolist() == [int(labels["0.jpg"][0] / 96 * 64), int(labels["0.jpg"][1] / 96 * 64)]
    assert m.uav_latlon == (gps["UAV"]["N"], gps["UAV"]["E"])
    s = gps["Satellite"]["0.jpg"]
    assert m.tl == (s["tl_N"], s["tl_E"]) and m.br == (s["br_N"], s["br_E"])
    assert item["uav"].shape == (3, 32, 32) and item["sat"].shape == (3, 64, 64)


def test_writer_geometry_metres_and_content(tmp_path):
    grad = _gradient()
    write_ul14_dataset(tmp_path, n_places=1, folders_per_place=1, splits=("test",), source=grad,
                       source_gsd_m=1.0, half_res_gsd_m=0.25, seed=5, **TINY)
    ds = UL14Test(tmp_path, uav_size=48, sat_size=96)
    for i in range(len(ds)):
        m = ds.items[i]
        side_m = m.map_size * 0.25
        # corners are a metric box: width and height both equal the window side
        assert ul14_error_m(m.tl[0], m.tl[1], m.tl[0], m.br[1]) == pytest.approx(side_m, rel=2e-3)
        assert ul14_error_m(m.tl[0], m.tl[1], m.br[0], m.tl[1]) == pytest.approx(side_m, rel=2e-3)
        # the label, mapped through the corners, is the UAV GPS fix (up to label truncation)
        n, e = ul14_pixel_to_latlon(m.label_rc[0], m.label_rc[1], *m.tl, *m.br, size=96)
        assert ul14_error_m(*m.uav_latlon, n, e) < 1.5 * side_m / 96
        # the UAV centre has the colour of the satellite pixel at the label (gradient encodes position)
        item = ds.load(i)
        uav = item["uav"].numpy().transpose(1, 2, 0) * 255
        sat = item["sat"].numpy().transpose(1, 2, 0) * 255
        r, c = item["label"].tolist()
        assert np.abs(uav[23:25, 23:25, :2].mean((0, 1)) - sat[r, c, :2]).max() < 6


def test_missing_labels_and_corrupted_jpeg(tmp_path):
    write_ul14_dataset(tmp_path, n_places=1, folders_per_place=2, seed=1, **TINY)
    folders = sorted(p.name for p in (tmp_path / "test").iterdir())
    (tmp_path / "test" / folders[0] / "labels.json").unlink()
    with pytest.raises(UL14Error, match=f"{folders[0]}.*labels.json"):
        UL14Test(tmp_path, on_error="stop")
    ds = UL14Test(tmp_path, on_error="skip")
    assert len(ds) == 12 and {it.folder for it in ds.items} == {folders[1]}
    assert any("labels.json" in s and folders[0] in s for s in ds.skipped)

    bad = tmp_path / "test" / folders[1] / "Satellite" / "3.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    item = ds[3]
    assert "skipped" in item and str(bad) in item["skipped"]
    batch = UL14Test.collate([ds[2], ds[3], ds[4]])
    assert batch["uav"].shape[0] == 2 and len(batch["skipped"]) == 1
    with pytest.raises(UL14Error, match="3.jpg"):
        UL14Test(tmp_path, on_error="stop", folders=[folders[1]])[3]


def test_train_bad_files(tmp_path):
    write_ul14_dataset(tmp_path, n_places=1, folders_per_place=2, splits=("train",), seed=2, **TINY)
    folders = sorted(p.name for p in (tmp_path / "train").iterdir())
    bad = tmp_path / "train" / folders[0] / "UAV" / "0.JPG"
    bad.write_bytes(b"garbage")
    ds = UL14Train(tmp_path, uav_size=32, sat_size=64, on_error="skip")
    assert ds[0]["sat"].shape == (3, 64, 64)  # fell through to the next folder
    with pytest.raises(UL14Error, match="0.JPG"):
        UL14Train(tmp_path, uav_size=32, sat_size=64, on_error="stop")[0]
    for tif in (tmp_path / "train" / folders[1] / "Satellite").glob("*.tif"):
        tif.unlink()
    with pytest.raises(UL14Error, match=f"{folders[1]}"):
        UL14Train(tmp_path, on_error="stop")
    assert UL14Train(tmp_path, on_error="skip").folders == [folders[0]]


def test_epochs_visit_every_folder_once_in_a_seeded_order(tiny_set):
    """Without replacement within an epoch, a new order per epoch, all a function of (seed, g)."""
    root, _ = tiny_set
    train = UL14Train(root, uav_size=32, sat_size=64)
    n = len(train.folders)
    ds = UL14Epochs(train, seed=3)
    epochs = [[ds.folder_index(g) for g in range(e * n, (e + 1) * n)] for e in range(6)]
    assert all(sorted(e) == list(range(n)) for e in epochs)      # every folder exactly once
    assert len({tuple(e) for e in epochs}) > 1                    # the order changes between epochs
    again = UL14Epochs(train, seed=3)
    assert [again.folder_index(g) for g in reversed(range(6 * n))] == [i for e in epochs for i in e][::-1]
    other = UL14Epochs(train, seed=4)
    assert [[other.folder_index(g) for g in range(e * n, (e + 1) * n)] for e in range(6)] != epochs
    a, b = ds[n + 1], again[n + 1]  # items are reproducible (crop included), whatever the worker
    assert np.array_equal(a["sat"].numpy(), b["sat"].numpy()) and a["center"].tolist() == b["center"].tolist()
    assert a["uav"].shape == (3, 32, 32) and a["source"] == 0
