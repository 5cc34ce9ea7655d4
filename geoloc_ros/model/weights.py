"""Weights files: `<path>.safetensors` (tensors) + `<path>.json` (family, config, metadata). Never unpickles.

One format for every network of the package; the JSON's `family` ("amcf": the heatmap
model, "retrieval": a descriptor model) says which builder the `config` is for, so a file
is self-describing and loading one family's file as the other is refused in one line.
Files written before the tag existed are read by their old `format` string
(`geoloc_ros.amcf_net/1` -> amcf, `geoloc_ros.retrieval/1` -> retrieval; none -> amcf).

An amcf file may carry an `inference` block: the model-dependent localizer settings the
network was trained for (`gsd_ratio`, `useful_frac`), which `LocalizerConfig` takes unless
the user set them (localize.config.with_model_defaults).

This module is the bottom of model/: it imports neither the network nor the backbone
(they import `WeightsError` from here), and `save_weights` / `load_weights` build AMCF-Net
on use.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

from ..config import ConfigError, load_dataclass, read_json, to_dict
from ..errors import GeolocError
from ..resources import packaged_weights_dir
from .device import parse_dtype, pick_device

if TYPE_CHECKING:
    from .net import AMCFConfig, AMCFNet

FORMAT = "geoloc_ros.weights/1"
FAMILIES = ("amcf", "retrieval")
#: format strings of files written before the family tag, and the family they hold
LEGACY_FORMATS = {"geoloc_ros.amcf_net/1": "amcf", "geoloc_ros.retrieval/1": "retrieval"}


class WeightsError(GeolocError):
    """A weights file that is missing, unreadable or does not fit the model (one clear message)."""


def weight_paths(path: str | Path) -> tuple[Path, Path]:
    """`x`, `x.safetensors` or `x.json` -> (x.safetensors, x.json)."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def write_weights(module: nn.Module, path: str | Path, family: str, config: Mapping[str, Any],
                  dtype: str | torch.dtype | None = None, metadata: Mapping[str, Any] | None = None,
                  inference: Mapping[str, Any] | None = None) -> Path:
    """Write `module`'s tensors and the JSON description of any family; returns the safetensors path.

    dtype: storage precision of floating tensors (e.g. "fp16" halves the file); None keeps them.
    metadata: JSON-serialisable extras (training steps, data, metrics ...).
    inference: model-dependent localizer defaults (see the module docstring); omitted when None.
    """
    from safetensors.torch import save_file

    if family not in FAMILIES:
        raise WeightsError(f"unknown weights family {family!r}; one of {', '.join(FAMILIES)}")
    st_path, js_path = weight_paths(path)
    st_path.parent.mkdir(parents=True, exist_ok=True)
    store = parse_dtype(dtype)
    tensors = {}
    for k, v in module.state_dict().items():
        v = v.detach().to("cpu")
        if store is not None and v.is_floating_point():
            v = v.to(store)
        tensors[k] = v.contiguous().clone()
    info: dict[str, Any] = {"format": FORMAT, "family": family, "config": dict(config)}
    if inference is not None:
        info["inference"] = dict(inference)
    info.update({
        "dtype": str(store).replace("torch.", "") if store else "as_trained",
        "num_tensors": len(tensors),
        "num_parameters": int(sum(p.numel() for p in module.parameters())),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "metadata": dict(metadata or {}),
    })
    try:
        text = json.dumps(info, indent=2, sort_keys=False) + "\n"
    except TypeError as exc:
        raise WeightsError(f"{js_path}: metadata is not JSON-serialisable ({exc})") from None
    save_file(tensors, str(st_path), metadata={"format": FORMAT, "family": family})
    js_path.write_text(text)
    return st_path


def weights_family(info: Mapping[str, Any]) -> str:
    """The family of a weights JSON: its tag, else the one its old format string implies."""
    return str(info.get("family") or LEGACY_FORMATS.get(str(info.get("format")), "amcf"))


def read_weights_info(path: str | Path, family: str | None = None) -> dict[str, Any]:
    """The JSON side of a weights file (family, config, inference, metadata), checked.

    family: the family the caller can build; a file of another family is refused.
    """
    _, js_path = weight_paths(path)
    info = read_json(js_path, WeightsError, f"weights description not found: {js_path}")
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise WeightsError(f"{js_path}: no 'config' mapping (not a geoloc_ros weights file)")
    fmt = info.get("format", FORMAT)
    if fmt != FORMAT and fmt not in LEGACY_FORMATS:
        raise WeightsError(f"{js_path}: unknown format {fmt!r} (not a geoloc_ros weights file)")
    found = weights_family(info)
    if found not in FAMILIES:
        raise WeightsError(f"{js_path}: unknown weights family {found!r}; one of {', '.join(FAMILIES)}")
    if family is not None and found != family:
        raise WeightsError(f"{js_path}: holds {found} weights, but {family} weights are needed here")
    if not isinstance(info.get("inference", {}), dict):
        raise WeightsError(f"{js_path}: 'inference' must be a mapping")
    info["family"] = found
    return info


