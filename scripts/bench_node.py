#!/usr/bin/env python3
"""Soak benchmark of localize_node: a 30 Hz camera for N minutes over real Fast DDS.

Starts the node as a subprocess (config/localize.yaml + overrides), publishes a synthetic
flight (camera, camera_info, odometry, one GPS fix), records ~/status and prints:
- end-to-end latency (image stamp -> ~/status received), median / p95;
- localizer time (Estimate.timings_ms total) and model time;
- node overhead = end-to-end - localizer total (conversion, queueing, publishing, DDS);
- frames processed vs. published (the rest were replaced in the latest-frame slot);
- the node's RSS over time (from /proc), to spot leaks.

    .venv/bin/python scripts/bench_node.py --minutes 2 [--weights path|default] [--map map.tif]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))

import ros_helpers as rh  # noqa: E402


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def pct(a, q):
    return float(np.percentile(a, q)) if len(a) else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--rate", type=float, default=30.0, help="camera rate [Hz]")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--map", default="", help="GeoTIFF/COG (default: a synthetic 2 km map)")
    ap.add_argument("--weights", default="", help="'' = no model (measures the node's own overhead)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rss-every", type=float, default=10.0, help="RSS sample period [s]")
    a = ap.parse_args(argv)
    if a.minutes <= 0 or a.rate <= 0:
        print("error: --minutes and --rate must be > 0", file=sys.stderr)
        return 2

    from geoloc_ros_msgs.msg import LocalizerStatus

    from geoloc_ros.runtime.messages import stamp_to_float

    tmp = Path(tempfile.mkdtemp(prefix="bench_node_"))
    map_path = Path(a.map) if a.map else rh.write_test_map(tmp / "map.tif", size_px=2048, gsd_m=1.0)
    domain = rh.unique_domain_id(11)
    node = rh.NodeProcess({"map": map_path, "weights": a.weights, "device": a.device,
                           "localizer.coast_sigma_m": 1e6, "localizer.coast_max_s": 1e9,
                           "localizer.lost_sigma_m": 1e9,
                           "gps_timeout_s": 0.0}, domain)
    client = rh.RosClient(domain, "geoloc_bench")
    lat = []  # (e2e_ms, total_ms, model_ms, queue_ms)

    def on_status(m):
        lat.append(((time.time() - stamp_to_float(m.header.stamp)) * 1e3, m.t_total_ms, m.t_model_ms, m.t_queue_ms))

    sub = client.node.create_subscription(LocalizerStatus, "/localize_node/status", on_status, 50)
    from diagnostic_msgs.msg import DiagnosticArray
    client.subscribe(DiagnosticArray, "/diagnostics")
    feed = rh.Feeder(client, w=a.width, h=a.height, alt=120.0, speed=8.0)
    try:
        client.wait_matched(feed.all_publishers() + [sub], timeout=120.0, proc=node)
        feed.run(1.0, rate_hz=a.rate, fix=True)
        lat.clear()
        rss = [(0.0, rss_mb(node.proc.pid))]
        t0 = time.monotonic()
        sent = 0
        end = t0 + a.minutes * 60.0
        next_rss = t0 + a.rss_every
        period = 1.0 / a.rate
        nxt = t0
        while time.monotonic() < end:
            feed.step()
            sent += 1
            nxt += period
            while time.monotonic() < nxt:
                client.executor.spin_once(timeout_sec=max(0.0, min(0.005, nxt - time.monotonic())))
            if time.monotonic() >= next_rss:
                rss.append((time.monotonic() - t0, rss_mb(node.proc.pid)))
                next_rss += a.rss_every
        client.spin_for(1.5)
        counters = rh.diag_values(client.received["/diagnostics"][-1]) if client.received["/diagnostics"] else {}
        if not node.alive():
            print("error: the node died:\n" + node.output()[-2000:], file=sys.stderr)
            return 1
    finally:
        node.stop()
        client.close()

    x = np.array(lat) if lat else np.zeros((0, 4))
    e2e, tot, model, queue = (x[:, i] for i in range(4))
    over = e2e - tot
    print(f"camera {a.width}x{a.height} @ {a.rate:g} Hz for {a.minutes:g} min, weights {a.weights or 'none'}")
    print(f"frames sent {sent}, processed {len(x)} ({100.0 * len(x) / max(sent, 1):.1f} %); node counters "
          f"(whole run): received {counters.get('frames_received')}, replaced in the latest-frame slot "
          f"{counters.get('frames_dropped')}, skipped {counters.get('frames_skipped')}")
    print(f"end-to-end latency ms: median {pct(e2e, 50):.1f}  p95 {pct(e2e, 95):.1f}  max {np.max(e2e, initial=0):.1f}")
    print(f"localizer total ms:    median {pct(tot, 50):.1f}  p95 {pct(tot, 95):.1f}  (model median {pct(model, 50):.1f})")
    print(f"node overhead ms:      median {pct(over, 50):.1f}  p95 {pct(over, 95):.1f}  (queue median {pct(queue, 50):.1f})")
    print("node RSS MB over time: " + ", ".join(f"{t:.0f}s {m:.0f}" for t, m in rss))
    if len(rss) > 2:
        print(f"RSS change after the first sample: {rss[-1][1] - rss[1][1]:+.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
