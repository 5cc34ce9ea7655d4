"""The training loop every model family uses: steps, AdamW + schedule, exact resume, validation, DDP.

Why it looks like this:
* Data are indexed by the global step: step s of a run with world size W and batch B
  uses item indices (s * W + rank) * B + k of the family's training set, each reproducible
  from (seed, index). A resumed run therefore sees exactly the batches it would have seen.
  (This replaces DistributedSampler, which can only restart at epoch boundaries.)
* Checkpoints are safetensors + JSON only (train/checkpoints.py).
* A model family (train/amcf.py: AMCF-Net; tools/train_retrieval.py: retrieval) says what
  a batch, the loss, the validation and the weights file are; the loop owns the rest, so
  both families get resume, validation, best-model selection and logs the same way.
* bf16 autocast on GPU only; fp32 on CPU. DDP when WORLD_SIZE > 1 (torchrun), only rank 0
  logs, validates and saves.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.distributed as dist

from geoloc_ros.config import to_dict
from geoloc_ros.train.checkpoints import (checkpoint_prefix, find_checkpoint, load_checkpoint, mark_latest, prune,
                                          save_checkpoint)
from geoloc_ros.train.config import TrainConfig
from geoloc_ros.train.logging import RunLogger

log = logging.getLogger(__name__)


class Family(Protocol):
    """What the loop needs from a model family."""

    module: torch.nn.Module  # every trained parameter (the optimiser's and DDP's view)
    train_set: Any  # item i for any global index i (see StepBatchSampler)
    best_key: str  # validation metric (higher is better) that picks <out>/best

    def collate(self, items: list) -> Any: ...

    def param_groups(self) -> list[dict]: ...  # [{"params": [...], "lr_mult": 1.0}, ...]

    def loss(self, net: torch.nn.Module, batch: Any, device: torch.device,
             precision: str) -> tuple[torch.Tensor, dict[str, float]]: ...

    def validate(self, device: torch.device, precision: str) -> dict[str, float] | None: ...

    def save(self, path: str | Path, metadata: dict) -> None: ...  # checkpoint weights (+ trained state)

    def export(self, path: str | Path, metadata: dict) -> None: ...  # the weights file a user loads

    def restore(self, path: str | Path) -> None: ...


# --------------------------------------------------------------------------- data order
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


class TimeBudget:
    """The wall-clock budget of a run (TrainConfig.max_minutes; 0 = none), from its creation."""

    def __init__(self, minutes: float) -> None:
        self.seconds = 60.0 * float(minutes)
        self.t0 = time.monotonic()

    def fraction(self) -> float:
        """How much of the budget is spent, in [0, 1] (0 without a budget)."""
        return min((time.monotonic() - self.t0) / self.seconds, 1.0) if self.seconds > 0 else 0.0

    def spent(self) -> bool:
        return self.fraction() >= 1.0


def scheduled_step(step: int, warmup: int, total: int, budget: TimeBudget | None) -> float:
    """The step the LR schedule is evaluated at: past the warmup, whichever of the step count
    and the spent time budget is further along (so a time-limited run still decays fully)."""
    if budget is None or step < warmup:
        return step
    return max(float(step), warmup + budget.fraction() * max(total - warmup, 0))


def make_optimizer(groups: list[dict] | torch.nn.Module, cfg: TrainConfig, budget: TimeBudget | None = None):
    """AdamW (or SGD with momentum: optim.name) over the family's parameter groups (lr = optim.lr
    x the group's lr_mult) and the warmup + cosine schedule (over steps, or over the time
    budget when that runs out first)."""
    o = cfg.optim
    if isinstance(groups, torch.nn.Module):
        groups = [{"params": [p for p in groups.parameters() if p.requires_grad]}]
    pg = [{"params": g["params"], "lr": o.lr * g.get("lr_mult", 1.0)} for g in groups]
    if o.name == "sgd":
        opt = torch.optim.SGD(pg, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=False)
    else:
        opt = torch.optim.AdamW(pg, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(scheduled_step(s, o.warmup_steps, cfg.max_steps, budget), o.warmup_steps,
                                 cfg.max_steps, o.min_lr_ratio))
    return opt, sched


# --------------------------------------------------------------------------- the run
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


def resolve_precision(name: str, device: torch.device) -> str:
    """auto -> bf16 on CUDA, fp32 elsewhere; bf16 off the GPU falls back to fp32 (with a warning)."""
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if name == "bf16" and device.type != "cuda":
        log.warning("bf16 autocast requested on %s: using fp32 (bf16 is for GPUs here)", device)
        return "fp32"
    return name


@dataclass
class _Run:
    """One training run's state and its bookkeeping (validation, checkpoints, logs)."""

    cfg: TrainConfig
    family: Family
    opt: Any
    sched: Any
    device: torch.device
    precision: str
    rank: int
    world: int
    out: Path
    logger: RunLogger
    best: float | None = None
    last_val: dict = field(default_factory=dict)
    last_ckpt: Path | None = None
    window: dict = field(default_factory=dict)  # sums since the last log row
    t_log: float = field(default_factory=time.perf_counter)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def step(self, net, batch) -> float:
        """One optimiser step; returns the loss."""
        model = self.family.module
        loss, parts = self.family.loss(net, batch, self.device, self.precision)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.grad_clip > 0:
            gn = float(torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.optim.grad_clip))
        else:
            gn = float(torch.sqrt(sum((p.grad.detach().float() ** 2).sum() for p in model.parameters()
                                      if p.grad is not None)))
        self.opt.step()
        self.sched.step()
        for k, v in {"loss": float(loss.detach()), "grad_norm": gn, **parts}.items():
            self.window[k] = self.window.get(k, 0.0) + float(v)
        self.window["n"] = self.window.get("n", 0) + 1
        return float(loss.detach())

    def log_row(self, step: int) -> dict:
        """The mean of the steps since the last row -> train.csv / TensorBoard."""
        n, dt = self.window.pop("n"), time.perf_counter() - self.t_log
        loss, gn = self.window.pop("loss"), self.window.pop("grad_norm")
        row = {"loss": loss / n, "lr": self.opt.param_groups[0]["lr"], "grad_norm": gn / n,
               "samples_per_s": n * self.cfg.batch_size * self.world / max(dt, 1e-9),
               **{k: v / n for k, v in self.window.items()}}
        self.logger.scalars(step, row, group="train")
        self.window, self.t_log = {}, time.perf_counter()
        return row

    def val_and_save(self, step: int, final: bool = False) -> None:
        """Validate (every val_every steps and at the end; a better one becomes <out>/best),
        then checkpoint (every save_every steps and at the end)."""
        cfg = self.cfg
        if not self.main:
            return
        if final or (cfg.val_every > 0 and step % cfg.val_every == 0):
            val = self.family.validate(self.device, self.precision)
            if val is not None:
                self.last_val = val
                self.logger.scalars(step, val, group="val")
                key = self.family.best_key
                if self.best is None or val[key] > self.best:
                    self.best = val[key]
                    self.family.export(self.out / "best", {"step": step, "val": val})
        if final or (cfg.save_every > 0 and step % cfg.save_every == 0):
            prefix = checkpoint_prefix(self.out, step)
            save_checkpoint(prefix, self.family, cfg, self.opt, self.sched, step,
                            {"best": self.best, "best_key": self.family.best_key, "world_size": self.world})
            mark_latest(self.out, prefix, step)
            self.last_ckpt = prefix
            prune(self.out / "checkpoints", cfg.keep_checkpoints)


