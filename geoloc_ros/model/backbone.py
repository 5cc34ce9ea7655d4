"""Backbone construction: a timm feature extractor at strides 4/8/16, never downloading.

Channels and strides are read from timm's `feature_info`, so a reduced CPU variant
(`embed_dim=32, depths=(1, 1, 2, 1)`) and the full `focalnet_tiny_srf` go through the same code.
Optional ImageNet weights come from a local file only (safetensors or a `.pth` read with
`torch.load(weights_only=True)`, which never unpickles arbitrary objects).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import GeolocError

log = logging.getLogger(__name__)


class BackboneError(GeolocError):
    """A backbone that cannot be built or whose pretrained file does not fit (one line)."""


@dataclass(frozen=True)
class LoadReport:
    """What happened when local pretrained weights were loaded into a backbone."""

    loaded: int
    missing: tuple[str, ...]          # backbone keys the file did not provide (left random)
    unexpected: tuple[str, ...]       # file keys that fit nothing in the model
    unused: tuple[str, ...]           # classifier / later-stage keys the truncated backbone drops
    mismatched: tuple[str, ...]       # "key: file (shape) vs model (shape)"

    def summary(self) -> str:
        parts = [f"loaded {self.loaded} tensors"]
        for name in ("missing", "unexpected", "mismatched"):
            items = getattr(self, name)
            if items:
                head = ", ".join(items[:5]) + (" ..." if len(items) > 5 else "")
                parts.append(f"{len(items)} {name} ({head})")
        if self.unused:
            parts.append(f"{len(self.unused)} unused by the truncated backbone")
        return "; ".join(parts)


def create_backbone(name: str, out_indices: tuple[int, ...] = (0, 1, 2),
                    kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """timm feature extractor `name` returning the maps of `out_indices`, random weights.

    `timm.create_model` fixes `depths`/`embed_dim` for registered FocalNet variants (passing
    them again raises "multiple values"), so for FocalNet overrides we call timm's own
    `_create_focalnet(name, ...)`, which is what the registered entry point calls.
    """
    import timm

    kw = dict(kwargs or {})
    for key in ("depths", "focal_levels", "focal_windows"):
        if isinstance(kw.get(key), list):
            kw[key] = tuple(kw[key])
    common = dict(pretrained=False, features_only=True, out_indices=tuple(out_indices))
    try:
        return timm.create_model(name, **common, **kw)
    except TypeError as exc:
        if "multiple values" not in str(exc) or not name.startswith("focalnet"):
            raise BackboneError(f"backbone {name!r}: bad backbone_kwargs ({exc})") from None
    except RuntimeError as exc:  # unknown model name
        raise BackboneError(f"backbone {name!r}: {exc}") from None
    from timm.models import focalnet

    return focalnet._create_focalnet(name, **common, **kw)


def feature_channels(backbone: nn.Module) -> list[int]:
    """Channels of each returned map, as timm reports them."""
    return list(backbone.feature_info.channels())


def feature_strides(backbone: nn.Module) -> list[int]:
    """Stride (reduction) of each returned map, as timm reports them."""
    return list(backbone.feature_info.reduction())


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise BackboneError(f"pretrained backbone file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a user-file problem
        raise BackboneError(f"{path}: cannot read pretrained weights ({exc.__class__.__name__}: "
                            f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    for key in ("state_dict", "model", "module"):  # common checkpoint wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise BackboneError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_pretrained(backbone: nn.Module, path: str | Path, name: str = "focalnet_tiny_srf",
                    kwargs: Mapping[str, Any] | None = None) -> LoadReport:
    """Load a local ImageNet checkpoint (timm or original FocalNet key layout) into `backbone`.

    The feature extractor renames top-level modules (`layers.0` -> `layers_0`); keys of the
    stages it drops (`layers.3`, `norm`, `head`) are reported as unused, not as errors.
    """
    path = Path(path)
    sd = _read_state_dict(path)
    if name.startswith("focalnet") and "stem.proj.weight" not in sd:
        # original Microsoft layout -> timm layout, via timm's own filter on a full model
        from timm.models import focalnet

        full = create_full_model(name, kwargs)
        sd = focalnet.checkpoint_filter_fn(sd, full)
    target = backbone.state_dict()
    # the full model's module path of every feature-extractor key
    full_names = {k.replace("_", ".", 1) if k.split(".")[0].rsplit("_", 1)[-1].isdigit() else k: k
                  for k in target}
    out: dict[str, torch.Tensor] = {}
    unexpected, unused, mismatched = [], [], []
    for k, v in sd.items():
        dst = k if k in target else full_names.get(k)
        if dst is None:
            top = k.split(".")[0]
            if top in ("head", "norm") or (top == "layers" and k.split(".")[1].isdigit()):
                unused.append(k)
            else:
                unexpected.append(k)
            continue
        if tuple(target[dst].shape) != tuple(v.shape):
            mismatched.append(f"{k}: file {tuple(v.shape)} vs model {tuple(target[dst].shape)}")
            continue
        out[dst] = v.to(target[dst].dtype)
    missing = sorted(set(target) - set(out))
    backbone.load_state_dict(out, strict=False)
    report = LoadReport(len(out), tuple(missing), tuple(unexpected), tuple(unused), tuple(mismatched))
    if not out:
        raise BackboneError(f"{path}: no tensor fits backbone {name!r} ({report.summary()})")
    (log.warning if (missing or unexpected or mismatched) else log.info)(
        "pretrained backbone %s: %s", path, report.summary())
    return report


def create_full_model(name: str, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """The classification model of the same architecture (used for key remapping only)."""
    import timm

    kw = dict(kwargs or {})
    try:
        return timm.create_model(name, pretrained=False, **kw)
    except TypeError:
        from timm.models import focalnet

        return focalnet._create_focalnet(name, pretrained=False, **kw)
