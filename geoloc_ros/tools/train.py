"""geoloc-train: train or fine-tune AMCF-Net from a YAML config (UL14, orthophotos, photo folders).

    geoloc-train --config config/train_small_cpu.yaml --max-steps 200 --out runs/small
    geoloc-train --config config/train_ul14.yaml --resume runs/ul14
    torchrun --nproc_per_node 4 -m geoloc_ros.tools.train --config config/train_ul14.yaml
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from geoloc_ros import cli


def build_parser() -> argparse.ArgumentParser:
    p = cli.tool_parser("geoloc-train", __doc__)
    cli.add_config(p, "TrainConfig", required=True)
    cli.add_out(p, "output folder (overrides `out`)")
    p.add_argument("--resume", help="run folder or checkpoint prefix to continue from (exact: step, lr, AdamW moments)")
    p.add_argument("--max-steps", type=int, help="total optimiser steps (overrides `max_steps`)")
    p.add_argument("--max-minutes", type=float, help="wall-clock budget: stop (validate, save) at the first step "
                   "past it; the LR schedule decays over it when it ends before max_steps (overrides `max_minutes`)")
    cli.add_device(p, default=None, help="auto | cpu | cuda | cuda:N (overrides `device`)")
    cli.add_batch_size(p, "per-process batch size (overrides `batch_size`)", aliases=())
    p.add_argument("--workers", type=int, help="DataLoader workers (overrides `num_workers`)")
    p.add_argument("--val-every", type=int, help="steps between validations (overrides `val_every`)")
    p.add_argument("--save-every", type=int, help="steps between checkpoints (overrides `save_every`)")
    cli.add_quiet(p, "no tqdm progress bar")
    return p


def run(args: argparse.Namespace) -> int | None:
    """Load the config, apply the flags, train; print the final step and validation."""
    from geoloc_ros.train.config import load_train_config
    from geoloc_ros.train.amcf import train

    cfg, base = load_train_config(args.config)
    overrides = {"out": args.out, "max_steps": args.max_steps, "max_minutes": args.max_minutes, "device": args.device,
                 "batch_size": args.batch_size, "num_workers": args.workers, "val_every": args.val_every,
                 "save_every": args.save_every}
    try:  # replace() validates the flags as the YAML keys are (TrainConfig.__post_init__)
        cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        from geoloc_ros.config import ConfigError

        raise ConfigError(f"{args.config}: {exc}") from None
    result = train(cfg, base=base, resume=args.resume, progress=not args.quiet)
    val = result.get("val") or {}
    msg = f"done: step {result['step']}, checkpoint {result['checkpoint']}"
    if val:
        msg += f", val loss {val['loss']:.4f}, mean error {val['mean_px']:.1f} px, RDS {val['RDS']:.3f}"
    print(msg)


main = cli.entry_point(build_parser, run, log_level=logging.INFO)


if __name__ == "__main__":
    sys.exit(main())
