"""MEAN (Chen et al., TGRS 2025): multilevel embedding and alignment on a shared ConvNeXt.

Our reading of the three training-time branches (none of them runs at inference):
- PEE, progressive embedding enhancement: the last feature map is refined in K steps; each
  step is a residual multi-dilation conv block (dilations 1/2/3 averaged, C -> C/4 -> C) on
  the previous step's output, and each step's pooled map is its own embedding with its own
  classifier, so coarse-to-enhanced embeddings are all supervised.
- GEE, global embedding enhancement: the pooled global feature is read as a 1-D signal and
  filtered by parallel dilated 1-D convolutions (multi-scale channel context), pooled to a
  bottleneck embedding with BN + classifier.
- CEA, cross-domain enhanced alignment: patch features go through a sparse MLP into a small
  shared space, a temperature softmax over positions re-weights them, and a fusion conv gives
  an alignment map [B, cea_dim, h*w]; the loss pulls the drone and satellite maps of the same
  place together (`losses.cross_domain_alignment_loss`).
The retrieval descriptor is the backbone's own pooled (and head-normed) feature, L2-normalised.

`pee: paper`, `head: dilated`, `cea_dropout`, `cea_double_softmax` switch to the structure
of the paper's reference code (recipe mean_paper, docs/RETRIEVAL.md): PEE is ONE multi-
dilation block whose enhanced map (x + block(x)) / 2 feeds `pee_steps` branches, each through
its own dropout (p 0.01); every branch embeds with GEE's dilated 1-D convolutions + BN
instead of Linear-BN; CEA drops 5 % of its projected features and applies a second softmax
over positions after the temperature softmax. The defaults keep the compact CPU-sized head.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from geoloc_ros.retrieval.backbone import BackboneConfig, ClassBlock
from geoloc_ros.retrieval.model import RetrievalModel


class MultiDilationBlock(nn.Module):
    """Residual block: mean of 3x3 convs at several dilations (C -> C/4), ReLU, 1x1 back to C.

    halve=False: x + out (starts as identity); halve=True (paper PEE): (x + out) / 2, Kaiming init.
    """

    def __init__(self, channels: int, dilations=(1, 2, 3), halve: bool = False):
        super().__init__()
        mid = max(channels // 4, 1)
        self.branches = nn.ModuleList(
            nn.Conv2d(channels, mid, 3, padding=d, dilation=d, bias=False) for d in dilations)
        self.out = nn.Conv2d(mid, channels, 1)
        self.halve = halve
        if halve:
            for m in [*self.branches, self.out]:
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            nn.init.zeros_(self.out.bias)
        else:
            nn.init.zeros_(self.out.weight)          # starts as identity: enhancement is learned
            nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = sum(b(x) for b in self.branches) / len(self.branches)
        z = x + self.out(F.relu(y))
        return 0.5 * z if self.halve else z


class GlobalEnhance(nn.Module):
    """GEE: [B, C] -> [B, bottleneck] via parallel dilated 1-D convs over the channel axis."""

    def __init__(self, bottleneck: int, groups: int = 4):
        super().__init__()
        per = max(bottleneck // groups, 1)
        self.convs = nn.ModuleList(nn.Conv1d(1, per, 3, padding=d, dilation=d) for d in range(1, groups))
        self.point = nn.Conv1d(1, per, 1)
        self.out_dim = per * groups

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        x = g.unsqueeze(1)                                          # [B, 1, C]
        y = torch.cat([c(x) for c in self.convs] + [F.relu(self.point(x))], dim=1)
        return y.mean(-1)                                           # [B, out_dim]


class DilatedHead(nn.Module):
    """The reference code's branch head: GEE's dilated 1-D embedding -> BN -> dropout -> classifier.

    Returns (embedding [B, bottleneck], logits or None), like ClassBlock.
    """

    def __init__(self, num_classes: int, bottleneck: int, groups: int, dropout: float):
        super().__init__()
        self.gee = GlobalEnhance(bottleneck, groups)
        self.block = ClassBlock(self.gee.out_dim, num_classes, bottleneck, dropout, linear=False)
        self.out_dim = self.block.out_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.block(self.gee(x))


class CrossDomainAlign(nn.Module):
    """CEA: patch features [B, C, h, w] -> alignment map [B, dim, h*w].

    W = softmax_N(attn(norm_C(drop(proj(P)))) / T), applied twice when `double_softmax`
    (the paper's S-softmax); out = ReLU(BN(fuse([in_proj(P); w_proj(W)]))).
    """

    def __init__(self, channels: int, dim: int, hidden: int, temperature: float, dropout: float = 0.0,
                 double_softmax: bool = False):
        super().__init__()
        self.dropout = dropout
        self.double_softmax = double_softmax
        self.proj = nn.Sequential(
            nn.Conv1d(channels, hidden, 1, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Conv1d(hidden, dim, 1, bias=False))
        self.attn = nn.Conv1d(dim, dim, 1)
        self.temperature = temperature
        self.in_proj = nn.Conv1d(channels, dim, 1)
        self.w_proj = nn.Conv1d(dim, dim, 1)
        self.fuse = nn.Sequential(nn.Conv1d(2 * dim, dim, 1), nn.BatchNorm1d(dim), nn.ReLU(inplace=True))

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        p = fmap.flatten(2)                                         # [B, C, N]
        return self.fuse(torch.cat([self.in_proj(p), self.w_proj(self.position_weights(p))], dim=1))

    def position_weights(self, p: torch.Tensor) -> torch.Tensor:
        """[B, C, N] patch features -> W [B, dim, N]: where each alignment channel looks (sums to 1 over N)."""
        w = F.normalize(F.dropout(self.proj(p), self.dropout, self.training), dim=1)
        w = F.softmax(self.attn(w) / self.temperature, dim=2)
        return F.softmax(w, dim=2) if self.double_softmax else w


class MEANModel(RetrievalModel):
    default_conf = {
        "bottleneck": 512,        # width of every training-branch embedding (PEE steps, GEE)
        "pee_steps": 2,           # progressive enhancement steps (each one supervised embedding)
        "pee_dilations": (1, 2, 3),
        "gee_groups": 4,          # parallel 1-D filters in GEE (3 dilated + 1 pointwise)
        "cea_dim": 256,           # shared alignment space of CEA
        "cea_hidden": 1024,       # sparse-MLP hidden width of CEA
        "cea_temperature": 0.1,   # softmax temperature over positions in CEA
        "dropout": 0.5,           # before each classifier
        "pee": "steps",           # steps: pee_steps chained residual blocks | paper: one block, pee_steps views
        "pee_dropout": 0.01,      # pee: paper - dropout on each branch's view of the enhanced map
        "head": "linear",         # linear: Linear-BN branch embeddings | dilated: GEE-style 1-D dilated convs + BN
        "cea_dropout": 0.0,       # sparse-MLP dropout in CEA (paper 0.05)
        "cea_double_softmax": False,  # second softmax over positions in CEA (paper: yes)
    }
    default_backbone = BackboneConfig(name="convnext_tiny")

    def _build(self, conf: dict[str, Any]) -> None:
        c = self.backbone.num_features
        nc = self.cfg.num_classes
        if conf["pee"] not in ("steps", "paper") or conf["head"] not in ("linear", "dilated"):
            raise ValueError(f"MEAN pee must be steps|paper and head linear|dilated, got {conf['pee']}/{conf['head']}")
        paper = conf["pee"] == "paper"
        dil = tuple(conf["pee_dilations"])
        self.pee = nn.ModuleList([MultiDilationBlock(c, dil, halve=True)] if paper else
                                 (MultiDilationBlock(c, dil) for _ in range(conf["pee_steps"])))
        self.pee_heads = nn.ModuleList(self._head(c, nc, conf) for _ in range(conf["pee_steps"]))
        self.gee = GlobalEnhance(conf["bottleneck"], conf["gee_groups"])
        self.gee_head = ClassBlock(self.gee.out_dim, nc, conf["bottleneck"], conf["dropout"], linear=False)
        self.cea = CrossDomainAlign(c, conf["cea_dim"], min(conf["cea_hidden"], 4 * c), conf["cea_temperature"],
                                    conf["cea_dropout"], conf["cea_double_softmax"])

    @staticmethod
    def _head(c: int, nc: int, conf: dict[str, Any]) -> nn.Module:
        if conf["head"] == "dilated":
            return DilatedHead(nc, conf["bottleneck"], conf["gee_groups"], conf["dropout"])
        return ClassBlock(c, nc, conf["bottleneck"], conf["dropout"])

    def _pee_maps(self, fmap: torch.Tensor) -> list[torch.Tensor]:
        """The maps each PEE branch pools: chained steps, or dropout views of one enhanced map."""
        if self.conf["pee"] == "paper":
            z = self.pee[0](fmap)
            return [F.dropout(z, self.conf["pee_dropout"], self.training) for _ in self.pee_heads]
        maps, f = [], fmap
        for block in self.pee:
            f = block(f)
            maps.append(f)
        return maps

    def _forward(self, x: torch.Tensor) -> dict[str, Any]:
        """x [B,3,S,S] -> desc [B, C] (+ training branches, see RetrievalModel)."""
        out = self.backbone(x)
        res: dict[str, Any] = {"desc": out.pooled}
        if not self.training:
            return res
        embeddings, logits = [], []
        for f, head in zip(self._pee_maps(out.fmap), self.pee_heads):   # PEE
            e, lg = head(f.mean(dim=(-2, -1)))
            embeddings.append(e)
            logits.append(lg)
        e, lg = self.gee_head(self.gee(out.pooled))                 # GEE
        embeddings.append(e)
        logits.append(lg)
        res["embeddings"] = embeddings
        res["logits"] = [lg for lg in logits if lg is not None]
        res["align"] = self.cea(out.fmap)                           # CEA [B, dim, h*w]
        return res
