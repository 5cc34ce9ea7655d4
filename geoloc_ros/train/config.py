"""Training configuration: model, data, optimiser, schedule, for every model family.

One YAML file (see config/train_ul14.yaml, config/train_small_cpu.yaml, and
config/retrieval_*.yaml with `task: retrieval`); unknown keys are an error. One class for
both families because the loop (train/loop.py) is one: steps, optimiser, validation and
checkpoints mean the same; `task` says which family reads `model`, `sources`/`data` and
`loss`. Relative paths in it (model config, data) are resolved against the YAML file's
folder first, then the working directory.
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from geoloc_ros.config import ConfigError, load_dataclass, read_yaml

SOURCE_KINDS = ("ul14", "ortho", "photo")
SAMPLINGS = ("epoch", "random")
LOSS_NORMS = ("batch", "sample", "sample_mean")  # = model.loss.LOSS_NORMS (not imported: no torch here)
TASKS = ("amcf", "retrieval")


@dataclass
class SourceConfig:
    """One data source of the training mix."""

    kind: str = "ul14"  # ul14 (UL14 train/ with RSC) | ortho (GeoTIFF orthophotos / worlds) | photo (nadir photo folders)
    path: Any = ""  # UL14 root | GeoTIFF path or list | photo folder(s) / glob(s)
    weight: float = 1.0  # mixing weight (relative probability that a sample comes from this source)
    val_fraction: float = 0.1  # held out for validation: UL14 places, the southern map strip, or photos
    on_error: str = "skip"  # skip | stop: what a missing / corrupted file does
    erasing_p: float = 0.3  # ul14 only: RandomErasing probability of the RSC recipe
    uav_path: Any = ""  # ortho only: co-registered map(s) the UAV side is cut from (e.g. world epoch 2), one per path
    pairs: dict = field(default_factory=dict)  # ortho/photo: PairConfig fields (uav/sat sizes come from the model)
    # ul14 only: "epoch" = every folder once per epoch, a seeded new order each epoch (the
    # reference's sampling without replacement; used when UL14 is the only training source),
    # "random" = a random folder per pair (with replacement; always so when mixed with others)
    sampling: str = "epoch"
    # photo only: the seed of the held-out photo split. Not the run's seed: runs with other
    # seeds must hold out the same photos, which the one-shot benchmark measures on
    # (tools/oneshot.py held_out_photos); the packaged weights' split is seed 0
    split_seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"source kind must be one of {', '.join(SOURCE_KINDS)}, got {self.kind!r}")
        if not self.path:
            raise ValueError(f"{self.kind} source needs a path")
        if self.weight < 0:
            raise ValueError(f"source weight must be >= 0, got {self.weight}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.on_error not in ("skip", "stop"):
            raise ValueError(f"on_error must be skip or stop, got {self.on_error!r}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")


@dataclass
class OptimConfig:
    """AdamW (or SGD, for recipes that use it) with linear warmup then cosine decay to a floor."""

    name: str = "adamw"  # adamw | sgd (momentum, weight_decay; e.g. the Safe-Net / QDFL paper recipes)
    momentum: float = 0.9  # sgd only
    lr: float = 2e-4
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 500  # linear warmup from lr/warmup_steps to lr
    min_lr_ratio: float = 0.01  # cosine floor as a fraction of lr
    grad_clip: float = 1.0  # max global gradient norm (0 disables)
    head_lr_mult: float = 1.0  # retrieval: heads (and the loss's temperature) learn this much faster
    group_lr: dict = field(default_factory=dict)  # retrieval: {module-name prefix: lr multiplier}, first match wins

    def __post_init__(self) -> None:
        if self.name not in ("adamw", "sgd"):
            raise ValueError(f"optim.name must be adamw or sgd, got {self.name!r}")


@dataclass
class TrainConfig:
    """Everything `geoloc-train` / `geoloc-train-retrieval` need; CLI flags override fields where one exists."""

    task: str = "amcf"  # amcf (AMCF-Net heatmaps, geoloc-train) | retrieval (descriptors, geoloc-train-retrieval)
    model: Any = None  # amcf: AMCFConfig YAML path or mapping (default model_amcf.yaml); retrieval: RetrievalConfig
    init_weights: str | None = None  # start from these weights (fine-tuning); their config wins over `model`
    # amcf: AMCFConfig fields set on top of the model config or of init_weights' config, for
    # knobs that change no tensor shape (e.g. {input_norm: per_image} to fine-tune with it);
    # {shared_backbone: false} over shared init_weights splits the backbone (dual ablation)
    model_overrides: dict = field(default_factory=dict)
    sources: list = field(default_factory=list)  # amcf: list of SourceConfig mappings
    data: dict = field(default_factory=dict)  # retrieval: DataConfig fields (tools/train_retrieval.py)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 8  # per process (per GPU under torchrun)
    max_steps: int | None = None  # optimiser steps; default amcf 50760 (60 UL14 epochs at 8), retrieval 0 (= epochs)
    epochs: int = 10  # retrieval, when max_steps is 0: passes over the location ids
    max_minutes: float = 0.0  # > 0: wall-clock budget of this process; the run stops (validates, saves) at the first step past it, and the LR schedule follows whichever of steps and time is further along, so it decays fully either way (not bit-reproducible then)
    loss: Any = None  # amcf: wbl (weighted balance loss, default) | hanning; retrieval: LossConfig fields
    loss_radius: int | None = None  # half side of the positive square; None = 15 * sat_size / 384
    # amcf: normalisation of the balance loss. batch = weights over the whole batch (DRL code,
    # default); sample = per sample, then summed over the batch (AMCF eq. 12-13, ~B x larger
    # loss and gradient, mind grad_clip); sample_mean = per sample, averaged (model/loss.py)
    loss_norm: str = "batch"
    nw: float = 130.0  # negative weight of the WBL
    precision: str = "auto"  # auto (bf16 autocast on GPU, fp32 on CPU) | fp32 | bf16
    device: str = "auto"  # auto | cpu | cuda | cuda:N (torchrun sets cuda:LOCAL_RANK)
    num_workers: int = 2  # DataLoader workers per process
    seed: int = 0
    log_every: int = 10  # steps between train.csv / TensorBoard rows
    val_every: int = 500  # steps between validations (and at the end); 0 disables
    val_samples: int = 256  # fixed held-out pairs per validation
    val_batch_size: int = 16
    val_hanning: int | None = None  # Hanning filter for the peak; None = 31 scaled to sat_size (odd)
    val_ks_px: tuple[float, ...] = (3.0, 5.0, 10.0, 20.0)  # "within K px" thresholds (model grid)
    save_every: int = 1000  # steps between checkpoints (and at the end)
    keep_checkpoints: int = 3  # older step checkpoints are deleted (best and latest kept)
    tensorboard: bool = True  # also write TensorBoard event files (tensorboardX)
    out: str = "runs/train"  # output folder (checkpoints, CSV, TensorBoard, config copy)

    def __post_init__(self) -> None:
        srcs = []
        for i, s in enumerate(self.sources or []):
            if isinstance(s, SourceConfig):
                srcs.append(s)
            elif isinstance(s, Mapping):
                srcs.append(load_dataclass(SourceConfig, s, where=f"sources[{i}]"))
            else:
                raise ValueError(f"sources[{i}] must be a mapping, got {type(s).__name__}")
        self.sources = srcs
        if isinstance(self.optim, Mapping):
            self.optim = load_dataclass(OptimConfig, self.optim, where="optim")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.max_steps is None:
            self.max_steps = 50760 if self.task == "amcf" else 0
        if self.model is None:
            self.model = "model_amcf.yaml" if self.task == "amcf" else {}
        if not isinstance(self.model_overrides or {}, Mapping):
            raise ValueError(f"model_overrides must be a mapping of AMCFConfig fields, got {self.model_overrides!r}")
        self.model_overrides = dict(self.model_overrides or {})
        if self.model_overrides and self.task != "amcf":
            raise ValueError("model_overrides applies to the amcf task only")
        if self.task == "amcf":
            self.loss = "wbl" if self.loss is None else self.loss
            if self.loss not in ("wbl", "hanning"):
                raise ValueError(f"loss must be wbl or hanning, got {self.loss!r}")
        elif not isinstance(self.loss or {}, Mapping):
            raise ValueError(f"a retrieval loss is a mapping of LossConfig fields, got {self.loss!r}")
        if self.loss_norm not in LOSS_NORMS:
            raise ValueError(f"loss_norm must be one of {', '.join(LOSS_NORMS)}, got {self.loss_norm!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.batch_size <= 0 or self.max_steps < 0:
            raise ValueError("batch_size must be > 0 and max_steps >= 0")
        if not (math.isfinite(self.max_minutes) and self.max_minutes >= 0):
            raise ValueError(f"max_minutes must be >= 0 (0 = no time budget), got {self.max_minutes}")
        self.val_ks_px = tuple(float(k) for k in self.val_ks_px)


def resolve_path(p: str | Path, base: Path | None) -> Path:
    """A relative path is looked up next to the config file first, then in the working directory."""
    q = Path(p).expanduser()
    if q.is_absolute() or base is None:
        return q
    cand = base / q
    return cand if cand.exists() or not q.exists() else q


def load_train_config(source: str | Path | Mapping[str, Any]) -> tuple[TrainConfig, Path | None]:
    """TrainConfig from a YAML path or mapping; returns (config, folder of the YAML or None)."""
    base = None
    where = ""
    if isinstance(source, (str, Path)):
        base = Path(source).expanduser().resolve().parent
        where = str(source)
        source = read_yaml(source)
    if (source.get("task", "amcf") == "amcf" and not source.get("sources") and not source.get("init_weights")
            and not isinstance(source, TrainConfig)):
        raise ConfigError(f"{where or 'train config'}: no data sources (add a `sources:` list)")
    return load_dataclass(TrainConfig, source, where=where), base
