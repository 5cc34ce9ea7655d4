"""geoloc-train: train or fine-tune AMCF-Net from a YAML config (UL14, orthophotos, photo folders).

    geoloc-train --config config/train_small_cpu.yaml --max-steps 200 --out runs/small
    geoloc-train --config config/train_ul14.yaml --resume runs/ul14
    torchrun --nproc_per_node 4 -m geoloc_ros.tools.train --config config/train_ul14.yaml
"""
from __future__ import annotations

import argparse
import logging
import sys

from geoloc_ros.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="geoloc-train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="training YAML (see config/train_*.yaml)")
    p.add_argument("--out", help="output folder (overrides `out`)")
    p.add_argument("--resume", help="run folder or checkpoint prefix to continue from (exact: step, lr, AdamW moments)")
    p.add_argument("--max-steps", type=int, help="total optimiser steps (overrides `max_steps`)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (overrides `device`)")
    p.add_argument("--batch-size", type=int, help="per-process batch size (overrides `batch_size`)")
    p.add_argument("--workers", type=int, help="DataLoader workers (overrides `num_workers`)")
    p.add_argument("--val-every", type=int, help="steps between validations (overrides `val_every`)")
    p.add_argument("--save-every", type=int, help="steps between checkpoints (overrides `save_every`)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        from geoloc_ros.data.ul14 import UL14Error
        from geoloc_ros.geo.errors import GeoError
        from geoloc_ros.model.weights import WeightsError
        from geoloc_ros.train.config import load_train_config
        from geoloc_ros.train.loop import train

        cfg, base = load_train_config(args.config)
        overrides = {"out": args.out, "max_steps": args.max_steps, "device": args.device,
                     "batch_size": args.batch_size, "num_workers": args.workers, "val_every": args.val_every,
                     "save_every": args.save_every}
        for k, v in overrides.items():
            if v is not None:
                setattr(cfg, k, v)
        result = train(cfg, base=base, resume=args.resume, progress=not args.no_progress)
    except (ConfigError, UL14Error, GeoError, WeightsError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    val = result.get("val") or {}
    msg = f"done: step {result['step']}, checkpoint {result['checkpoint']}"
    if val:
        msg += f", val loss {val['loss']:.4f}, mean error {val['mean_px']:.1f} px, RDS {val['RDS']:.3f}"
    print(msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
