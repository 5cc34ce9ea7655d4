"""QDFL: query-driven feature learning on a frozen ViT with bottleneck adapters.

- Adapters: every transformer block's MLP gets a parallel bottleneck (C -> r -> C, zero-
  initialised up-projection, scaled), the only trainable part of the backbone.
- AQEU (aggregated query enhancement unit): patch features are projected (1x1) to `dim`,
  refined by token self-attention; learnable queries (self-attention) read them by
  cross-attention (coarse queries); the refined map goes through FFU; the queries read the
  fused map again (fine queries) and a linear map over the query axis remaps `num_queries`
  queries to `num_supervisor` supervised slots.
- FFU (feature fusion unit): two channel-shifted FC branches (each channel looks one step
  left/right resp. up/down, i.e. cycle-FC along W and H) and the identity are mixed with
  per-channel softmax weights predicted from their pooled sum; residual.
Descriptor: unit embeddings of the supervisor slots, the class token and the GeM-pooled
fused map, concatenated. Trained with InfoNCE + CE + multi-similarity loss.

Paper switches (recipe qdfl_paper, docs/RETRIEVAL.md): `adapters: serial_parallel` adds a
serial adapter after every attention (y + A(y), ReLU) beside the parallel MLP adapter;
`coarse_residual` makes the coarse cross-attention Q1' = LN(Q1 + CA(Q1, X, X));
`kv_norm` puts the fine cross-attention's LayerNorm on the keys/values (the fused map)
instead of the queries; `gem_normalize` L2-normalises the GeM feature before its branch.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from geoloc_ros.retrieval.backbone import BackboneConfig, ClassBlock, GeM
from geoloc_ros.retrieval.model import RetrievalModel


class Adapter(nn.Module):
    """Bottleneck adapter: x -> scale * up(act(down(x))), zero at initialisation (so a
    pretrained ViT's output is unchanged at step 0)."""

    def __init__(self, dim: int, hidden: int, scale: float, act: str = "gelu"):
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.up = nn.Linear(hidden, dim)
        self.scale = scale
        self.act = F.relu if act == "relu" else F.gelu
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(self.act(self.down(x)))


class AttnWithSerialAdapter(nn.Module):
    """Drop-in for a timm block's `attn`: frozen attention, then a serial adapter y + A(y)."""

    def __init__(self, attn: nn.Module, adapter: Adapter):
        super().__init__()
        self.attn = attn
        self.adapter = adapter

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        y = self.attn(x, *args, **kwargs)
        return y + self.adapter(y)


class MlpWithAdapter(nn.Module):
    """Drop-in for a timm block's `mlp`: frozen MLP + parallel trainable adapter."""

    def __init__(self, mlp: nn.Module, adapter: Adapter):
        super().__init__()
        self.mlp = mlp
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x) + self.adapter(x)


