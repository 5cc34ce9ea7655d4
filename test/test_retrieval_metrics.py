"""Recall@K / AP on a generated University-1652-format mini set (and SUES-200 layout), by hand."""
import cv2
import numpy as np
import pytest

from geoloc_ros.retrieval.datasets import (DatasetLayoutError, PairedFolderTrain, labels_for, sues200_test,
                                           university1652_test, university1652_train)
from geoloc_ros.retrieval.metrics import metrics_from_similarity, query_ap_cmc, retrieval_metrics
from geoloc_ros.tools import eval_retrieval, train_retrieval

IDS = ["0001", "0002", "0003"]


def _img(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (24, 24, 3), dtype=np.uint8))


@pytest.fixture()
def u1652(tmp_path):
    """University-Release/{train,test} with 3 locations (+1 distractor satellite in the gallery)."""
    root = tmp_path / "University-Release"
    for n, i in enumerate(IDS):
        for k in (1, 2):
            _img(root / "train" / "drone" / i / f"image-{k:02d}.jpeg", 10 * n + k)
            _img(root / "test" / "query_drone" / i / f"image-{k:02d}.jpeg", 100 + 10 * n + k)
            _img(root / "test" / "gallery_drone" / i / f"image-{k:02d}.jpeg", 200 + 10 * n + k)
        _img(root / "train" / "satellite" / i / f"{i}.jpg", 300 + n)
        _img(root / "test" / "gallery_satellite" / i / f"{i}.jpg", 400 + n)
        _img(root / "test" / "query_satellite" / i / f"{i}.jpg", 500 + n)
    _img(root / "test" / "gallery_satellite" / "0004" / "0004.jpg", 999)
    (root / "train" / "street").mkdir()          # other views are ignored
    return tmp_path


def test_reader_lists_ids_and_files(u1652):
    q, g = university1652_test(u1652)             # parent folder of University-Release is accepted
    assert q.name == "query_drone" and g.name == "gallery_satellite"
    assert q.ids == ["0001", "0001", "0002", "0002", "0003", "0003"]
    assert [p.name for p in q.paths[:2]] == ["image-01.jpeg", "image-02.jpeg"]
    assert g.ids == ["0001", "0002", "0003", "0004"]
    ql, gl = labels_for(q, g)
    assert ql.tolist() == [0, 0, 1, 1, 2, 2] and gl.tolist() == [0, 1, 2, 3]
    qs, gd = university1652_test(u1652, "satellite", "drone")
    assert len(qs) == 3 and len(gd) == 6
    tr = university1652_train(u1652, img_size=16)
    assert isinstance(tr, PairedFolderTrain) and tr.num_classes == 3 and len(tr) == 3
    d, s, y = tr[1]
    assert d.shape == s.shape == (3, 16, 16) and y == 1 and 0 <= float(d.min()) and float(d.max()) <= 1
    with pytest.raises(DatasetLayoutError, match="query_street"):
        university1652_test(u1652, "street", "satellite")
    with pytest.raises(DatasetLayoutError):
        university1652_test(u1652 / "nowhere")


def test_recall_and_ap_with_injected_descriptors(u1652):
    q, g = university1652_test(u1652)
    ql, gl = labels_for(q, g)
    gd = np.eye(4, dtype=np.float32)               # gallery id k -> e_k, so sim[i, k] = qd[i, k]
    qd = np.array([[0.9, 0.1, 0, 0],               # 0001: true at rank 0 -> AP 1
                   [0.5, 0.8, 0.1, 0],             # 0001: rank 1 -> AP (0 + 1/2)/2 = 0.25
                   [0, 1.0, 0, 0],                 # 0002: rank 0 -> 1
                   [0.3, 0.2, 0.9, 0.8],           # 0002: rank 3 -> AP (0 + 1/4)/2 = 0.125
                   [0, 0, 1.0, 0],                 # 0003: rank 0 -> 1
                   [0.1, 0, 0.6, 0.7]], np.float32)  # 0003: rank 1 -> 0.25
    m = retrieval_metrics(qd, ql, gd, gl)
    assert m["recall@1"] == pytest.approx(3 / 6)
    assert m["recall@5"] == pytest.approx(1.0) and m["recall@10"] == pytest.approx(1.0)
    assert m["recall@1%"] == pytest.approx(3 / 6)  # 1 % of 4 gallery images rounds up to 1
    assert m["ap"] == pytest.approx((1 + 0.25 + 1 + 0.125 + 1 + 0.25) / 6)
    assert m["queries"] == 6
    # chunking the queries does not change the result
    assert retrieval_metrics(qd, ql, gd, gl, chunk=4)["ap"] == pytest.approx(m["ap"])


