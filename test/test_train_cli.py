"""geoloc-train: a resumable 2-step run on a tiny model equals an uninterrupted one."""
import csv
import json

import cv2
import numpy as np
import pytest
import yaml

from geoloc_ros.tools.train import main
from geoloc_ros.train.loop import lr_factor

TINY_MODEL = {"backbone": "focalnet_tiny_srf", "backbone_kwargs": {"embed_dim": 16, "depths": [1, 1, 1, 1]},
              "proj_dim": 16, "head_dims": [8], "uav_size": 32, "sat_size": 96}


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    from geoloc_ros.data.ul14 import synthetic_map

    d = tmp_path_factory.mktemp("train")
    photos = d / "photos"
    photos.mkdir()
    for i in range(3):
        img = synthetic_map(320, seed=i)[:240]
        assert cv2.imwrite(str(photos / f"p{i}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    cfg = {
        "model": TINY_MODEL,
        "sources": [{"kind": "photo", "path": "photos", "weight": 1.0, "val_fraction": 0.34,
                     "pairs": {"footprint_frac": [0.2, 0.3]}}],
        "optim": {"lr": 1e-3, "warmup_steps": 5},
        "batch_size": 2, "max_steps": 2, "num_workers": 0, "log_every": 1, "val_every": 100,
        "val_samples": 4, "val_batch_size": 4, "save_every": 1, "keep_checkpoints": 5, "tensorboard": True,
    }
    path = d / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _tensors(prefix):
    from safetensors.torch import load_file

    return load_file(f"{prefix}.safetensors")


def test_resume_continues_exactly(config, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["--config", str(config), "--max-steps", "1", "--out", str(a), "--no-progress"]) == 0
    s1 = json.loads((a / "checkpoints/step_0000001_state.json").read_text())
    assert s1["step"] == 1
    assert main(["--config", str(config), "--max-steps", "2", "--out", str(a), "--resume", str(a),
                 "--no-progress"]) == 0
    s2 = json.loads((a / "checkpoints/step_0000002_state.json").read_text())
    assert s2["step"] == 2 and json.loads((a / "checkpoints/latest.json").read_text())["step"] == 2
    assert s2["param_groups"][0]["lr"] == pytest.approx(1e-3 * lr_factor(2, 5, 2, 0.01))
    o1 = _tensors(a / "checkpoints/step_0000001_optim")
    o2 = _tensors(a / "checkpoints/step_0000002_optim")
    assert float(o1["state.0.step"]) == 1.0 and float(o2["state.0.step"]) == 2.0  # AdamW counters continue
    # an uninterrupted 2-step run reaches the same weights, moments and RNG state
    assert main(["--config", str(config), "--out", str(b), "--no-progress"]) == 0
    ref_m = _tensors(b / "checkpoints/step_0000002_model")
    got_m = _tensors(a / "checkpoints/step_0000002_model")
    assert set(ref_m) == set(got_m)
    for k in ref_m:
        assert np.array_equal(ref_m[k].numpy(), got_m[k].numpy()), k  # bit-identical on CPU
    ref_o = _tensors(b / "checkpoints/step_0000002_optim")
    for k in ref_o:
        assert np.array_equal(ref_o[k].numpy(), o2[k].numpy()), k
    assert not np.allclose(o1["state.0.exp_avg"].numpy(), o2["state.0.exp_avg"].numpy())

    # the checkpoint's model loads on its own, CSV logs have one row per step, TensorBoard files exist
    from geoloc_ros.model.weights import load_weights

    net = load_weights(a / "checkpoints/step_0000002_model")
    assert net.cfg.sat_size == 96
    # the weights carry the localizer geometry of the pairs they were trained on
    from geoloc_ros.data.pairs import PairConfig
    from geoloc_ros.model.weights import read_weights_info

    expect = PairConfig(footprint_frac=(0.2, 0.3)).inference_defaults()
    for w in (a / "checkpoints/step_0000002_model", a / "best"):
        assert read_weights_info(w)["inference"] == expect
    rows = list(csv.DictReader((a / "train.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2] and all(float(r["loss"]) > 0 for r in rows)
    val = list(csv.DictReader((a / "val.csv").open()))
    assert [int(r["step"]) for r in val] == [1, 2] and 0 < float(val[-1]["RDS"]) <= 1
    assert list((a / "tensorboard").glob("events.out.tfevents.*"))
    assert (a / "best.safetensors").is_file()


def test_config_errors_are_one_line(config, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "learning_rate": 1}))
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "learning_rate" in err and "Traceback" not in err
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert main(["--config", str(config), "--resume", str(tmp_path / "nothing")]) == 2


def test_paper_recipe_without_imagenet_weights_warns_loudly(config, tmp_path, caplog):
    """A full-size backbone with pretrained_path null and no init_weights trains from random
    init, unlike the paper: a WARNING, and the note travels in the weights' metadata."""
    import logging
    from types import SimpleNamespace

    from geoloc_ros.model.net import AMCFConfig
    from geoloc_ros.model.weights import read_weights_info
    from geoloc_ros.train.amcf import AmcfFamily, fidelity_warnings
    from geoloc_ros.train.config import load_train_config

    paper = config.parent / "paper_recipe.yaml"  # next to the photos the config names
    paper.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "model": {"uav_size": 32, "sat_size": 64}}))
    cfg, base = load_train_config(paper)
    with caplog.at_level(logging.WARNING):
        family = AmcfFamily(cfg, base)
    loud = [r for r in caplog.records if r.levelno == logging.WARNING and "RANDOM initialisation" in r.getMessage()]
    assert loud and "ImageNet" in loud[0].getMessage()
    family.save(tmp_path / "w", {"step": 0})
    assert "RANDOM initialisation" in read_weights_info(tmp_path / "w")["metadata"]["warnings"][0]
    # quiet with ImageNet weights, when fine-tuning, and for reduced backbones (no ImageNet file exists)
    assert fidelity_warnings(cfg, SimpleNamespace(cfg=AMCFConfig(pretrained_path="focalnet.pth"))) == []
    cfg.init_weights = "trained.safetensors"
    assert fidelity_warnings(cfg, SimpleNamespace(cfg=AMCFConfig())) == []
    tiny, base = load_train_config(config)
    assert fidelity_warnings(tiny, SimpleNamespace(cfg=AMCFConfig(backbone_kwargs=TINY_MODEL["backbone_kwargs"]))) == []


