"""The paper components of the retrieval heads against their equations, on hand-made tensors.

MEAN's PEE and CEA, Safe-Net's ring partition / 8-block ViT / LeakyReLU classifier, QDFL's
AQEU residuals and norms, FFU and serial adapters, the losses the recipes add (JS, CDA's
second term), University-1652's Recall@1%, the distinct-place batches, and the recipe guards.
"""
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from geoloc_ros.config import ConfigError
from geoloc_ros.retrieval import build_model
from geoloc_ros.retrieval.backbone import ClassBlock
from geoloc_ros.retrieval.datasets import unique_label_order
from geoloc_ros.retrieval.losses import cross_domain_alignment_loss, js_divergence
from geoloc_ros.retrieval.mean import CrossDomainAlign, MultiDilationBlock
from geoloc_ros.retrieval.metrics import metrics_from_similarity, top_one_percent
from geoloc_ros.retrieval.qdfl import AQEU, FFU, Adapter, AttnWithSerialAdapter
from geoloc_ros.retrieval.safenet import saliency_partition, split_rings
from geoloc_ros.tools import train_retrieval

VIT = {"name": "vit_small_patch16_224", "kwargs": {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 8}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------ MEAN
def test_mean_pee_paper_block_halves_the_residual_sum():
    """Paper PEE: z = (x + W1 ReLU(mean_d conv_d(x))) / 2; with the convs zeroed z = (x + b) / 2."""
    blk = MultiDilationBlock(8, (1, 2, 3), halve=True)
    with torch.no_grad():
        for c in blk.branches:
            c.weight.zero_()
        blk.out.weight.zero_()
        blk.out.bias.copy_(torch.arange(8.0))
    x = torch.randn(2, 8, 5, 5)
    assert torch.allclose(blk(x), (x + torch.arange(8.0).view(1, 8, 1, 1)) / 2)
    assert torch.equal(MultiDilationBlock(8)(x), x)        # compact PEE: starts as the identity


def _identity_cea(double: bool) -> CrossDomainAlign:
    """CEA with 2 channels whose projection and position-attention convs are identities."""
    cea = CrossDomainAlign(2, 2, 2, temperature=0.5, dropout=0.05, double_softmax=double).eval()
    with torch.no_grad():
        for conv in (cea.proj[0], cea.proj[3], cea.attn):
            conv.weight.copy_(torch.eye(2).view(2, 2, 1))
        cea.attn.bias.zero_()
    return cea


def test_mean_cea_weights_are_a_double_softmax_over_positions():
    p = torch.tensor([[[3.0, 0.0, 4.0], [4.0, 1.0, 3.0]]])      # [B=1, C=2, N=3]
    n = p / p.norm(dim=1, keepdim=True)                          # unit over channels: (.6,.8), (0,1), (.8,.6)
    first = torch.softmax(n / 0.5, dim=2)
    single, double = _identity_cea(False), _identity_cea(True)
    assert torch.allclose(single.position_weights(p), first, atol=1e-6)
    w = double.position_weights(p)
    assert torch.allclose(w, torch.softmax(first, dim=2), atol=1e-6)   # the second (S-)softmax
    assert torch.allclose(w.sum(2), torch.ones(1, 2)) and not torch.allclose(w, first)
    # the sparse-MLP dropout acts in training only: eval is deterministic, training is not
    assert torch.equal(double.position_weights(p), w)
    double.train()
    torch.manual_seed(0)
    outs = [double.position_weights(p.repeat(64, 1, 1)) for _ in range(2)]
    assert not torch.allclose(outs[0], outs[1])
    assert double(p.view(1, 2, 1, 3)).shape == (1, 2, 3)


def test_mean_paper_model_branches():
    conv = {"name": "convnext_tiny", "kwargs": {"dims": [8, 16, 32, 64], "depths": [1, 1, 1, 1]}}
    m = build_model({"head": "mean", "img_size": 64, "num_classes": 5, "backbone": conv,
                     "head_kwargs": {"pee": "paper", "head": "dilated", "pee_steps": 2, "bottleneck": 16,
                                     "cea_dim": 8, "cea_hidden": 32, "cea_double_softmax": True}})
    assert len(m.pee) == 1 and len(m.pee_heads) == 2 and not hasattr(m.pee_heads[0], "embed")
    m.train()
    out = m(torch.rand(3, 3, 64, 64))
    assert [e.shape for e in out["embeddings"]] == [(3, 16)] * 3 and len(out["logits"]) == 3
    with pytest.raises(ValueError, match="pee"):
        build_model({"head": "mean", "img_size": 32, "backbone": conv, "head_kwargs": {"pee": "chained"}})


def test_cda_loss_reference_terms():
    a, b = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    cos = F.cosine_similarity(a.flatten(1), b.flatten(1)).mean()
    assert cross_domain_alignment_loss(a, b).item() == pytest.approx(1 - cos.item(), abs=1e-6)
    assert cross_domain_alignment_loss(a, b, mse_term=True).item() == pytest.approx(2 * (1 - cos.item()), abs=1e-5)
    assert cross_domain_alignment_loss(a, a, mse_term=True).item() == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------------------------ Safe-Net
def test_safenet_ring_split_at_the_equidistant_ring():
    # rings' saliency [8, 6, 2, 1]: |(|s-8| - |s-1|)| = 7, 3, 5, 7 -> first split at ring 1
    assert split_rings([8.0, 6.0, 2.0, 1.0], 0, 3, 1) == [1]
    # 4 parts of 4 rings: every ring is its own part, whatever the saliency
    assert split_rings([8.0, 6.0, 2.0, 1.0], 0, 3, 2) == [1, 2, 3]
    f = torch.zeros(1, 1, 8, 8)
    for r, v in enumerate([4.0, 3.0, 2.0, 1.0]):                 # ring r = Chebyshev distance band r
        f[0, 0, 3 - r:5 + r, 3 - r:5 + r] = torch.where(f[0, 0, 3 - r:5 + r, 3 - r:5 + r] == 0,
                                                        torch.tensor(v), f[0, 0, 3 - r:5 + r, 3 - r:5 + r])
    assert saliency_partition(f, 4)[0, 0].tolist() == pytest.approx([4.0, 3.0, 2.0, 1.0])
    # 2 parts: saliency [4, 3, 2, 1] -> costs 3, 1, 1, 3 -> split at ring 1: mean(ring 0) | mean(rings 1-3)
    two = saliency_partition(f, 2)[0, 0].tolist()
    assert two == pytest.approx([4.0, (3 * 12 + 2 * 20 + 1 * 28) / 60])


def test_safenet_keeps_8_of_12_pretrained_blocks_and_leaky_classifier(tmp_path):
    import timm
    from safetensors.torch import save_file

    kw = {"embed_dim": 32, "depth": 12, "num_heads": 2, "patch_size": 8}
    src = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, img_size=32, **kw)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "vit12.safetensors"))
    m = build_model({"head": "safenet", "img_size": 32, "num_classes": 3,
                     "backbone": {"name": "vit_small_patch16_224", "kwargs": kw, "keep_blocks": 8,
                                  "pretrained_path": str(tmp_path / "vit12.safetensors")},
                     "head_kwargs": {"parts": 2, "bottleneck": 16, "leaky_relu": True}})
    blocks = m.backbone.model.blocks
    assert len(blocks) == 8
    assert torch.equal(blocks[7].mlp.fc1.weight, src.blocks[7].mlp.fc1.weight)
    cb = ClassBlock(2, 3, 2, dropout=0.0, leaky_relu=True).eval()
    with torch.no_grad():
        cb.embed[0].weight.copy_(torch.eye(2))
        cb.embed[0].bias.zero_()
    e, _ = cb(torch.tensor([[-1.0, 2.0]]))                         # BN eval: identity (running 0 / 1)
    assert e.tolist()[0] == pytest.approx([-0.1, 2.0], abs=1e-4)


