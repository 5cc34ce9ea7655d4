"""geoloc-eval-ul14: the UL14 test protocol, bit for bit (shared/spec/ul14_protocol.md section 4).

    geoloc-eval-ul14 data/UL14 --weights weights/amcf --out runs/eval
    geoloc-eval-ul14 data/UL14 --baseline center --out runs/eval_center   # no weights needed

Per pair: sigmoid -> 31x31 Hanning (cut from hanning(33), BORDER_REFLECT_101) -> first
argmax (S_X row, S_Y column) -> N = tl_N - (tl_N - br_N) S_X/384, E = tl_E + (br_E - tl_E)
S_Y/384 -> haversine error (R = 6378.137 km) -> MA@1/3/5/10/20/30/50/100 m and RDS with
labels int(X/768*384). Writes report.md, report.json, per_pair.csv and ma_vs_k.png; tables
overall, per map size (700..1800) and per flight height (80/90/100 m).
`--baseline center` always predicts the image centre (S = size // 2): a sanity row anyone
can run (about RDS 0.12 on real UL14).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from geoloc_ros import cli
from geoloc_ros.config import ConfigError
from geoloc_ros.metrics import (UL14_MA_THRESHOLDS_M, UL14_MAP_SIZES, ul14_error_m, ul14_pixel_to_latlon, ul14_rds,
                                ul14_scale_label, ul14_summary)
from geoloc_ros.model.decode import ul14_peak

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = cli.tool_parser("geoloc-eval-ul14", __doc__)
    p.add_argument("root", help="UL14 folder (holding test/)")
    p.add_argument("--split", default="test", help="split folder to evaluate (test, or val)")
    g = p.add_mutually_exclusive_group(required=True)
    cli.add_weights(g, "model weights (path prefix of .safetensors + .json)")
    g.add_argument("--baseline", choices=["center"], help="no model: always predict the image centre")
    cli.add_out(p, "report folder (default runs/eval_ul14)", default="runs/eval_ul14")
    cli.add_batch_size(p, default=32)
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers")
    cli.add_device(p)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="model precision (fp32 = the protocol; bf16 autocast is faster on GPUs)")
    p.add_argument("--hanning", type=int, default=31, help="Hanning filter size (1 disables), protocol: 31")
    p.add_argument("--size", type=int, default=384, help="output grid of --baseline (a model uses its sat_size)")
    p.add_argument("--heights", type=int, nargs="*", help="only these flight heights")
    p.add_argument("--limit", type=int, help="only the first N folders (quick checks)")
    p.add_argument("--on-error", default="skip", choices=["skip", "stop"], help="missing / corrupted files")
    cli.add_quiet(p)
    return p


# --------------------------------------------------------------------------- evaluation
def _map_size(meta) -> int:
    if meta.map_size:
        return int(meta.map_size)
    k = int(Path(meta.sat_name).stem)  # UL14 names: k.jpg has map size 700 + 100 k
    return 700 + 100 * k


def _row(meta, s_x: int, s_y: int, size: int) -> dict:
    """All per-pair quantities of the protocol from one predicted grid cell."""
    lx, ly = ul14_scale_label(meta.label_rc[0], meta.label_rc[1], meta.stored_size, size)
    n, e = ul14_pixel_to_latlon(s_x, s_y, meta.tl[0], meta.tl[1], meta.br[0], meta.br[1], size)
    err = ul14_error_m(meta.uav_latlon[0], meta.uav_latlon[1], n, e)
    return {"folder": meta.folder, "sat": meta.sat_name, "height": meta.height, "map_size": _map_size(meta),
            "S_X": int(s_x), "S_Y": int(s_y), "X": lx, "Y": ly, "pred_N": float(n), "pred_E": float(e),
            "error_m": float(err), "RDS": float(ul14_rds(s_x, s_y, lx, ly, size))}


def evaluate_center(ds, size: int, progress: bool) -> tuple[list[dict], list[str]]:
    """Centre baseline: reads only labels, GPS info and image headers (no decoding)."""
    from PIL import Image
    from tqdm import tqdm

    from geoloc_ros.data.ul14 import UL14Error

    rows, skipped = [], list(ds.skipped)
    for it in tqdm(ds.items, desc="center baseline", disable=not progress, dynamic_ncols=True):
        path = ds.dir / it.folder / "Satellite" / it.sat_name
        try:
            with Image.open(path) as im:
                stored = im.size[1]
        except (OSError, SyntaxError):
            msg = f"cannot read image header (corrupted?): {path}"
            if ds.on_error == "stop":
                raise UL14Error(msg) from None
            skipped.append(msg)
            continue
        meta = type(it)(**{**it.__dict__, "stored_size": stored})
        rows.append(_row(meta, size // 2, size // 2, size))
    return rows, skipped


def evaluate_model(net, ds, device, precision: str, batch_size: int, workers: int, hanning: int,
                   progress: bool) -> tuple[list[dict], list[str]]:
    """Batched inference (GPU when available); post-processing per pair on the CPU, as the protocol."""
    import torch
    from tqdm import tqdm

    from geoloc_ros.model.device import autocast

    size = ds.sat_size
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                                         collate_fn=ds.collate, pin_memory=device.type == "cuda")
    rows, skipped = [], list(ds.skipped)
    with torch.inference_mode():
        for batch in tqdm(loader, desc="UL14 eval", disable=not progress, dynamic_ncols=True):
            skipped += batch["skipped"]
            if "uav" not in batch:
                continue
            with autocast(device, precision):
                logits = net(batch["uav"].to(device, non_blocking=True), batch["sat"].to(device, non_blocking=True))
            prob = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
            for p, meta in zip(prob, batch["meta"]):
                s_x, s_y = ul14_peak(p, hanning=hanning, apply_sigmoid=False)
                rows.append(_row(meta, s_x, s_y, size))
    return rows, skipped


# --------------------------------------------------------------------------- report
def summarize(rows: list[dict]) -> dict:
    err = np.array([r["error_m"] for r in rows])
    rds = np.array([r["RDS"] for r in rows])
    out = {"overall": ul14_summary(err, rds)}
    for key in ("map_size", "height"):
        groups = out[f"by_{key}"] = {}
        for value in sorted({r[key] for r in rows}):
            sel = np.array([r[key] == value for r in rows])
            groups[str(value)] = ul14_summary(err[sel], rds[sel])
    return out


def _table(title: str, groups: dict[str, dict], label: str) -> list[str]:
    ks = [f"MA@{k}" for k in UL14_MA_THRESHOLDS_M]
    lines = [f"### {title}", "", f"| {label} | pairs | " + " | ".join(ks) + " | RDS | mean m | median m |",
             "|---|---:|" + "---:|" * (len(ks) + 3)]
    for name, s in groups.items():
        cells = [f"{100 * s[k]:.2f}" for k in ks]
        lines.append(f"| {name} | {s['n']} | " + " | ".join(cells) +
                     f" | {100 * s['RDS']:.2f} | {s['mean_error_m']:.1f} | {s['median_error_m']:.1f} |")
    return lines + [""]


def write_report(out: Path, rows: list[dict], summary: dict, info: dict, skipped: list[str]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "per_pair.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    report = {"info": info, **summary, "skipped": skipped}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    if info["hanning"] is None:
        how = f"constant prediction: the centre cell ({info['size'] // 2}, {info['size'] // 2}) of a {info['size']} grid"
    else:
        how = (f"sigmoid, Hanning {info['hanning']} (from hanning({info['hanning'] + 2}), BORDER_REFLECT_101), "
               f"first argmax on a {info['size']} grid")
    md = [f"# UL14 evaluation: {info['model']}", "",
          f"Split `{info['split']}` of `{info['root']}`: {summary['overall']['n']} pairs, "
          f"{len(skipped)} skipped. Protocol: {how}; row -> N / column -> E from the crop corners, "
          "haversine R = 6378.137 km. MA@K = % of pairs within K metres; RDS in %.", ""]
    md += _table("Overall", {"all": summary["overall"]}, "set")
    md += _table("By satellite map size (half-resolution px)", summary["by_map_size"], "map size")
    md += _table("By flight height (m)", summary["by_height"], "height")
    if skipped:
        md += ["### Skipped", ""] + [f"- {s}" for s in skipped[:50]] + [""]
    md += ["![MA vs K](ma_vs_k.png)", ""]
    (out / "report.md").write_text("\n".join(md))
    _plot(out / "ma_vs_k.png", rows, info["model"])
    return report


def _plot(path: Path, rows: list[dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = np.arange(1, 101)
    err = np.array([r["error_m"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(ks, [100 * np.mean(err <= k) for k in ks], label="all", lw=2, color="k")
    for h in sorted({r["height"] for r in rows}):
        e = err[np.array([r["height"] == h for r in rows])]
        ax.plot(ks, [100 * np.mean(e <= k) for k in ks], label=f"{h} m", lw=1)
    ax.set_xlabel("K (metres)")
    ax.set_ylabel("MA@K (%)")
    ax.set_title(f"UL14 MA@K: {title}", fontsize=9)
    ax.set_xlim(1, 100)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(args) -> dict:
    from geoloc_ros.data.ul14 import UL14Test, list_folders

    folders = list_folders(args.root, args.split)
    if args.limit:
        folders = folders[: args.limit]
    t0 = time.perf_counter()
    if args.baseline:
        size, uav_size, name = args.size, 128, "center baseline"
        ds = UL14Test(args.root, args.split, uav_size, size, args.on_error, folders, args.heights)
        rows, skipped = evaluate_center(ds, size, not args.quiet)
        device = "none"
    else:
        from geoloc_ros.model.device import pick_device
        from geoloc_ros.model.weights import load_weights

        dev = pick_device(args.device)
        net = load_weights(args.weights, device=dev)
        size, uav_size, name = net.cfg.sat_size, net.cfg.uav_size, str(args.weights)
        ds = UL14Test(args.root, args.split, uav_size, size, args.on_error, folders, args.heights)
        rows, skipped = evaluate_model(net, ds, dev, args.precision, args.batch_size, args.workers, args.hanning,
                                       not args.quiet)
        device = str(dev)
    if not rows:
        raise ConfigError(f"no pair could be evaluated in {args.root}/{args.split} ({len(skipped)} skipped)")
    info = {"model": name, "root": str(args.root), "split": args.split, "size": size, "uav_size": uav_size,
            "hanning": args.hanning if not args.baseline else None, "device": device,
            "precision": args.precision if not args.baseline else None, "seconds": time.perf_counter() - t0,
            "ma_thresholds_m": list(UL14_MA_THRESHOLDS_M), "map_sizes": list(UL14_MAP_SIZES)}
    return write_report(Path(args.out), rows, summarize(rows), info, skipped)


def _main(args: argparse.Namespace) -> int | None:
    report = run(args)
    o = report["overall"]
    print(f"{report['info']['model']}: {o['n']} pairs, MA@3 {100 * o['MA@3']:.2f}  MA@5 {100 * o['MA@5']:.2f}  "
          f"MA@10 {100 * o['MA@10']:.2f}  MA@20 {100 * o['MA@20']:.2f}  RDS {100 * o['RDS']:.2f}  -> {args.out}")


main = cli.entry_point(build_parser, _main, log_level=logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
