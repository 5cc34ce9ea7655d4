"""geoloc-make-world: write a procedural satellite-like world as a georeferenced COG.

    geoloc-make-world --out world.tif --seed 7 --size-m 2000 --gsd 0.3 --epoch both
    geoloc-make-world --out world.tif --config world.yaml   (WorldConfig fields)

With `--epoch both` the two epochs go to `<out stem>_e1.tif` and `<out stem>_e2.tif`
(the same layout, imaged "a year apart").
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .. import cli
from ..config import load_dataclass, to_dict
from ..data.world import WorldConfig, generate_world, world_layout


def build_parser() -> argparse.ArgumentParser:
    ap = cli.tool_parser("geoloc-make-world", __doc__)
    cli.add_out(ap, "output GeoTIFF path (.tif)", required=True)
    cli.add_config(ap, "WorldConfig (the flags below override it)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--size-m", type=float, default=None)
    ap.add_argument("--gsd", type=float, default=None, help="metres per pixel")
    ap.add_argument("--lat", type=float, default=None, help="map centre latitude")
    ap.add_argument("--lon", type=float, default=None, help="map centre longitude")
    ap.add_argument("--epoch", choices=("1", "2", "both"), default="1")
    return ap


def run(args: argparse.Namespace) -> int | None:
    """WorldConfig from --config and the flags; one COG per asked epoch."""
    base = to_dict(load_dataclass(WorldConfig, args.config)) if args.config else {}
    for key, val in (("seed", args.seed), ("size_m", args.size_m), ("gsd_m", args.gsd),
                     ("origin_lat", args.lat), ("origin_lon", args.lon)):
        if val is not None:
            base[key] = val
    cfg = load_dataclass(WorldConfig, base, "world")
    out = Path(args.out)
    epochs = (1, 2) if args.epoch == "both" else (int(args.epoch),)
    layout = world_layout(cfg)
    for e in epochs:
        path = out if len(epochs) == 1 else out.with_name(f"{out.stem}_e{e}{out.suffix or '.tif'}")
        t0 = time.perf_counter()
        generate_world(cfg, path, e, layout=layout)
        print(f"wrote {path} (epoch {e}, {cfg.n_px}x{cfg.n_px} px at {cfg.gsd_m:g} m/px, "
              f"{time.perf_counter() - t0:.1f} s)")


main = cli.entry_point(build_parser, run)


if __name__ == "__main__":
    sys.exit(main())
