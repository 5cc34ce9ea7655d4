"""geoloc-train-retrieval: train a cross-view retrieval model (MEAN / Safe-Net / QDFL heads).

Data: University-1652 or SUES-200 folders when you have them, or pairs generated from any
orthophoto (`ortho:<map.tif>`) or a procedural world (`world[:seed]`), so the coarse
relocalization stage can be trained and tested without a benchmark download.

    geoloc-train-retrieval --config config/retrieval_mean.yaml --data university1652:/data/University-Release
    geoloc-train-retrieval --config config/retrieval_tiny.yaml --data world:3 --epochs 2 --out runs/ret_tiny
    geoloc-train-retrieval --config config/retrieval_tiny.yaml --data world:3 --out runs/ret_tiny --resume runs/ret_tiny --epochs 4
    geoloc-train-retrieval --config mean_paper --pretrained convnext_tiny_in22k_384.safetensors --data university1652:/data/U

`--config NAME` (no .yaml) is config/retrieval_NAME.yaml: the paper recipes mean_paper,
safenet_paper, qdfl_paper (docs/RETRIEVAL.md lists what still differs from each paper) or
the CPU-sized mean / safenet / qdfl / tiny.

Training goes through the same loop as AMCF-Net (train/loop.py: step-indexed batches,
AdamW + warmup/cosine, exact resume from <out>/checkpoints, CSV + TensorBoard logs); the
config is the same TrainConfig with `task: retrieval` (sections model / loss / data).
Validation (generated pairs only: University-1652 and SUES-200 have no validation split,
and their test split is not for tuning): Recall@1 drone -> satellite on fixed views of
`val_samples` other locations of the map; the best model is `<out>/best`.
Writes `<out>/model.safetensors` + `<out>/model.json` (last step), train.csv, val.csv.
"""
from __future__ import annotations

import argparse
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset

from geoloc_ros import cli
from geoloc_ros.config import ConfigError, load_dataclass, read_yaml, to_dict
from geoloc_ros.retrieval.backbone import frozen_without_weights
from geoloc_ros.retrieval.datasets import (SUES_ALTITUDES, DatasetLayoutError, OrthoPairsConfig,
                                           OrthoRetrievalPairs, sues200_train, unique_label_order,
                                           university1652_train)
from geoloc_ros.retrieval.losses import LossConfig, RetrievalCriterion
from geoloc_ros.retrieval.model import RetrievalConfig, build_model, load_model, save_model
from geoloc_ros.train.config import TrainConfig
from geoloc_ros.train.loop import run_training

#: retrieval's optimiser defaults (what its own loop used): no gradient clipping, cosine to 0
RETRIEVAL_OPTIM = {"lr": 1e-4, "head_lr_mult": 10.0, "weight_decay": 0.01, "warmup_steps": 100, "grad_clip": 0.0,
                   "min_lr_ratio": 0.0}
#: the older flat keys of a retrieval YAML, now under optim:
FLAT_OPTIM_KEYS = ("lr", "head_lr_mult", "weight_decay", "warmup_steps")
#: named recipes: `--config NAME` reads config/retrieval_NAME.yaml
RECIPES = ("mean_paper", "safenet_paper", "qdfl_paper", "mean", "safenet", "qdfl", "tiny")

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    kind: str = "world"               # university1652 | sues200 | ortho | world
    root: str = ""                    # dataset root (university1652/sues200) or map path (ortho)
    altitude: str = "all"             # SUES-200 training altitude(s): 150/200/250/300 or all
    repeats: int = 1                  # visits of every item per epoch (location sampling: FSRA's sample_num)
    sampling: str = "location"        # location: one pair per id (FSRA/Safe-Net/QDFL) | drone_image: every drone image (Sample4Geo/MEAN)
    flip_p: float = 0.0               # horizontal flip of both views together (Sample4Geo prob_flip)
    crop_pad: int = 0                 # pad-and-random-crop of both views, px (0 = off)
    photometric: float = 1.0          # colour/blur/noise strength on the drone side
    world_seed: int = 0               # kind=world: which procedural world
    world_size_m: float = 1500.0      # kind=world: side of the generated world
    world_gsd_m: float = 0.5
    ortho: OrthoPairsConfig = field(default_factory=OrthoPairsConfig)


def recipe_path(source: str | Path) -> Path:
    """A YAML path as given, or a recipe name (`mean_paper`) -> config/retrieval_<name>.yaml."""
    p = Path(source)
    if p.suffix.lower() in (".yaml", ".yml") or p.exists() or len(p.parts) > 1:
        return p
    from geoloc_ros.resources import ResourceNotFoundError, config_file

    try:
        return config_file(f"retrieval_{source}.yaml")
    except ResourceNotFoundError:
        raise ConfigError(f"unknown retrieval recipe {source!r}; named ones: {', '.join(RECIPES)} "
                          "(or give a YAML path)") from None