def test_ul14_alone_is_sampled_per_epoch_mixed_with_replacement(config, tmp_path):
    from geoloc_ros.data.pairs import PairDataset
    from geoloc_ros.data.ul14 import UL14Epochs, write_ul14_dataset
    from geoloc_ros.train.amcf import AmcfFamily
    from geoloc_ros.train.config import load_train_config

    write_ul14_dataset(tmp_path / "ul14", n_places=2, folders_per_place=2, splits=("train",), seed=1,
                       uav_train_px=64, uav_test_px=48, sat_train_px=160, sat_test_px=96)
    raw = {**yaml.safe_load(config.read_text()), "val_every": 0}
    ul14 = {"kind": "ul14", "path": str(tmp_path / "ul14"), "val_fraction": 0.0}
    family = AmcfFamily(*load_train_config({**raw, "sources": [ul14]}))
    assert isinstance(family.train_set, UL14Epochs)
    assert family.train_set[0]["sat"].shape == (3, 96, 96)
    family = AmcfFamily(*load_train_config({**raw, "sources": [{**ul14, "sampling": "random"}]}))
    assert isinstance(family.train_set, PairDataset)
    with pytest.raises(Exception, match="sampling"):
        load_train_config({**raw, "sources": [{**ul14, "sampling": "shuffle"}]})


@pytest.mark.parametrize("norm", ["batch", "sample", "sample_mean"])
def test_loss_norm_reaches_the_training_loss(norm):
    import torch

    from geoloc_ros.model.loss import fractions_to_centers, weighted_balance_loss
    from geoloc_ros.train.amcf import _loss
    from geoloc_ros.train.config import TrainConfig

    cfg = TrainConfig(sources=[{"kind": "photo", "path": "x"}], loss_norm=norm)
    logits = torch.randn(3, 1, 96, 96, generator=torch.Generator().manual_seed(0))
    frac = torch.tensor([[0.0, 0.1], [0.5, 0.5], [0.9, 0.3]])
    expect = weighted_balance_loss(logits, fractions_to_centers(frac, (96, 96)), radius=4, norm=norm)
    assert float(_loss(logits, frac, cfg, 96)) == pytest.approx(float(expect), rel=1e-6)
    with pytest.raises(ValueError, match="loss_norm"):
        TrainConfig(sources=[{"kind": "photo", "path": "x"}], loss_norm="pixel")


