"""timm backbones, never downloading: the one factory and the one local-pretrained loader.

Two modes, one factory (`create_timm_model`): a feature extractor returning the maps of
`out_indices` (AMCF-Net: strides 4/8/16) or the whole network with the classifier removed
(`num_classes=0`, the retrieval heads' pooled features). Channels and strides are read from
timm's `feature_info`, so a reduced CPU variant (`embed_dim=32, depths=(1, 1, 2, 1)`) and
the full `focalnet_tiny_srf` go through the same code.

Pretrained ImageNet weights come from a local file only (`model.weights.read_state_dict`:
safetensors, or a `.pth` read with `torch.load(weights_only=True)`); `load_pretrained`
remaps them with the architecture's own `checkpoint_filter_fn` (original layouts, resampled
position embeddings) and reports what did not fit.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .weights import WeightsError, read_state_dict

log = logging.getLogger(__name__)


class BackboneError(WeightsError):
    """A backbone that cannot be built, or pretrained weights that do not fit it (one line)."""


@dataclass(frozen=True)
class LoadReport:
    """What happened when local pretrained weights were loaded into a backbone."""

    loaded: int
    missing: tuple[str, ...]          # backbone keys the file did not provide (left random)
    unexpected: tuple[str, ...]       # file keys that fit nothing in the model
    unused: tuple[str, ...]           # classifier / later-stage keys the backbone drops
    mismatched: tuple[str, ...]       # "key: file (shape) vs model (shape)"

    def summary(self) -> str:
        parts = [f"loaded {self.loaded} tensors"]
        for name in ("missing", "unexpected", "mismatched"):
            items = getattr(self, name)
            if items:
                head = ", ".join(items[:5]) + (" ..." if len(items) > 5 else "")
                parts.append(f"{len(items)} {name} ({head})")
        if self.unused:
            parts.append(f"{len(self.unused)} unused by the backbone")
        return "; ".join(parts)


def _architecture(name: str) -> type[nn.Module] | None:
    """The model class behind a registered name whose entry point fixes depths/embed_dim."""
    if name.startswith("focalnet"):
        from timm.models.focalnet import FocalNet

        return FocalNet
    return None


def create_timm_model(name: str, kwargs: Mapping[str, Any] | None = None,
                      out_indices: tuple[int, ...] | None = None, **options: Any) -> nn.Module:
    """timm model `name` with random weights: feature maps of `out_indices`, or the network itself.

    kwargs: architecture overrides (`depths`, `embed_dim`, `dims` ...; lists become tuples);
    options: further timm arguments (`num_classes=0` for pooled features, `drop_path_rate`,
    `img_size`). Registered FocalNet variants fix `depths`/`embed_dim` in their entry point
    (overriding them raises "multiple values"), so a reduced FocalNet is built from the
    public `FocalNet` class with timm's public `build_model_with_cfg`, exactly as the entry
    point would build it (same module tree, same state-dict keys).
    """
    import timm
    from timm.models import build_model_with_cfg

    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(kwargs or {}).items()}
    mode: dict[str, Any] = {}
    if out_indices is not None:
        mode = dict(features_only=True, out_indices=tuple(int(i) for i in out_indices))
    try:
        return timm.create_model(name, pretrained=False, **mode, **options, **kw)
    except TypeError as exc:
        arch = _architecture(name)
        if "multiple values" not in str(exc) or arch is None:
            raise BackboneError(f"backbone {name!r} with {kw}: bad backbone kwargs ({exc})") from None
    except (RuntimeError, ValueError) as exc:  # unknown model name, impossible sizes
        raise BackboneError(f"backbone {name!r} with {kw}: {exc}") from None
    feature_cfg = dict(flatten_sequential=True, out_indices=mode.get("out_indices", (0, 1, 2, 3)))
    extra = {"features_only": True} if mode else {}
    try:
        return build_model_with_cfg(arch, name, pretrained=False, feature_cfg=feature_cfg, **extra, **options, **kw)
    except (TypeError, RuntimeError, ValueError) as exc:
        raise BackboneError(f"backbone {name!r} with {kw}: {exc}") from None


def create_backbone(name: str, out_indices: tuple[int, ...] = (0, 1, 2),
                    kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """AMCF-Net's feature extractor: timm model `name` returning the maps of `out_indices`."""
    return create_timm_model(name, kwargs, out_indices=out_indices)