def load_retrieval_config(source: str | Path | dict | None) -> TrainConfig:
    """TrainConfig (task retrieval) from a YAML path, a recipe name or a mapping; the older flat
    keys (lr, head_lr_mult, warmup_steps, weight_decay, amp, data.workers) are still read."""
    if isinstance(source, (str, Path)):
        source = recipe_path(source)
    raw = dict(read_yaml(source) if isinstance(source, (str, Path)) else (source or {}))
    where = str(source) if isinstance(source, (str, Path)) else "retrieval config"
    optim = {**RETRIEVAL_OPTIM, **(raw.pop("optim", None) or {})}
    optim.update({k: raw.pop(k) for k in FLAT_OPTIM_KEYS if k in raw})
    raw.pop("amp", None)  # mixed precision is `precision` (auto: bf16 on CUDA)
    data = dict(raw.get("data") or {})
    if "workers" in data:
        raw.setdefault("num_workers", data.pop("workers"))
    raw.update(task="retrieval", optim=optim, data=data)
    raw.setdefault("out", "runs/retrieval")
    raw.setdefault("batch_size", 16)
    raw.setdefault("num_workers", 2)
    cfg = load_dataclass(TrainConfig, raw, where=where)
    load_dataclass(DataConfig, cfg.data, where=f"{where}:data")  # unknown keys fail here, before any work
    return cfg


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
    kw = dict(repeats=cfg.repeats, photometric=cfg.photometric, sampling=cfg.sampling, flip_p=cfg.flip_p,
              crop_pad=cfg.crop_pad)
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


def _item_labels(ds) -> np.ndarray | None:
    """Place index of every training item when some items share a place (several drone
    images of one place, repeats, SUES-200 altitudes), else None (every item its own place)."""
    parts = getattr(ds, "datasets", [ds])
    if not all(hasattr(p, "item_labels") for p in parts):
        return None
    labels = np.concatenate([p.item_labels() for p in parts])
    return labels if len(np.unique(labels)) < len(labels) else None


class _StepIndexed(torch.utils.data.Dataset):
    """A finite set of training items as an endless, step-indexed stream (train/loop.py):
    global item g = k-th item of batch row g // batch; each epoch of `batch` rows is its own
    seeded order in which a batch never holds one place twice (InfoNCE needs that: a plain
    permutation when every item is its own place, else `unique_label_order`), and the view
    of item g depends on (seed, g) only, not on what was drawn before (exact resume)."""

    def __init__(self, ds, batch: int, seed: int) -> None:
        self.ds, self.batch, self.seed = ds, batch, seed
        self.rows = len(ds) // batch  # full batches per epoch (drop_last)
        if self.rows < 1:
            raise ConfigError(f"batch_size {batch} is larger than the {len(ds)} training items")
        self.labels = _item_labels(ds)
        if self.labels is not None and len(np.unique(self.labels)) < batch:
            raise ConfigError(f"batch_size {batch} is larger than the {len(np.unique(self.labels))} training places")
        self._perm: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.rows * self.batch

    def __getitem__(self, g: int):
        row, k = divmod(int(g), self.batch)
        epoch, r = divmod(row, self.rows)
        if epoch not in self._perm:
            rng = np.random.default_rng([self.seed, epoch])
            self._perm = {epoch: rng.permutation(len(self.ds)) if self.labels is None
                          else unique_label_order(self.labels, self.batch, self.rows, rng)}
        for part in getattr(self.ds, "datasets", [self.ds]):
            if hasattr(part, "_calls"):
                part._calls = 0  # the datasets vary views by a call counter; here the seed below does
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, int(g))) % (2 ** 63))
            return self.ds[int(self._perm[epoch][r * self.batch + k])]


class _Trainee(torch.nn.Module):
    """Model + criterion as one module: the criterion's temperature trains too, and DDP sees both."""

    def __init__(self, model: torch.nn.Module, crit: RetrievalCriterion) -> None:
        super().__init__()
        self.model, self.crit = model, crit

    def forward(self, d: torch.Tensor, s: torch.Tensor, y: torch.Tensor):
        out_d, out_s = _split_outputs(self.model(torch.cat([d, s])), d.shape[0])
        return self.crit(out_d, out_s, y)


