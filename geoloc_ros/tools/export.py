"""geoloc-export: AMCF-Net weights -> ONNX (two inputs `uav`, `sat`; output `heatmap`), checked.

The exported graph is checked against PyTorch with ONNX Runtime before the command succeeds:
random inputs and "real-looking" pairs (a textured satellite crop and the UAV patch cut from
it with a photometric change, so the heatmap has a real peak). Reported per case: max |diff|
of the logits, Pearson correlation of the heatmaps, and whether the peak is the same pixel.
A JSON sidecar (`<out>.json`) says how to feed the model (sizes, RGB in [0, 1], no mean/std,
north-up satellite) so Jetson / TensorRT users need nothing else from this package.

Correlation arithmetic in the graph (fusion.depthwise_xcorr):
- fixed batch (default 1): grouped convolution (groups = batch x channels). Plain Conv nodes
  that TensorRT and every ONNX runtime accept.
- `--dynamic-batch`: a grouped convolution cannot have a batch-dependent group count in ONNX,
  so the FFT form is exported (DFT nodes, opset >= 17). ONNX Runtime runs it; TensorRT does
  not support DFT: for TensorRT export one fixed batch per engine (`--batch-size N`).

    geoloc-export --weights runs/amcf_best --out amcf.onnx
    geoloc-export --model-config config/model_amcf_small.yaml --random-init --out /tmp/small.onnx --dynamic-batch
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import cli
from ..errors import GeolocError

SIDECAR_FORMAT = "geoloc_ros.amcf_net.onnx/1"
MIN_OPSET = 17
INSTALL_HINT = "ONNX export needs onnx, onnxscript and onnxruntime: pip install .[export]"


class ExportError(GeolocError):
    """A user mistake or missing dependency in the export (one clear line)."""


def require_onnx(runtime: bool = True) -> None:
    """Fail with the install hint when the export dependencies are missing."""
    mods = ["onnx", "onnxscript"] + (["onnxruntime"] if runtime else [])
    for name in mods:
        try:
            __import__(name)
        except ImportError:
            raise ExportError(f"{name} is not installed. {INSTALL_HINT}") from None


# ----------------------------------------------------------------------------------------
def export_onnx(model, path: str | Path, batch: int = 1, dynamic_batch: bool = False, opset: int = 18,
                xcorr: str | None = None, verbose: bool = False) -> Path:
    """Export `model` (AMCFNet, CPU fp32) to `path`: inputs uav [B,3,h,w], sat [B,3,H,W] in [0,1],
    output heatmap (logits) [B,1,H,W]. `xcorr`: None = conv for a fixed batch, fft for dynamic."""
    if opset < MIN_OPSET:
        raise ExportError(f"--opset must be >= {MIN_OPSET} (DFT/LayerNormalization ops), got {opset}")
    if batch < 1:
        raise ExportError(f"--batch-size must be >= 1, got {batch}")
    impl = xcorr or ("fft" if dynamic_batch else "conv")
    if impl not in ("conv", "fft"):
        raise ExportError(f"xcorr must be conv or fft, got {impl!r}")
    if dynamic_batch and impl == "conv":
        raise ExportError("a dynamic batch needs the FFT correlation (a grouped convolution's group count, "
                          "batch x channels, must be fixed in ONNX); use --xcorr fft or a fixed --batch")
    require_onnx(runtime=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg
    b = max(batch, 2) if dynamic_batch else batch  # a sample batch of 1 would be specialised
    gen = torch.Generator().manual_seed(0)
    uav = torch.rand(b, 3, cfg.uav_size, cfg.uav_size, generator=gen)
    sat = torch.rand(b, 3, cfg.sat_size, cfg.sat_size, generator=gen)
    kwargs: dict[str, Any] = {}
    if dynamic_batch:
        dim = torch.export.Dim("batch", min=1, max=4096)
        kwargs["dynamic_shapes"] = {"uav": {0: dim}, "sat": {0: dim}}
    model = model.eval()
    prev = model.fusion.xcorr_impl
    model.fusion.xcorr_impl = impl
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    try:
        with quiet, warnings.catch_warnings():
            if not verbose:
                warnings.simplefilter("ignore")
            torch.onnx.export(model, (uav, sat), str(path), input_names=["uav", "sat"],
                              output_names=["heatmap"], opset_version=int(opset), dynamo=True,
                              external_data=False, verbose=verbose, **kwargs)
    finally:
        model.fusion.xcorr_impl = prev
    return path


def ort_session(path: str | Path, threads: int | None = None):
    """ONNX Runtime CPU session (all graph optimisations, `threads` intra-op threads)."""
    require_onnx()
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------------------
def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Photo-like RGB float texture in [0, 1]: multi-scale smooth noise plus 'roofs' and 'roads'."""
    import cv2

    img = np.zeros((size, size, 3), np.float32)
    for sigma, amp in ((size / 10, 0.25), (size / 50, 0.15), (1.0, 0.06)):
        noise = rng.standard_normal((size, size, 3)).astype(np.float32)
        img += amp * cv2.GaussianBlur(noise, (0, 0), sigma) * np.sqrt(sigma)
    img = 0.45 + img / max(float(np.abs(img).max()), 1e-6) * 0.3
    for _ in range(max(4, size // 12)):
        r, c = rng.integers(0, size - 4, 2)
        h, w = rng.integers(3, max(4, size // 12), 2)
        img[r:r + h, c:c + w] = rng.uniform(0.1, 0.9, 3)
    for _ in range(3):
        p = rng.integers(0, size, 2)
        cv2.line(img, (int(p[0]), 0), (int(p[1]), size - 1), (0.6, 0.6, 0.6), int(rng.integers(1, 4)))
    return np.clip(img, 0.0, 1.0)


def realistic_pairs(batch: int, uav_size: int, sat_size: int, seed: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """`batch` pairs: satellite texture [B,3,H,W] and the UAV patch cut from it (gsd ratio 1,
    brightness/contrast change, noise) [B,3,h,w]; returns also the true centres (row, col) [B,2]."""
    rng = np.random.default_rng(seed)
    sats, uavs, centers = [], [], []
    m = uav_size // 2
    for _ in range(batch):
        sat = _texture(rng, sat_size)
        r, c = rng.integers(m, sat_size - m - uav_size // 2, 2) if sat_size > 2 * uav_size else (m, m)
        patch = sat[r - m:r - m + uav_size, c - m:c - m + uav_size]
        patch = np.clip(patch * rng.uniform(0.8, 1.2) + rng.uniform(-0.08, 0.08)
                        + rng.normal(0, 0.02, patch.shape), 0, 1)
        sats.append(sat.transpose(2, 0, 1))
        uavs.append(patch.transpose(2, 0, 1))
        centers.append((r - 0.5, c - 0.5))  # centre of an even-sided patch: between four pixels
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(np.stack(a), dtype=np.float32))  # noqa: E731
    return to_t(uavs), to_t(sats), np.asarray(centers)


def compare_heatmaps(ref: np.ndarray, got: np.ndarray, atol: float, rtol: float, min_corr: float) -> dict:
    """Logits ref/got [B,1,H,W]: max |diff|, correlation, and per-sample peak agreement.

    A peak counts as the same when the argmax pixels agree, or when the reference value at the
    ONNX argmax is within the tolerance of the reference maximum (a tie: nearest upsampling
    repeats each value over 4x4 pixels, and random inputs have near-equal maxima)."""
    ref = ref.astype(np.float64)
    got = got.astype(np.float64)
    if ref.shape != got.shape:
        return {"ok": False, "error": f"shape {got.shape} != PyTorch {ref.shape}"}
    max_abs = float(np.abs(ref - got).max())
    tol = float(atol + rtol * np.abs(ref).max())
    a, b = ref.ravel() - ref.mean(), got.ravel() - got.mean()
    corr = float((a @ b) / max(np.sqrt((a @ a) * (b @ b)), 1e-300))
    peaks = []
    for r, g in zip(ref.reshape(len(ref), -1), got.reshape(len(got), -1)):
        ir, ig = int(r.argmax()), int(g.argmax())
        peaks.append(ir == ig or bool(r[ig] >= r[ir] - tol))
    ok = max_abs <= tol and corr >= min_corr and all(peaks)
    return {"ok": bool(ok), "max_abs_diff": max_abs, "tolerance": tol, "correlation": corr,
            "peak_equal": bool(all(peaks)), "max_abs_logit": float(np.abs(ref).max())}


def check_onnx(model, onnx_path: str | Path, batches: tuple[int, ...] = (1,), n_random: int = 1,
               n_real: int = 1, atol: float = 1e-3, rtol: float = 1e-4, min_corr: float = 0.9999,
               threads: int | None = None, seed: int = 0) -> dict:
    """Run ONNX Runtime and PyTorch (eager, default correlation) on the same inputs; compare."""
    sess = ort_session(onnx_path, threads)
    cfg = model.cfg
    model = model.eval()
    cases = []
    gen = torch.Generator().manual_seed(seed)
    for batch in batches:
        inputs = [("random", torch.rand(batch, 3, cfg.uav_size, cfg.uav_size, generator=gen),
                   torch.rand(batch, 3, cfg.sat_size, cfg.sat_size, generator=gen)) for _ in range(n_random)]
        for k in range(n_real):
            u, s, _ = realistic_pairs(batch, cfg.uav_size, cfg.sat_size, seed=seed + 1000 * batch + k)
            inputs.append(("real-looking", u, s))
        for kind, u, s in inputs:
            with torch.inference_mode():
                ref = model(u, s).float().numpy()
            try:
                got = sess.run(["heatmap"], {"uav": u.numpy(), "sat": s.numpy()})[0]
            except Exception as exc:  # noqa: BLE001 - e.g. a batch the fixed-batch graph cannot take
                cases.append({"kind": kind, "batch": batch, "ok": False, "error": str(exc).splitlines()[0][:200]})
                continue
            cases.append({"kind": kind, "batch": batch, **compare_heatmaps(ref, got, atol, rtol, min_corr)})
    return {"ok": all(c["ok"] for c in cases), "cases": cases,
            "tolerance": {"atol": atol, "rtol": rtol, "min_correlation": min_corr}}


def sidecar(cfg, onnx_path: Path, batch: int | str, xcorr: str, opset: int, source: str,
            check: dict | None) -> dict:
    """What a consumer (ONNX Runtime, TensorRT on a Jetson) needs to feed the graph."""
    from ..config import to_dict

    b = batch
    image = {"dtype": "float32", "layout": "NCHW", "channels": "RGB", "range": [0.0, 1.0],
             "normalisation": "pixel / 255 only (no mean/std)"}
    return {
        "format": SIDECAR_FORMAT,
        "onnx": onnx_path.name,
        "opset": int(opset),
        "batch": b,
        "inputs": {
            "uav": {**image, "shape": [b, 3, cfg.uav_size, cfg.uav_size],
                    "content": "nadir UAV image, rotated so that up = north and scaled so that "
                               "(satellite m/px) / (UAV m/px) = gsd_ratio (localizer default 1.0)"},
            "sat": {**image, "shape": [b, 3, cfg.sat_size, cfg.sat_size],
                    "content": "north-up orthophoto crop (the search window), one per UAV image"},
        },
        "outputs": {
            "heatmap": {"dtype": "float32", "shape": [b, 1, cfg.sat_size, cfg.sat_size],
                        "content": "logits on the satellite pixel grid; sigmoid -> probability; the argmax "
                                   "(row, col) is where the UAV image centre lies (pixel centres at integers)"},
        },
        "correlation": {"conv": "grouped convolution (fixed batch; TensorRT-compatible)",
                        "fft": "FFT via DFT nodes (dynamic batch; ONNX Runtime, not TensorRT)"}[xcorr],
        "source": source,
        "config": to_dict(cfg),
        "check": check,
        "torch": torch.__version__,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ----------------------------------------------------------------------------------------
def _print_check(check: dict) -> None:
    print(f"{'case':<13} {'batch':>5} {'max |diff|':>11} {'tolerance':>10} {'corr':>10} {'peak':>5}  result")
    for c in check["cases"]:
        if "error" in c:
            print(f"{c['kind']:<13} {c['batch']:>5}  failed: {c['error']}")
            continue
        print(f"{c['kind']:<13} {c['batch']:>5} {c['max_abs_diff']:>11.2e} {c['tolerance']:>10.2e} "
              f"{c['correlation']:>10.7f} {'same' if c['peak_equal'] else 'DIFF':>5}  {'ok' if c['ok'] else 'MISMATCH'}")


def build_parser() -> argparse.ArgumentParser:
    ap = cli.tool_parser("geoloc-export", __doc__)
    cli.add_weights(ap, "weights path (x, x.safetensors or x.json)")
    ap.add_argument("weights_arg", nargs="?", metavar="WEIGHTS", help=argparse.SUPPRESS)  # the old positional form
    cli.add_model_config(ap, "model YAML for --random-init (default: the full model)", aliases=("--config",))
    ap.add_argument("--random-init", action="store_true", help="export a randomly initialised model of --model-config")
    cli.add_out(ap, "ONNX file (default: <weights>.onnx, or amcf_random.onnx)", aliases=("-o", "--output"))
    ap.add_argument("--opset", type=int, default=18, help=f"ONNX opset (>= {MIN_OPSET}, default 18)")
    cli.add_batch_size(ap, "fixed batch size of the graph", default=1)
    ap.add_argument("--dynamic-batch", action="store_true", help="batch as a dynamic axis (FFT correlation)")
    ap.add_argument("--xcorr", choices=("conv", "fft"), default=None,
                    help="correlation in the graph (default conv; fft with --dynamic-batch)")
    ap.add_argument("--atol", type=float, default=1e-3, help="logit tolerance: atol + rtol * max|logit|")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--min-corr", type=float, default=0.9999, help="minimum heatmap correlation")
    ap.add_argument("--seed", type=int, default=0, help="random init and check inputs")
    ap.add_argument("--verbose", action="store_true", help="show the exporter's own output")
    return ap


def _model(args: argparse.Namespace):
    """(model, what it was made from, ONNX path) from --weights or --random-init."""
    from ..model import load_model_config, load_weights
    from ..model.net import AMCFConfig, AMCFNet
    from ..model.weights import weight_paths

    if args.weights:
        model = load_weights(args.weights, device="cpu")
        out = Path(args.out) if args.out else weight_paths(args.weights)[0].with_suffix(".onnx")
        return model, str(weight_paths(args.weights)[0]), out
    cfg = load_model_config(args.model_config) if args.model_config else AMCFConfig()
    cfg.pretrained_path = None
    source = f"random init (seed {args.seed}) of {args.model_config or 'AMCFConfig()'}"
    return AMCFNet(cfg).eval(), source, Path(args.out) if args.out else Path("amcf_random.onnx")


def run(args: argparse.Namespace) -> int | None:
    """Export, check against PyTorch, write the sidecar; exit 1 when the graph does not match."""
    if args.weights and args.weights_arg and args.weights != args.weights_arg:
        raise ExportError("give the weights once (--weights)")
    args.weights = args.weights or args.weights_arg
    if args.random_init == bool(args.weights):
        raise ExportError("give either --weights or --random-init (with --model-config)")
    if args.weights and args.model_config:
        raise ExportError("--model-config is only for --random-init (a weights file carries its own config)")
    if args.opset < MIN_OPSET:
        raise ExportError(f"--opset must be >= {MIN_OPSET}, got {args.opset}")
    if args.out and not args.out.endswith(".onnx"):
        raise ExportError(f"output must end in .onnx, got {args.out}")
    require_onnx()
    torch.manual_seed(args.seed)
    model, source, out = _model(args)
    xcorr = args.xcorr or ("fft" if args.dynamic_batch else "conv")
    t0 = time.perf_counter()
    export_onnx(model, out, args.batch_size, args.dynamic_batch, args.opset, xcorr, args.verbose)
    t_export = time.perf_counter() - t0
    batches = (1, 3) if args.dynamic_batch else (args.batch_size,)
    check = check_onnx(model, out, batches, atol=args.atol, rtol=args.rtol, min_corr=args.min_corr,
                       threads=torch.get_num_threads(), seed=args.seed)
    batch = "dynamic" if args.dynamic_batch else args.batch_size
    side = Path(str(out) + ".json")
    side.write_text(json.dumps(sidecar(model.cfg, out, batch, xcorr, args.opset, source, check), indent=2) + "\n")
    cfg = model.cfg
    print(f"exported {out} ({out.stat().st_size / 1e6:.1f} MB, opset {args.opset}, batch {batch}, "
          f"correlation {xcorr}) in {t_export:.0f} s; sidecar {side}")
    print(f"inputs uav [{batch},3,{cfg.uav_size},{cfg.uav_size}] + sat [{batch},3,{cfg.sat_size},{cfg.sat_size}] "
          f"RGB float in [0,1], no mean/std; output heatmap [{batch},1,{cfg.sat_size},{cfg.sat_size}] (logits)")
    print("ONNX Runtime vs PyTorch:")
    _print_check(check)
    if not check["ok"]:
        print("error: the ONNX graph does not match PyTorch within the tolerance", file=sys.stderr)
        return 1
    print("check passed")


main = cli.entry_point(build_parser, run)


if __name__ == "__main__":
    raise SystemExit(main())