def create_full_model(name: str, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """The classification model of the same architecture (the layout of ImageNet checkpoints)."""
    return create_timm_model(name, kwargs)


def feature_channels(backbone: nn.Module) -> list[int]:
    """Channels of each returned map, as timm reports them."""
    return list(backbone.feature_info.channels())


def feature_strides(backbone: nn.Module) -> list[int]:
    """Stride (reduction) of each returned map, as timm reports them."""
    return list(backbone.feature_info.reduction())


def _is_extractor(model: nn.Module) -> bool:
    return hasattr(model, "feature_info") and not hasattr(model, "forward_head")


def _timm_layout(sd: dict[str, torch.Tensor], model: nn.Module, name: str,
                 kwargs: Mapping[str, Any] | None) -> dict[str, torch.Tensor]:
    """The checkpoint in timm's key layout, via the architecture's own `checkpoint_filter_fn`.

    The filter wants the whole network (a feature extractor lacks its norms and head), so an
    extractor's classification twin is built for it. A filter that cannot read the file
    leaves it as it is; what does not fit is reported afterwards.
    """
    ref = create_full_model(name, kwargs) if _is_extractor(model) else model
    filt = getattr(importlib.import_module(type(ref).__module__), "checkpoint_filter_fn", None)
    if filt is None:
        return sd
    try:
        return dict(filt(sd, ref))
    except Exception:  # noqa: BLE001 - filters expect their own key layout; fall back to raw
        return sd


def load_pretrained(model: nn.Module, path: str | Path, name: str = "focalnet_tiny_srf",
                    kwargs: Mapping[str, Any] | None = None, strict: bool = False) -> LoadReport:
    """Load a local ImageNet checkpoint into a model of `create_timm_model` (either mode).

    A feature extractor renames top-level modules (`layers.0` -> `layers_0`); keys of what a
    backbone drops (classifier `head`/`fc`, final `norm`, later stages) are reported as
    unused, not as errors. strict=False (AMCF-Net): only a file of which nothing fits is
    refused, the rest is logged; strict=True (retrieval): any shape mismatch, any missing
    backbone tensor or a file of mostly unknown keys is refused.
    """
    path = Path(path)
    sd = _timm_layout(read_state_dict(path, BackboneError), model, name, kwargs)
    target = model.state_dict()
    # the full model's module path of every feature-extractor key
    full_names = {k.replace("_", ".", 1) if k.split(".")[0].rsplit("_", 1)[-1].isdigit() else k: k
                  for k in target}
    out: dict[str, torch.Tensor] = {}
    unexpected, unused, mismatched = [], [], []
    for k, v in sd.items():
        dst = k if k in target else full_names.get(k)
        if dst is None:
            parts = k.split(".")
            if parts[0] in ("head", "fc", "norm") or (parts[0] == "layers" and parts[1].isdigit()):
                unused.append(k)
            else:
                unexpected.append(k)
            continue
        if tuple(target[dst].shape) != tuple(v.shape):
            mismatched.append(f"{k}: file {tuple(v.shape)} vs model {tuple(target[dst].shape)}")
            continue
        out[dst] = v.to(target[dst].dtype)
    missing = sorted(set(target) - set(out))
    report = LoadReport(len(out), tuple(missing), tuple(unexpected), tuple(unused), tuple(mismatched))
    if not out:
        raise BackboneError(f"{path}: no tensor fits backbone {name!r} ({report.summary()})")
    if strict and (mismatched or [k for k in missing if not k.startswith("head")]
                   or len(unexpected) > len(target) // 2):
        raise BackboneError(f"{path} does not fit backbone {name!r}: {report.summary()}")
    model.load_state_dict(out, strict=False)
    (log.warning if (missing or unexpected or mismatched) else log.info)(
        "pretrained backbone %s: %s", path, report.summary())
    return report
