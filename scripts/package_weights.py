#!/usr/bin/env python3
"""Turn a training checkpoint into shippable weights: fp16 safetensors + JSON with provenance.

    python scripts/package_weights.py runs/demo_train/run/best --out geoloc_ros/weights/amcf_small_demo
    python scripts/package_weights.py runs/x/best --out w --sides 160 480   # serve at other input sides

Loads the checkpoint with the normal, checked loader (so a broken checkpoint fails here, not
in a node), stores floating tensors as fp16 (half the size; the loader casts back to the
run precision), and copies the training config and the best validation row into the JSON
metadata, so the file says how it was made. Verifies the fp16 copy against the original on
random inputs before returning.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="weights prefix (e.g. runs/x/best) of a geoloc-train run")
    p.add_argument("--out", required=True, help="output prefix (writes .safetensors and .json)")
    p.add_argument("--note", default="", help="free text stored in the metadata")
    p.add_argument("--sides", type=int, nargs=2, metavar=("UAV", "SAT"),
                   help="serve at these input sides instead of the trained ones (FocalNet has no "
                        "position embedding; the window keeps its ground size, pixels get finer)")
    args = p.parse_args(argv)

    from geoloc_ros.model.weights import WeightsError, load_weights, read_weights_info, save_weights

    try:
        overrides = {"uav_size": args.sides[0], "sat_size": args.sides[1]} if args.sides else None
        model = load_weights(args.checkpoint, device="cpu", overrides=overrides)
        info = read_weights_info(args.checkpoint)
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run_dir = Path(args.checkpoint).parent
    meta = {"source_checkpoint": str(args.checkpoint), "training_metadata": info.get("metadata", {})}
    cfg_file = run_dir / "train_config.json"
    if cfg_file.is_file():
        meta["train_config"] = json.loads(cfg_file.read_text())
    if args.sides:
        trained = info.get("config", {})
        meta["served_sides"] = {"uav_size": args.sides[0], "sat_size": args.sides[1],
                                "trained_uav_size": trained.get("uav_size"), "trained_sat_size": trained.get("sat_size")}
    if args.note:
        meta["note"] = args.note
    st = save_weights(model, path=args.out, dtype="fp16", metadata=meta)

    packed = load_weights(args.out, device="cpu")
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    uav = torch.rand(2, 3, cfg.uav_size, cfg.uav_size, generator=g)
    sat = torch.rand(2, 3, cfg.sat_size, cfg.sat_size, generator=g)
    with torch.inference_mode():
        a, b = model.eval()(uav, sat).flatten(1), packed.eval()(uav, sat).flatten(1)
    same_peak = bool((a.argmax(1) == b.argmax(1)).all())
    diff = float((a - b).abs().max())
    print(f"wrote {st} ({st.stat().st_size / 1e6:.2f} MB); fp16 vs fp32 logits max |diff| {diff:.3g}, "
          f"same peak: {same_peak}")
    return 0 if same_peak else 1


if __name__ == "__main__":
    sys.exit(main())
