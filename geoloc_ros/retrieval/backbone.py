"""The shared image backbone of every retrieval head: a timm model behind one small interface.

Heads never ask which family they got: `Backbone.forward` always returns a feature map
`[B, C, h, w]` plus, for transformers, the class token `[B, C]`; `num_features` says C.
The timm model comes from `model.backbone.create_timm_model` (pooled mode) and pretrained
weights only from a local file (`model.backbone.load_pretrained`, strict): nothing is
downloaded, nothing is unpickled.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn as nn

from geoloc_ros.model.backbone import create_timm_model, load_pretrained


@dataclass
class BackboneConfig:
    name: str = "convnext_tiny"          # any timm model name (CNN with a [B,C,h,w] map, or a ViT)
    kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {dims: [8,16,32,64], depths: [1,1,1,1]}
    pretrained_path: str = ""            # local .safetensors / state-dict file; "" = random init
    normalize: bool = True               # apply the backbone's ImageNet mean/std inside the model
    frozen: bool = False                 # freeze all backbone weights (QDFL trains adapters only)
    drop_path_rate: float = 0.0
    keep_blocks: int = 0                 # ViT: keep only the first N transformer blocks (Safe-Net: 8 of 12); 0 = all


class BackboneOutput(NamedTuple):
    fmap: torch.Tensor                   # [B, C, h, w] spatial features (patch grid for a ViT)
    cls: torch.Tensor | None             # [B, C] class token (ViT) or None (CNN)
    pooled: torch.Tensor                 # [B, C] the backbone's own pooled, normed feature


class Backbone(nn.Module):
    """timm model -> (feature map, class token, pooled feature) for any retrieval head."""

    def __init__(self, cfg: BackboneConfig, img_size: int):
        super().__init__()
        self.cfg = cfg
        kwargs = dict(cfg.kwargs)
        if any(t in cfg.name for t in ("vit", "deit", "eva")):   # transformers take the input size
            kwargs.setdefault("img_size", img_size)
        self.model = create_timm_model(cfg.name, kwargs, num_classes=0, drop_path_rate=cfg.drop_path_rate)
        if cfg.pretrained_path:
            load_pretrained(self.model, cfg.pretrained_path, cfg.name, kwargs, strict=True)
        if cfg.keep_blocks > 0:
            self._truncate(cfg.keep_blocks)
        pcfg = getattr(self.model, "pretrained_cfg", None) or {}
        mean = pcfg.get("mean", (0.485, 0.456, 0.406))
        std = pcfg.get("std", (0.229, 0.224, 0.225))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.num_features: int = int(self.model.num_features)
        self.num_prefix_tokens: int = int(getattr(self.model, "num_prefix_tokens", 0))
        self.is_vit = hasattr(self.model, "patch_embed") and hasattr(self.model, "blocks")
        if cfg.frozen:
            for p in self.model.parameters():
                p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        """x: [B, 3, H, W] float in [0, 1] -> BackboneOutput."""
        if self.cfg.normalize:
            x = (x - self.mean) / self.std
        feats = self.model.forward_features(x)
        if feats.ndim == 4:                                   # CNN: [B, C, h, w]
            pooled = self.model.forward_head(feats, pre_logits=True)
            return BackboneOutput(feats, None, pooled)
        # ViT: [B, prefix + h*w, C] (already final-normed by timm)
        b, n, c = feats.shape
        patches = feats[:, self.num_prefix_tokens:]
        gh, gw = self._grid(x.shape[-2:], patches.shape[1])
        fmap = patches.transpose(1, 2).reshape(b, c, gh, gw)
        cls = feats[:, 0] if self.num_prefix_tokens > 0 else patches.mean(1)
        return BackboneOutput(fmap, cls, cls)

    def _truncate(self, n: int) -> None:
        """Keep the first n blocks after the (full-depth) pretrained weights are loaded, as
        Safe-Net does with an ImageNet ViT-S: the checkpoint has 12 blocks, the model 8."""
        blocks = getattr(self.model, "blocks", None)
        if blocks is None:
            raise ValueError(f"backbone.keep_blocks needs a ViT with .blocks, got {self.cfg.name}")
        if n > len(blocks):
            raise ValueError(f"backbone.keep_blocks {n} > the {len(blocks)} blocks of {self.cfg.name}")
        self.model.blocks = blocks[:n]

    def _grid(self, hw, n: int) -> tuple[int, int]:
        pe = self.model.patch_embed
        if hasattr(pe, "dynamic_feat_size"):
            gh, gw = pe.dynamic_feat_size(tuple(hw))
        else:
            gh, gw = pe.grid_size
        if gh * gw != n:
            side = int(round(n ** 0.5))
            gh, gw = side, n // side
        return int(gh), int(gw)


class GeM(nn.Module):
    """Generalised-mean pooling with a learnable exponent (p=3 is the usual start)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, h, w] -> [B, C]."""
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(-2, -1)).pow(1.0 / self.p)


class ClassBlock(nn.Module):
    """Bottleneck (Linear-BN[-LeakyReLU]-Dropout) + classifier: the embedding branch every paper uses.

    Returns (embedding [B, bottleneck], logits [B, num_classes] or None when num_classes == 0).
    """

    def __init__(self, in_dim: int, num_classes: int, bottleneck: int = 512, dropout: float = 0.5,
                 linear: bool = True, leaky_relu: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        if linear:
            layers.append(nn.Linear(in_dim, bottleneck))
        else:
            bottleneck = in_dim
        layers += [nn.BatchNorm1d(bottleneck)]
        if leaky_relu:                       # Safe-Net's classifier: Linear-BN-LeakyReLU(0.1)
            layers.append(nn.LeakyReLU(0.1))
        self.embed = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(bottleneck, num_classes) if num_classes > 0 else None
        self.out_dim = bottleneck
        for m in self.embed.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_out")
                nn.init.zeros_(m.bias)
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=0.001)
            nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        f = self.embed(x)
        logits = self.classifier(self.drop(f)) if self.classifier is not None else None
        return f, logits


def frozen_without_weights(cfg: BackboneConfig, head_freezes: bool = False) -> bool:
    """True when training would freeze a randomly initialised backbone (nothing to keep)."""
    return (cfg.frozen or head_freezes) and not cfg.pretrained_path
