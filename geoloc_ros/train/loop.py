"""The training loop: data mix -> AMCF-Net -> weighted balance loss, with exact resume.

Why it looks like this:
* Data are indexed by the global step: step s of a run with world size W and batch B
  uses pair indices (s * W + rank) * B + k of a PairDataset, each reproducible from
  (seed, index). A resumed run therefore sees exactly the batches it would have seen.
  (This replaces DistributedSampler, which can only restart at epoch boundaries.)
* Checkpoints are safetensors + JSON only (never pickle): the model via
  model.weights.save_weights, AdamW moments / step counts and torch RNG states as
  tensors, the param groups, scheduler and counters as JSON.
* Validation uses held-out TRAINING data (UL14 places / a map strip / photos that the
  training mix never draws), never the test set.
* bf16 autocast on GPU only; fp32 on CPU. DDP when WORLD_SIZE > 1 (torchrun), only rank 0
  logs, validates and saves.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from geoloc_ros.config import ConfigError, to_dict
from geoloc_ros.data.pairs import OrthoPairSource, PairConfig, PairDataset, PhotoPairSource, list_images
from geoloc_ros.data.ul14 import UL14Train, list_folders, split_train_folders
from geoloc_ros.metrics import pixel_metrics
from geoloc_ros.model.decode import ul14_peaks
from geoloc_ros.train.config import TrainConfig, resolve_path
from geoloc_ros.train.logging import RunLogger

log = logging.getLogger(__name__)

CKPT_FORMAT = "geoloc_ros.train_checkpoint/1"


# --------------------------------------------------------------------------- data
def build_sources(cfg: TrainConfig, uav_size: int, sat_size: int, base: Path | None):
    """(train sources, train weights, val sources, val weights) from the config's source list.

    Held out for validation: whole UL14 places, the southern `val_fraction` strip of each
    orthophoto, a random `val_fraction` of the photos.
    """
    train, tw, val, vw = [], [], [], []
    for i, s in enumerate(cfg.sources):
        f = s.val_fraction
        if s.kind == "ul14":
            root = resolve_path(s.path, base)
            tr_f, va_f = split_train_folders(list_folders(root, "train"), f, by="place", seed=cfg.seed)
            train.append(UL14Train(root, tr_f, uav_size, sat_size, erasing_p=s.erasing_p, on_error=s.on_error))
            tw.append(s.weight)
            if va_f:
                val.append(UL14Train(root, va_f, uav_size, sat_size, erasing_p=0.0, on_error=s.on_error))
                vw.append(s.weight)
            continue
        try:
            pc = PairConfig(**{**s.pairs, "uav_size": uav_size, "sat_size": sat_size})
        except TypeError as exc:
            raise ConfigError(f"sources[{i}].pairs: {exc}") from None
        paths = s.path if isinstance(s.path, list) else [s.path]
        if s.kind == "ortho":
            uav_paths = (s.uav_path if isinstance(s.uav_path, list) else [s.uav_path]) if s.uav_path else [None] * len(paths)
            if len(uav_paths) != len(paths):
                raise ConfigError(f"sources[{i}]: uav_path needs one map per path ({len(paths)}), got {len(uav_paths)}")
            for p, up in zip(paths, uav_paths):
                p = resolve_path(p, base)
                up = resolve_path(up, base) if up else None
                for q in (p, up):
                    if q is not None and not q.is_file():
                        raise ConfigError(f"sources[{i}]: orthophoto not found: {q}")
                train.append(OrthoPairSource(p, pc, region=(0.0, f, 1.0, 1.0), uav_map=up))
                tw.append(s.weight / len(paths))
                if f > 0:
                    val.append(OrthoPairSource(p, pc, region=(0.0, 0.0, 1.0, f), uav_map=up))
                    vw.append(s.weight / len(paths))
            continue
        try:
            photos = list_images([resolve_path(p, base) for p in paths])
        except FileNotFoundError as exc:
            raise ConfigError(f"sources[{i}]: {exc}") from None
        if not photos:
            raise ConfigError(f"sources[{i}]: no photos found in {s.path}")
        order = np.random.default_rng(cfg.seed).permutation(len(photos))
        n_val = min(int(round(f * len(photos))), len(photos) - 1)
        va_p = [photos[j] for j in sorted(order[:n_val])]
        tr_p = [photos[j] for j in sorted(order[n_val:])]
        train.append(PhotoPairSource(tr_p, pc, on_error=s.on_error))
        tw.append(s.weight)
        if va_p:
            val.append(PhotoPairSource(va_p, pc, on_error=s.on_error))
            vw.append(s.weight)
    if not train:
        raise ConfigError("no training data: the config has no usable sources")
    return train, tw, val, vw


class StepBatchSampler:
    """Batches of global pair indices for steps start..end-1 of this rank (see module docstring)."""

    def __init__(self, start: int, end: int, batch: int, rank: int = 0, world: int = 1) -> None:
        self.start, self.end, self.batch, self.rank, self.world = start, end, batch, rank, world

    def __iter__(self):
        for s in range(self.start, self.end):
            base = (s * self.world + self.rank) * self.batch
            yield list(range(base, base + self.batch))

    def __len__(self) -> int:
        return max(self.end - self.start, 0)


# --------------------------------------------------------------------------- optimiser / schedule
def lr_factor(step: int, warmup: int, total: int, floor: float) -> float:
    """Linear warmup (step+1)/warmup, then cosine from 1 to `floor` at `total` steps."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if total <= warmup:
        return 1.0
    t = min(max((step - warmup) / (total - warmup), 0.0), 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig):
    o = cfg.optim
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=o.lr,
                            betas=tuple(o.betas), weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, o.warmup_steps, cfg.max_steps, o.min_lr_ratio))
    return opt, sched