def _fmt(items: list[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (f" ... (+{len(items) - n} more)" if len(items) > n else "")


def load_tensors(module: nn.Module, path: str | Path, split_backbone: bool = False) -> None:
    """Load `<path>.safetensors` into `module` (cast to its dtypes); every key and shape must fit.

    What does not fit is listed (shape mismatches, missing and unexpected keys) in one line.
    split_backbone: the file is a shared-backbone AMCF-Net and `module` its dual variant; the
    satellite backbone starts as a copy of the shared one (the dual-backbone ablation trained
    from the same starting point as the shared model).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    st_path, js_path = weight_paths(path)
    if not st_path.is_file():
        raise WeightsError(f"weights file not found: {st_path}")
    try:
        tensors = load_file(str(st_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{st_path}: not a readable safetensors file, truncated or corrupted "
                           f"({str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__})") from None
    if split_backbone:
        if any(k.startswith("sat_backbone.") for k in tensors):
            raise WeightsError(f"{st_path} already has a satellite backbone; nothing to split")
        tensors.update({"sat_" + k: v.clone() for k, v in list(tensors.items()) if k.startswith("backbone.")})
    target = module.state_dict()
    missing = sorted(set(target) - set(tensors))
    unexpected = sorted(set(tensors) - set(target))
    mismatched = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(target[k].shape)}"
                  for k in sorted(set(target) & set(tensors)) if tuple(tensors[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatch(es): {_fmt(mismatched)}")
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_fmt(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_fmt(unexpected)}")
        raise WeightsError(f"{st_path} does not fit the model of {js_path.name}: " + "; ".join(parts))
    module.load_state_dict({k: v.to(target[k].dtype) if v.is_floating_point() else v for k, v in tensors.items()})


def read_state_dict(path: str | Path, error: type[WeightsError] = WeightsError) -> dict[str, torch.Tensor]:
    """Tensors of a foreign checkpoint (e.g. ImageNet backbone weights): .safetensors or a plain state dict.

    `torch.load(weights_only=True)` refuses arbitrary pickled objects, so a hostile file cannot
    execute code; {"state_dict" | "model" | "module": ...} wrappers and "module." prefixes
    (DataParallel) are removed. `error`: the WeightsError subclass to raise.
    """
    p = Path(path)
    if not p.is_file():
        raise error(f"weights file not found: {p}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(p))
        else:
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a user-file problem
        raise error(f"{p}: not a plain tensor state dict, cannot read it ({exc.__class__.__name__}: "
                    f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    for key in ("state_dict", "model", "module"):  # common checkpoint wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise error(f"{p}: expected a mapping of tensors, got {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


# ------------------------------------------------------------------------------ AMCF-Net
def save_weights(model: "AMCFNet", cfg: "AMCFConfig | None" = None, path: str | Path = "amcf",
                 dtype: str | torch.dtype | None = None, metadata: Mapping[str, Any] | None = None,
                 inference: Mapping[str, Any] | None = None) -> Path:
    """Write AMCF-Net as `<path>.safetensors` + `<path>.json` (family "amcf"); returns the safetensors path.

    inference: the localizer defaults the model was trained for; None keeps the block of the
    weights the model was loaded from (so re-packaging a file does not drop it).
    """
    if inference is None:
        inference = (getattr(model, "weights_info", None) or {}).get("inference")
    return write_weights(model, path, "amcf", to_dict(cfg or model.cfg), dtype, metadata, inference)


def load_weights(path: str | Path, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype | None = None, overrides: Mapping[str, Any] | None = None) -> "AMCFNet":
    """Rebuild AMCFNet from `<path>.json` and load `<path>.safetensors`; eval mode.

    dtype: parameter dtype after loading (None = float32); fp16-stored files are upcast.
    overrides: AMCFConfig fields set over the stored config (fine-tuning with a knob that
    changes no tensor shape, e.g. input_norm); a shape change fails like a wrong file. One
    exception: `shared_backbone: false` over a shared-backbone file splits it, both backbones
    starting from the shared one (the dual-backbone ablation from the same weights).
    The model gets `.weights_info` (the JSON: family, config, inference, metadata).
    """
    from .net import AMCFConfig, AMCFNet

    _, js_path = weight_paths(path)
    info = read_weights_info(path, family="amcf")
    try:
        cfg = load_dataclass(AMCFConfig, {**info["config"], **dict(overrides or {})}, where=str(js_path))
    except ConfigError as exc:
        raise WeightsError(str(exc)) from None
    cfg.pretrained_path = None  # the stored tensors replace any ImageNet initialisation
    model = AMCFNet(cfg)
    split = bool(info["config"].get("shared_backbone", True)) and not cfg.shared_backbone
    load_tensors(model, path, split_backbone=split)
    model = model.to(device=pick_device(device), dtype=parse_dtype(dtype) or torch.float32).eval()
    model.weights_info = info
    return model


def packaged_weights_path() -> Path:
    """The weights shipped in the package (geoloc_ros/weights/*.safetensors, first by name).

    What `weights: default` means for the node, the replay and the demo. Package data, so it
    is next to the code in a checkout, a wheel and a colcon install alike.
    """
    d = packaged_weights_dir()
    found = sorted(d.glob("*.safetensors"))
    if not found:
        raise WeightsError(f"'default' weights requested but none are packaged in {d}")
    return found[0]


def resolve_weights(name: str | Path) -> Path:
    """'default' -> the packaged weights; anything else -> that path (user ~ expanded)."""
    return packaged_weights_path() if str(name) == "default" else Path(name).expanduser()
