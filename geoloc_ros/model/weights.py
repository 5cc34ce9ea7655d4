"""Model files: `<path>.safetensors` (tensors) + `<path>.json` (config + metadata). Never unpickles.

The JSON holds everything needed to rebuild the network (`AMCFConfig`), so a weights file is
self-describing; `load_weights` checks every key and shape and says exactly what does not fit.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from ..config import ConfigError, load_dataclass, to_dict
from ..errors import GeolocError
from ..resources import packaged_weights_dir
from .device import parse_dtype, pick_device
from .net import AMCFConfig, AMCFNet

FORMAT = "geoloc_ros.amcf_net/1"


class WeightsError(GeolocError):
    """A weights file that is missing, unreadable or does not fit the model (one clear message)."""


def weight_paths(path: str | Path) -> tuple[Path, Path]:
    """`x`, `x.safetensors` or `x.json` -> (x.safetensors, x.json)."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def save_weights(model: AMCFNet, cfg: AMCFConfig | None = None, path: str | Path = "amcf",
                 dtype: str | torch.dtype | None = None, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write `<path>.safetensors` and `<path>.json`; returns the safetensors path.

    dtype: storage precision of floating tensors (e.g. "fp16" halves the file); None keeps them.
    metadata: JSON-serialisable extras (training steps, data, metrics ...).
    """
    from safetensors.torch import save_file

    cfg = cfg or model.cfg
    st_path, js_path = weight_paths(path)
    st_path.parent.mkdir(parents=True, exist_ok=True)
    store = parse_dtype(dtype)
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        if store is not None and v.is_floating_point():
            v = v.to(store)
        tensors[k] = v.contiguous().clone()
    save_file(tensors, str(st_path), metadata={"format": FORMAT})
    info = {
        "format": FORMAT,
        "config": to_dict(cfg),
        "dtype": str(store).replace("torch.", "") if store else "as_trained",
        "num_tensors": len(tensors),
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "metadata": dict(metadata or {}),
    }
    try:
        js_path.write_text(json.dumps(info, indent=2, sort_keys=False) + "\n")
    except TypeError as exc:
        raise WeightsError(f"{js_path}: metadata is not JSON-serialisable ({exc})") from None
    return st_path


def read_weights_info(path: str | Path) -> dict[str, Any]:
    """The JSON side of a weights file (config, dtype, metadata)."""
    _, js_path = weight_paths(path)
    if not js_path.is_file():
        raise WeightsError(f"weights description not found: {js_path}")
    try:
        info = json.loads(js_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{js_path}: not valid JSON ({exc})") from None
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise WeightsError(f"{js_path}: no 'config' mapping (not a geoloc_ros weights file)")
    return info


def _fmt(items: list[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (f" ... (+{len(items) - n} more)" if len(items) > n else "")


def load_weights(path: str | Path, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype | None = None) -> AMCFNet:
    """Rebuild AMCFNet from `<path>.json` and load `<path>.safetensors`; eval mode.

    dtype: parameter dtype after loading (None = float32); fp16-stored files are upcast.
    The model gets `.weights_info` (the JSON: config, metadata).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    st_path, js_path = weight_paths(path)
    info = read_weights_info(path)
    try:
        cfg = load_dataclass(AMCFConfig, info["config"], where=str(js_path))
    except ConfigError as exc:
        raise WeightsError(str(exc)) from None
    cfg.pretrained_path = None  # the stored tensors replace any ImageNet initialisation
    if not st_path.is_file():
        raise WeightsError(f"weights file not found: {st_path}")
    try:
        tensors = load_file(str(st_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{st_path}: not a readable safetensors file, truncated or corrupted "
                           f"({str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__})") from None
    model = AMCFNet(cfg)
    target = model.state_dict()
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
    model.load_state_dict({k: v.to(target[k].dtype) if v.is_floating_point() else v for k, v in tensors.items()})
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
