#!/usr/bin/env python3
"""What do the model's heatmaps say about the truth? One shot per frame of a simulated bag.

For every camera frame (after GPS denial, every `--every`-th) the satellite window is placed
around the true position shifted by a random offset (as a tracking prior with that error
would place it), the model runs once, and the script records: the logit at the truth, the
background (median) logit, the peak logit and where the peak lies relative to the truth.
It prints the distribution of those numbers, which is what a measurement model
(localize.evidence) has to be calibrated against. Development tool; reads bags, writes
nothing but an optional .npz.

    python scripts/heatmap_probe.py BAG [--offset-m 15] [--every 3] [--npz out.npz]
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bag")
    ap.add_argument("--weights", default="default")
    ap.add_argument("--offset-m", type=float, default=15.0, help="1-sigma of the window-centre offset")
    ap.add_argument("--every", type=int, default=3)
    ap.add_argument("--max-frames", type=int, default=200)
    ap.add_argument("--npz", default=None)
    args = ap.parse_args(argv)

    import torch

    from geoloc_ros.bags import DEFAULT_TOPICS, load_sidecar, read_fixes, read_messages, truth_series
    from geoloc_ros.geo.frames import LocalENU
    from geoloc_ros.geo.orthomap import OrthoMap
    from geoloc_ros.localize.alignment import odom_yaw_offset
    from geoloc_ros.data.tensors import to_tensor
    from geoloc_ros.localize.prepare import heatmap_cov_to_enu, honest_cov, prepare_uav
    from geoloc_ros.model.decode import decode_heatmap
    from geoloc_ros.localize.search import sat_window_side_m
    from geoloc_ros.model.weights import load_weights, resolve_weights
    from geoloc_ros.runtime import FrameAssembler, InputConfig

    side = load_sidecar(args.bag)
    truth = truth_series(args.bag)
    gps = read_fixes(args.bag, DEFAULT_TOPICS["gps"])
    t_denial = gps[-1][0] if gps else -math.inf
    net = load_weights(resolve_weights(args.weights)).eval()
    uav_size, sat_size = net.cfg.uav_size, net.cfg.sat_size
    rng = np.random.default_rng(0)
    asm = FrameAssembler(InputConfig())
    rows = []
    modes_all = []
    n = 0
    with OrthoMap.open(side.map_path) as omap:
        topics = [DEFAULT_TOPICS[k] for k in ("image", "camera_info", "odom")]
        pending = []
        for topic, _t, msg in read_messages(args.bag, topics):
            if topic == DEFAULT_TOPICS["odom"]:
                asm.on_odometry(msg)
            elif topic == DEFAULT_TOPICS["camera_info"]:
                asm.on_camera_info(msg)
            else:
                pending.append(msg)
            while pending and asm.odom.last_stamp() is not None and \
                    asm.odom.last_stamp() >= pending[0].header.stamp.sec + pending[0].header.stamp.nanosec * 1e-9:
                m = pending.pop(0)
                got = asm.assemble(m, 0.0)
                fr = got.frame
                if fr is None or fr.stamp < t_denial:
                    continue
                n += 1
                if n % args.every or len(rows) >= args.max_frames:
                    continue
                lat, lon, _ = truth.at(fr.stamp, 1.0)
                # the true heading: odometry yaw + its error now, measured like the localizer's GPS
                # alignment but against the ground truth over the last 10 s
                rows_t = [(t, *truth.at(t, 1.0)) for t in np.arange(fr.stamp - 10.0, fr.stamp + 1e-6, 0.5)
                          if truth.first_stamp() <= t]
                yaw_err = odom_yaw_offset(rows_t, lambda t: asm.odom.at(t, 1.0)[:2], window_s=10.0,
                                          min_travel_m=10.0)
                if yaw_err is None:
                    continue
                prep = prepare_uav(fr.image, fr.intrinsics, fr.altitude_agl, fr.odom_yaw + yaw_err, uav_size,
                                   pitch=fr.pitch, roll=fr.roll)
                win = sat_window_side_m(prep.footprint_m, uav_size, sat_size)
                enu = LocalENU(lat, lon)
                off = rng.normal(0.0, args.offset_m, 2)
                c_lat, c_lon, _ = enu.to_geodetic(off[0], off[1], 0.0)
                crop = omap.crop((float(c_lat), float(c_lon)), win, sat_size)
                with torch.inference_mode():
                    logit = net(to_tensor([prep.image]), to_tensor([crop.image]))[0, 0].numpy()
                g = win / sat_size
                ctr = (sat_size - 1) / 2.0
                # the heatmap marks the ground point under the UAV image's centre (the nadir plus the
                # tilt offset); the crop is centred `off` from the nadir truth
                oe, on = prep.center_offset_en
                t_col, t_row = ctr + (oe - off[0]) / g, ctr - (on - off[1]) / g
                ti, tj = int(round(t_row)), int(round(t_col))
                if not (0 <= ti < sat_size and 0 <= tj < sat_size):
                    continue
                pk = np.unravel_index(int(np.argmax(logit)), logit.shape)
                kk = sat_size / 384.0
                dec = decode_heatmap(logit, hanning=int(round(31 * kk)) | 1, window=7, suppress_radius=32.0 * kk,
                                     cov_radius=16.0 * kk, max_modes=4)
                mode_rows = []
                for m in dec.modes:
                    err = np.array([(m.col_sub - t_col) * g, -(m.row_sub - t_row) * g])  # east, north (m)
                    r = honest_cov(heatmap_cov_to_enu(m.cov_px, g), 0.4, 0.75)
                    mode_rows.append((float(np.hypot(*err)), float(err @ np.linalg.solve(r, err)), m.height,
                                      float(err[0]), float(err[1])))
                rows.append((float(logit[max(ti - 1, 0):ti + 2, max(tj - 1, 0):tj + 2].max()), float(np.median(logit)),
                             float(logit.max()), float(np.hypot(pk[0] - t_row, pk[1] - t_col) * g), g))
                modes_all.append((dec.confidence, dec.peak_ratio, mode_rows))
    a = np.array(rows)
    if not len(a):
        print("no frames", file=sys.stderr)
        return 1
    at_truth, bg, peak, dist, g = a.T
    print(f"frames {len(a)}, window px {g.mean():.2f} m")
    for name, v in (("logit at truth - background", at_truth - bg), ("peak - background", peak - bg),
                    ("peak - logit at truth", peak - at_truth), ("peak distance to truth (m)", dist)):
        q = np.percentile(v, [5, 25, 50, 75, 95])
        print(f"{name:30s} p5 {q[0]:7.2f}  p25 {q[1]:7.2f}  median {q[2]:7.2f}  p75 {q[3]:7.2f}  p95 {q[4]:7.2f}")
    print(f"peak within 5 m / 10 m of the truth: {np.mean(dist <= 5):.0%} / {np.mean(dist <= 10):.0%}")
    ok_err = np.array([m[2][0][3:5] for m in modes_all if m[2][0][0] <= 8.0])
    if len(ok_err):
        print(f"top modes within 8 m: mean error east {ok_err[:, 0].mean():+.2f} m, north {ok_err[:, 1].mean():+.2f} m "
              f"(std {ok_err[:, 0].std():.2f}, {ok_err[:, 1].std():.2f}; n {len(ok_err)})")
    conf = np.array([m[0] for m in modes_all])
    top_d = np.array([m[2][0][0] for m in modes_all])
    top_d2 = np.array([m[2][0][1] for m in modes_all])
    any_ok = np.array([any(x[0] <= 8.0 for x in m[2]) for m in modes_all])
    print("confidence bin: n, top mode within 8 m, any mode within 8 m, mean d2 of the top mode when within 8 m")
    for lo, hi in ((0, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (0.6, 0.8), (0.8, 1.01)):
        sel = (conf >= lo) & (conf < hi)
        if sel.any():
            ok = sel & (top_d <= 8.0)
            print(f"  [{lo:.1f}, {hi:.1f}): {sel.sum():4d}  {np.mean(top_d[sel] <= 8.0):5.0%}  {np.mean(any_ok[sel]):5.0%}  "
                  f"{np.mean(np.minimum(top_d2[ok], 50)) if ok.any() else float('nan'):6.2f}")
    if args.npz:
        import pickle
        with open(args.npz, "wb") as f:
            pickle.dump({"rows": a, "modes": modes_all}, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
