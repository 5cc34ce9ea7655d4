"""Each head, with its paper switches on, learns on a tiny University-1652-format folder set.

The set has 8 places; a place is a disc and a ring of its own two colours (the same under the
satellite side's 90-degree turns and flips); drone views are shifted, noisy, colour-channel-swapped
copies (a domain gap an untrained network does not bridge: it scores near chance, checked
below). After a few dozen steps through geoloc-train-retrieval, drone -> satellite Recall@1 on
held-out drone views must be well above chance (1/8) and well above the untrained model's.
"""
import cv2
import numpy as np
import pytest
import torch
import yaml

from geoloc_ros.retrieval import build_model, save_model
from geoloc_ros.tools import eval_retrieval, train_retrieval

PLACES = 8
CONVNEXT = {"name": "convnext_tiny", "kwargs": {"dims": [8, 16, 32, 64], "depths": [1, 1, 1, 1]}}
VIT = {"name": "vit_small_patch16_224", "kwargs": {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 8}}
COMMON = {"task": "retrieval", "num_workers": 0, "val_every": 0, "save_every": 0, "log_every": 10,
          "tensorboard": False, "batch_size": 8}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _place(k: int, rng: np.random.Generator, drone: bool = False) -> np.ndarray:
    """Satellite: disc + ring in the place's two colours. Drone: the same scene shifted, noisy and
    in another "domain" (colour channels swapped), so an untrained network matches it near chance."""
    pal = np.random.default_rng(1000 + k).integers(0, 256, (2, 3))
    shift = int(rng.integers(-3, 4)) if drone else 0
    yy, xx = np.mgrid[:32, :32] - 15.5
    r = np.hypot(yy - shift, xx + shift)
    img = np.where((r < 8)[..., None], pal[0], np.where((r < 14)[..., None], pal[1], 128)).astype(np.float32)
    if drone:
        img = img[..., ::-1] + rng.normal(0, 12.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """University-Release/{train,test}: 3 training and 2 query drone views per place, 1 satellite."""
    root = tmp_path_factory.mktemp("learns") / "University-Release"
    rng = np.random.default_rng(0)

    def put(folder, k, name, img):
        (root / folder / f"{k:04d}").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / folder / f"{k:04d}" / name), img)

    for k in range(PLACES):
        for j in range(3):
            put("train/drone", k, f"image-{j}.png", _place(k, rng, drone=True))
        for j in range(2):
            put("test/query_drone", k, f"image-{j}.png", _place(k, rng, drone=True))
        for folder in ("train/satellite", "test/gallery_satellite"):
            put(folder, k, f"{k:04d}.png", _place(k, rng))
    return root.parent


RECIPES = {
    "mean": {"model": {"head": "mean", "recipe": "mean_paper", "img_size": 32, "backbone": CONVNEXT,
                       "head_kwargs": {"pee": "paper", "head": "dilated", "pee_steps": 2, "bottleneck": 16,
                                       "cea_dim": 8, "cea_hidden": 32, "cea_dropout": 0.05,
                                       "cea_double_softmax": True}},
             "loss": {"infonce": 1.0, "ce": 0.2, "ce_label_smoothing": 0.0, "cea": 1.3, "cea_mse": True},
             "data": {"sampling": "drone_image", "flip_p": 0.5, "crop_pad": 2, "photometric": 0.0},
             "optim": {"name": "adamw", "lr": 0.003, "warmup_steps": 3, "grad_clip": 100.0}},
    "safenet": {"model": {"head": "safenet", "recipe": "safenet_paper", "img_size": 32,
                          "backbone": {**VIT, "kwargs": {**VIT["kwargs"], "depth": 3}, "keep_blocks": 2},
                          "head_kwargs": {"parts": 2, "bottleneck": 16, "loc_hidden": 8, "leaky_relu": True}},
                "loss": {"infonce": 0.0, "ce": 1.0, "label_smoothing": 0.0},
                "data": {"sampling": "location", "repeats": 2, "flip_p": 0.5, "crop_pad": 2, "photometric": 0.0},
                "optim": {"name": "sgd", "lr": 0.03, "head_lr_mult": 3.3333, "group_lr": {"loc.": 0.0333},
                          "warmup_steps": 0, "weight_decay": 0.0005}},
    "qdfl": {"model": {"head": "qdfl", "recipe": "qdfl_paper", "img_size": 32, "backbone": VIT,
                       "head_kwargs": {"freeze_backbone": False, "adapters": "serial_parallel", "adapter_dim": 8,
                                       "adapter_scale": 0.2, "adapter_act": "relu", "dim": 16, "heads": 2,
                                       "num_queries": 4, "num_supervisor": 2, "bottleneck": 16,
                                       "coarse_residual": True, "kv_norm": True, "gem_normalize": True,
                                       "gem_p": 4.5}},
             "loss": {"infonce": 0.0, "ce": 1.0, "label_smoothing": 0.0, "ms": 1.0, "js": 1.0},
             "data": {"sampling": "location", "repeats": 3, "flip_p": 0.5, "crop_pad": 2, "photometric": 0.0},
             "optim": {"name": "sgd", "lr": 0.03, "group_lr": {"backbone.": 0.3}, "warmup_steps": 3,
                       "weight_decay": 0.0005}},
}
STEPS = {"mean": 20, "safenet": 20, "qdfl": 20}


def _recall1(weights, places) -> float:
    res = eval_retrieval.run(str(weights), f"university1652:{places}", ["d2s"], progress=False)
    assert res["d2s"]["queries"] == 2 * PLACES
    return res["d2s"]["recall@1"]


@pytest.mark.parametrize("head", list(RECIPES))
def test_head_learns_on_tiny_folders(places, tmp_path, head):
    cfg = {**COMMON, **RECIPES[head], "data": {"kind": "university1652", **RECIPES[head]["data"]}}
    path = tmp_path / f"{head}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="no pretrained backbone"):   # a paper recipe from random weights
        rc = train_retrieval.main(["--config", str(path), "--data", f"university1652:{places}", "--out", str(out),
                                   "--max-steps", str(STEPS[head]), "--epochs", "100", "--quiet"])
    assert rc == 0
    torch.manual_seed(0)
    save_model(build_model({**cfg["model"], "num_classes": PLACES}), tmp_path / "untrained")
    before, after = _recall1(tmp_path / "untrained", places), _recall1(out / "model", places)
    assert after >= 0.75 and after >= before + 0.25, f"{head}: R@1 {before:.2f} untrained -> {after:.2f} trained"
