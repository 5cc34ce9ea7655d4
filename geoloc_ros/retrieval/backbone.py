"""The shared image backbone of every retrieval head: a timm model behind one small interface.

Heads never ask which family they got: `Backbone.forward` always returns a feature map
`[B, C, h, w]` plus, for transformers, the class token `[B, C]`; `num_features` says C.
Weights come only from a local file (safetensors, or `torch.load(weights_only=True)` for a
plain state dict): nothing is downloaded, nothing is unpickled.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import timm
import torch
import torch.nn as nn

from geoloc_ros.errors import GeolocError


@dataclass
class BackboneConfig:
    name: str = "convnext_tiny"          # any timm model name (CNN with a [B,C,h,w] map, or a ViT)
    kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {dims: [8,16,32,64], depths: [1,1,1,1]}
    pretrained_path: str = ""            # local .safetensors / state-dict file; "" = random init
    normalize: bool = True               # apply the backbone's ImageNet mean/std inside the model
    frozen: bool = False                 # freeze all backbone weights (QDFL trains adapters only)
    drop_path_rate: float = 0.0


class BackboneOutput(NamedTuple):
    fmap: torch.Tensor                   # [B, C, h, w] spatial features (patch grid for a ViT)
    cls: torch.Tensor | None             # [B, C] class token (ViT) or None (CNN)
    pooled: torch.Tensor                 # [B, C] the backbone's own pooled, normed feature


class WeightsFileError(GeolocError):
    """A local weights file that cannot be read or does not fit the model (one line)."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file or a plain state dict saved with torch.save.

    `torch.load(weights_only=True)` refuses arbitrary pickled objects, so a hostile file
    cannot execute code; nested {"state_dict": ..} / {"model": ..} wrappers are unwrapped.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsFileError(f"weights file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file
        sd = load_file(str(p))
    else:
        try:
            sd = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling refusal is a user-file problem
            raise WeightsFileError(f"{p}: not a plain tensor state dict ({exc.__class__.__name__})") from None
    for key in ("state_dict", "model", "module"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise WeightsFileError(f"{p}: expected a mapping of tensors")
    return {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load pretrained timm weights, resampling position embeddings when img_size differs."""
    sd = read_state_dict(path)
    module = importlib.import_module(model.__class__.__module__)
    filt = getattr(module, "checkpoint_filter_fn", None)
    if filt is not None:
        try:
            sd = filt(sd, model)
        except Exception:  # noqa: BLE001 - filters expect their own key layout; fall back to raw
            pass
    own = model.state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith(("head.fc.", "head.weight", "head.bias", "fc."))}
    bad = [f"{k} {tuple(v.shape)} != {tuple(own[k].shape)}" for k, v in sd.items() if k in own and own[k].shape != v.shape]
    if bad:
        raise WeightsFileError(f"{path}: shape mismatch for {len(bad)} tensor(s), e.g. {bad[0]}")
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith("head")]
    if missing:
        raise WeightsFileError(f"{path}: {len(missing)} backbone tensor(s) missing, e.g. {missing[0]}")
    if len(unexpected) > len(own) // 2:
        raise WeightsFileError(f"{path}: mostly unexpected keys (e.g. {unexpected[0]}); wrong architecture?")


class Backbone(nn.Module):
    """timm model -> (feature map, class token, pooled feature) for any retrieval head."""

    def __init__(self, cfg: BackboneConfig, img_size: int):
        super().__init__()
        self.cfg = cfg
        kwargs = dict(cfg.kwargs)
        for k, v in list(kwargs.items()):
            if isinstance(v, list):
                kwargs[k] = tuple(v)
        if any(t in cfg.name for t in ("vit", "deit", "eva")):   # transformers take the input size
            kwargs.setdefault("img_size", img_size)
        try:
            self.model = timm.create_model(cfg.name, pretrained=False, num_classes=0,
                                           drop_path_rate=cfg.drop_path_rate, **kwargs)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ValueError(f"backbone {cfg.name!r} with {kwargs}: {exc}") from None
        if cfg.pretrained_path:
            load_backbone_weights(self.model, cfg.pretrained_path)
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
    """Bottleneck (Linear-BN-Dropout) + classifier: the embedding branch every paper uses.

    Returns (embedding [B, bottleneck], logits [B, num_classes] or None when num_classes == 0).
    """

    def __init__(self, in_dim: int, num_classes: int, bottleneck: int = 512, dropout: float = 0.5,
                 linear: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        if linear:
            layers.append(nn.Linear(in_dim, bottleneck))
        else:
            bottleneck = in_dim
        layers += [nn.BatchNorm1d(bottleneck)]
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
