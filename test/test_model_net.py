"""AMCF-Net structure: shapes for every variant, exact correlation geometry, batch isolation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geoloc_ros.config import ConfigError
from geoloc_ros.model.fusion import depthwise_xcorr
from geoloc_ros.model.net import AMCFConfig, AMCFNet, load_model_config

REPO = Path(__file__).resolve().parents[1]
SMALL = {"embed_dim": 16, "depths": [1, 1, 1, 1]}


def small_cfg(**kw) -> AMCFConfig:
    base = dict(backbone_kwargs=SMALL, uav_size=64, sat_size=192, proj_dim=32)
    base.update(kw)
    return AMCFConfig(**base)


@pytest.mark.parametrize("fusion", ["correlation", "paper_literal"])
@pytest.mark.parametrize("shared", [True, False])
def test_shapes_every_variant(fusion, shared):
    torch.manual_seed(0)
    net = AMCFNet(small_cfg(fusion=fusion, shared_backbone=shared, shared_projection=shared)).eval()
    uav, sat = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 192, 192)
    with torch.inference_mode():
        logits = net(uav, sat)
        uf, sf = net.encode(uav, "uav"), net.encode(sat, "sat")
        again = net.forward_features(uf, sf, sat.shape[-2:])
    assert logits.shape == (2, 1, 192, 192) and torch.isfinite(logits).all()
    assert torch.allclose(logits, again)
    assert [f.shape[1] for f in sf] == net.channels == net.backbone.feature_info.channels()
    assert [192 // f.shape[-1] for f in sf] == net.strides == [4, 8, 16]
    assert [64 // f.shape[-1] for f in uf] == net.strides
    assert (net.sat_backbone is None) == shared
    counts = net.parameter_counts()
    assert counts["total"] == sum(p.numel() for p in net.parameters())
    if not shared:  # the two backbones are independent weights
        assert counts["backbone"] == 2 * sum(p.numel() for p in net.backbone.parameters())
        with torch.inference_mode():
            assert not torch.allclose(net.encode(sat, "uav")[0], sf[0])


def test_real_focalnet_tiny_srf_shapes():
    torch.manual_seed(0)
    net = AMCFNet(AMCFConfig(uav_size=64, sat_size=128)).eval()
    assert net.channels == [96, 192, 384] and net.strides == [4, 8, 16]
    assert 11e6 < net.parameter_counts()["backbone"] < 13e6
    with torch.inference_mode():
        logits = net(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 128, 128))
    assert logits.shape == (1, 1, 128, 128) and torch.isfinite(logits).all()


@pytest.mark.parametrize("impl", ["conv", "fft"])
@pytest.mark.parametrize("k", [7, 8])
def test_correlation_peaks_at_crop_position_without_half_cell_shift(impl, k):
    """UAV features = an exact crop of the satellite features -> S peaks at the crop centre.

    Odd side: one maximum at the centre cell. Even side: the centre lies between cells, so
    the 2x2 cells around it tie and their centre is exactly the crop centre (no half-cell shift).
    """
    g = torch.Generator().manual_seed(1)
    sat = F.normalize(torch.randn(2, 16, 30, 26, generator=g), dim=1)
    tops = [(5, 9), (17, 3)]
    uav = torch.stack([sat[i, :, r:r + k, c:c + k] for i, (r, c) in enumerate(tops)])
    s = depthwise_xcorr(sat, uav, impl).sum(1)            # [B, H, W] mean cosine similarity
    assert s.shape == (2, 30, 26)
    for i, (r, c) in enumerate(tops):
        centre = (r + (k - 1) / 2, c + (k - 1) / 2)
        m = s[i]
        if k % 2:
            idx = int(torch.argmax(m))
            assert (idx // m.shape[1], idx % m.shape[1]) == centre
            assert m.max() == pytest.approx(1.0, abs=1e-5)   # a full-overlap self match
        else:
            top4 = torch.topk(m.flatten(), 4).indices
            cells = sorted((int(j) // m.shape[1], int(j) % m.shape[1]) for j in top4)
            r0, c0 = int(centre[0] - 0.5), int(centre[1] - 0.5)
            assert cells == [(r0, c0), (r0, c0 + 1), (r0 + 1, c0), (r0 + 1, c0 + 1)]
            vals = m[r0:r0 + 2, c0:c0 + 2]
            assert torch.allclose(vals, vals.mean().expand(2, 2), atol=0.02)
            assert float(np.mean([a for a, _ in cells])) == centre[0]


def test_conv_and_fft_correlation_agree_and_samples_do_not_mix():
    g = torch.Generator().manual_seed(2)
    sat, uav = torch.randn(3, 8, 24, 20, generator=g), torch.randn(3, 8, 6, 5, generator=g)
    a, b = depthwise_xcorr(sat, uav, "conv"), depthwise_xcorr(sat, uav, "fft")
    assert torch.allclose(a, b, atol=1e-5)
    for i in range(3):  # each sample alone gives the same map
        assert torch.allclose(depthwise_xcorr(sat[i:i + 1], uav[i:i + 1], "conv"), a[i:i + 1], atol=1e-6)
    # direct definition at one cell, zero padding outside
    y, x = 1, 17
    ref = sum(uav[1, :, m, n] * sat[1, :, y + m - 2, x + n - 2]
              for m in range(6) for n in range(5)
              if 0 <= y + m - 2 < 24 and 0 <= x + n - 2 < 20)
    # even kernel side 6: the kernel averaged with its shift, centred on the cell
    assert ref.shape == (8,)
    odd_uav = uav[:, :, :5, :]
    direct = sum(odd_uav[1, :, m, n] * sat[1, :, y + m - 2, x + n - 2]
                 for m in range(5) for n in range(5) if 0 <= y + m - 2 < 24 and 0 <= x + n - 2 < 20) / 25
    assert torch.allclose(depthwise_xcorr(sat, odd_uav, "conv")[1, :, y, x], direct, atol=1e-5)


@pytest.mark.parametrize("sat_hw,k_hw", [((30, 30), (10, 10)), ((16, 16), (16, 16)), ((12, 40), (11, 3)),
                                          ((9, 27), (4, 9))])
def test_fft_correlation_without_wraparound(sat_hw, k_hw):
    """The FFT path transforms only h + p cells (rounded up to a 5-smooth size), not the whole
    linear result: no wrap-around may reach the kept cells, for any kernel up to the map's
    own size (the model's UAV map is a third of the satellite map's side)."""
    from geoloc_ros.model.fusion import _fft_size

    g = torch.Generator().manual_seed(3)
    sat, uav = torch.randn(2, 4, *sat_hw, generator=g), torch.randn(2, 4, *k_hw, generator=g)
    assert torch.allclose(depthwise_xcorr(sat, uav, "fft"), depthwise_xcorr(sat, uav, "conv"), atol=1e-5)
    assert [_fft_size(n) for n in (1, 7, 11, 140, 126, 97)] == [1, 8, 12, 144, 128, 100]


def test_model_output_on_satellite_grid_no_half_cell_bias():
    """Full model, UAV = an exact crop (side 64 -> even stride-4 kernel 16): the peak of the
    full-resolution logits (softmax centroid around the argmax) sits on the true centre
    (r0 + 31.5, c0 + 31.5), without a systematic 2 px (half a stride-4 cell) offset."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = AMCFNet(small_cfg()).eval()
    sat = torch.from_numpy(rng.random((1, 3, 192, 192), dtype=np.float32))
    sat = F.avg_pool2d(sat, 3, 1, 1)  # some spatial correlation
    signed = []
    for r0, c0 in [(32, 48), (64, 96), (96, 16), (112, 112), (16, 80)]:
        uav = sat[:, :, r0:r0 + 64, c0:c0 + 64]
        with torch.inference_mode():
            lg = net(uav, sat)[0, 0].double()
        idx = int(torch.argmax(lg))
        r, c = idx // 192, idx % 192
        win = lg[max(r - 12, 0):r + 13, max(c - 12, 0):c + 13]
        w = torch.exp(win - win.max())
        rr, cc = torch.meshgrid(torch.arange(max(r - 12, 0), max(r - 12, 0) + win.shape[0]),
                                torch.arange(max(c - 12, 0), max(c - 12, 0) + win.shape[1]), indexing="ij")
        signed.append((float((w * rr).sum() / w.sum()) - (r0 + 31.5), float((w * cc).sum() / w.sum()) - (c0 + 31.5)))
    signed = np.array(signed)
    assert np.abs(signed).max() < 1.5, signed
    assert np.abs(signed.mean(0)).max() < 0.75, signed  # a half-cell shift would be 2 px


