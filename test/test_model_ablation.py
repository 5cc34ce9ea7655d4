"""Table 2 ablation switches: each changes the forward exactly as its config comment says."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from geoloc_ros.model.fusion import AMCFFusion
from geoloc_ros.model.net import AMCFConfig, AMCFNet, load_model_config

REPO = Path(__file__).resolve().parents[1]
SMALL = {"embed_dim": 16, "depths": [1, 1, 1, 1]}
# config/ablation/<file>: the keys in which it differs from config/model_amcf.yaml
ROWS = {
    "dual_backbone.yaml": {"shared_backbone": False},
    "single_scale.yaml": {"fusion_scales": (0,)},
    "uniform_scale_weights.yaml": {"adaptive_scale_weights": False},
    "mlp_head.yaml": {"residual_head": False},
    "residual_only_head.yaml": {"head_mlp": False},
    "paper_literal_fusion.yaml": {"fusion": "paper_literal"},
}


def small_cfg(**kw) -> AMCFConfig:
    base = dict(backbone_kwargs=SMALL, uav_size=64, sat_size=192, proj_dim=32, head_dims=(16,))
    base.update(kw)
    return AMCFConfig(**base)


def _pair(b=2):
    g = torch.Generator().manual_seed(1)
    return torch.rand(b, 3, 64, 64, generator=g), torch.rand(b, 3, 192, 192, generator=g)


def test_uniform_weights_are_exactly_the_mean_of_the_similarity_maps():
    torch.manual_seed(0)
    chans = [16, 32, 64]
    feats_u = [torch.randn(2, c, 16 // 2 ** i, 16 // 2 ** i) for i, c in enumerate(chans)]
    feats_s = [torch.randn(2, c, 48 // 2 ** i, 48 // 2 ** i) for i, c in enumerate(chans)]
    uniform = AMCFFusion(chans, 8, adaptive=False, xcorr_impl="conv").eval()
    assert uniform.scale_logits is None
    fused, w = uniform(feats_u, feats_s)
    assert torch.equal(w, torch.full((2, 3, 48, 48), 1 / 3))
    sims = []  # S_i alone: a one-scale fusion with the same projection returns S_i itself
    for i, c in enumerate(chans):
        one = AMCFFusion([c], 8, adaptive=False, xcorr_impl="conv").eval()
        one.proj_sat[0].load_state_dict(uniform.proj_sat[i].state_dict())
        s_i, w1 = one([feats_u[i]], [feats_s[i]], grid=(48, 48))
        assert torch.equal(w1, torch.ones(2, 1, 48, 48))
        sims.append(s_i)
    assert torch.allclose(fused, sum(sims) / 3, atol=1e-7)
    adaptive = AMCFFusion(chans, 8, xcorr_impl="conv").eval()
    adaptive.proj_sat.load_state_dict(uniform.proj_sat.state_dict())
    assert not torch.allclose(adaptive(feats_u, feats_s)[0], fused, atol=1e-4)


def test_residual_only_head_is_alpha_channel_sum_plus_beta():
    torch.manual_seed(0)
    net = AMCFNet(small_cfg(head_mlp=False)).eval()
    assert net.head.mlp is None and net.head.last is None
    assert {n for n, _ in net.head.named_parameters()} == {"alpha", "beta"}
    with torch.no_grad():
        net.head.alpha.fill_(7.0)
        net.head.beta.fill_(-1.5)
    uav, sat = _pair()
    with torch.inference_mode():
        uf, sf = net.encode(uav, "uav"), net.encode(sat, "sat")
        fused, _ = net.fusion(uf, sf)
        logits = net.forward_features(uf, sf, (48, 48))   # the fused grid: no upsampling
    assert torch.equal(logits, 7.0 * fused.sum(1, keepdim=True) - 1.5)
    with pytest.raises(ValueError, match="both be false"):
        small_cfg(head_mlp=False, residual_head=False)


def test_mlp_head_has_no_residual_path():
    torch.manual_seed(0)
    net = AMCFNet(small_cfg(residual_head=False)).eval()
    assert not hasattr(net.head, "alpha") and net.head.last.weight.abs().sum() > 0
    uav, sat = _pair()
    with torch.inference_mode():
        uf, sf = net.encode(uav, "uav"), net.encode(sat, "sat")
        fused, _ = net.fusion(uf, sf)
        assert torch.equal(net.forward_features(uf, sf, (48, 48)), net.head.last(net.head.mlp(fused)))


def test_fusion_scales_pick_maps_without_truncating_the_backbone():
    torch.manual_seed(0)
    full = AMCFNet(small_cfg()).eval()
    torch.manual_seed(0)
    f0 = AMCFNet(small_cfg(fusion_scales=[0])).eval()
    truncated = AMCFNet(small_cfg(out_indices=(0,)))
    # same backbone (stages, parameters, outputs); out_indices=(0,) would drop stages
    stages = [n for n, _ in full.backbone.named_children()]
    assert [n for n, _ in f0.backbone.named_children()] == stages
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(f0.backbone) == count(full.backbone) > count(truncated.backbone)
    assert f0.fusion.n_scales == 1 and f0.out_stride == 4
    uav, sat = _pair()
    with torch.inference_mode():
        sf = f0.encode(sat, "sat")
        assert len(sf) == 3  # the satellite cache still gets every map
        logits = f0(uav, sat)
        fused, _ = f0.fusion([f0.encode(uav, "uav")[0]], [sf[0]])
        expect = f0.head(fused)
    assert logits.shape == (2, 1, 192, 192)
    assert torch.allclose(logits[..., ::4, ::4], expect, atol=1e-6)
    # stages after the last fused one get no gradient: frozen, the rest trains
    frozen = {n.split(".")[0] for n, p in f0.backbone.named_parameters() if not p.requires_grad}
    assert frozen and stages[0] not in frozen and "layers_0" not in frozen
    assert all(p.requires_grad for p in AMCFNet(small_cfg(fusion_scales=[0, 2])).backbone.parameters())
    with pytest.raises(ValueError, match="fusion_scales"):
        small_cfg(fusion_scales=[2, 0])
    with pytest.raises(ValueError, match="fusion_scales"):
        small_cfg(fusion_scales=[3])


def test_coarse_scales_only_stay_on_the_stride4_grid():
    torch.manual_seed(0)
    net = AMCFNet(small_cfg(fusion_scales=[1, 2])).eval()
    uav, sat = _pair(1)
    with torch.inference_mode():
        fused, w = net.fusion([f for f in net.encode(uav, "uav")[1:]], net.encode(sat, "sat")[1:], grid=(48, 48))
        logits = net(uav, sat)
    assert fused.shape[-2:] == (48, 48) and w.shape == (1, 2, 48, 48)
    assert logits.shape == (1, 1, 192, 192) and torch.isfinite(logits).all()


def test_default_switches_leave_the_model_bit_identical():
    torch.manual_seed(0)
    ref = AMCFNet(small_cfg()).eval()
    torch.manual_seed(0)
    explicit = AMCFNet(small_cfg(fusion_scales=[0, 1, 2], adaptive_scale_weights=True, head_mlp=True)).eval()
    assert list(ref.state_dict()) == list(explicit.state_dict())
    explicit.load_state_dict(ref.state_dict())
    uav, sat = _pair()
    with torch.inference_mode():
        assert torch.equal(ref(uav, sat), explicit(uav, sat))


@pytest.mark.parametrize("row", sorted(ROWS))
def test_ablation_configs_differ_from_the_full_model_only_in_their_switch(row):
    cfg = load_model_config(REPO / "config" / "ablation" / row)
    full = load_model_config(REPO / "config" / "model_amcf.yaml")
    diff = {k: v for k, v in vars(cfg).items() if v != getattr(full, k)}
    assert diff == ROWS[row]
    assert set(yaml.safe_load((REPO / "config" / "ablation" / row).read_text())) == set(ROWS[row])
    # every trainable parameter gets a gradient (DDP refuses unused ones), small model
    torch.manual_seed(0)
    net = AMCFNet(small_cfg(**ROWS[row]))
    uav, sat = _pair()
    net(uav, sat).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