class ShiftFC(nn.Module):
    """Cycle-FC along one axis: channel i reads position +((i + k//2) % k - k//2), then 1x1."""

    def __init__(self, dim: int, axis: int, k: int = 3):
        super().__init__()
        self.axis = axis                                   # -1: along W, -2: along H
        self.offsets = list(range(-(k // 2), k - k // 2))
        off = torch.tensor([(i + k // 2) % k - k // 2 for i in range(dim)])
        self.register_buffer("mask", torch.stack([(off == o).float() for o in self.offsets]).view(k, 1, dim, 1, 1),
                             persistent=False)
        self.fc = nn.Conv2d(dim, dim, 1)

    @staticmethod
    def _shift(x: torch.Tensor, o: int, axis: int) -> torch.Tensor:
        if o == 0:
            return x
        n = x.shape[axis]
        y = torch.zeros_like(x)
        src = x.narrow(axis, max(o, 0), n - abs(o))           # y[p] = x[p + o], zero outside
        y.narrow(axis, max(-o, 0), n - abs(o)).copy_(src)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = torch.stack([self._shift(x, o, self.axis) for o in self.offsets])   # [k, B, C, H, W]
        return self.fc((shifted * self.mask).sum(0))


class FFU(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.w = ShiftFC(dim, axis=-1)
        self.h = ShiftFC(dim, axis=-2)
        hidden = max(dim // 3, 4)
        self.reweight = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 3 * dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] -> same shape."""
        xw, xh = self.w(x), self.h(x)
        b, c = x.shape[:2]
        a = self.reweight((xw + xh + x).mean(dim=(-2, -1))).view(b, c, 3).softmax(-1)
        z = xw * a[..., 0, None, None] + xh * a[..., 1, None, None] + x * a[..., 2, None, None]
        return z + x


class AQEU(nn.Module):
    """Learnable queries read the projected patch tokens twice (coarse, then after FFU: fine).

    T' = LN(T + SA(T)); Q1 = LN(Q + SA(Q)); coarse Q1' = LN([Q1 +] CA(Q1, T', T'));
    X_f = FFU(T' + T); fine: kv_norm=False: Q2 = LN(LN(Q1') + CA(LN(Q1'), X_f, X_f)),
    kv_norm=True: Q2 = LN(Q1' + CA(Q1', LN(X_f), LN(X_f))); slots = remap over the query axis.
    """

    def __init__(self, in_dim: int, dim: int, num_queries: int, num_supervisor: int, heads: int,
                 coarse_residual: bool = False, kv_norm: bool = False):
        super().__init__()
        self.coarse_residual, self.kv_norm = coarse_residual, kv_norm
        self.fc = nn.Conv2d(in_dim, dim, 1)
        self.tok_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.tok_norm = nn.LayerNorm(dim)
        self.queries = nn.Parameter(torch.randn(1, num_queries, dim) * 1e-2)
        self.q_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.q_norm = nn.LayerNorm(dim)
        self.coarse_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.coarse_norm = nn.LayerNorm(dim)
        self.ffu = FFU(dim)
        self.fine_in_norm = nn.LayerNorm(dim)
        self.fine_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.fine_norm = nn.LayerNorm(dim)
        self.remap = nn.Linear(num_queries, num_supervisor)

    def forward(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """fmap [B, C, h, w] -> (slots [B, dim, num_supervisor], fused map [B, dim, h, w])."""
        x = self.fc(fmap)
        b, d, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)                               # [B, N, d]
        tc = self.tok_norm(t + self.tok_attn(t, t, t, need_weights=False)[0])
        q = self.queries.expand(b, -1, -1)
        q = self.q_norm(q + self.q_attn(q, q, q, need_weights=False)[0])
        ca = self.coarse_attn(q, tc, tc, need_weights=False)[0]
        qc = self.coarse_norm(q + ca if self.coarse_residual else ca)
        xf = self.ffu((tc + t).transpose(1, 2).reshape(b, d, h, w))
        tf = xf.flatten(2).transpose(1, 2)
        if self.kv_norm:
            kv = self.fine_in_norm(tf)
            qf = self.fine_norm(qc + self.fine_attn(qc, kv, kv, need_weights=False)[0])
        else:
            qc = self.fine_in_norm(qc)
            qf = self.fine_norm(qc + self.fine_attn(qc, tf, tf, need_weights=False)[0])
        return self.remap(qf.transpose(1, 2)), xf


class QDFLModel(RetrievalModel):
    default_conf = {
        "adapter_dim": 64,          # adapter bottleneck width (0 = no adapters)
        "adapter_scale": 0.5,       # adapter output scale
        "freeze_backbone": True,    # paper: frozen foundation ViT, only adapters train
        "dim": 512,                 # AQEU working width
        "num_queries": 8,           # learnable queries
        "num_supervisor": 2,        # supervised query slots after remapping
        "heads": 8,                 # attention heads in AQEU (dim % heads == 0)
        "bottleneck": 512,          # embedding width of each supervised branch
        "dropout": 0.5,
        "use_cls": True,            # add the class-token branch to the descriptor
        "adapters": "parallel",     # parallel (MLP side only) | serial_parallel (paper: + serial after attention)
        "adapter_act": "gelu",      # adapter activation (paper reference: relu)
        "coarse_residual": False,   # coarse cross-attention keeps +Q1 (paper: yes)
        "kv_norm": False,           # fine cross-attention: LayerNorm on keys/values, not queries (paper: yes)
        "gem_normalize": False,     # L2-normalise the GeM feature before its branch (paper reference: yes)
        "gem_p": 3.0,               # GeM start exponent (paper reference: 4.5)
    }
    default_backbone = BackboneConfig(name="vit_small_patch16_224")

    def _build(self, conf: dict[str, Any]) -> None:
        vit = self.backbone.model
        c = self.backbone.num_features
        nc = self.cfg.num_classes
        if conf["freeze_backbone"]:
            for p in vit.parameters():
                p.requires_grad_(False)
        if conf["adapter_dim"] > 0:
            self._add_adapters(vit, c, conf)
        if conf["dim"] % conf["heads"]:
            raise ValueError(f"QDFL dim {conf['dim']} must be divisible by heads {conf['heads']}")
        self.aqeu = AQEU(c, conf["dim"], conf["num_queries"], conf["num_supervisor"], conf["heads"],
                         bool(conf["coarse_residual"]), bool(conf["kv_norm"]))
        self.gem = GeM(float(conf["gem_p"]))
        self.slot_heads = nn.ModuleList(ClassBlock(conf["dim"], nc, conf["bottleneck"], conf["dropout"])
                                        for _ in range(conf["num_supervisor"]))
        self.gem_head = ClassBlock(conf["dim"], nc, conf["bottleneck"], conf["dropout"])
        self.cls_head = ClassBlock(c, nc, conf["bottleneck"], conf["dropout"]) if conf["use_cls"] else None

    def _add_adapters(self, vit: nn.Module, c: int, conf: dict[str, Any]) -> None:
        """Parallel adapters on every MLP; with serial_parallel also serial ones after every attention."""
        if conf["adapters"] not in ("parallel", "serial_parallel"):
            raise ValueError(f"QDFL adapters must be parallel or serial_parallel, got {conf['adapters']!r}")
        if not hasattr(vit, "blocks"):
            raise ValueError(f"QDFL adapters need a ViT backbone with .blocks, got {self.cfg.backbone.name}")
        act = conf["adapter_act"]
        for blk in vit.blocks:
            blk.mlp = MlpWithAdapter(blk.mlp, Adapter(c, conf["adapter_dim"], conf["adapter_scale"], act))
            if conf["adapters"] == "serial_parallel":
                blk.attn = AttnWithSerialAdapter(blk.attn, Adapter(c, conf["adapter_dim"], 1.0, act))

    def _forward(self, x: torch.Tensor) -> dict[str, Any]:
        """x [B,3,S,S] -> desc [B, bottleneck * (num_supervisor + 1 + use_cls)]."""
        out = self.backbone(x)
        slots, fused = self.aqeu(out.fmap)
        pairs = [self.slot_heads[i](slots[:, :, i]) for i in range(slots.shape[-1])]
        g = self.gem(fused)
        pairs.append(self.gem_head(F.normalize(g, dim=-1) if self.conf["gem_normalize"] else g))
        if self.cls_head is not None:
            pairs.append(self.cls_head(out.cls if out.cls is not None else out.pooled))
        embs = [e for e, _ in pairs]
        res: dict[str, Any] = {"desc": torch.cat([F.normalize(e, dim=-1) for e in embs], dim=-1)}
        if self.training:
            res["embeddings"] = embs
            res["logits"] = [lg for _, lg in pairs if lg is not None]
        return res