def test_a_time_budget_stops_the_run(config, tmp_path):
    """max_minutes: the run stops at the first step past the budget (validated and saved like
    a finished one), though max_steps is far away; a negative budget is a one-line error."""
    out = tmp_path / "t"
    assert main(["--config", str(config), "--max-steps", "1000", "--max-minutes", "0.0001", "--out", str(out),
                 "--no-progress"]) == 0
    latest = json.loads((out / "checkpoints/latest.json").read_text())
    assert 1 <= latest["step"] < 1000
    val = list(csv.DictReader((out / "val.csv").open()))
    assert int(val[-1]["step"]) == latest["step"]  # the final validation ran at the stop
    assert (out / "best.safetensors").is_file()
    assert main(["--config", str(config), "--max-minutes=-1", "--out", str(out)]) == 2


def test_the_schedule_follows_the_time_budget_when_it_is_further_along():
    from geoloc_ros.train.loop import TimeBudget, scheduled_step

    none, half = TimeBudget(0.0), TimeBudget(1.0)
    half.t0 -= 30.0  # half of one minute spent
    assert scheduled_step(3, 10, 1000, half) == 3  # warmup is by steps
    assert scheduled_step(50, 10, 1000, half) == pytest.approx(10 + 0.5 * 990, rel=1e-3)
    assert scheduled_step(900, 10, 1000, half) == 900  # steps further along
    assert scheduled_step(50, 10, 1000, none) == 50 and not none.spent() and none.fraction() == 0.0


def test_model_overrides_reach_the_model_and_the_saved_weights(config, tmp_path):
    """model_overrides sets a knob over the model config and over init_weights' config (a
    fine-tune with standardised inputs starts from weights trained without); the weights it
    writes carry it, so the node runs them the way they were trained."""
    from geoloc_ros.model.weights import load_weights, save_weights
    from geoloc_ros.train.amcf import build_model
    from geoloc_ros.train.config import TrainConfig

    raw = yaml.safe_load(config.read_text())
    src = {"sources": raw["sources"]}
    fresh = build_model(TrainConfig(model=TINY_MODEL, model_overrides={"input_norm": "per_image"}, **src), None)
    assert fresh.cfg.input_norm == "per_image"
    save_weights(fresh, fresh.cfg, tmp_path / "init")
    tuned = build_model(TrainConfig(init_weights=str(tmp_path / "init"), model_overrides={"input_norm": "none"},
                                    **src), None)
    assert tuned.cfg.input_norm == "none" and tuned.training
    with pytest.raises(ValueError, match="model_overrides"):
        TrainConfig(task="retrieval", model_overrides={"input_norm": "per_image"})
    run = {**raw, "model_overrides": {"input_norm": "per_image"}}
    (config.parent / "over.yaml").write_text(yaml.safe_dump(run))
    assert main(["--config", str(config.parent / "over.yaml"), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert load_weights(tmp_path / "run" / "checkpoints" / "step_0000002_model").cfg.input_norm == "per_image"


def test_shipped_training_configs_load():
    """Every config/train_*.yaml parses, names a model config that exists, and its
    model_overrides are AMCFConfig fields with valid values (a typo there would only surface
    after the worlds were generated, minutes into a recipe)."""
    from pathlib import Path

    from geoloc_ros.model.net import load_model_config
    from geoloc_ros.train.config import load_train_config, resolve_path

    files = sorted((Path(__file__).resolve().parents[1] / "config").glob("train_*.yaml"))
    assert len(files) >= 5
    for f in files:
        cfg, base = load_train_config(f)
        assert cfg.task == "amcf", f
        model = cfg.model if isinstance(cfg.model, dict) else read_model(resolve_path(cfg.model or "model_amcf.yaml", base))
        load_model_config({**model, **cfg.model_overrides})


def read_model(path):
    assert path.is_file(), path
    return yaml.safe_load(path.read_text())
