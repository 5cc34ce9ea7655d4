"""geoloc-bench: one entry for the speed figures (model, tracking path, map crops, node, relocalization).

Prints a Markdown table (median / p95 after warmup, targets with pass/fail) and writes the
same as JSON (`--json`), with the hardware named, so figures from different machines can be
compared honestly. Sections (`--only model,crop,node,reloc,oneshot`):

- model: latency per pair at batch 1 on CPU (fp32 only: bf16 is ~10x slower on these CPUs):
  eager, channels_last, torch.compile (in a child process with a time limit), ONNX Runtime
  (exported to a temp dir with `tools/export.py`); the tracking path (satellite features of a
  search window computed once, per frame only UAV encode + fusion + head) and its one-off cost
  per window; batched per pair. On CUDA: fp32/bf16/fp16 x eager/compile/CUDA graph, batch 1 and
  the relocalization batch.
- crop: `scripts/bench_crop.py` (OrthoMap.crop on a generated COG, 30k px; `--quick` 6k px).
- node: `scripts/bench_node.py` as a subprocess (node overhead over real Fast DDS, no model).
- reloc: windows needed to cover 1 km^2 (localize/search.py geometry, a reference camera) x
  per-pair batched model time (+ one crop per window when the crop section ran).
- oneshot: accuracy, not speed: tools/oneshot.py, one heatmap per held-out flight frame
  (procedural and real-photo, weak and strong appearance gap, priors up to 30 m) through the
  localizer's per-frame path: MA@5/10, RDS, confident share, ms per frame. Measures `--weights`
  (default: the packaged ones; `--only oneshot --model-config YAML`: a random-init baseline);
  `--oneshot-work DIR` keeps its generated maps.

Never asserts anything: it measures and prints. Other processes on the machine slow every
figure; the load average is recorded with the hardware.

    geoloc-bench --quick --json /tmp/bench.json
    geoloc-bench --model-config config/model_amcf_small.yaml --repeats 30
    geoloc-bench --weights runs/x/best --only model,reloc
    geoloc-bench --only oneshot --weights runs/x/best --oneshot-work /tmp/oneshot
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import cli, resources
from ..errors import GeolocError
from .model_facts import _timeit, count_flops, time_once

SECTIONS = ("model", "crop", "node", "reloc", "oneshot")
# target key -> (what, limit in ms, where it applies)
TARGETS: dict[str, tuple[str, float, str]] = {
    "cpu_pair": ("full pair, batch 1", 180.0, "2 CPU cores"),
    "cpu_track": ("online tracking per frame (satellite features cached)", 40.0, "2 CPU cores"),
    "node_overhead": ("node overhead (end-to-end - localizer)", 5.0, "any"),
    "gpu_pair": ("full pair, batch 1", 2.0, "H100"),
    "gpu_reloc": ("relocalization of 1 km^2", 1000.0, "GPU"),
}


# ----------------------------------------------------------------------------------------
def hardware(threads: int) -> dict[str, Any]:
    """CPU model, cores, torch threads, GPUs, versions and the load average (others' work)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    try:
        import onnxruntime
        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "torch_threads": threads,
            "gpu": gpus[0] if gpus else None, "gpus": gpus, "torch": torch.__version__,
            "onnxruntime": ort_version, "python": platform.python_version(),
            "load_avg_1m_start": round(os.getloadavg()[0], 2)}


def _row(section: str, case: str, backend: str, device: str, precision: str, batch: int, unit: str,
         times_ms: np.ndarray | None = None, target: str | None = None, note: str = "", **extra) -> dict:
    r: dict[str, Any] = {"section": section, "case": case, "backend": backend, "device": device,
                         "precision": precision, "batch": batch, "unit": unit, "note": note}
    if times_ms is not None:
        times_ms = np.asarray(times_ms, dtype=float)
        r.update(median_ms=float(np.median(times_ms)), p95_ms=float(np.percentile(times_ms, 95)),
                 repeats=int(times_ms.size))
    if target:
        r["target"] = target
        r["target_ms"] = TARGETS[target][1]
        if "median_ms" in r:
            r["pass"] = bool(r["median_ms"] <= r["target_ms"])
    r.update(extra)
    return r


def _with_ratio(track: dict, full: dict) -> dict:
    """Note how a cached tracking frame compares with an uncached pair (the cache's saving)."""
    if track.get("median_ms") and full.get("median_ms"):
        track["cached_over_full"] = track["median_ms"] / full["median_ms"]
        track["note"] += f"; {track['cached_over_full']:.2f} x the uncached pair"
    return track