def test_ap_with_several_true_matches_and_junk():
    # satellite -> drone: gallery labels A A B B C, query A; order 0(A) 2(B) 3(B) 4(C) 1(A)
    sim = np.array([[0.9, 0.1, 0.8, 0.3, 0.2]])
    m = metrics_from_similarity(sim, [0], [0, 0, 1, 1, 2])
    # i=0 r=0: (1 + 1)/2/2 = 0.5 ; i=1 r=4: (1/4 + 2/5)/2/2 = 0.1625
    assert m["ap"] == pytest.approx(0.6625)
    assert m["recall@1"] == 1.0
    # junk (-1) entries are removed before ranking: drop the B at 0.8 and the rank-4 match moves to 3
    ap, first = query_ap_cmc(sim[0], np.array([1, 1, 0, 0, 0], bool), np.array([0, 0, 1, 0, 0], bool))
    assert first == 0 and ap == pytest.approx(0.5 + (1 / 3 + 2 / 4) / 4)
    # a query with no true match is skipped, not counted as a miss
    m2 = metrics_from_similarity(np.array([[0.5, 0.4]]), [7], [0, 1])
    assert m2["queries"] == 0 and m2["skipped"] == 1


def test_sues200_layout(tmp_path):
    for alt in ("150", "300"):
        for i in ("0001", "0002"):
            _img(tmp_path / "Testing" / alt / "query_drone" / i / "0.jpg", 1)
            _img(tmp_path / "Testing" / alt / "gallery_satellite" / i / "0.png", 2)
        _img(tmp_path / "Testing" / alt / "gallery_satellite" / "0100" / "0.png", 3)
    q, g = sues200_test(tmp_path, 150)
    assert q.ids == ["0001", "0002"] and g.ids == ["0001", "0002", "0100"]
    with pytest.raises(DatasetLayoutError, match="200"):
        sues200_test(tmp_path, 200)


def test_train_and_eval_tools_on_mini_set(u1652, tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "model: {head: mean, img_size: 32, backbone: {name: convnext_tiny, kwargs: {dims: [8, 16, 32, 64], "
        "depths: [1, 1, 1, 1]}}, head_kwargs: {bottleneck: 16, pee_steps: 1, cea_dim: 8, cea_hidden: 32}}\n"
        "loss: {cea: 1.0}\ndata: {workers: 0}\nbatch_size: 3\nwarmup_steps: 1\n")
    rc = train_retrieval.main(["--config", str(cfg), "--data", f"university1652:{u1652}", "--max-steps", "2",
                               "--out", str(tmp_path / "run"), "--quiet"])
    assert rc == 0
    import csv
    rows = list(csv.DictReader((tmp_path / "run" / "train.csv").open()))
    assert [int(r["step"]) for r in rows] == [2] and float(rows[0]["loss"]) > 0  # the shared loop's log
    capsys.readouterr()
    rc = eval_retrieval.main(["--weights", str(tmp_path / "run" / "model"), "--data", f"university1652:{u1652}",
                              "--quiet", "--json", str(tmp_path / "m.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "d2s" in out and "s2d" in out
    import json
    res = json.loads((tmp_path / "m.json").read_text())
    assert res["d2s"]["queries"] == 6 and res["s2d"]["queries"] == 3
    assert all(0.0 <= res[d][k] <= 1.0 for d in res for k in ("recall@1", "ap"))
    assert res["d2s"]["recall@10"] == 1.0          # 4 gallery images: everything is within the top 10
    # user mistakes: one line, exit 2
    assert eval_retrieval.main(["--weights", str(tmp_path / "run" / "model"), "--data", f"sues200:{u1652}"]) == 2
    assert capsys.readouterr().err.startswith("error: ")  # stderr, as every tool
    assert train_retrieval.main(["--data", "imagenet:/x", "--quiet"]) == 2
