#!/usr/bin/env python3
"""Which parts of AMCF-Net do the work? The one-shot benchmark with parts switched off.

Switches applied to TRAINED weights at inference, each exactly equal to an ablation config
of config/ablation/ (model.net AMCFConfig switches) with these weights:
- residual path only (`head_mlp: false`): the learned MLP head's last layer set to 0, so
  logits = alpha * sum_c fused_c + beta (the head was trained with that last layer
  initialised at 0, so this is what the network would be without it);
- uniform scale weights (`adaptive_scale_weights: false`): the scale-logit 1x1 conv set to
  0, so softmax gives 1/n per scale everywhere;
- both at once (plain multi-scale correlation with the trained backbone).
A dual backbone split from shared weights computes exactly what they do until it is trained
apart; that comparison is a training run (config/train_gapnorm128_dual_cpu.yaml beside
train_gapnorm128_cpu.yaml, MODEL_CARD), measured with --weights on its result.

    python scripts/ablation_oneshot.py [--weights default] [--work /tmp/oneshot] [--quick] [--json out.json]
"""
from __future__ import annotations

import argparse
import copy
import json
import sys

import torch


def variants(net):
    """(name, net) pairs: the trained model and its inference-time ablations."""
    def zero(mod):
        with torch.no_grad():
            for p in mod.parameters():
                p.zero_()

    out = [("full (learned head + adaptive scale weights)", net)]
    if getattr(net.head, "last", None) is not None and net.head.residual:
        res = copy.deepcopy(net)
        zero(res.head.last)
        out.append(("residual path only (no learned head)", res))
    if getattr(net.fusion, "scale_logits", None) is not None:
        uni = copy.deepcopy(net)
        zero(uni.fusion.scale_logits)
        out.append(("uniform scale weights", uni))
        if len(out) == 3:
            both = copy.deepcopy(out[1][1])
            zero(both.fusion.scale_logits)
            out.append(("residual only + uniform weights", both))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default="default")
    ap.add_argument("--work", default=None, help="keep the benchmark's maps here (reused across runs)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from geoloc_ros.tools.oneshot import OneShotConfig, load_net, run_oneshot

    cfg = OneShotConfig.quick() if args.quick else OneShotConfig()
    net = load_net(args.weights)
    keys = ["all weak", "all strong"]
    lines = ["| variant | MA@10 weak | MA@10 strong | MA@10 pooled | RDS pooled | confident | MA@10 confident |",
             "|---|---|---|---|---|---|---|"]
    results = {}
    for name, model in variants(net):
        print(f"ablation: {name} ...", file=sys.stderr, flush=True)
        rep = run_oneshot(model.eval(), cfg, args.work)
        rep.pop("rows", None)
        results[name] = rep
        g, p = rep["gaps"], rep["pooled"]
        lines.append(f"| {name} | " + " | ".join(f"{100 * g[k]['MA@10']:.0f} %" for k in keys)
                     + f" | {100 * p['MA@10']:.0f} % | {p['RDS']:.2f} | {100 * p['confident_share']:.0f} % | "
                     f"{100 * p['confident_MA@10']:.0f} % |")
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