# ------------------------------------------------------------------------------------ QDFL
def _inputs_of(module: nn.Module, fn) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    h = module.register_forward_hook(lambda _m, i, _o: seen.append(i[0].detach()))
    try:
        fn()
    finally:
        h.remove()
    return seen


def test_qdfl_aqeu_shapes_coarse_residual_and_kv_norm():
    torch.manual_seed(0)
    fmap = torch.randn(2, 12, 4, 4)
    for residual, kv in ((False, False), (True, True)):
        torch.manual_seed(1)
        a = AQEU(12, 8, num_queries=4, num_supervisor=2, heads=2, coarse_residual=residual, kv_norm=kv).eval()
        with torch.no_grad():
            a.queries.normal_()
            a.coarse_attn.out_proj.weight.zero_()                   # CA(Q1, T, T) = 0 ...
            a.coarse_attn.out_proj.bias.zero_()
        slots, fused = a(fmap)
        assert slots.shape == (2, 8, 2) and fused.shape == (2, 8, 4, 4)
        coarse_in = _inputs_of(a.coarse_norm, lambda: a(fmap))[0]
        q1 = _inputs_of(a.q_norm, lambda: a(fmap))[0]
        q1 = a.q_norm(q1)
        # ... so the coarse norm sees Q1 with the +Q1 residual, and 0 without it
        assert torch.allclose(coarse_in, q1 if residual else torch.zeros_like(q1), atol=1e-6)
        # kv_norm: the fine LayerNorm normalises the fused map's 16 tokens; else the 4 queries
        fine_in = _inputs_of(a.fine_in_norm, lambda: a(fmap))[0]
        assert fine_in.shape == ((2, 16, 8) if kv else (2, 4, 8))


