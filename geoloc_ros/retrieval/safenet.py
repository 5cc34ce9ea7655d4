"""Safe-Net: self-adaptive feature extraction for aerial-view geo-localization (ViT-S).

- FAM (feature alignment module): a small MLP on the global token predicts a 2x3 affine
  transform (initialised to identity) that re-samples the patch feature map, so scale and
  rotation differences between drone and satellite views are undone in feature space.
  We sample bilinearly (nearest sampling would give the MLP no gradient).
- FPM (saliency-guided partition): a saliency map (max over channels) is averaged over
  concentric square rings around the centre; the ring range is split recursively, each split
  at the ring whose saliency is equally far from the saliencies at the two ends of the range,
  into `parts` (a power of two) rings. Each part is average-pooled and embedded.
The descriptor is the concatenation of the (unit) global and part embeddings.
Paper recipe (safenet_paper): 8 ViT-S blocks (`backbone.keep_blocks: 8`), classifiers
Linear-BN-LeakyReLU(0.1)-Dropout (`leaky_relu: true`), cross-entropy only.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from geoloc_ros.retrieval.backbone import BackboneConfig, ClassBlock
from geoloc_ros.retrieval.model import RetrievalModel


def ring_index(h: int, w: int, device=None) -> torch.Tensor:
    """[h, w] long: index of the concentric square ring around the map centre (0 = innermost)."""
    r = (torch.arange(h, device=device, dtype=torch.float32) - (h - 1) / 2).abs()
    c = (torch.arange(w, device=device, dtype=torch.float32) - (w - 1) / 2).abs()
    return torch.maximum(r[:, None], c[None, :]).floor().long()


def split_rings(sal: list[float], lo: int, hi: int, n: int) -> list[int]:
    """Boundaries (first ring of each later part) splitting rings [lo, hi] into 2**n parts."""
    if n == 0:
        return []
    s_lo, s_hi = sal[lo], sal[hi]
    cost = [abs(abs(sal[k] - s_lo) - abs(sal[k] - s_hi)) for k in range(lo, hi + 1)]
    b = lo + min(range(len(cost)), key=cost.__getitem__)
    half = 2 ** (n - 1)                          # each side keeps enough rings to split again
    b = min(max(b, lo + half), hi - half + 1)
    return split_rings(sal, lo, b - 1, n - 1) + [b] + split_rings(sal, b, hi, n - 1)


def saliency_partition(fmap: torch.Tensor, parts: int) -> torch.Tensor:
    """[B, C, h, w] -> [B, C, parts] ring-part averages with saliency-guided boundaries."""
    b, c, h, w = fmap.shape
    rings = ring_index(h, w, fmap.device)
    n_rings = int(rings.max()) + 1
    if n_rings < parts:
        raise ValueError(f"Safe-Net: {parts} parts need >= {parts} rings but the {h}x{w} feature map has "
                         f"{n_rings}; use a larger img_size or a smaller patch / fewer parts")
    onehot = F.one_hot(rings.flatten(), n_rings).float()          # [h*w, R]
    counts = onehot.sum(0)                                        # [R]
    with torch.no_grad():
        sal = fmap.detach().amax(dim=1).flatten(1) @ onehot / counts   # [B, R] ring saliency
    n_div = int(math.log2(parts))
    part_of_ring = torch.empty(b, n_rings, dtype=torch.long)
    for i, s in enumerate(sal.float().cpu().tolist()):
        bounds = [0] + split_rings(s, 0, n_rings - 1, n_div) + [n_rings]
        for p in range(parts):
            part_of_ring[i, bounds[p]:bounds[p + 1]] = p
    part_of_ring = part_of_ring.to(fmap.device)
    mask = F.one_hot(part_of_ring[:, rings.flatten()], parts).to(fmap.dtype)   # [B, h*w, P]
    sums = torch.bmm(fmap.flatten(2), mask)                                    # [B, C, P]
    return sums / mask.sum(1, keepdim=True).clamp(min=1)


class SafeNetModel(RetrievalModel):
    default_conf = {
        "parts": 4,            # saliency-guided ring parts (power of two)
        "bottleneck": 512,     # embedding width of the global and each part branch
        "loc_hidden": 128,     # FAM localisation MLP width
        "dropout": 0.5,
        "leaky_relu": False,   # LeakyReLU(0.1) after each branch's BN (paper: yes)
    }
    default_backbone = BackboneConfig(name="vit_small_patch16_224")

    def _build(self, conf: dict[str, Any]) -> None:
        p = int(conf["parts"])
        act = bool(conf["leaky_relu"])
        if p < 1 or p & (p - 1):
            raise ValueError(f"Safe-Net parts must be a power of two, got {p}")
        c = self.backbone.num_features
        nc = self.cfg.num_classes
        self.loc = nn.Sequential(nn.Linear(c, conf["loc_hidden"]), nn.ReLU(inplace=True),
                                 nn.Linear(conf["loc_hidden"], 6))
        nn.init.zeros_(self.loc[2].weight)
        with torch.no_grad():
            self.loc[2].bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))
        self.global_head = ClassBlock(c, nc, conf["bottleneck"], conf["dropout"], leaky_relu=act)
        self.part_heads = nn.ModuleList(ClassBlock(c, nc, conf["bottleneck"], conf["dropout"], leaky_relu=act)
                                        for _ in range(p))

    def align(self, g: torch.Tensor, fmap: torch.Tensor) -> torch.Tensor:
        """FAM: global token [B, C] + map [B, C, h, w] -> affinely re-sampled map."""
        theta = self.loc(g).view(-1, 2, 3).to(fmap.dtype)
        grid = F.affine_grid(theta, list(fmap.shape), align_corners=False)
        return F.grid_sample(fmap, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _forward(self, x: torch.Tensor) -> dict[str, Any]:
        """x [B,3,S,S] -> desc [B, bottleneck * (parts + 1)] (+ training branches)."""
        out = self.backbone(x)
        g = out.cls if out.cls is not None else out.pooled
        parts = saliency_partition(self.align(g, out.fmap), len(self.part_heads))   # [B, C, P]
        embs, logits = [], []
        for head, f in [(self.global_head, g)] + [(h, parts[:, :, i]) for i, h in enumerate(self.part_heads)]:
            e, lg = head(f)
            embs.append(e)
            logits.append(lg)
        res: dict[str, Any] = {"desc": torch.cat([F.normalize(e, dim=-1) for e in embs], dim=-1)}
        if self.training:
            res["embeddings"] = embs
            res["logits"] = [lg for lg in logits if lg is not None]
        return res
