"""geoloc-train-retrieval goes through the shared loop: a resumed run equals an uninterrupted one."""
import cv2
import numpy as np
import pytest

from geoloc_ros.tools import train_retrieval

TINY = ("task: retrieval\n"
        "model: {head: mean, img_size: 32, backbone: {name: convnext_tiny, kwargs: {dims: [8, 16, 32, 64], "
        "depths: [1, 1, 1, 1]}}, head_kwargs: {bottleneck: 16, pee_steps: 1, cea_dim: 8, cea_hidden: 32}}\n"
        "loss: {infonce: 1.0, ce: 0.5, cea: 0.5}\n"
        "optim: {lr: 0.001, warmup_steps: 10}\n"  # warmup > steps: the lr does not depend on max_steps
        "batch_size: 2\nnum_workers: 0\nsave_every: 1\nlog_every: 1\ntensorboard: false\n")


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """University-1652 train/ layout with 4 locations (2 drone images each), and the config."""
    d = tmp_path_factory.mktemp("ret_train")
    root = d / "University-Release" / "train"
    for n, i in enumerate(["0001", "0002", "0003", "0004"]):
        for k in (1, 2):
            (root / "drone" / i).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "drone" / i / f"image-{k:02d}.jpeg"),
                        np.random.default_rng(10 * n + k).integers(0, 255, (24, 24, 3), dtype=np.uint8))
        (root / "satellite" / i).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "satellite" / i / f"{i}.jpg"),
                    np.random.default_rng(100 + n).integers(0, 255, (24, 24, 3), dtype=np.uint8))
    cfg = d / "tiny.yaml"
    cfg.write_text(TINY)
    return d, cfg


def _tensors(prefix):
    from safetensors.torch import load_file

    return load_file(f"{prefix}.safetensors")


@pytest.mark.parametrize("optim", ["adamw", "sgd"])
def test_resume_continues_exactly(mini, tmp_path, optim):
    d, cfg = mini
    if optim == "sgd":  # the paper recipes' SGD with per-module learning rates resumes exactly too
        cfg = tmp_path / "sgd.yaml"
        cfg.write_text(TINY.replace("optim: {lr: 0.001,", "optim: {name: sgd, group_lr: {cea.: 0.5}, lr: 0.01,"))
    base = ["--config", str(cfg), "--data", f"university1652:{d}", "--quiet"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert train_retrieval.main(base + ["--max-steps", "2", "--out", str(a)]) == 0  # 2 ids a batch: 1 epoch
    assert train_retrieval.main(base + ["--max-steps", "4", "--out", str(a), "--resume", str(a)]) == 0
    assert train_retrieval.main(base + ["--max-steps", "4", "--out", str(b)]) == 0
    for name in ("step_0000004_model", "step_0000004_optim", "step_0000004_model.criterion"):
        got, ref = _tensors(a / "checkpoints" / name), _tensors(b / "checkpoints" / name)
        assert set(got) == set(ref) and len(ref) > 0
        for k in ref:
            assert np.array_equal(got[k].numpy(), ref[k].numpy()), (name, k)  # bit-identical on CPU
    got, ref = _tensors(a / "model"), _tensors(b / "model")
    assert all(np.array_equal(got[k].numpy(), ref[k].numpy()) for k in ref)
    m2, m4 = _tensors(a / "checkpoints" / "step_0000002_model"), _tensors(a / "checkpoints" / "step_0000004_model")
    assert any(not np.array_equal(m2[k].numpy(), m4[k].numpy()) for k in m4)  # the resumed steps did train
    assert (a / "train.csv").read_text().count("\n") == 5  # header + steps 1..4, the resumed run appends


def test_old_flat_keys_still_read(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("lr: 0.002\nhead_lr_mult: 3.0\nwarmup_steps: 7\namp: true\ndata: {kind: world, workers: 0}\n")
    cfg = train_retrieval.load_retrieval_config(old)
    assert cfg.task == "retrieval" and cfg.optim.lr == 0.002 and cfg.optim.head_lr_mult == 3.0
    assert cfg.optim.warmup_steps == 7 and cfg.num_workers == 0 and cfg.optim.grad_clip == 0.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {kind: world, no_such_key: 1}\n")
    with pytest.raises(ValueError, match="no_such_key"):
        train_retrieval.load_retrieval_config(bad)
