"""Retrieval heads on tiny backbones: descriptor shapes, unit norm, training branches, weights I/O."""
import numpy as np
import pytest
import timm
import torch

from geoloc_ros.config import ConfigError
from geoloc_ros.retrieval import build_model, describe_images, load_model, save_model
from geoloc_ros.model.weights import WeightsError
from geoloc_ros.retrieval.qdfl import ShiftFC
from geoloc_ros.retrieval.safenet import ring_index, saliency_partition, split_rings

CONVNEXT = {"name": "convnext_tiny", "kwargs": {"dims": [8, 16, 32, 64], "depths": [1, 1, 1, 1]}}
VIT = {"name": "vit_small_patch16_224", "kwargs": {"embed_dim": 32, "depth": 1, "num_heads": 2, "patch_size": 8}}
HEADS = {
    "mean": (CONVNEXT, {"bottleneck": 16, "pee_steps": 2, "cea_dim": 8, "cea_hidden": 32}, 64),
    "safenet": (VIT, {"bottleneck": 16, "parts": 2, "loc_hidden": 8}, 16 * 3),
    "qdfl": (VIT, {"adapter_dim": 8, "dim": 16, "heads": 2, "num_queries": 4, "num_supervisor": 2,
                   "bottleneck": 16}, 16 * 4),
}


def tiny(head, num_classes=5, img_size=32, **over):
    bb, hk, _ = HEADS[head]
    return build_model({"head": head, "img_size": img_size, "num_classes": num_classes, "backbone": bb,
                        "head_kwargs": {**hk, **over}})


@pytest.mark.parametrize("head", list(HEADS))
def test_descriptor_shape_norm_and_training_branches(head):
    torch.manual_seed(0)
    m = tiny(head)
    x = torch.rand(3, 3, 32, 32)
    d = m.describe(x)
    assert d.shape == (3, HEADS[head][2]) == (3, m.descriptor_dim)
    assert torch.allclose(d.norm(dim=1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(d[0], d[1])                  # different images, different descriptors
    m.train()
    out = m(x)
    assert torch.allclose(out["desc"].norm(dim=1), torch.ones(3), atol=1e-5)
    assert len(out["embeddings"]) >= 2 and len(out["logits"]) == len(out["embeddings"])
    assert all(lg.shape == (3, 5) for lg in out["logits"])
    if head == "mean":
        assert out["align"].shape[:2] == (3, 8)
    # every trainable parameter of the training graph gets a gradient from a loss on all branches
    loss = out["desc"].sum() + sum(lg.sum() for lg in out["logits"]) + (out["align"].sum() if "align" in out else 0)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.backbone.parameters() if p.requires_grad)


def test_mean_descriptor_is_pooled_backbone_feature():
    m = tiny("mean").eval()
    x = torch.rand(2, 3, 32, 32)
    pooled = m.backbone(x).pooled
    assert torch.allclose(m.describe(x), torch.nn.functional.normalize(pooled, dim=1), atol=1e-6)


def test_qdfl_freezes_backbone_but_trains_adapters():
    m = tiny("qdfl")
    names = [n for n, p in m.backbone.named_parameters() if p.requires_grad]
    assert names and all(".adapter." in n for n in names)


def test_unknown_head_key_and_head_name_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown key"):
        tiny("mean", bogus=1)
    with pytest.raises(ValueError, match="unknown retrieval head"):
        build_model({"head": "netvlad"})


def test_safenet_ring_partition_by_hand():
    r = ring_index(4, 4)
    assert r.tolist() == [[1, 1, 1, 1], [1, 0, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]]
    # saliency per ring [5, 5, 1, 1]: first split at the ring equally far from s[0]=5 and s[3]=1 ->
    # costs |(|s-5|-|s-1|)| = 4,4,4,4 -> first (k=0) clamped to lo + 1 = 1
    assert split_rings([5.0, 5.0, 1.0, 1.0], 0, 3, 1) == [1]
    assert split_rings([9.0, 8.0, 5.0, 1.0], 0, 3, 1) == [2]       # |4-4| = 0 at k=2
    # two parts on a 4x4 map: inner 2x2 ring and the outer ring averaged separately
    f = torch.zeros(1, 1, 4, 4)
    f[0, 0, 1:3, 1:3] = 2.0
    f[0, 0, 0, 0] = 12.0
    parts = saliency_partition(f, 2)
    assert parts.shape == (1, 1, 2)
    assert parts[0, 0].tolist() == pytest.approx([2.0, 1.0])
    with pytest.raises(ValueError, match="rings"):
        saliency_partition(f, 4)


def test_qdfl_shift_fc_moves_channels_by_their_offset():
    s = ShiftFC(3, axis=-1)
    with torch.no_grad():
        s.fc.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        s.fc.bias.zero_()
    x = torch.arange(4, dtype=torch.float32).view(1, 1, 1, 4).repeat(1, 3, 1, 1) / 10
    y = s(x)[0, :, 0]
    # channel i reads position p + ((i + 1) % 3 - 1): offsets 0, +1, -1 (zero outside)
    assert y[0].tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert y[1].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.0])
    assert y[2].tolist() == pytest.approx([0.0, 0.0, 0.1, 0.2])


def test_save_load_roundtrip_same_descriptors(tmp_path):
    torch.manual_seed(1)
    m = tiny("safenet").eval()
    js = save_model(m, tmp_path / "ret")
    assert js.name == "ret.json" and (tmp_path / "ret.safetensors").is_file()
    m2 = load_model(tmp_path / "ret")
    imgs = [np.random.default_rng(i).integers(0, 255, (40, 50, 3), dtype=np.uint8) for i in range(3)]
    assert np.allclose(describe_images(m, imgs), describe_images(m2, imgs), atol=1e-6)
    with pytest.raises(WeightsError):
        load_model(tmp_path / "missing")


def test_backbone_weights_from_local_files(tmp_path):
    from safetensors.torch import save_file
    src = timm.create_model("convnext_tiny", pretrained=False, num_classes=0, **{k: tuple(v) for k, v in CONVNEXT["kwargs"].items()})
    sd = {k: v.contiguous() for k, v in src.state_dict().items()}
    save_file(sd, str(tmp_path / "bb.safetensors"))
    torch.save({"state_dict": sd}, tmp_path / "bb.pth")
    for f in ("bb.safetensors", "bb.pth"):
        m = build_model({"head": "mean", "img_size": 32, "backbone": {**CONVNEXT, "pretrained_path": str(tmp_path / f)},
                         "head_kwargs": HEADS["mean"][1]})
        got = m.backbone.model.state_dict()
        assert all(torch.equal(got[k], v) for k, v in sd.items())
    # a ViT saved at 32 px loads into a 48 px model (position embeddings resampled)
    vit = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, img_size=32, **VIT["kwargs"])
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    m = build_model({"head": "safenet", "img_size": 48, "backbone": {**VIT, "pretrained_path": str(tmp_path / "vit.safetensors")},
                     "head_kwargs": HEADS["safenet"][1]})
    assert m.backbone.model.pos_embed.shape[1] == 1 + 6 * 6
    # pickled objects are refused (weights_only), wrong architectures named
    torch.save({"x": object()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="not a plain tensor"):
        build_model({"head": "mean", "img_size": 32, "backbone": {**CONVNEXT, "pretrained_path": str(tmp_path / "evil.pth")}})
    with pytest.raises(WeightsError):
        build_model({"head": "mean", "img_size": 32, "backbone": {**CONVNEXT, "pretrained_path": str(tmp_path / "vit.safetensors")}})
