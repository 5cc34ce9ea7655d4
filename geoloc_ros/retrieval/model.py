"""Retrieval descriptor model: config, the plug-in head interface, weights I/O, preprocessing.

One idea: an image -> one L2-normalised global descriptor, the same network for drone
and satellite images (shared weights, as in MEAN, Safe-Net and QDFL). Heads are plug-ins,
one file each (`mean.py`, `safenet.py`, `qdfl.py`), registered by name in `HEADS`; a
head lists its knobs with comments in `default_conf` and rejects unknown ones.
Weights are `<path>.safetensors` + `<path>.json` of family "retrieval" in the package's one
weights format (model/weights.py), never a pickle; images become tensors with
`data.tensors.to_tensor` like everywhere else.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from geoloc_ros.config import ConfigError, load_dataclass, to_dict
from geoloc_ros.data.tensors import to_tensor
from geoloc_ros.model.weights import WeightsError, load_tensors, read_weights_info, weight_paths, write_weights
from geoloc_ros.retrieval.backbone import Backbone, BackboneConfig

#: head name -> "module:Class" (lazy, so importing one head does not build the others)
HEADS = {
    "mean": "geoloc_ros.retrieval.mean:MEANModel",
    "safenet": "geoloc_ros.retrieval.safenet:SafeNetModel",
    "qdfl": "geoloc_ros.retrieval.qdfl:QDFLModel",
}


@dataclass
class RetrievalConfig:
    head: str = "mean"                    # mean | safenet | qdfl
    img_size: int = 384                   # square input side for drone and satellite images (training)
    test_img_size: int = 0                # input side at evaluation / indexing; 0 = img_size (QDFL tests at 280)
    recipe: str = ""                      # named paper recipe this model follows ("" = our CPU-sized heads)
    num_classes: int = 0                  # location ids for the CE branches (0 = no classifiers)
    backbone: BackboneConfig = field(default_factory=lambda: BackboneConfig(name=""))  # "" -> head's default
    head_kwargs: dict[str, Any] = field(default_factory=dict)          # see the head's default_conf

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"unknown retrieval head {self.head!r}; choose one of {', '.join(HEADS)}")
        if isinstance(self.backbone, dict):
            self.backbone = load_dataclass(BackboneConfig, self.backbone, where="backbone")
        if self.img_size < 16 or 0 < self.test_img_size < 16:
            raise ValueError(f"img_size {self.img_size} / test_img_size {self.test_img_size} too small")


class RetrievalModel(nn.Module):
    """Base of every head. Subclasses set `default_conf`, `default_backbone` and implement
    `_build(conf)` and `_forward(x) -> dict`.

    `forward(x [B,3,S,S] in [0,1])` returns a dict:
      - `desc` [B, D]: the L2-normalised retrieval descriptor (always);
      - in training mode also `embeddings` (list of [B, d] branch features for InfoNCE),
        `logits` (list of [B, num_classes]; empty when num_classes == 0) and, where the head
        has one, `align` ([B, ...] features for MEAN's cross-domain alignment term).
    """

    default_conf: dict[str, Any] = {}
    default_backbone: BackboneConfig = BackboneConfig(name="convnext_tiny")

    def __init__(self, cfg: RetrievalConfig):
        super().__init__()
        unknown = sorted(set(cfg.head_kwargs) - set(self.default_conf))
        if unknown:
            raise ConfigError(f"head {cfg.head}: unknown key(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(self.default_conf))}")
        self.cfg = cfg
        self.conf = {**self.default_conf, **cfg.head_kwargs}
        bcfg = cfg.backbone
        if not bcfg.name:
            d = self.default_backbone
            bcfg = dataclasses.replace(bcfg, name=d.name, kwargs=dict(bcfg.kwargs or d.kwargs))
            cfg.backbone = bcfg
        self.backbone = Backbone(bcfg, cfg.img_size)
        self._build(self.conf)

    # --- to implement -------------------------------------------------------------------
    def _build(self, conf: dict[str, Any]) -> None:
        raise NotImplementedError

    def _forward(self, x: torch.Tensor) -> dict[str, Any]:
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        out = self._forward(x)
        out["desc"] = F.normalize(out["desc"].float(), dim=-1)
        return out

    @torch.no_grad()
    def describe(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] in [0, 1] -> [B, D] unit descriptors (eval mode, no grad)."""
        was = self.training
        self.eval()
        try:
            return self.forward(x)["desc"]
        finally:
            self.train(was)

    @property
    def eval_size(self) -> int:
        """Input side for descriptors outside training (test_img_size, else img_size)."""
        return int(self.cfg.test_img_size or self.cfg.img_size)

    @property
    def descriptor_dim(self) -> int:
        if not hasattr(self, "_desc_dim"):
            dev = next(self.parameters()).device
            s = self.eval_size
            self._desc_dim = int(self.describe(torch.zeros(1, 3, s, s, device=dev)).shape[1])
        return self._desc_dim


def build_model(cfg: RetrievalConfig | dict | str | Path) -> RetrievalModel:
    """Config (dataclass, mapping or YAML path with the keys of RetrievalConfig) -> model."""
    if not isinstance(cfg, RetrievalConfig):
        cfg = load_dataclass(RetrievalConfig, cfg)
    mod_name, cls_name = HEADS[cfg.head].split(":")
    cls = getattr(importlib.import_module(mod_name), cls_name)
    return cls(cfg)


def save_model(model: RetrievalModel, path: str | Path, meta: dict | None = None) -> Path:
    """Write `<path>.safetensors` + `<path>.json` (family "retrieval", model.weights format); returns the json path."""
    cfg = to_dict(model.cfg)
    cfg["backbone"]["pretrained_path"] = ""    # the weights file holds everything now
    # keys added for the paper recipes are written only when set, so weights of the CPU-sized
    # heads stay loadable by versions that predate them
    for where, key, default in ((cfg, "test_img_size", 0), (cfg, "recipe", ""), (cfg["backbone"], "keep_blocks", 0)):
        if where.get(key) == default:
            where.pop(key)
    st = write_weights(model, path, "retrieval", cfg, metadata=meta)
    return weight_paths(st)[1]


def load_model(path: str | Path, device: str | torch.device = "cpu") -> RetrievalModel:
    """Inverse of save_model; a missing, corrupted or non-fitting file gives one WeightsError line."""
    _, js = weight_paths(path)
    info = read_weights_info(path, family="retrieval")
    try:
        model = build_model(load_dataclass(RetrievalConfig, info["config"], where=str(js)))
    except ConfigError as exc:
        raise WeightsError(str(exc)) from None
    load_tensors(model, path)
    return model.to(device).eval()


@torch.no_grad()
def describe_images(model: RetrievalModel, images: Sequence[np.ndarray], batch: int = 32,
                    device: str | torch.device | None = None) -> np.ndarray:
    """Unit descriptors [N, D] float32 for a list of RGB uint8 images."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    outs = []
    for i in range(0, len(images), batch):
        x = to_tensor(list(images[i:i + batch]), model.eval_size).to(dev)
        outs.append(model.describe(x).float().cpu().numpy())
    return np.concatenate(outs, 0) if outs else np.zeros((0, model.descriptor_dim), np.float32)