class RetrievalFamily:
    """Cross-view retrieval for train/loop.py: (drone, satellite, location id) batches, the
    RetrievalCriterion, Recall@1 validation on generated pairs."""

    best_key = "recall@1"

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.data = load_dataclass(DataConfig, cfg.data, where="data")
        mcfg = load_dataclass(RetrievalConfig, cfg.model, where="model")
        lcfg = load_dataclass(LossConfig, cfg.loss or {}, where="loss")
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        ds, num_classes = make_train_set(self.data, mcfg.img_size, out)
        if len(ds) < 2:
            raise ConfigError("training needs at least two location ids")
        mcfg.num_classes = num_classes if lcfg.ce > 0 or lcfg.js > 0 else 0
        model = load_model(cfg.init_weights).train() if cfg.init_weights else build_model(mcfg)
        if not cfg.init_weights:
            check_pretrained(model)
        self.module = _Trainee(model, RetrievalCriterion(lcfg))
        self.train_set = _StepIndexed(ds, cfg.batch_size, cfg.seed)
        self.val = self._val_sides(out, model.eval_size) if cfg.val_every > 0 else None

    def steps(self) -> int:
        """Total steps: `epochs` passes over the ids, or fewer when max_steps (> 0) says so."""
        total = self.cfg.epochs * self.train_set.rows
        return total if self.cfg.max_steps <= 0 else min(self.cfg.max_steps, total)

    def _val_sides(self, out: Path, img_size: int):
        """Drone and satellite sides of fixed views of `val_samples` locations (generated pairs only)."""
        if self.data.kind not in ("ortho", "world"):
            return None
        from geoloc_ros.geo.orthomap import OrthoMap
        from geoloc_ros.retrieval.datasets import ortho_eval_sides

        path = Path(self.data.root) if self.data.kind == "ortho" else _world_map(self.data, out)
        ocfg = OrthoPairsConfig(**{**to_dict(self.data.ortho), "locations": self.cfg.val_samples,
                                   "seed": self.cfg.seed + 7919, "fixed_views": True})
        return ortho_eval_sides(OrthoRetrievalPairs(OrthoMap.open(path), ocfg, img_size))

    @staticmethod
    def collate(items: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d, s, y = zip(*items)
        return torch.stack(d), torch.stack(s), torch.as_tensor(y)

    def param_groups(self) -> list[dict]:
        """Backbone at lr, heads and the criterion's temperature at lr x head_lr_mult; a
        parameter whose name starts with an `optim.group_lr` prefix gets that multiplier."""
        model, crit = self.module.model, self.module.crit
        special: dict[str, list] = {k: [] for k in self.cfg.optim.group_lr}
        bb, heads = [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            key = next((k for k in special if name.startswith(k)), None)
            (special[key] if key is not None else bb if name.startswith("backbone.") else heads).append(p)
        heads += list(crit.parameters())
        groups = [{"params": bb}, {"params": heads, "lr_mult": self.cfg.optim.head_lr_mult}]
        groups += [{"params": v, "lr_mult": float(self.cfg.optim.group_lr[k])} for k, v in special.items()]
        return [g for g in groups if g["params"]]

    def loss(self, net, batch, device: torch.device, precision: str) -> tuple[torch.Tensor, dict]:
        from geoloc_ros.model.device import autocast

        d, s, y = (t.to(device, non_blocking=True) for t in batch)
        with autocast(device, precision):
            loss, parts = net(d, s, y)
        return loss, {**{k: float(v) for k, v in parts.items()},
                      "temperature": float(1.0 / self.module.crit.logit_scale.detach())}

    def validate(self, device: torch.device, precision: str) -> dict[str, float] | None:
        if self.val is None:
            return None
        from geoloc_ros.retrieval.metrics import retrieval_metrics
        from geoloc_ros.tools.eval_retrieval import describe_dataset

        model = self.module.model
        was = model.training
        (qd, ql), (gd, gl) = (describe_dataset(model, self.val[k], self.cfg.val_batch_size, device)
                              for k in ("drone", "satellite"))
        model.train(was)
        m = retrieval_metrics(qd, ql, gd, gl)
        return {k: float(m[k]) for k in ("recall@1", "recall@5", "ap")}

    def save(self, path: str | Path, metadata: dict) -> None:
        """Checkpoint: the model's weights file plus the criterion's learned temperature."""
        from safetensors.torch import save_file

        self.export(path, metadata)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.module.crit.state_dict().items()},
                  f"{path}.criterion.safetensors")

    def export(self, path: str | Path, metadata: dict) -> None:
        save_model(self.module.model, path, meta={**metadata, "train": to_dict(self.cfg)})

    def restore(self, path: str | Path) -> None:
        from safetensors.torch import load_file

        self.module.model.load_state_dict(load_model(path).state_dict(), strict=True)
        self.module.crit.load_state_dict(load_file(f"{path}.criterion.safetensors"), strict=True)


