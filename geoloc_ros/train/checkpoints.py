"""Training checkpoints that resume exactly: weights, AdamW moments, scheduler and RNG state.

Why this shape: safetensors + JSON only (never pickle), so a checkpoint cannot run code when
loaded. The model family writes its own weights file (`<prefix>_model`, loadable on its own);
this module writes `<prefix>_optim.safetensors` (moments, step counts, torch RNG) and, last,
`<prefix>_state.json` (param groups, scheduler, counters): its presence marks a complete
checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from geoloc_ros.config import ConfigError, to_dict

CKPT_FORMAT = "geoloc_ros.train_checkpoint/1"


def checkpoint_prefix(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step_{step:07d}"


def save_checkpoint(prefix: Path, family, cfg, opt, sched, step: int, extra: dict) -> None:
    """<prefix>_model* (the family's weights), <prefix>_optim.safetensors, <prefix>_state.json."""
    from safetensors.torch import save_file

    prefix.parent.mkdir(parents=True, exist_ok=True)
    family.save(f"{prefix}_model", {"step": step, **extra})
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{idx}.{k}"] = v.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    tensors["rng.torch_cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    save_file(tensors, f"{prefix}_optim.safetensors", metadata={"format": CKPT_FORMAT})
    sched_sd = {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"}
    state = {"format": CKPT_FORMAT, "step": step, "param_groups": sd["param_groups"], "state_scalars": scalars,
             "scheduler": sched_sd, "config": to_dict(cfg), **extra}
    tmp = Path(f"{prefix}_state.json.tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(f"{prefix}_state.json")  # the state file last: its presence marks a complete checkpoint


def find_checkpoint(path: str | Path) -> Path:
    """A run folder (its latest checkpoint), a checkpoint prefix, or one of its files -> prefix."""
    p = Path(path).expanduser()
    if p.is_dir():
        latest = p / "checkpoints" / "latest.json"
        if latest.is_file():
            return p / "checkpoints" / json.loads(latest.read_text())["checkpoint"]
        if (p / "latest.json").is_file():
            return p / json.loads((p / "latest.json").read_text())["checkpoint"]
        raise ConfigError(f"no checkpoint found in {p} (expected checkpoints/latest.json)")
    s = str(p)
    for suf in ("_state.json", "_optim.safetensors", "_model.safetensors", "_model.json"):
        if s.endswith(suf):
            s = s[: -len(suf)]
    prefix = Path(s)
    if not Path(f"{prefix}_state.json").is_file():
        raise ConfigError(f"checkpoint not found or incomplete: {prefix}_state.json")
    return prefix


def load_checkpoint(prefix: Path, family, opt, sched) -> dict:
    """Restore weights, AdamW state, scheduler and RNG from a checkpoint; returns its state JSON."""
    from safetensors.torch import load_file

    state = json.loads(Path(f"{prefix}_state.json").read_text())
    if state.get("format") != CKPT_FORMAT:
        raise ConfigError(f"{prefix}_state.json: not a geoloc_ros training checkpoint")
    family.restore(f"{prefix}_model")
    tensors = load_file(f"{prefix}_optim.safetensors")
    opt_state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("state."):
            _, idx, name = k.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = v
    for idx, d in state.get("state_scalars", {}).items():
        opt_state.setdefault(int(idx), {}).update(d)
    groups = state["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": opt_state, "param_groups": groups})
    sched.load_state_dict({**state["scheduler"], "lr_lambdas": [None] * len(opt.param_groups)})
    torch.set_rng_state(tensors["rng.torch_cpu"])
    if torch.cuda.is_available():
        n = len([k for k in tensors if k.startswith("rng.cuda.")])
        if n == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([tensors[f"rng.cuda.{i}"] for i in range(n)])
    return state


def mark_latest(out: Path, prefix: Path, step: int) -> None:
    """checkpoints/latest.json: what `--resume <run folder>` continues from."""
    (out / "checkpoints" / "latest.json").write_text(json.dumps({"checkpoint": prefix.name, "step": step}))


def prune(ckpt_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` step checkpoints."""
    if keep <= 0:
        return
    steps = sorted({p.name.split("_state.json")[0] for p in ckpt_dir.glob("step_*_state.json")})
    for name in steps[:-keep]:
        for p in ckpt_dir.glob(f"{name}_*"):
            p.unlink(missing_ok=True)