def test_batch_samples_isolated_and_broadcast():
    torch.manual_seed(0)
    net = AMCFNet(small_cfg()).eval()
    uav, sat = torch.rand(3, 3, 64, 64), torch.rand(3, 3, 192, 192)
    with torch.inference_mode():
        both = net(uav, sat)
        for i in range(3):
            assert torch.allclose(net(uav[i:i + 1], sat[i:i + 1]), both[i:i + 1], atol=1e-4)
        # one cached satellite crop against several UAV images
        sf = net.encode(sat[:1], "sat")
        many = net.forward_features(net.encode(uav, "uav"), sf, (192, 192))
        assert many.shape == (3, 1, 192, 192)
        assert torch.allclose(many[2:3], net(uav[2:3], sat[:1]), atol=1e-4)


def test_residual_head_passes_similarity_through_at_init():
    torch.manual_seed(0)
    net = AMCFNet(small_cfg(upsample="bilinear")).eval()
    uav, sat = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 192, 192)
    with torch.inference_mode():
        fused, w = net.fusion(net.encode(uav, "uav"), net.encode(sat, "sat"))
        logits = net.head(fused)
    assert torch.allclose(w.sum(1), torch.ones(1, 48, 48), atol=1e-5)   # softmax over scales
    assert torch.allclose(logits, 50.0 * fused.sum(1, keepdim=True) - 5.0, atol=1e-4)
    plain = AMCFNet(small_cfg(residual_head=False))
    assert not hasattr(plain.head, "alpha") and plain.head.last.weight.abs().sum() > 0


