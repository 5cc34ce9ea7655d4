"""AMCF-Net as a family of the training loop: the data mix, the weighted balance loss, and
validation by pixel error and RDS on held-out training data.

Why separate from the loop: the loop (train/loop.py) knows steps, optimiser, checkpoints and
DDP; what a batch is, what the loss and the validation are, and which weights file a user
loads belong to the model family (the retrieval family is tools/train_retrieval.py).
Validation uses held-out TRAINING data (UL14 places / a map strip / photos that the
training mix never draws), never the test set.
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from geoloc_ros.config import ConfigError
from geoloc_ros.data.pairs import OrthoPairSource, PairConfig, PairDataset, PhotoPairSource, list_images
from geoloc_ros.data.ul14 import UL14Epochs, UL14Train, list_folders, split_train_folders
from geoloc_ros.metrics import pixel_metrics
from geoloc_ros.model.decode import hanning_for_grid, scale_to_grid, ul14_peaks
from geoloc_ros.train.config import TrainConfig, resolve_path
from geoloc_ros.train.loop import run_training

log = logging.getLogger(__name__)


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
        order = np.random.default_rng(s.split_seed).permutation(len(photos))
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


def train_dataset(cfg: TrainConfig, sources: list, weights: list):
    """UL14 alone with `sampling: epoch` (the paper recipe): every folder once per epoch
    (UL14Epochs); anything else: the weighted mix, drawn with replacement (PairDataset)."""
    if len(sources) == 1 and isinstance(sources[0], UL14Train) and cfg.sources[0].sampling == "epoch":
        return UL14Epochs(sources[0], seed=cfg.seed)
    if any(s.kind == "ul14" and s.sampling == "epoch" for s in cfg.sources):
        log.info("UL14 is mixed with other sources: its folders are drawn with replacement "
                 "(per-epoch sampling needs UL14 as the only training source)")
    return PairDataset(sources, weights, seed=cfg.seed)


# --------------------------------------------------------------------------- fidelity
_SIZE_KEYS = ("embed_dim", "depths", "dims", "num_heads", "focal_levels", "focal_windows", "mlp_ratio")


def fidelity_warnings(cfg: TrainConfig, model) -> list[str]:
    """Where this run silently departs from the paper's recipe in a way that changes the
    results; logged as WARNINGs and stored in the metadata of every weights file it writes.

    Today: a backbone at its published size (the paper's is FocalNet-Tiny-SRF) with neither
    `pretrained_path` nor `init_weights` trains from random initialisation, while the paper
    starts from ImageNet weights. (Reduced CPU backbones have no ImageNet weights: no warning.)
    """
    m = model.cfg
    out = []
    full_size = not set(m.backbone_kwargs) & set(_SIZE_KEYS)
    if full_size and not cfg.init_weights and not m.pretrained_path:
        out.append(f"PAPER FIDELITY: the {m.backbone} backbone trains from RANDOM initialisation "
                   f"(model pretrained_path is null and no init_weights), unlike the paper, which starts "
                   f"from ImageNet weights; expect slower convergence and results below the published ones. "
                   f"Set pretrained_path to a local {m.backbone} .safetensors/.pth.")
    return out



# --------------------------------------------------------------------------- loss / validation
def _collate(batch: list[dict]) -> dict:
    return {"uav": torch.stack([b["uav"] for b in batch]), "sat": torch.stack([b["sat"] for b in batch]),
            "center": torch.stack([b["center"] for b in batch])}


def _loss(logits, frac, cfg: TrainConfig, sat_size: int):
    from geoloc_ros.model.loss import fractions_to_centers, hanning_balance_loss, weighted_balance_loss

    centers = fractions_to_centers(frac.cpu(), logits.shape[-2:]).to(logits.device)
    r = cfg.loss_radius if cfg.loss_radius is not None else max(int(round(scale_to_grid(15, sat_size))), 1)
    if cfg.loss == "hanning":
        return hanning_balance_loss(logits.float(), centers, side=2 * r + 1, nw=cfg.nw, norm=cfg.loss_norm)
    return weighted_balance_loss(logits.float(), centers, radius=r, nw=cfg.nw, norm=cfg.loss_norm)


def val_hanning(cfg: TrainConfig, sat_size: int) -> int:
    """The validation peak's Hanning filter: val_hanning, or UL14's 31 px scaled to the grid."""
    return int(cfg.val_hanning) if cfg.val_hanning is not None else hanning_for_grid(31, sat_size)


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


# --------------------------------------------------------------------------- the family
def build_model(cfg: TrainConfig, base: Path | None):
    from geoloc_ros.model.net import AMCFNet, load_model_config
    from geoloc_ros.model.weights import load_weights

    if cfg.init_weights:
        model = load_weights(resolve_path(cfg.init_weights, base), device="cpu", overrides=cfg.model_overrides)
        model.train()
        return model
    m = cfg.model
    if isinstance(m, (str, Path)):
        m = resolve_path(m, base)
        if not m.is_file():
            raise ConfigError(f"model config not found: {m}")
    mc = load_model_config(m)
    if cfg.model_overrides:
        mc = load_model_config({**asdict(mc), **cfg.model_overrides})
    return AMCFNet(mc)


def inference_block(cfg: TrainConfig, uav_size: int, sat_size: int) -> dict | None:
    """The localizer defaults the trained weights carry (their JSON's `inference` block): the
    geometry of the first generated-pair source (ortho or photos). None when only UL14 trains
    the model: its pairs have no gsd ratio of their own, so the localizer keeps its defaults.
    Sources that disagree get a warning, since one model can carry one geometry only."""
    blocks = []
    for s in cfg.sources:
        if s.kind != "ul14":
            pc = PairConfig(**{**s.pairs, "uav_size": uav_size, "sat_size": sat_size})
            blocks.append(pc.inference_defaults())
    if not blocks:
        return None
    if any(b != blocks[0] for b in blocks[1:]):
        log.warning("training sources differ in pair geometry %s; the weights carry the first one", blocks)
    return blocks[0]


class AmcfFamily:
    """AMCF-Net pairs for train/loop.py: UAV patch + satellite crop -> heatmap -> balance loss."""

    best_key = "RDS"

    def __init__(self, cfg: TrainConfig, base: Path | None) -> None:
        self.cfg = cfg
        self.module = build_model(cfg, base)
        self.warnings = fidelity_warnings(cfg, self.module)
        for w in self.warnings:
            log.warning("%s\n%s\n%s", "!" * 78, w, "!" * 78)
        self.sat_size = self.module.cfg.sat_size
        tr_src, tr_w, va_src, va_w = build_sources(cfg, self.module.cfg.uav_size, self.sat_size, base)
        self.train_set = train_dataset(cfg, tr_src, tr_w)
        self.val_set = PairDataset(va_src, va_w, seed=cfg.seed + 7919) if va_src and cfg.val_every > 0 else None
        self.inference = inference_block(cfg, self.module.cfg.uav_size, self.sat_size)

    collate = staticmethod(_collate)

    def param_groups(self) -> list[dict]:
        return [{"params": [p for p in self.module.parameters() if p.requires_grad]}]

    def loss(self, net, batch: dict, device: torch.device, precision: str) -> tuple[torch.Tensor, dict]:
        from geoloc_ros.model.device import autocast

        with autocast(device, precision):
            logits = net(batch["uav"].to(device, non_blocking=True), batch["sat"].to(device, non_blocking=True))
        return _loss(logits, batch["center"], self.cfg, self.sat_size), {}

    def validate(self, device: torch.device, precision: str) -> dict[str, float] | None:
        return validate(self.module, self.val_set, self.cfg, device, precision) if self.val_set is not None else None

    def save(self, path: str | Path, metadata: dict) -> None:
        from geoloc_ros.model.weights import save_weights

        if self.warnings:  # the run's departures from the paper travel with its weights
            metadata = {**metadata, "warnings": list(self.warnings)}
        save_weights(self.module, self.module.cfg, path, metadata=metadata, inference=self.inference)

    export = save  # the checkpoint's weights file is the one users load

    def restore(self, path: str | Path) -> None:
        from geoloc_ros.model.weights import load_weights

        self.module.load_state_dict(load_weights(path, device="cpu").state_dict(), strict=True)


def train(cfg: TrainConfig, base: Path | None = None, resume: str | Path | None = None,
          progress: bool = True) -> dict:
    """Run (or continue) AMCF-Net training; returns {"step", "checkpoint", "val": last metrics, "out"}."""
    return run_training(cfg, lambda: AmcfFamily(cfg, base), resume=resume, progress=progress)