# --------------------------------------------------------------------------- checkpoints
def checkpoint_prefix(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step_{step:07d}"


def save_checkpoint(prefix: Path, model, cfg: TrainConfig, opt, sched, step: int, extra: dict) -> None:
    """<prefix>_model.{safetensors,json} (weights), <prefix>_optim.safetensors, <prefix>_state.json."""
    from safetensors.torch import save_file

    from geoloc_ros.model.weights import save_weights

    prefix.parent.mkdir(parents=True, exist_ok=True)
    save_weights(model, model.cfg, f"{prefix}_model", metadata={"step": step, **extra})
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


def load_checkpoint(prefix: Path, model, opt, sched, device) -> dict:
    """Restore weights, AdamW state, scheduler and RNG from a checkpoint; returns its state JSON."""
    from safetensors.torch import load_file

    from geoloc_ros.model.weights import load_weights

    state = json.loads(Path(f"{prefix}_state.json").read_text())
    if state.get("format") != CKPT_FORMAT:
        raise ConfigError(f"{prefix}_state.json: not a geoloc_ros training checkpoint")
    loaded = load_weights(f"{prefix}_model", device="cpu")
    missing = model.load_state_dict(loaded.state_dict(), strict=True)
    del loaded, missing
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


# --------------------------------------------------------------------------- validation
def _collate(batch: list[dict]) -> dict:
    return {"uav": torch.stack([b["uav"] for b in batch]), "sat": torch.stack([b["sat"] for b in batch]),
            "center": torch.stack([b["center"] for b in batch])}


def _loss(logits, frac, cfg: TrainConfig, sat_size: int):
    from geoloc_ros.model.loss import fractions_to_centers, hanning_balance_loss, weighted_balance_loss

    centers = fractions_to_centers(frac.cpu(), logits.shape[-2:]).to(logits.device)
    r = cfg.loss_radius if cfg.loss_radius is not None else max(int(round(15 * sat_size / 384)), 1)
    if cfg.loss == "hanning":
        return hanning_balance_loss(logits.float(), centers, side=2 * r + 1, nw=cfg.nw)
    return weighted_balance_loss(logits.float(), centers, radius=r, nw=cfg.nw)


def val_hanning(cfg: TrainConfig, sat_size: int) -> int:
    if cfg.val_hanning is not None:
        return int(cfg.val_hanning)
    k = int(round(31 * sat_size / 384))
    return k if k % 2 else k + 1


@torch.no_grad()
def validate(model, val_ds: PairDataset, cfg: TrainConfig, device, precision: str) -> dict[str, float]:
    """Loss, mean/median pixel error, fraction within K px and RDS on fixed held-out pairs."""
    from geoloc_ros.model.device import autocast

    was_training = model.training
    model.eval()
    n = cfg.val_samples
    losses, preds, trues = [], [], []
    size = val_ds.sat_size
    for start in range(0, n, cfg.val_batch_size):
        items = [val_ds[i] for i in range(start, min(start + cfg.val_batch_size, n))]
        b = _collate(items)
        with autocast(device, precision):
            logits = model(b["uav"].to(device), b["sat"].to(device))
        logits = logits.float()
        losses.append(float(_loss(logits, b["center"], cfg, size)) * len(items))
        preds.append(ul14_peaks(logits, hanning=val_hanning(cfg, size)))
        trues.append(b["center"].numpy() * (size - 1))
    model.train(was_training)
    out = {"loss": sum(losses) / n}
    out.update(pixel_metrics(np.concatenate(preds), np.concatenate(trues), size, cfg.val_ks_px))
    return out


# --------------------------------------------------------------------------- main loop
def _dist_setup(device_name: str):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        from geoloc_ros.model.device import pick_device

        return pick_device(device_name), 0, 1
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available() and device_name != "cpu":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return device, rank, world


def build_model(cfg: TrainConfig, base: Path | None):
    from geoloc_ros.model.net import AMCFNet, load_model_config
    from geoloc_ros.model.weights import load_weights

    if cfg.init_weights:
        model = load_weights(resolve_path(cfg.init_weights, base), device="cpu")
        model.train()
        return model
    m = cfg.model
    if isinstance(m, (str, Path)):
        m = resolve_path(m, base)
        if not m.is_file():
            raise ConfigError(f"model config not found: {m}")
    return AMCFNet(load_model_config(m))


def train(cfg: TrainConfig, base: Path | None = None, resume: str | Path | None = None,
          progress: bool = True) -> dict:
    """Run (or continue) training; returns {"step", "checkpoint", "val": last metrics, "out"}."""
    from tqdm import tqdm

    from geoloc_ros.model.device import autocast

    device, rank, world = _dist_setup(cfg.device)
    main_rank = rank == 0
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "bf16" and device.type != "cuda":
        log.warning("bf16 autocast requested on %s: using fp32 (bf16 is for GPUs here)", device)
        precision = "fp32"
    out = Path(cfg.out).expanduser()
    torch.manual_seed(cfg.seed)

    model = build_model(cfg, base).to(device)
    model.train()
    uav_size, sat_size = model.cfg.uav_size, model.cfg.sat_size
    tr_src, tr_w, va_src, va_w = build_sources(cfg, uav_size, sat_size, base)
    train_ds = PairDataset(tr_src, tr_w, seed=cfg.seed)
    val_ds = PairDataset(va_src, va_w, seed=cfg.seed + 7919) if va_src and cfg.val_every > 0 else None

    opt, sched = make_optimizer(model, cfg)
    start, best = 0, None
    if resume is not None:
        prefix = find_checkpoint(resume)
        state = load_checkpoint(prefix, model, opt, sched, device)
        start, best = int(state["step"]), state.get("best_rds")
        if main_rank:
            log.info("resumed from %s at step %d", prefix, start)

    if rank > 0:  # different drop-path masks per rank (rank 0's RNG is the one checkpointed)
        torch.manual_seed(cfg.seed + 1_000_003 * rank + start)
    ddp = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    logger = RunLogger(out, enabled=main_rank, tensorboard=cfg.tensorboard)
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(to_dict(cfg), indent=1))

    loader = torch.utils.data.DataLoader(
        train_ds, batch_sampler=StepBatchSampler(start, cfg.max_steps, cfg.batch_size, rank, world),
        num_workers=cfg.num_workers, collate_fn=_collate, pin_memory=device.type == "cuda",
        persistent_workers=False,
        # own generator: creating the iterator must not draw from the global RNG (drop-path
        # masks use it), or a resumed run would drift from an uninterrupted one
        generator=torch.Generator().manual_seed(cfg.seed))
    bar = tqdm(total=cfg.max_steps, initial=start, disable=not (progress and main_rank), desc="train",
               dynamic_ncols=True)
    step = start
    last_val: dict[str, float] = {}
    last_ckpt = None
    t_log, n_log, loss_acc, gn_acc = time.perf_counter(), 0, 0.0, 0.0

    def do_val_and_save(step: int, final: bool = False) -> None:
        nonlocal best, last_val, last_ckpt
        if not main_rank:
            return
        if val_ds is not None and (final or (cfg.val_every > 0 and step % cfg.val_every == 0)):
            last_val = validate(model, val_ds, cfg, device, precision)
            logger.scalars(step, last_val, group="val")
            if best is None or last_val["RDS"] > best:
                best = last_val["RDS"]
                from geoloc_ros.model.weights import save_weights

                save_weights(model, model.cfg, out / "best", metadata={"step": step, "val": last_val})
        if final or (cfg.save_every > 0 and step % cfg.save_every == 0):
            prefix = checkpoint_prefix(out, step)
            save_checkpoint(prefix, model, cfg, opt, sched, step, {"best_rds": best, "world_size": world})
            (out / "checkpoints" / "latest.json").write_text(json.dumps({"checkpoint": prefix.name, "step": step}))
            last_ckpt = prefix
            _prune(out / "checkpoints", cfg.keep_checkpoints)

    for batch in loader:
        uav = batch["uav"].to(device, non_blocking=True)
        sat = batch["sat"].to(device, non_blocking=True)
        with autocast(device, precision):
            logits = ddp(uav, sat)
        loss = _loss(logits, batch["center"], cfg, sat_size)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            gn = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip))
        else:
            gn = float(torch.sqrt(sum((p.grad.detach().float() ** 2).sum() for p in model.parameters()
                                      if p.grad is not None)))
        opt.step()
        sched.step()
        step += 1
        loss_acc += float(loss.detach())
        gn_acc += gn
        n_log += 1
        bar.update(1)
        if main_rank and (step % cfg.log_every == 0 or step == cfg.max_steps):
            dt = time.perf_counter() - t_log
            row = {"loss": loss_acc / n_log, "lr": opt.param_groups[0]["lr"], "grad_norm": gn_acc / n_log,
                   "samples_per_s": n_log * cfg.batch_size * world / max(dt, 1e-9)}
            logger.scalars(step, row, group="train")
            bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}")
            t_log, n_log, loss_acc, gn_acc = time.perf_counter(), 0, 0.0, 0.0
        if step < cfg.max_steps:
            do_val_and_save(step)
    if step > start or resume is None:
        do_val_and_save(step, final=True)
    bar.close()
    logger.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {"step": step, "checkpoint": str(last_ckpt) if last_ckpt else None, "val": last_val, "out": str(out)}


def _prune(ckpt_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` step checkpoints."""
    if keep <= 0:
        return
    steps = sorted({p.name.split("_state.json")[0] for p in ckpt_dir.glob("step_*_state.json")})
    for name in steps[:-keep]:
        for p in ckpt_dir.glob(f"{name}_*"):
            p.unlink(missing_ok=True)