def test_qdfl_ffu_residual_with_zeroed_branches():
    ffu = FFU(6)
    with torch.no_grad():
        for fc in (ffu.w.fc, ffu.h.fc):
            fc.weight.zero_()
            fc.bias.zero_()
        ffu.reweight[2].weight.zero_()
        ffu.reweight[2].bias.zero_()
    x = torch.randn(2, 6, 3, 5)
    # shifted branches give 0, the mixing softmax is uniform: z = x / 3, out = z + x
    assert torch.allclose(ffu(x), 4 * x / 3, atol=1e-6)


def test_qdfl_serial_adapter_and_frozen_backbone_with_adapters():
    attn = nn.Linear(4, 4)
    ad = Adapter(4, 2, scale=1.0, act="relu")
    wrapped = AttnWithSerialAdapter(attn, ad)
    x = torch.randn(3, 5, 4)
    assert torch.allclose(wrapped(x), attn(x))                     # zero up-projection: the identity
    with torch.no_grad():
        ad.up.weight.fill_(0.5)
    y = attn(x)
    assert torch.allclose(wrapped(x), y + 0.5 * F.relu(ad.down(y)).sum(-1, keepdim=True).expand_as(y), atol=1e-6)
    m = build_model({"head": "qdfl", "img_size": 32, "num_classes": 3, "backbone": VIT,
                     "head_kwargs": {"adapters": "serial_parallel", "adapter_dim": 8, "dim": 16, "heads": 2,
                                     "num_queries": 4, "num_supervisor": 2, "bottleneck": 16}})
    names = [n for n, p in m.backbone.named_parameters() if p.requires_grad]
    assert any(".attn.adapter." in n for n in names) and any(".mlp.adapter." in n for n in names)
    assert all(".adapter." in n for n in names)


def test_qdfl_test_resolution_differs_from_training():
    vit = {**VIT, "kwargs": {**VIT["kwargs"], "dynamic_img_size": True}}
    m = build_model({"head": "qdfl", "img_size": 32, "test_img_size": 48, "backbone": vit,
                     "head_kwargs": {"adapter_dim": 0, "freeze_backbone": False, "dim": 16, "heads": 2,
                                     "num_queries": 4, "num_supervisor": 2, "bottleneck": 16}})
    assert m.eval_size == 48 and m.describe(torch.rand(2, 3, 48, 48)).shape == (2, m.descriptor_dim)


def test_js_divergence_by_hand():
    same = [torch.tensor([[1.0, 2.0, 3.0]])]
    assert js_divergence(same, same).item() == pytest.approx(0.0, abs=1e-7)
    a, b = [torch.tensor([[50.0, -50.0]])], [torch.tensor([[-50.0, 50.0]])]
    assert js_divergence(a, b).item() == pytest.approx(math.log(2), abs=1e-6)   # disjoint: log 2
    p, q = torch.tensor([0.75, 0.25]), torch.tensor([0.25, 0.75])
    m = (p + q) / 2
    ref = 0.5 * (p * (p / m).log()).sum() + 0.5 * (q * (q / m).log()).sum()
    assert js_divergence([p.log()[None]], [q.log()[None]]).item() == pytest.approx(ref.item(), abs=1e-6)


# ------------------------------------------------------------------------------------ protocol
def test_recall_at_one_percent_as_evaluate_gpu():
    assert [top_one_percent(g) for g in (4, 150, 250, 951, 51355)] == [1, 3, 3, 11, 515]
    # G = 150: the official K is round(1.5) + 1 = 3 (ceil would give 2): a first hit at rank 2 counts
    sim = np.linspace(1, 0, 150)[None]
    labels = np.arange(150)
    assert metrics_from_similarity(sim, [2], labels)["recall@1%"] == 1.0
    assert metrics_from_similarity(sim, [3], labels)["recall@1%"] == 0.0


