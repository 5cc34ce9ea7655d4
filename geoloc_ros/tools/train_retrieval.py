"""geoloc-train-retrieval: train a cross-view retrieval model (MEAN / Safe-Net / QDFL heads).

Data: University-1652 or SUES-200 folders when you have them, or pairs generated from any
orthophoto (`ortho:<map.tif>`) or a procedural world (`world[:seed]`), so the coarse
relocalization stage can be trained and tested without a benchmark download.

    geoloc-train-retrieval --config config/retrieval_mean.yaml --data university1652:/data/University-Release
    geoloc-train-retrieval --config config/retrieval_tiny.yaml --data world:3 --epochs 2 --out runs/ret_tiny

Writes `<out>/model.safetensors` + `<out>/model.json` (last epoch) and `<out>/log.jsonl`.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader

from geoloc_ros import cli
from geoloc_ros.config import ConfigError, load_dataclass, to_dict
from geoloc_ros.retrieval.datasets import (SUES_ALTITUDES, DatasetLayoutError, OrthoPairsConfig,
                                           OrthoRetrievalPairs, sues200_train, university1652_train)
from geoloc_ros.retrieval.losses import LossConfig, RetrievalCriterion
from geoloc_ros.retrieval.model import RetrievalConfig, build_model, pick_device, save_model


@dataclass
class DataConfig:
    kind: str = "world"               # university1652 | sues200 | ortho | world
    root: str = ""                    # dataset root (university1652/sues200) or map path (ortho)
    altitude: str = "all"             # SUES-200 training altitude(s): 150/200/250/300 or all
    repeats: int = 1                  # visits of every location id per epoch
    photometric: float = 1.0          # colour/blur/noise strength on the drone side
    workers: int = 2                  # DataLoader worker processes
    world_seed: int = 0               # kind=world: which procedural world
    world_size_m: float = 1500.0      # kind=world: side of the generated world
    world_gsd_m: float = 0.5
    ortho: OrthoPairsConfig = field(default_factory=OrthoPairsConfig)


@dataclass
class TrainConfig:
    model: RetrievalConfig = field(default_factory=RetrievalConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-4                  # backbone learning rate
    head_lr_mult: float = 10.0        # heads (and temperature) learn this much faster
    weight_decay: float = 0.01
    warmup_steps: int = 100
    max_steps: int = 0                # stop after this many steps (0 = run all epochs)
    amp: bool = True                  # fp16 autocast on CUDA
    device: str = "auto"
    seed: int = 0
    out: str = "runs/retrieval"


def _world_map(cfg: DataConfig, out_dir: Path) -> Path:
    try:
        from geoloc_ros.data.world import WorldConfig, generate_world
    except ImportError as exc:
        raise ConfigError(f"data kind 'world' needs geoloc_ros.data.world ({exc})") from None
    path = out_dir / f"world_{cfg.world_seed}.tif"
    if not path.is_file():
        generate_world(WorldConfig(seed=cfg.world_seed, size_m=cfg.world_size_m, gsd_m=cfg.world_gsd_m), path)
    return path


def make_train_set(cfg: DataConfig, img_size: int, out_dir: Path):
    """DataConfig -> dataset of (drone [3,S,S], satellite [3,S,S], location id) + number of ids."""
    kw = dict(repeats=cfg.repeats, photometric=cfg.photometric)
    if cfg.kind == "university1652":
        ds = university1652_train(cfg.root, img_size, **kw)
        return ds, ds.num_classes
    if cfg.kind == "sues200":
        alts = SUES_ALTITUDES if cfg.altitude == "all" else (str(cfg.altitude),)
        parts = [sues200_train(cfg.root, a, img_size, **kw) for a in alts]
        ids = parts[0].ids
        if any(p.ids != ids for p in parts):
            raise DatasetLayoutError(f"{cfg.root}: SUES-200 altitudes hold different location ids")
        return (parts[0] if len(parts) == 1 else ConcatDataset(parts)), len(ids)
    if cfg.kind in ("ortho", "world"):
        from geoloc_ros.geo.orthomap import OrthoMap
        path = Path(cfg.root) if cfg.kind == "ortho" else _world_map(cfg, out_dir)
        ocfg = OrthoPairsConfig(**{**to_dict(cfg.ortho), "photometric": cfg.photometric})
        ds = OrthoRetrievalPairs(OrthoMap.open(path), ocfg, img_size)
        return ds, ds.num_classes
    raise ConfigError(f"unknown data kind {cfg.kind!r} (university1652, sues200, ortho, world)")


def _split_outputs(out: dict[str, Any], b: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """One forward over cat([drone, satellite]) -> per-view output dicts."""
    def cut(v, sl):
        if isinstance(v, torch.Tensor):
            return v[sl]
        if isinstance(v, list):
            return [t[sl] for t in v]
        return v
    return ({k: cut(v, slice(0, b)) for k, v in out.items()}, {k: cut(v, slice(b, None)) for k, v in out.items()})


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """Run training; returns the path of the saved model JSON."""
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = pick_device(cfg.device)
    ds, num_classes = make_train_set(cfg.data, cfg.model.img_size, out_dir)
    if len(ds) < 2:
        raise ConfigError("training needs at least two location ids")
    cfg.model.num_classes = num_classes if cfg.loss.ce > 0 else 0
    model = build_model(cfg.model).to(dev)
    crit = RetrievalCriterion(cfg.loss).to(dev)
    bb = [p for p in model.backbone.parameters() if p.requires_grad]
    bb_ids = {id(p) for p in bb}
    heads = [p for p in model.parameters() if p.requires_grad and id(p) not in bb_ids] + list(crit.parameters())
    opt = torch.optim.AdamW([{"params": bb, "lr": cfg.lr}, {"params": heads, "lr": cfg.lr * cfg.head_lr_mult}],
                            weight_decay=cfg.weight_decay)
    dl = DataLoader(ds, batch_size=min(cfg.batch_size, len(ds)), shuffle=True, drop_last=True,
                    num_workers=cfg.data.workers, persistent_workers=cfg.data.workers > 0)
    total = cfg.epochs * len(dl) if cfg.max_steps <= 0 else min(cfg.max_steps, cfg.epochs * len(dl))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(cfg.warmup_steps, 1))
                                              * 0.5 * (1 + math.cos(math.pi * min(s / max(total, 1), 1.0))))
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and dev.type == "cuda")
    log = (out_dir / "log.jsonl").open("a")
    step, t0 = 0, time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, unit="step", desc="train retrieval")
    for epoch in range(cfg.epochs):
        model.train()
        for d, s, y in dl:
            d, s, y = d.to(dev, non_blocking=True), s.to(dev, non_blocking=True), y.to(dev)
            with torch.autocast(dev.type, dtype=torch.float16, enabled=cfg.amp and dev.type == "cuda"):
                out_d, out_s = _split_outputs(model(torch.cat([d, s])), d.shape[0])
                loss, parts = crit(out_d, out_s, y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            rec = {"step": step, "epoch": epoch, "loss": float(loss.detach()), **parts,
                   "temperature": float(1.0 / crit.logit_scale.detach()), "s": round(time.perf_counter() - t0, 2)}
            log.write(json.dumps(rec) + "\n")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{rec['loss']:.3f}")
            if step >= total:
                break
        if step >= total:
            break
    if bar is not None:
        bar.close()
    log.close()
    return save_model(model, out_dir / "model", meta={"steps": step, "train": to_dict(cfg)})


def build_parser() -> argparse.ArgumentParser:
    ap = cli.tool_parser("geoloc-train-retrieval", __doc__)
    cli.add_config(ap, "TrainConfig (sections model/loss/data + training keys)")
    ap.add_argument("--data", help="university1652:ROOT | sues200:ROOT | ortho:MAP.tif | world[:SEED]")
    cli.add_out(ap, "output folder (overrides `out`)")
    ap.add_argument("--epochs", type=int, help="overrides `epochs`")
    ap.add_argument("--max-steps", type=int, help="overrides `max_steps`")
    cli.add_batch_size(ap, "overrides `batch_size`", aliases=())
    cli.add_device(ap, default=None, help="auto | cpu | cuda | cuda:N (overrides `device`)")
    ap.add_argument("--workers", type=int, help="DataLoader workers (overrides `data.workers`)")
    cli.add_quiet(ap)
    return ap


def run(a: argparse.Namespace) -> int:
    """Config from --config and the flags, then train."""
    cfg = load_dataclass(TrainConfig, a.config) if a.config else TrainConfig()
    if a.data:
        kind, _, rest = a.data.partition(":")
        cfg.data.kind = kind
        if kind == "world":
            if not (rest or "0").isdigit():
                raise ConfigError(f"--data world:SEED wants an integer seed, got {rest!r}")
            cfg.data.world_seed = int(rest or 0)
        else:
            cfg.data.root = rest
    for k in ("out", "epochs", "max_steps", "batch_size", "device"):
        v = getattr(a, k)
        if v is not None:
            setattr(cfg, k, v)
    if a.workers is not None:
        cfg.data.workers = a.workers
    js = train(cfg, progress=not a.quiet)
    print(f"saved {js}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
