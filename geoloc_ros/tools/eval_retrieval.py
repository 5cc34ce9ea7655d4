"""geoloc-eval-retrieval: Recall@1/5/10, Recall@1% and AP of a retrieval model.

    geoloc-eval-retrieval --weights runs/ret/model --data university1652:/data/University-Release
    geoloc-eval-retrieval --weights runs/ret/model --data sues200:/data/SUES-200-512x512   # per altitude
    geoloc-eval-retrieval --weights runs/ret/model --data ortho:map.tif --locations 300

Both directions by default: drone -> satellite and satellite -> drone; SUES-200 per altitude.
Recall@1% as University-1652's evaluate_gpu.py (top round(G / 100) + 1); images at the
model's test size (`test_img_size`, QDFL's 280 px) when it has one.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from geoloc_ros import cli
from geoloc_ros.config import ConfigError
from geoloc_ros.model.device import pick_device
from geoloc_ros.retrieval.datasets import (
    SUES_ALTITUDES,
    ImageFolderDataset,
    OrthoPairsConfig,
    OrthoRetrievalPairs,
    labels_for,
    ortho_eval_sides,
    sues200_test,
    university1652_test,
)
from geoloc_ros.retrieval.metrics import retrieval_metrics
from geoloc_ros.retrieval.model import RetrievalModel, load_model

DIRECTIONS = {"d2s": ("drone", "satellite"), "s2d": ("satellite", "drone")}


@torch.no_grad()
def describe_dataset(model: RetrievalModel, ds: Dataset, batch: int = 32, device=None, workers: int = 0,
                     progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Dataset of (tensor [3,S,S], label) -> (unit descriptors [N, D] float32, labels [N])."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    descs, labels = [], []
    dl = DataLoader(ds, batch_size=batch, shuffle=False, num_workers=workers)
    it = dl
    if progress:
        from tqdm import tqdm
        it = tqdm(dl, unit="batch", leave=False)
    for x, y in it:
        with torch.autocast(dev.type, dtype=torch.float16, enabled=dev.type == "cuda"):
            d = model.describe(x.to(dev))
        descs.append(torch.nn.functional.normalize(d.float(), dim=-1).cpu().numpy())
        labels.append(np.asarray(y))
    return np.concatenate(descs), np.concatenate(labels)


def evaluate_folders(model: RetrievalModel, splits, batch: int, workers: int, progress: bool) -> dict:
    q, g = splits
    ql, gl = labels_for(q, g)
    s = model.eval_size
    qd, _ = describe_dataset(model, ImageFolderDataset(q, ql, s), batch, workers=workers, progress=progress)
    gd, _ = describe_dataset(model, ImageFolderDataset(g, gl, s), batch, workers=workers, progress=progress)
    return retrieval_metrics(qd, ql, gd, gl)


def run(weights: str, data: str, directions: Sequence[str], batch: int = 32, device: str = "auto",
        workers: int = 0, altitudes: Sequence[str] | None = None, locations: int = 200, tile_m: float = 200.0,
        seed: int = 1000, progress: bool = True) -> dict:
    """Evaluate; returns {name: metrics} with names like 'd2s' or '150/d2s'."""
    model = load_model(weights, pick_device(device))
    kind, _, root = data.partition(":")
    results: dict[str, dict] = {}
    if kind == "university1652":
        for dname in directions:
            qv, gv = DIRECTIONS[dname]
            results[dname] = evaluate_folders(model, university1652_test(root, qv, gv), batch, workers, progress)
    elif kind == "sues200":
        for alt in (altitudes or SUES_ALTITUDES):
            for dname in directions:
                qv, gv = DIRECTIONS[dname]
                results[f"{alt}/{dname}"] = evaluate_folders(model, sues200_test(root, alt, qv, gv), batch, workers,
                                                             progress)
    elif kind in ("ortho", "world"):
        from geoloc_ros.geo.orthomap import OrthoMap
        if kind == "world":
            from geoloc_ros.tools.train_retrieval import DataConfig, _world_map
            path = _world_map(DataConfig(world_seed=int(root or 0)), Path("runs/worlds"))
        else:
            path = Path(root)
        pairs = OrthoRetrievalPairs(OrthoMap.open(path), OrthoPairsConfig(tile_m=tile_m, locations=locations,
                                                                            seed=seed, fixed_views=True),
                                    model.eval_size)
        sides = ortho_eval_sides(pairs)
        desc = {k: describe_dataset(model, v, batch, progress=progress) for k, v in sides.items()}
        for dname in directions:
            qv, gv = DIRECTIONS[dname]
            results[dname] = retrieval_metrics(desc[qv][0], desc[qv][1], desc[gv][0], desc[gv][1])
    else:
        raise ConfigError(f"unknown data kind {kind!r} (university1652, sues200, ortho, world)")
    return results


def format_table(results: dict) -> str:
    lines = [f"{'split':<14}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'R@1%':>8}{'AP':>8}{'queries':>9}"]
    for name, m in results.items():
        lines.append(f"{name:<14}" + "".join(f"{100 * m[k]:8.2f}" for k in ("recall@1", "recall@5", "recall@10",
                                                                           "recall@1%", "ap")) + f"{m['queries']:9d}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = cli.tool_parser("geoloc-eval-retrieval", __doc__)
    cli.add_weights(ap, "retrieval model (<path>.safetensors + <path>.json)", required=True)
    ap.add_argument("--data", required=True, help="university1652:ROOT | sues200:ROOT | ortho:MAP.tif | world[:SEED]")
    ap.add_argument("--direction", choices=["d2s", "s2d", "both"], default="both")
    ap.add_argument("--altitude", nargs="+", help="SUES-200 altitudes (default all four)")
    ap.add_argument("--locations", type=int, default=200, help="ortho/world: number of locations")
    ap.add_argument("--tile-m", type=float, default=200.0, help="ortho/world: tile side in metres")
    cli.add_batch_size(ap, default=32)
    ap.add_argument("--workers", type=int, default=0)
    cli.add_device(ap)
    ap.add_argument("--json", help="also write the metrics here")
    cli.add_quiet(ap)
    return ap


def _main(a: argparse.Namespace) -> int | None:
    dirs = ["d2s", "s2d"] if a.direction == "both" else [a.direction]
    res = run(a.weights, a.data, dirs, a.batch_size, a.device, a.workers, a.altitude, a.locations, a.tile_m,
              progress=not a.quiet)
    print(format_table(res))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


main = cli.entry_point(build_parser, _main)


if __name__ == "__main__":
    raise SystemExit(main())
