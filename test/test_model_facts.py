"""geoloc-model-facts counts: the thop-like module count misses exactly the functional ops."""
from __future__ import annotations

import torch

from geoloc_ros.model.net import AMCFConfig, AMCFNet
from geoloc_ros.tools.model_facts import count_flops, count_module_macs

SMALL = dict(backbone_kwargs={"embed_dim": 16, "depths": [1, 1, 1, 1]}, uav_size=64, sat_size=192, proj_dim=32)


def _counts(**kw):
    torch.manual_seed(0)
    net = AMCFNet(AMCFConfig(**SMALL, **kw)).eval()
    u, s = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 192, 192)
    return count_flops(net, u, s) // 2, count_module_macs(net, u, s)


def test_module_macs_miss_only_the_correlation():
    literal_all, literal_modules = _counts(fusion="paper_literal")  # no functional conv / matmul
    assert literal_modules == literal_all
    corr_all, corr_modules = _counts()
    assert corr_modules == literal_modules       # same modules (projections, head, backbone)
    assert corr_all > corr_modules                # + the depth-wise correlation (functional conv2d)
    shared, dual = _counts()[0], _counts(shared_backbone=False)[0]
    assert shared == dual                         # sharing the backbone does not change the arithmetic
