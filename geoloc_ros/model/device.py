"""One place for device and precision choices (CPU / CUDA, fp32 / bf16 / fp16)."""
from __future__ import annotations

import contextlib

import torch

from ..errors import GeolocError


class DeviceError(GeolocError):
    """A device or precision name that is unknown or not available here (one line)."""


_DTYPES = {
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
}


def pick_device(name: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda when available else cpu; "cpu", "cuda", "cuda:1", ... checked, one-line error."""
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {name!r} requested but MPS is not available")
    return dev


def parse_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    """"fp32"/"bf16"/"fp16" (and long names) -> torch dtype; None stays None."""
    if name is None or isinstance(name, torch.dtype):
        return name
    try:
        return _DTYPES[str(name).strip().lower()]
    except KeyError:
        raise DeviceError(f"unknown precision {name!r} (use fp32, bf16 or fp16)") from None


def autocast(device: torch.device | str, precision: str | torch.dtype | None = "fp32"):
    """Context for mixed precision: nullcontext for fp32 (and fp16 on CPU, unsupported there)."""
    dev = torch.device(device)
    dtype = parse_dtype(precision)
    if dtype in (None, torch.float32):
        return contextlib.nullcontext()
    if dev.type == "cpu" and dtype == torch.float16:
        raise ValueError("fp16 autocast is not supported on CPU; use bf16 or fp32")
    return torch.autocast(device_type=dev.type, dtype=dtype)


def default_precision(device: torch.device | str) -> str:
    """What inference should use by default: bf16 on CUDA when supported, else fp32."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"