def _skip(section: str, case: str, backend: str, device: str, why: str, target: str | None = None,
          precision: str = "fp32", batch: int = 1, unit: str = "ms/pair") -> dict:
    return _row(section, case, backend, device, precision, batch, unit, None, target, note=f"skipped: {why}")


def _first_line(exc: BaseException) -> str:
    s = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {s[0][:160]}" if s else exc.__class__.__name__


# ----------------------------------------------------------------------------------------
def build_model(model_path: str | None, weights: str | None, seed: int = 0):
    """AMCFNet in eval mode: weights when given, else a random init of the model YAML."""
    from ..model import load_model_config, load_weights
    from ..model.net import AMCFConfig, AMCFNet

    if weights:
        from ..model.weights import resolve_weights

        return load_weights(resolve_weights(weights), device="cpu")
    torch.manual_seed(seed)
    cfg = load_model_config(model_path) if model_path else AMCFConfig()
    cfg.pretrained_path = None
    return AMCFNet(cfg).eval()


def _inputs(cfg, batch: int, device: str | torch.device = "cpu", seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(batch, 3, cfg.uav_size, cfg.uav_size, generator=g).to(device)
    s = torch.rand(batch, 3, cfg.sat_size, cfg.sat_size, generator=g).to(device)
    return u, s


def _time_ms(fn: Callable, warmup: int, repeats: int, sync: Callable = lambda: None, per: int = 1) -> np.ndarray:
    """Times in ms per item after warmup. Warmup continues (up to 3x `warmup` more runs) while the
    last run is > 1.3x the fastest so far: measured here, the first several CPU forwards of the
    full model took ~4x longer than the steady state (allocator / kernel caches)."""
    seen: list[float] = []
    for i in range(4 * warmup):
        if i >= warmup and seen[-1] <= 1.3 * min(seen):
            break
        seen.append(time_once(fn, sync))
    return _timeit(fn, 0, repeats, sync) * 1e3 / per


def bench_model_cpu(model, args) -> list[dict]:
    """CPU rows: eager / channels_last / compile / ONNX Runtime at batch 1, tracking, batched."""
    cfg, rows, w, n = model.cfg, [], args.warmup, args.repeats
    thr = torch.get_num_threads()
    dev = f"cpu x{thr}"
    u, s = _inputs(cfg, 1)
    with torch.inference_mode():
        rows.append(_row("model", "full pair", "eager", dev, "fp32", 1, "ms/pair",
                         _time_ms(lambda: model(u, s), w, n), "cpu_pair"))
        try:
            mcl = _channels_last_copy(model)
            ucl, scl = u.contiguous(memory_format=torch.channels_last), s.contiguous(memory_format=torch.channels_last)
            rows.append(_row("model", "full pair", "channels_last", dev, "fp32", 1, "ms/pair",
                             _time_ms(lambda: mcl(ucl, scl), w, n), "cpu_pair"))
        except Exception as exc:  # noqa: BLE001 - report and go on
            mcl = None
            rows.append(_skip("model", "full pair", "channels_last", dev, _first_line(exc), "cpu_pair"))
    rows.append(_compile_row(args, thr) if not args.no_compile else
                _skip("model", "full pair", "torch.compile", dev, "--no-compile", "cpu_pair"))
    rows.append(_onnx_row(model, args, thr, dev))
    # tracking: the satellite window's side of the model is computed once (when the window
    # moves): backbone features and, for the correlation fusion, their projected, normalised
    # maps and FFTs (AMCFNet.prepare_sat, what the localizer's satellite cache keeps)
    with torch.inference_mode():
        sat_feats = model.prepare_sat(model.encode(s, "sat"))
        out_hw = tuple(s.shape[-2:])
        track = _row("model", "tracking per frame (sat cached)", "eager", dev, "fp32", 1, "ms/frame",
                     _time_ms(lambda: model.forward_features(model.encode(u, "uav"), sat_feats, out_hw), w, n),
                     "cpu_track", note="UAV encode + fusion + head")
        rows.append(_with_ratio(track, rows[0]))
        uav_feats = model.encode(u, "uav")
        rows.append(_row("model", "fusion + head only", "eager", dev, "fp32", 1, "ms/frame",
                         _time_ms(lambda: model.forward_features(uav_feats, sat_feats, out_hw), w, n),
                         note="part of the tracking frame"))
        if mcl is not None:
            sat_cl = mcl.prepare_sat(mcl.encode(scl, "sat"))
            rows.append(_row("model", "tracking per frame (sat cached)", "channels_last", dev, "fp32", 1, "ms/frame",
                             _time_ms(lambda: mcl.forward_features(mcl.encode(ucl, "uav"), sat_cl, out_hw), w, n),
                             "cpu_track", note="UAV encode + fusion + head"))
        rows.append(_row("model", "satellite encode per window", "eager", dev, "fp32", 1, "ms/window",
                         _time_ms(lambda: model.prepare_sat(model.encode(s, "sat")), w, n),
                         note="once per new search window while tracking (backbone + the fusion's satellite half)"))
        b = args.cpu_batch
        if b > 1:
            ub, sb = _inputs(cfg, b)
            rows.append(_row("model", "full pair, batched", "eager", dev, "fp32", b, "ms/pair",
                             _time_ms(lambda: model(ub, sb), max(1, w // 2), max(2, n // 2), per=b),
                             note="relocalization batch"))
    return rows


def _channels_last_copy(model):
    import copy

    return copy.deepcopy(model).to(memory_format=torch.channels_last).eval()


def _onnx_row(model, args, threads: int, dev: str) -> dict:
    """Export to a temp dir (grouped-conv graph, batch 1) and time ONNX Runtime."""
    if args.no_onnx:
        return _skip("model", "full pair", "onnxruntime", dev, "--no-onnx", "cpu_pair")
    from . import export as ex

    try:
        ex.require_onnx()
    except ex.ExportError as exc:
        return _skip("model", "full pair", "onnxruntime", dev, str(exc), "cpu_pair")
    u, s = _inputs(model.cfg, 1)
    with tempfile.TemporaryDirectory(prefix="geoloc_bench_onnx_") as tmp:
        try:
            t0 = time.perf_counter()
            path = ex.export_onnx(model, Path(tmp) / "amcf.onnx", batch=1)
            t_export = time.perf_counter() - t0
            sess = ex.ort_session(path, threads)
            feed = {"uav": u.numpy(), "sat": s.numpy()}
            times = _time_ms(lambda: sess.run(["heatmap"], feed), args.warmup, args.repeats)
        except Exception as exc:  # noqa: BLE001 - an export failure is a finding, not a crash
            return _skip("model", "full pair", "onnxruntime", dev, _first_line(exc), "cpu_pair")
    return _row("model", "full pair", "onnxruntime", dev, "fp32", 1, "ms/pair", times, "cpu_pair",
                note=f"grouped-conv graph, export {t_export:.0f} s", export_s=t_export)


def _compile_row(args, threads: int) -> dict:
    """torch.compile in a child process so that a slow or failing compile cannot stall the run."""
    dev = f"cpu x{threads}"
    cmd = [sys.executable, "-m", "geoloc_ros.tools.bench", "--child", "compile", "--threads", str(threads),
           "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    cmd += ["--model-config", args.model_config] if args.model_config else []
    cmd += ["--weights", args.weights] if args.weights else []
    env = dict(os.environ, TORCHINDUCTOR_COMPILE_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=args.compile_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child and its compile workers only
        proc.communicate()
        return _skip("model", "full pair", "torch.compile", dev,
                     f"compile + timing took > {args.compile_timeout:g} s (--compile-timeout)", "cpu_pair")
    try:
        res = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (err.strip().splitlines() or ["no output"])[-1][:160]
        return _skip("model", "full pair", "torch.compile", dev, f"compile failed: {tail}", "cpu_pair")
    if "error" in res:
        return _skip("model", "full pair", "torch.compile", dev, f"compile failed: {res['error']}", "cpu_pair")
    return _row("model", "full pair", "torch.compile", dev, "fp32", 1, "ms/pair", np.asarray(res["times_ms"]),
                "cpu_pair", note=f"first call (compile) {res['compile_s']:.0f} s", compile_s=res["compile_s"])


def _child_compile(args) -> int:
    """--child compile: print {"times_ms": [...], "compile_s": x} or {"error": ...} as JSON."""
    try:
        model = build_model(args.model_config, args.weights, args.seed)
        u, s = _inputs(model.cfg, 1)
        compiled = torch.compile(model)
        with torch.inference_mode():
            t0 = time.perf_counter()
            compiled(u, s)
            compile_s = time.perf_counter() - t0
            times = _time_ms(lambda: compiled(u, s), args.warmup, args.repeats)
        print(json.dumps({"times_ms": times.tolist(), "compile_s": compile_s}))
    except Exception as exc:  # noqa: BLE001
        print(json.dumps({"error": _first_line(exc)}))
    return 0


def bench_model_cuda(model, args) -> list[dict]:
    """CUDA rows: fp32/bf16/fp16 x eager/compile/CUDA graph x batch 1/N, tracking at batch 1."""
    from ..model import autocast

    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    model = model.to(device).eval()
    cfg, rows, w, n = model.cfg, [], max(args.warmup, 5), max(args.repeats, 20)
    sync = torch.cuda.synchronize
    compiled = None
    if not args.no_compile:
        try:
            compiled = torch.compile(model)
        except Exception as exc:  # noqa: BLE001
            rows.append(_skip("model", "full pair", "torch.compile", name, _first_line(exc), "gpu_pair"))
    for batch in (1, args.batch_size):
        u, s = _inputs(cfg, batch, device)
        target = "gpu_pair" if batch == 1 else None
        case = "full pair" if batch == 1 else "full pair, batched"
        for prec in ("fp32", "bf16", "fp16"):
            runners: list[tuple[str, Callable | None, str]] = [("eager", lambda: model(u, s), "")]
            if compiled is not None:
                runners.append(("torch.compile", lambda: compiled(u, s), ""))
            for backend, fn, why in runners:
                try:
                    with torch.inference_mode(), autocast(device, prec):
                        t0 = time.perf_counter()
                        fn()
                        sync()
                        first = time.perf_counter() - t0
                        times = _time_ms(fn, w, n, sync, per=batch)
                    rows.append(_row("model", case, backend, name, prec, batch, "ms/pair", times, target,
                                     note=f"first call {first:.0f} s" if backend == "torch.compile" else ""))
                except Exception as exc:  # noqa: BLE001
                    rows.append(_skip("model", case, backend, name, _first_line(exc), target, prec, batch))
            try:
                replay = _cuda_graph(model, u, s, prec)
                rows.append(_row("model", case, "CUDA graph", name, prec, batch, "ms/pair",
                                 _time_ms(replay, w, n, sync, per=batch), target))
            except Exception as exc:  # noqa: BLE001
                rows.append(_skip("model", case, "CUDA graph", name, _first_line(exc), target, prec, batch))
    prec = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    u, s = _inputs(cfg, 1, device)
    with torch.inference_mode(), autocast(device, prec):
        sat_feats = model.prepare_sat(model.encode(s, "sat"))
        rows.append(_row("model", "tracking per frame (sat cached)", "eager", name, prec, 1, "ms/frame",
                         _time_ms(lambda: model.forward_features(model.encode(u, "uav"), sat_feats, s.shape[-2:]),
                                  w, n, sync)))
    model.to("cpu")
    return rows


def _cuda_graph(model, u: torch.Tensor, s: torch.Tensor, prec: str) -> Callable:
    """Capture one forward in a CUDA graph (static inputs); returns the replay function."""
    from ..model import parse_dtype

    dtype = parse_dtype(prec)
    amp = (torch.autocast("cuda", dtype=dtype, cache_enabled=False) if dtype != torch.float32
           else torch.autocast("cuda", enabled=False))
    su, ss = u.clone(), s.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.no_grad(), amp:
        for _ in range(3):
            model(su, ss)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), amp, torch.cuda.graph(graph):
        model(su, ss)
    return graph.replay


# ----------------------------------------------------------------------------------------
def _script(name: str) -> Path:
    """scripts/<name>.py of the source checkout the package runs from. The benchmark scripts
    are not installed (bench_node.py needs test/ too), so an installed copy has none."""
    root = resources.source_root()
    if root is None:
        raise FileNotFoundError(f"scripts/{name}.py is not installed (run geoloc-bench from a source checkout)")
    path = root / "scripts" / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    return path


def _load_script(name: str):
    """Import scripts/<name>.py of the source tree (benchmarks that are not part of the package)."""
    path = _script(name)
    spec = importlib.util.spec_from_file_location(f"_geoloc_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def bench_crop(args) -> list[dict]:
    """OrthoMap.crop latency with scripts/bench_crop.py's generator and measurement."""
    size = args.crop_px
    try:
        bc = _load_script("bench_crop")
    except FileNotFoundError as exc:
        return [_skip("crop", "crop 384 px", "OrthoMap", "cpu", str(exc), unit="ms/crop")]
    tmp = None
    if args.crop_map:
        path = Path(args.crop_map)
    else:
        folder = Path(args.keep_maps) if args.keep_maps else Path(tmp := tempfile.mkdtemp(prefix="geoloc_bench_map_"))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"map_{size}_b256.tif"  # bench_crop.py --keep names its maps like this
    try:
        t_gen = 0.0
        if not path.exists():
            print(f"  generating a {size} x {size} px COG for the crop benchmark ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            bc.make_map(path, size, block=256)
            t_gen = time.perf_counter() - t0
        res = bc.measure(path, args.crops, args.gdal_threads)
    except Exception as exc:  # noqa: BLE001
        return [_skip("crop", "crop 384 px", "OrthoMap", "cpu", _first_line(exc), unit="ms/crop")]
    finally:
        if tmp:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    px = res["map_px"]
    what = {"random": "400 m at random position/rotation (cold)", "coarse": "3 km from an overview",
            "tracking": "400 m, 8 m steps (tracking)"}
    rows = []
    for kind in ("random", "coarse", "tracking"):
        k = res[kind]
        rows.append({**_row("crop", f"crop 384 px, {what[kind]}", "OrthoMap", f"{px} px COG", "-", 1, "ms/crop"),
                     "median_ms": k["median_ms"], "p95_ms": k["p95_ms"], "repeats": k["n"],
                     "note": f"{args.gdal_threads} GDAL threads", "peak_rss_mb": res["peak_rss_mb"],
                     "map_generated_s": t_gen})
    return rows


_NODE_RE = {
    "e2e": r"end-to-end latency ms:\s+median ([\d.]+)\s+p95 ([\d.]+)",
    "localizer": r"localizer total ms:\s+median ([\d.]+)\s+p95 ([\d.]+)",
    "overhead": r"node overhead ms:\s+median ([\d.]+)\s+p95 ([\d.]+)",
}


def bench_node(args) -> list[dict]:
    """localize_node over Fast DDS without a model: scripts/bench_node.py in a subprocess."""
    pointer = "run scripts/bench_node.py --minutes 2 yourself"
    try:
        script = _script("bench_node")
    except FileNotFoundError as exc:
        return [_skip("node", "node overhead", "localize_node", "cpu", f"{exc}; {pointer}",
                      "node_overhead", unit="ms/frame")]
    cmd = [sys.executable, str(script), "--minutes", f"{args.node_minutes:g}", "--device", "cpu"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.node_minutes * 60 + 240,
                             cwd=script.parent.parent)
    except subprocess.TimeoutExpired:
        return [_skip("node", "node overhead", "localize_node", "cpu", f"timed out; {pointer}", "node_overhead",
                      unit="ms/frame")]
    found = {k: re.search(p, out.stdout) for k, p in _NODE_RE.items()}
    if out.returncode != 0 or not all(found.values()):
        tail = ((out.stderr or out.stdout).strip().splitlines() or ["no output"])[-1][:160]
        return [_skip("node", "node overhead", "localize_node", "cpu", f"bench_node failed ({tail}); {pointer}",
                      "node_overhead", unit="ms/frame")]
    names = {"e2e": ("end-to-end latency (no model)", None), "localizer": ("localizer total (no model)", None),
             "overhead": ("node overhead", "node_overhead")}
    rows = []
    for key, (case, target) in names.items():
        med, p95 = float(found[key].group(1)), float(found[key].group(2))
        r = _row("node", case, "localize_node", "cpu", "-", 1, "ms/frame", None, target,
                 note=f"30 Hz 640x480 for {args.node_minutes:g} min, Fast DDS")
        r.update(median_ms=med, p95_ms=p95, repeats=None)
        if target:
            r["pass"] = bool(med <= r["target_ms"])
        rows.append(r)
    return rows


def reloc_geometry(cfg, area_km2: float = 1.0, width: int = 640, height: int = 480, hfov_deg: float = 70.0,
                   altitude_m: float = 120.0) -> dict:
    """Windows the localizer's sweep needs to cover a square of `area_km2` (its own geometry)."""
    from ..localize.config import LocalizerConfig, with_model_defaults
    from ..localize.search import footprint_side_m, grid_offsets, sat_window_side_m

    lc = with_model_defaults(LocalizerConfig(), None)
    f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    fp = footprint_side_m(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0, altitude_m)
    window_m = sat_window_side_m(fp, cfg.uav_size, cfg.sat_size, lc.gsd_ratio)
    radius = 0.5 * math.sqrt(area_km2) * 1000.0
    n = len(grid_offsets(radius, window_m, lc.useful_frac, lc.window_overlap))
    return {"windows": n, "window_m": window_m, "footprint_m": fp, "camera": f"{width}x{height} hfov {hfov_deg:g} deg",
            "altitude_m": altitude_m, "area_km2": area_km2, "useful_frac": lc.useful_frac,
            "overlap": lc.window_overlap}


def bench_reloc(model, rows: list[dict], args) -> list[dict]:
    """1 km^2: windows x (best batched per-pair model time on each device) + one crop per window."""
    geo = reloc_geometry(model.cfg)
    n = geo["windows"]
    # sweep windows are new ground: a cold read each (the 'random' crop pattern), not the tracking one
    crop = [r for r in rows if r["section"] == "crop" and "random" in r["case"] and "median_ms" in r]
    crop_ms = crop[0]["median_ms"] if crop else None
    by_dev: dict[str, list[dict]] = {}
    for r in rows:
        if r["section"] == "model" and r["case"].startswith("full pair") and "median_ms" in r:
            by_dev.setdefault("cuda" if not r["device"].startswith("cpu") else "cpu", []).append(r)
    if "cpu" not in by_dev:  # model section not run: measure the batched forward here
        b = args.cpu_batch
        ub, sb = _inputs(model.cfg, b)
        with torch.inference_mode():
            t = _time_ms(lambda: model(ub, sb), 1, max(2, args.repeats // 2), per=b)
        by_dev["cpu"] = [_row("model", "full pair, batched", "eager", f"cpu x{torch.get_num_threads()}",
                              "fp32", b, "ms/pair", t)]
    out = []
    what = (f"{n} windows of {geo['window_m']:.0f} m ({geo['camera']}, {geo['altitude_m']:g} m AGL, "
            f"useful {geo['useful_frac']:g}, overlap {geo['overlap']:g})")
    for dev, cands in sorted(by_dev.items()):
        best = min(cands, key=lambda r: r["median_ms"])
        total = n * best["median_ms"] + (n * crop_ms if crop_ms is not None else 0.0)
        note = (f"{what}; model {best['backend']} {best['precision']} b{best['batch']} "
                f"{best['median_ms']:.1f} ms/pair" + (f" + cold crop {crop_ms:.1f} ms/window" if crop_ms is not None
                                                       else " (model only: crop section not run)"))
        r = _row("reloc", "relocalization 1 km^2", best["backend"], best["device"], best["precision"],
                 best["batch"], "ms/km^2", None, "gpu_reloc" if dev == "cuda" else None, note=note, **geo)
        r.update(median_ms=total, p95_ms=None, repeats=None)
        if dev == "cuda":
            r["pass"] = bool(total <= r["target_ms"])
        out.append(r)
    return out


def bench_oneshot(model, args) -> dict:
    """tools/oneshot.py on `--weights` (the packaged ones unless given; a --model-config alone:
    its random init), quick with --quick; the report with every frame's row."""
    from .oneshot import OneShotConfig, load_net, run_oneshot

    kw = {"frames_per_part": args.oneshot_frames} if args.oneshot_frames else {}
    cfg = OneShotConfig.quick(**kw) if args.quick else OneShotConfig(**kw)
    if getattr(args, "model_given", True) or args.weights:  # asked for (a random default model says nothing)
        net, name = model, args.weights or f"random init of {args.model_config}"
    else:
        net, name = load_net("default"), "default"
    rep = run_oneshot(net, cfg, args.oneshot_work, progress=True)
    rep["weights"] = name
    return rep


def oneshot_rows(rep: dict) -> list[dict]:
    """The one-shot benchmark's per-frame cost as a table row (its accuracy has its own table)."""
    p = rep["pooled"]
    ms = np.array([r["frame_ms"] for r in rep["rows"]])
    r = _row("oneshot", "one frame: prepare + crop + model + decode", "localizer path", f"cpu x{rep['torch_threads']}",
             "fp32", 1, "ms/frame", ms, note=f"{p['n']} frames, MA@10 {100 * p['MA@10']:.0f} % (pooled)")
    return [r]


# ----------------------------------------------------------------------------------------
def summarise_targets(rows: list[dict], threads: int, has_gpu: bool) -> list[dict]:
    """One line per target: the best measured row that applies, pass / FAIL / n/a."""
    out = []
    for key, (what, limit, where) in TARGETS.items():
        cands = [r for r in rows if r.get("target") == key and r.get("median_ms") is not None]
        best = min(cands, key=lambda r: r["median_ms"]) if cands else None
        status = "n/a"
        if best is not None:
            status = "pass" if best["median_ms"] <= limit else "FAIL"
        note = ""
        if key.startswith("cpu") and threads != 2:
            note = f"measured with {threads} threads (target is for 2 cores)"
        if key.startswith("gpu") and not has_gpu:
            note = "no GPU here"
        out.append({"target": key, "what": what, "where": where, "limit_ms": limit,
                    "measured_ms": best["median_ms"] if best else None,
                    "by": f"{best['backend']} {best['precision']} b{best['batch']}" if best else None,
                    "status": status, "note": note})
    return out


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return ""
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def to_markdown(report: dict) -> str:
    hw = report["hardware"]
    m = report.get("model_facts", {})
    lines = [f"**Hardware**: {hw['cpu']}, {hw['usable_cores']} usable cores ({hw['cores']} total), "
             f"torch {hw['torch']} with {hw['torch_threads']} threads, GPU: {hw['gpu'] or 'none'}, "
             f"onnxruntime {hw['onnxruntime'] or 'not installed'}; 1-min load average "
             f"{hw['load_avg_1m_start']} at start, {hw.get('load_avg_1m_end', '?')} at end"
             + (" (other processes were running: figures are pessimistic)"
                if hw['load_avg_1m_start'] > 0.5 * (hw['usable_cores'] or 1) else "") + "."]
    if m:
        lines.append(f"**Model**: {m['source']}, {m['params'] / 1e6:.2f} M parameters, {m['gflops']:.1f} GFLOPs "
                     f"per pair (conv + matmul), UAV {m['uav_size']} / satellite {m['sat_size']} px.")
    lines += ["", "| section | case | backend | device | precision | batch | median | p95 | unit | n | target | pass | note |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        target = f"<= {r['target_ms']:g}" if r.get("target_ms") is not None else ""
        ok = {True: "pass", False: "FAIL"}.get(r.get("pass"), "")
        lines.append(f"| {r['section']} | {r['case']} | {r['backend']} | {r['device']} | {r['precision']} | "
                     f"{r['batch']} | {_fmt(r.get('median_ms'))} | {_fmt(r.get('p95_ms'))} | {r['unit']} | "
                     f"{_fmt(r.get('repeats'))} | {target} | {ok} | {r.get('note', '')} |")
    lines += ["", "| target | where | limit ms | measured ms | by | status | note |", "|---|---|---|---|---|---|---|"]
    for t in report["targets"]:
        lines.append(f"| {t['what']} | {t['where']} | {t['limit_ms']:g} | {_fmt(t['measured_ms'])} | "
                     f"{t['by'] or ''} | {t['status']} | {t['note']} |")
    return "\n".join(lines)


def _default_model() -> str | None:
    """config/model_amcf.yaml of the working directory, else the packaged one, else None
    (AMCFConfig() defaults are the same full model)."""
    if Path("config/model_amcf.yaml").is_file():
        return "config/model_amcf.yaml"
    try:
        return str(resources.config_file("model_amcf.yaml"))
    except resources.ResourceNotFoundError:
        return None


def build_parser() -> argparse.ArgumentParser:
    ap = cli.tool_parser("geoloc-bench", __doc__)
    cli.add_model_config(ap, "model YAML (default config/model_amcf.yaml, the full model)", aliases=("--model",))
    cli.add_weights(ap, "weights (x.safetensors + x.json, or 'default': the packaged ones); default random init "
                        "(--only oneshot: the packaged weights)")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {','.join(SECTIONS)}")
    ap.add_argument("--quick", action="store_true", help="few repeats, 6k px crop map, 15 s node run")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per case (default 20; quick 5)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 3; quick 1)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2: the CPU targets' setting)")
    cli.add_device(ap, help="auto (CPU + CUDA when present) | cpu")
    cli.add_batch_size(ap, "GPU batched rows: windows per forward", default=16)
    ap.add_argument("--cpu-batch", type=int, default=None, help="CPU batched rows (default 4; quick 2)")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile rows")
    ap.add_argument("--compile-timeout", type=float, default=None, help="CPU compile limit in s (default 900; quick 300)")
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime row")
    ap.add_argument("--crop-px", type=int, default=None, help="side of the generated crop map (default 30000; quick 6000)")
    ap.add_argument("--crop-map", default=None, help="use this GeoTIFF/COG instead of generating one")
    ap.add_argument("--keep-maps", default=None, help="keep / reuse generated maps in this folder")
    ap.add_argument("--crops", type=int, default=None, help="crops per pattern (default 300; quick 40)")
    ap.add_argument("--gdal-threads", type=int, default=2, help="GDAL decode threads for the crops (default 2)")
    ap.add_argument("--node-minutes", type=float, default=None, help="node soak length (default 1; quick 0.25)")
    ap.add_argument("--oneshot-work", default=None, help="oneshot: keep / reuse its generated maps in this folder")
    ap.add_argument("--oneshot-frames", type=int, default=None, help="oneshot: frames per part (default 160; quick 8)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", dest="json_out", help="write the report as JSON here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return ap


#: (option, full run, --quick) for the options whose default depends on --quick
QUICK_DEFAULTS = (("repeats", 20, 5), ("warmup", 3, 1), ("cpu_batch", 4, 2), ("compile_timeout", 900.0, 300.0),
                  ("crop_px", 30000, 6000), ("crops", 300, 40), ("node_minutes", 1.0, 0.25))


def check_args(args: argparse.Namespace) -> list[str]:
    """Fill the --quick-dependent defaults, check every option; returns the sections to run."""
    for name, full, quick in QUICK_DEFAULTS:
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    args.model_given = bool(args.model_config or args.weights)  # before the default model fills in
    if only == ["oneshot"] and args.model_config is None and not args.weights:
        args.weights = "default"  # an accuracy benchmark of a random init says nothing
    if args.model_config is None and not args.weights:
        args.model_config = _default_model()
    if [s for s in only if s not in SECTIONS] or not only:
        raise GeolocError(f"--only takes sections of {','.join(SECTIONS)}, got {args.only!r}")
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1 or args.batch_size < 1 or args.cpu_batch < 1:
        raise GeolocError("--repeats, --threads, --batch-size and --cpu-batch must be >= 1, --warmup >= 0")
    if args.crop_px < 512 or args.crops < 1 or args.node_minutes <= 0:
        raise GeolocError("--crop-px must be >= 512, --crops >= 1, --node-minutes > 0")
    if args.device not in ("auto", "cpu"):
        raise GeolocError(f"--device must be auto or cpu, got {args.device!r}")
    if args.model_config and args.weights:
        raise GeolocError("give --model-config or --weights (a weights file carries its own config)")
    return only


def run(args: argparse.Namespace) -> int | None:
    """Measure the asked sections and print (and write) the report."""
    only = check_args(args)
    torch.set_num_threads(args.threads)
    if args.child == "compile":
        return _child_compile(args)
    model = build_model(args.model_config, args.weights, args.seed)
    use_cuda = args.device == "auto" and torch.cuda.is_available()
    hw = hardware(torch.get_num_threads())
    cfg = model.cfg
    u1, s1 = _inputs(cfg, 1)
    report: dict[str, Any] = {
        "hardware": hw,
        "settings": {k: v for k, v in vars(args).items() if k not in ("child", "json_out")},
        "model_facts": {"source": args.weights or args.model_config or "AMCFConfig()", "params": model.parameter_counts()["total"],
                        "gflops": count_flops(model, u1, s1) / 1e9, "uav_size": cfg.uav_size, "sat_size": cfg.sat_size},
    }
    rows: list[dict] = []
    t_start = time.perf_counter()
    if "model" in only:
        print("model (CPU) ...", file=sys.stderr, flush=True)
        rows += bench_model_cpu(model, args)
        if use_cuda:
            print("model (CUDA) ...", file=sys.stderr, flush=True)
            rows += bench_model_cuda(model, args)
    if "crop" in only:
        print("crop ...", file=sys.stderr, flush=True)
        rows += bench_crop(args)
    if "node" in only:
        print("node ...", file=sys.stderr, flush=True)
        rows += bench_node(args)
    if "reloc" in only:
        rows += bench_reloc(model, rows, args)
    if "oneshot" in only:
        print("oneshot ...", file=sys.stderr, flush=True)
        report["oneshot"] = bench_oneshot(model, args)
        rows += oneshot_rows(report["oneshot"])
    hw["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    report["rows"] = rows
    report["targets"] = summarise_targets(rows, torch.get_num_threads(), use_cuda)
    report["elapsed_s"] = time.perf_counter() - t_start
    print(to_markdown(report))
    if "oneshot" in report:
        from .oneshot import to_markdown as oneshot_markdown

        print(f"\n**One-shot benchmark** ({report['oneshot']['weights']}):\n")
        print(oneshot_markdown(report["oneshot"]))
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=2, default=str) + "\n")


main = cli.entry_point(build_parser, run)


if __name__ == "__main__":
    raise SystemExit(main())