def check_pretrained(model: torch.nn.Module) -> None:
    """Refuse to train with a frozen random backbone (nothing to keep frozen: the result would
    be noise); warn loudly when a paper recipe starts from random weights (far below the paper)."""
    bcfg = model.cfg.backbone
    frozen = any(not p.requires_grad for p in model.backbone.parameters())
    if frozen_without_weights(bcfg, frozen):
        raise ConfigError(f"the {model.cfg.head} backbone is frozen but has no pretrained weights "
                          "(model.backbone.pretrained_path is empty): give a local weights file "
                          "(--pretrained) or do not freeze it (backbone.frozen / freeze_backbone: false)")
    if model.cfg.recipe and not bcfg.pretrained_path:
        msg = (f"recipe {model.cfg.recipe}: no pretrained backbone (model.backbone.pretrained_path / --pretrained); "
               "the paper starts from pretrained weights and a random start will be far below its figures")
        log.warning("!" * 20 + " " + msg)
        warnings.warn(msg, stacklevel=2)


def train(cfg: TrainConfig, resume: str | Path | None = None, progress: bool = True) -> Path:
    """Run (or continue) retrieval training through train/loop.py; returns the final model's JSON."""
    box: list[RetrievalFamily] = []

    def make() -> RetrievalFamily:
        box.append(RetrievalFamily(cfg))
        cfg.max_steps = box[0].steps()  # the loop's schedule and sampler need the total
        return box[0]

    res = run_training(cfg, make, resume=resume, progress=progress)
    return save_model(box[0].module.model, Path(cfg.out) / "model", meta={"steps": res["step"], "train": to_dict(cfg)})


def build_parser() -> argparse.ArgumentParser:
    ap = cli.tool_parser("geoloc-train-retrieval", __doc__)
    cli.add_config(ap, "TrainConfig (sections model/loss/data + training keys), or a recipe name: "
                   + ", ".join(RECIPES))
    ap.add_argument("--data", help="university1652:ROOT | sues200:ROOT[:ALTITUDE] | ortho:MAP.tif | world[:SEED]")
    ap.add_argument("--pretrained", help="local backbone weights (.safetensors / state dict; overrides "
                                         "model.backbone.pretrained_path); the paper recipes need them")
    cli.add_out(ap, "output folder (overrides `out`)")
    ap.add_argument("--epochs", type=int, help="overrides `epochs`")
    ap.add_argument("--max-steps", type=int, help="overrides `max_steps`")
    cli.add_batch_size(ap, "overrides `batch_size`", aliases=())
    cli.add_device(ap, default=None, help="auto | cpu | cuda | cuda:N (overrides `device`)")
    ap.add_argument("--workers", type=int, help="DataLoader workers (overrides `num_workers`)")
    ap.add_argument("--resume", help="run folder or checkpoint prefix to continue from (exact: step, lr, AdamW moments)")
    cli.add_quiet(ap)
    return ap


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    """--config (path or recipe name) with the flags applied on top."""
    cfg = load_retrieval_config(a.config)
    if a.data:
        kind, _, rest = a.data.partition(":")
        data = {**cfg.data, "kind": kind}
        if kind == "world":
            if not (rest or "0").isdigit():
                raise ConfigError(f"--data world:SEED wants an integer seed, got {rest!r}")
            data["world_seed"] = int(rest or 0)
        elif kind == "sues200" and rest.rsplit(":", 1)[-1] in SUES_ALTITUDES:
            data["root"], data["altitude"] = rest.rsplit(":", 1)
        else:
            data["root"] = rest
        cfg.data = data
    if a.pretrained:
        model = dict(cfg.model or {})
        model["backbone"] = {**(model.get("backbone") or {}), "pretrained_path": a.pretrained}
        cfg.model = model
    for k, attr in (("out", "out"), ("epochs", "epochs"), ("max_steps", "max_steps"), ("batch_size", "batch_size"),
                    ("device", "device"), ("workers", "num_workers")):
        v = getattr(a, k)
        if v is not None:
            setattr(cfg, attr, v)
    return cfg


def run(a: argparse.Namespace) -> int | None:
    """Config from --config and the flags, then train (or continue with --resume)."""
    js = train(config_from_args(a), resume=a.resume, progress=not a.quiet)
    print(f"saved {js}")


main = cli.entry_point(build_parser, run)


if __name__ == "__main__":
    raise SystemExit(main())