def _resume(run: _Run, resume: str | Path | None) -> int:
    """Continue from a checkpoint (weights, moments, schedule, RNG); returns the start step."""
    if resume is None:
        return 0
    prefix = find_checkpoint(resume)
    state = load_checkpoint(prefix, run.family, run.opt, run.sched)
    run.best = state.get("best", state.get("best_rds"))
    if run.main:
        log.info("resumed from %s at step %d", prefix, int(state["step"]))
    return int(state["step"])


def _loader(run: _Run, start: int):
    cfg = run.cfg
    return torch.utils.data.DataLoader(
        run.family.train_set, batch_sampler=StepBatchSampler(start, cfg.max_steps, cfg.batch_size, run.rank, run.world),
        num_workers=cfg.num_workers, collate_fn=run.family.collate, pin_memory=run.device.type == "cuda",
        persistent_workers=False,
        # own generator: creating the iterator must not draw from the global RNG (drop-path
        # masks use it), or a resumed run would drift from an uninterrupted one
        generator=torch.Generator().manual_seed(cfg.seed))


def _budget_spent(budget: TimeBudget, device, world: int) -> bool:
    """Whether to stop for time; under torchrun every rank stops at the same step (rank 0's clock)."""
    if budget.seconds <= 0:
        return False  # no budget: no broadcast either
    flag = budget.spent()
    if world > 1:
        t = torch.tensor([float(flag)], device=device)
        dist.broadcast(t, src=0)
        flag = bool(t.item())
    return flag


def run_training(cfg: TrainConfig, make_family: Callable[[], Family], resume: str | Path | None = None,
                 progress: bool = True) -> dict:
    """Train the family `make_family()` builds (after seeding) for cfg.max_steps steps, or
    continue a run; returns {"step", "checkpoint", "val": last metrics, "out"}."""
    from tqdm import tqdm

    device, rank, world = _dist_setup(cfg.device)
    out = Path(cfg.out).expanduser()
    torch.manual_seed(cfg.seed)
    family = make_family()
    family.module.to(device).train()
    budget = TimeBudget(cfg.max_minutes)
    opt, sched = make_optimizer(family.param_groups(), cfg, budget)
    run = _Run(cfg, family, opt, sched, device, resolve_precision(cfg.precision, device), rank, world, out,
               RunLogger(out, enabled=rank == 0, tensorboard=cfg.tensorboard))
    start = _resume(run, resume)
    if rank > 0:  # different drop-path masks per rank (rank 0's RNG is the one checkpointed)
        torch.manual_seed(cfg.seed + 1_000_003 * rank + start)
    net = family.module
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(family.module, device_ids=[device.index] if device.type == "cuda" else None)
    if run.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(to_dict(cfg), indent=1))
    bar = tqdm(total=cfg.max_steps, initial=start, disable=not (progress and run.main), desc="train",
               dynamic_ncols=True)
    step = start
    for batch in _loader(run, start):
        run.step(net, batch)
        step += 1
        bar.update(1)
        if run.main and (step % cfg.log_every == 0 or step == cfg.max_steps):
            row = run.log_row(step)
            bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}")
        if step < cfg.max_steps:
            if _budget_spent(budget, device, world):
                log.info("time budget of %g min spent at step %d of %d: final validation and save",
                         cfg.max_minutes, step, cfg.max_steps)
                break
            run.val_and_save(step)
    if step > start or resume is None:
        run.val_and_save(step, final=True)
    bar.close()
    run.logger.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {"step": step, "checkpoint": str(run.last_ckpt) if run.last_ckpt else None, "val": run.last_val,
            "out": str(out)}