def test_batches_hold_distinct_places():
    labels = np.repeat(np.arange(7), [5, 1, 3, 9, 2, 4, 6])
    order = unique_label_order(labels, 4, rows=10, rng=np.random.default_rng(0))
    assert len(order) == 40
    assert all(len(set(labels[order[i:i + 4]])) == 4 for i in range(0, 40, 4))
    assert np.array_equal(order, unique_label_order(labels, 4, 10, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="distinct places"):
        unique_label_order(labels, 8, 2, np.random.default_rng(0))


# ------------------------------------------------------------------------------------ recipes
def test_named_recipes_and_guards(tmp_path):
    m = train_retrieval.load_retrieval_config("mean_paper")
    s = train_retrieval.load_retrieval_config("safenet_paper")
    q = train_retrieval.load_retrieval_config("qdfl_paper")
    assert m.model["recipe"] == "mean_paper" and m.data["sampling"] == "drone_image" and m.batch_size == 32
    assert s.optim.name == "sgd" and s.epochs == 120 and s.batch_size == 8 and s.data["repeats"] == 2
    assert s.model["backbone"]["keep_blocks"] == 8 and s.loss["infonce"] == 0.0
    assert q.optim.lr == 0.03 and q.optim.group_lr == {"backbone.": 0.3} and q.model["test_img_size"] == 280
    assert q.loss["js"] > 0 and q.loss["infonce"] == 0.0 and q.epochs == 160 and q.batch_size == 24
    with pytest.raises(ConfigError, match="unknown retrieval recipe"):
        train_retrieval.load_retrieval_config("netvlad_paper")
    frozen = build_model({"head": "qdfl", "img_size": 32, "backbone": VIT,
                          "head_kwargs": {"adapter_dim": 4, "dim": 16, "heads": 2, "num_queries": 4,
                                          "num_supervisor": 2, "bottleneck": 16}})
    with pytest.raises(ConfigError, match="frozen but has no pretrained"):
        train_retrieval.check_pretrained(frozen)
    paper = build_model({"head": "safenet", "recipe": "safenet_paper", "img_size": 32, "backbone": VIT,
                         "head_kwargs": {"parts": 2, "bottleneck": 8}})
    with pytest.warns(UserWarning, match="no pretrained backbone"):
        train_retrieval.check_pretrained(paper)
    ours = build_model({"head": "safenet", "img_size": 32, "backbone": VIT, "head_kwargs": {"parts": 2, "bottleneck": 8}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_retrieval.check_pretrained(ours)                     # CPU-sized heads: random start is fine


def test_cli_pretrained_and_sues_altitude(tmp_path):
    ap = train_retrieval.build_parser()
    a = ap.parse_args(["--config", "qdfl_paper", "--pretrained", str(tmp_path / "dino.safetensors"),
                       "--data", "sues200:/data/SUES-200:150", "--batch-size", "4"])
    cfg = train_retrieval.config_from_args(a)
    assert cfg.model["backbone"]["pretrained_path"] == str(tmp_path / "dino.safetensors")
    assert cfg.model["backbone"]["name"] == "vit_base_patch14_dinov2"          # the recipe's other keys stay
    assert cfg.data["root"] == "/data/SUES-200" and cfg.data["altitude"] == "150" and cfg.batch_size == 4
    a = ap.parse_args(["--config", "tiny", "--data", "sues200:/data/SUES-200"])
    assert train_retrieval.config_from_args(a).data["root"] == "/data/SUES-200"


def test_weights_of_cpu_sized_heads_keep_the_old_config_keys(tmp_path):
    import json

    from geoloc_ros.retrieval import load_model, save_model

    m = build_model({"head": "safenet", "img_size": 32, "backbone": VIT, "head_kwargs": {"parts": 2, "bottleneck": 8}})
    cfg = json.loads(save_model(m, tmp_path / "ours").read_text())["config"]
    assert not {"test_img_size", "recipe"} & set(cfg) and "keep_blocks" not in cfg["backbone"]
    p = build_model({"head": "safenet", "recipe": "safenet_paper", "img_size": 32, "test_img_size": 48,
                     "backbone": {**VIT, "kwargs": {**VIT["kwargs"], "dynamic_img_size": True}, "keep_blocks": 1},
                     "head_kwargs": {"parts": 2, "bottleneck": 8, "leaky_relu": True}})
    save_model(p, tmp_path / "paper")
    q = load_model(tmp_path / "paper")
    assert (q.cfg.recipe, q.cfg.test_img_size, len(q.backbone.model.blocks)) == ("safenet_paper", 48, 1)
