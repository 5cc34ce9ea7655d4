"""geoloc-model-facts: parameters, FLOPs and latency per pair of an AMCF-Net configuration.

What is measured (so figures can be compared honestly with the paper's):
- parameters: total, backbone(s), fusion + head.
- FLOPs: `torch.utils.flop_counter.FlopCounterMode` over one full forward at batch 1
  (UAV uav_size^2 + satellite sat_size^2). It counts matrix multiplications and convolutions
  only (incl. the correlation, counted as direct grouped convolution), not norms, activations, softmax or resizes;
  MACs = FLOPs / 2 (the paper's "GFLOPs" are thop MACs).
- module MACs: what a module-hook counter like thop sees, the MACs of nn.Conv2d / nn.Linear
  modules only. It misses functional matmuls and convolutions (here: the depth-wise
  correlation of the fusion), so it is the figure to set beside the paper's "GFLOPs".
- latency per pair: random inputs, `torch.inference_mode`, `warmup` untimed runs then `repeats`
  timed runs, median and p95 of (batch time / batch size); full forward (both backbones +
  fusion + head + upsampling), decoding excluded. CPU: eager fp32 batch 1, plus the tracking
  case (satellite features cached: UAV encode + fusion + head). CUDA (when available): fp32 /
  bf16 / fp16 autocast x eager / torch.compile x batch 1 / 32, synchronised around each run.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from .. import cli


def _timeit(fn, warmup: int, repeats: int, sync) -> np.ndarray:
    for _ in range(warmup):
        fn()
    sync()
    return np.asarray([time_once(fn, sync) for _ in range(repeats)])


def time_once(fn, sync) -> float:
    """Seconds of one call, synchronised before and after (CUDA kernels run asynchronously)."""
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def count_flops(model, uav: torch.Tensor, sat: torch.Tensor) -> int:
    """FLOPs of one forward with the correlation as direct grouped convolution (the FFT path
    computes the same map with fewer operations, which FlopCounterMode would not see)."""
    from torch.utils.flop_counter import FlopCounterMode

    impl = model.fusion.xcorr_impl
    model.fusion.xcorr_impl = "conv"
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as fc:
            model(uav, sat)
    finally:
        model.fusion.xcorr_impl = impl
    return int(fc.get_total_flops())


def count_module_macs(model, uav: torch.Tensor, sat: torch.Tensor) -> int:
    """MACs of the nn.Conv2d / nn.Linear modules of one forward (a thop-like count: module
    hooks only, so functional ops such as the correlation are not seen)."""
    from torch import nn

    total = [0]

    def hook(m, _inp, out):
        if isinstance(m, nn.Conv2d):
            total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total[0] += out.numel() * m.in_features

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.inference_mode():
            model(uav, sat)
    finally:
        for h in hooks:
            h.remove()
    return int(total[0])


def measure(cfg, device: torch.device, repeats: int, warmup: int, compile_: bool = True,
            batches: tuple[int, ...] = (1, 32), precisions: tuple[str, ...] = ("fp32", "bf16", "fp16")) -> dict:
    from ..model import AMCFNet, autocast

    torch.manual_seed(0)
    model = AMCFNet(cfg).eval()
    facts: dict = {"config": cfg.__dict__.copy(), "params": model.parameter_counts()}
    u1 = torch.rand(1, 3, cfg.uav_size, cfg.uav_size)
    s1 = torch.rand(1, 3, cfg.sat_size, cfg.sat_size)
    flops = count_flops(model, u1, s1)
    facts["flops"] = {"flops": flops, "macs": flops // 2, "counted": "conv + matmul (FlopCounterMode)",
                      "module_macs": count_module_macs(model, u1, s1),
                      "inputs": f"uav 1x3x{cfg.uav_size}^2 + sat 1x3x{cfg.sat_size}^2"}
    rows = []

    def add(name, dev, prec, mode, batch, times):
        per = times / batch * 1e3
        rows.append({"case": name, "device": dev, "precision": prec, "mode": mode, "batch": batch,
                     "median_ms": float(np.median(per)), "p95_ms": float(np.percentile(per, 95)),
                     "repeats": int(len(times))})

    if device.type == "cpu":
        sync = lambda: None  # noqa: E731
        with torch.inference_mode():
            add("full forward", "cpu", "fp32", "eager", 1,
                _timeit(lambda: model(u1, s1), warmup, repeats, sync))
            sat_feats = model.encode(s1, "sat")
            add("tracking (sat cached)", "cpu", "fp32", "eager", 1,
                _timeit(lambda: model.forward_features(model.encode(u1, "uav"), sat_feats, s1.shape[-2:]),
                        warmup, repeats, sync))
    else:
        model = model.to(device)
        sync = torch.cuda.synchronize
        compiled = torch.compile(model) if compile_ else None
        for batch in batches:
            u = torch.rand(batch, 3, cfg.uav_size, cfg.uav_size, device=device)
            s = torch.rand(batch, 3, cfg.sat_size, cfg.sat_size, device=device)
            for prec in precisions:
                for mode, net in (("eager", model), ("compile", compiled)):
                    if net is None:
                        continue
                    try:
                        with torch.inference_mode(), autocast(device, prec):
                            times = _timeit(lambda: net(u, s), warmup, repeats, sync)
                    except Exception as exc:  # noqa: BLE001 - report, keep measuring the rest
                        rows.append({"case": "full forward", "device": str(device), "precision": prec,
                                     "mode": mode, "batch": batch, "error": str(exc).splitlines()[0][:120]})
                        continue
                    add("full forward", torch.cuda.get_device_name(device), prec, mode, batch, times)
    facts["latency"] = rows
    facts["host"] = {"python": platform.python_version(), "torch": torch.__version__,
                     "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
    return facts


def to_markdown(f: dict) -> str:
    p, fl = f["params"], f["flops"]
    lines = [
        "| quantity | value |", "|---|---|",
        f"| parameters total | {p['total'] / 1e6:.2f} M |",
        f"| parameters backbone(s) | {p['backbone'] / 1e6:.2f} M |",
        f"| parameters fusion + head | {p['fusion_head'] / 1e6:.3f} M |",
        f"| FLOPs ({fl['inputs']}) | {fl['flops'] / 1e9:.2f} G ({fl['counted']}) |",
        f"| MACs = FLOPs / 2 | {fl['macs'] / 1e9:.2f} G |",
        f"| module MACs (Conv2d/Linear hooks, thop-like) | {fl['module_macs'] / 1e9:.2f} G |",
        "", "| case | device | precision | mode | batch | median ms/pair | p95 ms/pair | runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in f["latency"]:
        if "error" in r:
            lines.append(f"| {r['case']} | {r['device']} | {r['precision']} | {r['mode']} | {r['batch']} | "
                         f"failed: {r['error']} | | |")
        else:
            lines.append(f"| {r['case']} | {r['device']} | {r['precision']} | {r['mode']} | {r['batch']} | "
                         f"{r['median_ms']:.1f} | {r['p95_ms']:.1f} | {r['repeats']} |")
    lines.append(f"\ntorch {f['host']['torch']}, {f['host']['threads']} CPU threads")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = cli.tool_parser("geoloc-model-facts", __doc__)
    cli.add_model_config(ap, aliases=("--config",))
    cli.add_device(ap, default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--repeats", type=int, default=10, help="timed runs per case (default 10)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: repeats, at most 10)")
    ap.add_argument("--no-compile", action="store_true", help="CUDA: skip the torch.compile rows")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--json", dest="json_out", help="write the facts as JSON here")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table (default: plain text)")
    return ap


def run(args: argparse.Namespace) -> int | None:
    """Measure the model of --model-config and print (and write) its facts."""
    from ..errors import GeolocError
    from ..model import AMCFConfig, load_model_config, pick_device

    cfg = load_model_config(args.model_config) if args.model_config else AMCFConfig()
    device = pick_device(args.device)
    if args.repeats < 1:
        raise GeolocError("--repeats must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    warmup = args.warmup if args.warmup is not None else min(args.repeats, 10)
    facts = measure(cfg, device, args.repeats, warmup, compile_=not args.no_compile)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(facts, indent=2, default=str) + "\n")
    if args.markdown:
        print(to_markdown(facts))
    else:
        p, fl = facts["params"], facts["flops"]
        print(f"params: total {p['total']:,}  backbone {p['backbone']:,}  fusion+head {p['fusion_head']:,}")
        print(f"FLOPs: {fl['flops'] / 1e9:.2f} G  MACs: {fl['macs'] / 1e9:.2f} G  ({fl['counted']}; {fl['inputs']})")
        print(f"module MACs (Conv2d/Linear hooks, thop-like): {fl['module_macs'] / 1e9:.2f} G")
        for r in facts["latency"]:
            if "error" in r:
                print(f"{r['case']:<24} {r['device']:<12} {r['precision']:<5} {r['mode']:<8} b{r['batch']:<3} failed: {r['error']}")
            else:
                print(f"{r['case']:<24} {r['device']:<12} {r['precision']:<5} {r['mode']:<8} b{r['batch']:<3} "
                      f"median {r['median_ms']:8.1f} ms/pair  p95 {r['p95_ms']:8.1f}  (n={r['repeats']})")


main = cli.entry_point(build_parser, run)


if __name__ == "__main__":
    raise SystemExit(main())