def test_config_files_and_errors():
    full = load_model_config(REPO / "config" / "model_amcf.yaml")
    small = load_model_config(REPO / "config" / "model_amcf_small.yaml")
    assert full == AMCFConfig()  # the YAML spells out the defaults
    assert small.backbone_kwargs == {"embed_dim": 32, "depths": [1, 1, 2, 1]} and small.sat_size == 192
    assert load_model_config({"model": {"fusion": "paper_literal"}}).fusion == "paper_literal"
    with pytest.raises(ConfigError, match="projdim"):
        load_model_config({"projdim": 3})
    with pytest.raises(ConfigError, match="fusion"):
        load_model_config({"fusion": "sum"})
    net = AMCFNet(small_cfg())
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 190, 190))


def test_per_image_input_norm_ignores_a_whole_image_tint_and_exposure():
    """input_norm per_image: a per-channel gain and offset of the camera image (tint, exposure,
    haze) reaches the logits as nothing; without it, it does. Each image alone: a batch mate
    changes nothing."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    uav, sat = 0.3 + 0.4 * torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 192, 192, generator=g)
    gain, offset = torch.tensor([0.8, 1.1, 0.9]).view(1, 3, 1, 1), torch.tensor([0.05, -0.02, 0.1]).view(1, 3, 1, 1)
    tinted = uav * gain + offset  # stays within [0, 1]: no clipping involved
    outs = {}
    for norm in ("none", "per_image"):
        torch.manual_seed(0)
        net = AMCFNet(small_cfg(input_norm=norm)).eval()
        with torch.inference_mode():
            outs[norm] = (net(uav, sat), net(tinted, sat), net(uav[:1], sat[:1]))
    plain, tint, alone = outs["per_image"]
    assert torch.allclose(plain, tint, atol=1e-4)
    assert torch.allclose(plain[:1], alone, atol=1e-5)
    assert (outs["none"][0] - outs["none"][1]).abs().max() > 1e-2
    with pytest.raises(ValueError, match="input_norm"):
        small_cfg(input_norm="batch")
