"""Rasterise a world `Layout` into an RGB orthophoto for one epoch.

Per-pixel work (fields, crop rows, ground texture) is vectorised numpy over row strips;
everything with a shape (roads, roofs, trees, cars, shadows) is drawn with OpenCV's
anti-aliased polygon/line/circle primitives at sub-pixel precision. Epoch-specific
appearance comes from its own random stream, so both epochs share the layout exactly.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .world_layout import CROPS, ROOF_COLOURS, Layout, _rect_corners, cell_of, resample_polyline

SHIFT = 3


def value_noise(rng: np.random.Generator, shape: tuple[int, int], cell_px: float, octaves: int = 3) -> np.ndarray:
    """Smooth noise in about [-1, 1]: random grids upsampled with bicubic interpolation."""
    h, w = shape
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        gh, gw = max(2, int(h / cell_px) + 2), max(2, int(w / cell_px) + 2)
        g = rng.standard_normal((gh, gw)).astype(np.float32)
        out += amp * cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
        cell_px = max(2.0, cell_px / 2.0)
    return out / total


def _hash(*arrays) -> np.ndarray:
    """Integer hash of int arrays -> uint32 (deterministic, vectorised)."""
    h = np.uint32(2166136261)
    with np.errstate(over="ignore"):
        for a in arrays:
            h = (h ^ np.asarray(a).astype(np.uint32)) * np.uint32(16777619)
            h ^= h >> np.uint32(13)
            h *= np.uint32(0x5BD1E995)
            h ^= h >> np.uint32(15)
    return h


class Painter:
    """Draws metre-space geometry into a pixel image with sub-pixel precision."""

    def __init__(self, gsd: float) -> None:
        self.g = gsd

    def p(self, pts) -> np.ndarray:
        return np.round((np.asarray(pts, dtype=np.float64) / self.g - 0.5) * (1 << SHIFT)).astype(np.int32)

    def poly(self, img, pts, colour, aa=True) -> None:
        cv2.fillPoly(img, [self.p(pts)], colour, cv2.LINE_AA if aa else cv2.LINE_8, SHIFT)

    def line(self, img, pts, colour, width_m, aa=True) -> None:
        t = max(1, int(round(width_m / self.g)))
        cv2.polylines(img, [self.p(pts)], False, colour, t, cv2.LINE_AA if aa else cv2.LINE_8, SHIFT)

    def circle(self, img, c, r_m, colour, aa=True) -> None:
        cc = self.p(c)
        r = int(round(r_m / self.g * (1 << SHIFT)))
        cv2.circle(img, (int(cc[0]), int(cc[1])), max(1, r), colour, -1, cv2.LINE_AA if aa else cv2.LINE_8, SHIFT)


def render_epoch(lay: Layout, cfg, epoch: int, n_px: int, progress=None) -> np.ndarray:
    """The (n_px, n_px, 3) uint8 orthophoto of `lay` as seen at `epoch` (1 or 2)."""
    g = lay.size_m / n_px
    seed = int(cfg.seed)
    rng_shared = np.random.default_rng([seed, 7])          # same in both epochs
    rng_e = np.random.default_rng([seed, 100 + epoch])      # epoch-specific
    e2 = epoch == 2
    step = progress or (lambda *_: None)

    # ---------------- ground: farm cells, crop rows, tracks, ground noise (per pixel)
    low = value_noise(rng_shared, (n_px, n_px), 40.0 / g, 4)    # ~40 m soil/vegetation variation
    mid = value_noise(rng_shared, (n_px, n_px), 6.0 / g, 3)     # ~6 m mottling
    if e2:
        low = 0.7 * low + 0.3 * value_noise(rng_e, (n_px, n_px), 40.0 / g, 3)
    nc = len(CROPS)
    # palette: crops 0..nc-1, then forest floor, meadow, track, hedge, field margin
    pal_a = np.array([c[0] for c in CROPS] + [(46, 66, 40), (104, 128, 72), (168, 152, 122), (58, 82, 46),
                                              (99, 122, 68)], np.float32)
    pal_b = np.array([c[1] for c in CROPS] + [(46, 66, 40), (104, 128, 72), (168, 152, 122), (58, 82, 46),
                                              (99, 122, 68)], np.float32)
    FOREST, MEADOW, TRACK, HEDGE, MARGIN = nc, nc + 1, nc + 2, nc + 3, nc + 4
    small_rows = np.array([c[2] for c in CROPS]) < 3.2 * g
    crop_per = np.maximum(np.array([c[2] for c in CROPS], np.float32), 3.2 * g).astype(np.float32)
    crop_con = np.where(small_rows, 0.5, 1.0).astype(np.float32) * np.array([c[3] for c in CROPS], np.float32)
    ca, sa = np.cos(lay.seed_angle).astype(np.float32), np.sin(lay.seed_angle).astype(np.float32)
    seed_x, seed_y = lay.seeds[:, 0].astype(np.float32), lay.seeds[:, 1].astype(np.float32)
    seed_w, seed_l = lay.seed_w.astype(np.float32), lay.seed_l.astype(np.float32)
    off_u, off_v = lay.seed_off[:, 0].astype(np.float32), lay.seed_off[:, 1].astype(np.float32)
    kind_of = lay.seed_kind.astype(np.int32)
    allowed = np.asarray(cfg.crop_types, np.int32) if getattr(cfg, "crop_types", ()) else None
    img = np.empty((n_px, n_px, 3), np.uint8)
    xs = ((np.arange(n_px, dtype=np.float32) + 0.5) * g)
    strip = max(64, int(1_000_000 // n_px))
    two_pi = np.float32(2 * np.pi)
    for r0 in range(0, n_px, strip):
        r1 = min(n_px, r0 + strip)
        ys = ((np.arange(r0, r1, dtype=np.float32) + 0.5) * g)
        x, y = np.meshgrid(xs, ys)
        cell, other, bdist = cell_of(x, y, lay)
        dx, dy = x - seed_x[cell], y - seed_y[cell]
        c, s = ca[cell], sa[cell]
        u = dx * c + dy * s
        v = dy * c - dx * s
        sw, sl = seed_w[cell], seed_l[cell]
        fu = u / sw + off_u[cell]
        fv = v / sl + off_v[cell]
        iu, iv = np.floor(fu), np.floor(fv)
        h = _hash(cell, iu.astype(np.int32) + 1000, iv.astype(np.int32) + 1000)
        if allowed is None:
            ctype = (h % np.uint32(nc)).astype(np.int32)
            if e2:  # crop rotation / phase change on about half of the fields
                h2 = _hash(h, 77)
                change = (h2 % np.uint32(100)) < 50
                ctype = np.where(change, (ctype + 1 + ((h2 >> np.uint32(8)) % np.uint32(nc - 1)).astype(np.int32))
                                 % nc, ctype)
        else:  # only the crops the world grows (look-alike farmland), rotated among themselves
            na = np.uint32(len(allowed))
            ci = (h % na).astype(np.int32)
            if e2 and na > 1:
                h2 = _hash(h, 77)
                change = (h2 % np.uint32(100)) < 50
                ci = np.where(change, (ci + 1 + ((h2 >> np.uint32(8)) % (na - np.uint32(1))).astype(np.int32))
                              % int(na), ci)
            ctype = allowed[ci]
        rows_along = ((h >> np.uint32(20)) & np.uint32(1)).astype(bool)
        coord = np.where(rows_along, u, v)
        t = crop_con[ctype] * (np.float32(0.5) + np.float32(0.5) * np.sin(coord * (two_pi / crop_per[ctype])))
        shade = np.float32(1.0) + np.float32(0.10) * low[r0:r1] + np.float32(0.07) * mid[r0:r1]
        # tramlines every 20 m in cereal-like fields
        tl = (np.abs(((np.where(rows_along, v, u) * np.float32(0.05)) % 1.0) - 0.5) < 0.025) & (ctype <= 2)
        shade[tl] *= np.float32(0.85)
        fe = np.minimum(np.minimum(fu - iu, 1 - (fu - iu)) * sw, np.minimum(fv - iv, 1 - (fv - iv)) * sl)
        mat = np.where(fe < 0.9, MARGIN, ctype)
        k = kind_of[cell]
        mat[k == 1] = FOREST
        mat[k == 2] = MEADOW
        is_hedge = ((cell + other) % 3) == 0
        edge = bdist < np.where(is_hedge, np.float32(2.0), np.float32(1.6))
        mat[edge & is_hedge] = HEDGE
        mat[edge & ~is_hedge] = TRACK
        t[mat >= nc] = 0.0
        a = pal_a[mat]
        col = a + (pal_b[mat] - a) * t[..., None]
        col *= shade[..., None]
        np.clip(col, 0, 255, out=col)
        img[r0:r1] = col.astype(np.uint8)
    step("ground")

    pt = Painter(g)
    # ---------------- towns: lawns and yards
    for b in lay.blocks:
        cs = _rect_corners(b["cx"], b["cy"], b["size"] + 3.0, b["size"] + 3.0, b["ang"])
        pt.poly(img, cs, (120, 138, 92) if b["btype"] != "commercial" else (134, 136, 124))

    # ---------------- water
    water = (44, 66, 78) if not e2 else (52, 78, 74)
    for poly in lay.lakes:
        pt.poly(img, poly, (150, 140, 110))  # shore
        inner = poly.mean(0) + (poly - poly.mean(0)) * 0.97
        pt.poly(img, inner, water)
    for pts, width in lay.rivers:
        pt.line(img, pts, (120, 118, 92), width + 3)
        pt.line(img, pts, water, width)
    step("water")

    # ---------------- roads
    for pts, width, kind in lay.roads:  # verges / sidewalks
        colour = (150, 148, 140) if kind == 2 else (146, 140, 120)
        pt.line(img, pts, colour, width + (3.0 if kind == 2 else 2.0))
    for pts, width, kind in lay.roads:
        tone = {0: (78, 79, 82), 1: (96, 95, 92), 2: (92, 92, 94)}[kind]
        pt.line(img, pts, tone, width)
    for pts, width, kind in lay.roads:  # markings
        if kind == 2:
            continue
        q, tan = resample_polyline(pts, 1.0)
        nrm = np.stack([-tan[:, 1], tan[:, 0]], 1)
        inside = (q[:, 0] > -5) & (q[:, 1] > -5) & (q[:, 0] < lay.size_m + 5) & (q[:, 1] < lay.size_m + 5)
        if kind == 0:
            for side in (-1, 1):
                e = q + nrm * side * (width / 2 - 0.6)
                pt.line(img, e[inside], (214, 214, 206), 0.18)
        dash = (np.arange(len(q)) % 9) < 3
        on = dash & inside
        idx = np.flatnonzero(on)
        if len(idx):
            br = np.flatnonzero(np.diff(idx) > 1)
            for seg in np.split(idx, br + 1):
                if len(seg) >= 2:
                    pt.line(img, q[seg], (222, 222, 214), 0.16)
    step("roads")

    # ---------------- parking lots with stall lines
    stalls: list[tuple] = []
    for cx, cy, w, l, ang in lay.lots:
        pt.poly(img, _rect_corners(cx, cy, w, l, ang), (88, 88, 90))
        d = np.array([math.cos(ang), math.sin(ang)])
        nrm = np.array([-d[1], d[0]])
        n_rows = max(1, int((w - 2) // 16))
        for rr in range(n_rows):
            row_c = np.array([cx, cy]) + nrm * (-w / 2 + 8 + rr * 16)
            for side in (-1, 1):
                along = np.arange(-l / 2 + 3, l / 2 - 3, 2.6)
                for a_ in along:
                    base = row_c + d * a_ + nrm * side * 0.2
                    pt.line(img, [base, base + nrm * side * 5.0], (200, 200, 196), 0.14)
                    stalls.append((*(row_c + d * (a_ + 1.3) + nrm * side * 2.6), ang + math.pi / 2))
    step("lots")

    # ---------------- cars (epoch-specific): parked in stalls, along streets, on main roads
    car_cols = np.array([(230, 230, 228), (30, 30, 34), (120, 122, 126), (176, 178, 182), (150, 30, 30),
                         (36, 60, 120), (60, 70, 60), (200, 200, 190)], np.float32)
    car_p = np.array([0.25, 0.2, 0.15, 0.18, 0.07, 0.08, 0.03, 0.04])
    cars: list[tuple] = []
    dens = float(cfg.car_density)
    for sx_, sy_, a_ in stalls:
        if rng_e.uniform() < 0.55 * dens:
            cars.append((sx_, sy_, a_))
    for pts, width, kind in lay.roads:
        q, tan = resample_polyline(pts, 6.0)
        inside = (q[:, 0] > 0) & (q[:, 1] > 0) & (q[:, 0] < lay.size_m) & (q[:, 1] < lay.size_m)
        p_car = {0: 0.04, 1: 0.02, 2: 0.12}[kind] * dens
        sel = np.flatnonzero(inside & (rng_e.uniform(0, 1, len(q)) < p_car))
        for i in sel:
            side = 1 if rng_e.uniform() < 0.5 else -1
            lane = width / 2 - (1.6 if kind == 2 else width / 4 + 0.4)
            c = q[i] + np.array([-tan[i, 1], tan[i, 0]]) * side * lane
            cars.append((c[0], c[1], math.atan2(tan[i, 1], tan[i, 0]) + rng_e.normal(0, 0.03)))
    shadow_dir = _shadow_dir(lay, e2)
    for cx, cy, a_ in cars:
        col = car_cols[rng_e.choice(len(car_cols), p=car_p)] * rng_e.uniform(0.9, 1.1)
        body = _rect_corners(cx, cy, 1.85, 4.5, a_)
        pt.poly(img, body + shadow_dir * 0.9, (50, 52, 58))
        pt.poly(img, body, tuple(float(v) for v in np.clip(col, 0, 255)))
        d = np.array([math.cos(a_), math.sin(a_)])
        pt.poly(img, _rect_corners(cx + d[0] * 0.9, cy + d[1] * 0.9, 1.5, 0.9, a_), (40, 44, 50))
    step("cars")

    # ---------------- pools
    for cx, cy, w, l, ang in lay.pools:
        pt.poly(img, _rect_corners(cx, cy, w + 1.2, l + 1.2, ang), (215, 212, 200))
        pt.poly(img, _rect_corners(cx, cy, w, l, ang), (70, 170, 200) if not (e2 and cx % 7 < 1) else (60, 120, 110))

    # ---------------- shadows of buildings and trees (one sun per epoch)
    k_sh = 1.0 / math.tan(math.radians(lay.sun_elevation_deg + (6.0 if e2 else 0.0)))
    shadow = np.zeros((n_px, n_px), np.uint8)
    bset = [b for b in lay.buildings if (b.get("new") and e2) or (not b.get("new") and not (e2 and b.get("gone")))]
    for b in bset:
        cs = _rect_corners(b["cx"], b["cy"], b["w"], b["l"], b["ang"])
        sh = cs + shadow_dir * b["h"] * k_sh
        hull = cv2.convexHull(pt.p(np.vstack([cs, sh])))
        cv2.fillPoly(shadow, [hull], 255, cv2.LINE_AA, SHIFT)
    trees = lay.trees
    grow = 1.12 if e2 else 1.0
    if e2:  # some trees felled, tree crowns grown
        keep = _hash(np.arange(len(trees)), seed) % np.uint32(100) >= 3
        trees = trees[keep]
    sc = pt.p(trees[:, :2] + shadow_dir[None, :] * (trees[:, 3:4] * k_sh * 0.55)).tolist()
    sr = np.maximum(1, np.round(trees[:, 2] * grow * 0.95 / g * (1 << SHIFT))).astype(int).tolist()
    for (cx_, cy_), r_ in zip(sc, sr):
        cv2.circle(shadow, (cx_, cy_), r_, 255, -1, cv2.LINE_AA, SHIFT)
    shadow = cv2.GaussianBlur(shadow, (0, 0), max(0.6, 0.25 / g))
    _apply_shadow(img, shadow)
    del shadow
    step("shadows")

    # ---------------- roofs
    sun_vec = -shadow_dir / max(1e-9, float(np.hypot(*shadow_dir)))
    for b in bset:
        ci = b["colour"]
        if e2 and b["repaint"] < 0.12:
            ci = (ci + 1 + int(b["repaint"] * 1000) % (len(ROOF_COLOURS) - 1)) % len(ROOF_COLOURS)
        base = ROOF_COLOURS[ci] * (0.92 + 0.16 * ((b["cx"] * 13.1 + b["cy"] * 7.7) % 1.0))
        cx, cy, w, l, ang = b["cx"], b["cy"], b["w"], b["l"], b["ang"]
        cs = _rect_corners(cx, cy, w, l, ang)
        if b["roof"] == "gable":
            d = np.array([math.cos(ang), math.sin(ang)])
            nrm = np.array([-d[1], d[0]])
            for side in (-1, 1):
                f = 0.86 + 0.32 * float(np.dot(nrm * side, sun_vec))
                half = _rect_corners(cx + nrm[0] * side * w / 4, cy + nrm[1] * side * w / 4, w / 2, l, ang)
                pt.poly(img, half, tuple(float(v) for v in np.clip(base * f, 0, 255)))
            pt.line(img, [np.array([cx, cy]) - d * l / 2, np.array([cx, cy]) + d * l / 2],
                    tuple(float(v) for v in np.clip(base * 1.15, 0, 255)), 0.3)
        else:
            pt.poly(img, cs, tuple(float(v) for v in np.clip(base * 0.8, 0, 255)))
            inner = _rect_corners(cx, cy, w - 0.8, l - 0.8, ang)
            pt.poly(img, inner, tuple(float(v) for v in np.clip(base, 0, 255)))
            if w * l > 250:  # roof equipment on large flat roofs
                rr = np.random.default_rng(int(_hash(int(cx * 10), int(cy * 10))))
                for _ in range(int(w * l // 300)):
                    p = np.array([cx, cy]) + rr.uniform(-0.35, 0.35) * l * np.array([math.cos(ang), math.sin(ang)]) \
                        + rr.uniform(-0.35, 0.35) * w * np.array([-math.sin(ang), math.cos(ang)])
                    box = _rect_corners(p[0], p[1], 2.0, 3.0, ang)
                    pt.poly(img, box + shadow_dir * 0.8, tuple(float(v) for v in base * 0.6))
                    pt.poly(img, box, (196, 196, 194))
    step("roofs")

    # ---------------- tree crowns
    order = np.argsort(trees[:, 1], kind="stable")
    tone_forest = np.array([(52, 84, 42), (64, 96, 48), (44, 72, 44), (78, 104, 56)], np.float32)
    tone_single = np.array([(70, 100, 52), (84, 112, 60), (60, 88, 50)], np.float32)
    season = np.array((1.08, 1.0, 0.82), np.float32) if e2 else np.ones(3, np.float32)
    tones_all = np.concatenate([tone_single, tone_forest])
    ti = np.where(trees[:, 5] >= 1, len(tone_single) + (trees[:, 4] * 997).astype(int) % len(tone_forest),
                  (trees[:, 4] * 997).astype(int) % len(tone_single))
    base = tones_all[ti] * (0.85 + 0.3 * trees[:, 4:5]) * season
    crown = (base * 0.8).tolist()
    light = np.clip(base * 1.12, 0, 255).tolist()
    rr = trees[:, 2] * grow
    c1 = pt.p(trees[:, :2]).tolist()
    c2 = pt.p(trees[:, :2] + sun_vec[None, :] * rr[:, None] * 0.3).tolist()
    r1 = np.maximum(1, np.round(rr / g * (1 << SHIFT))).astype(int).tolist()
    r2 = np.maximum(1, np.round(rr * 0.62 / g * (1 << SHIFT))).astype(int).tolist()
    for i in order.tolist():
        cv2.circle(img, c1[i], r1[i], crown[i], -1, cv2.LINE_AA, SHIFT)
        cv2.circle(img, c2[i], r2[i], light[i], -1, cv2.LINE_AA, SHIFT)
    step("trees")

    # ---------------- global look: season/sensor tint, texture, grain, optics blur
    tint = np.array((1.0, 1.0, 1.0), np.float32) if not e2 else np.array((1.06, 1.0, 0.9), np.float32)
    gain = 1.0 if not e2 else 1.04
    fine_rng = np.random.default_rng([seed, 300 + epoch])
    for r0 in range(0, n_px, strip):
        r1 = min(n_px, r0 + strip)
        f = img[r0:r1].astype(np.float32)
        mi = mid[r0:r1, :, None]
        grain = fine_rng.standard_normal((r1 - r0, n_px, 1), dtype=np.float32)
        f = f * (tint * gain) * (1.0 + 0.06 * mi) + grain * 4.0
        img[r0:r1] = np.clip(f, 0, 255).astype(np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 0.55)
    step("finish")
    return img


def _shadow_dir(lay: Layout, e2: bool) -> np.ndarray:
    """Unit vector (image x east, y south) pointing away from the sun, i.e. where shadows fall."""
    az = math.radians(lay.sun_azimuth_deg + (25.0 if e2 else 0.0))
    # sun at bearing az -> direction towards the sun in image coords (sin az, -cos az)
    return -np.array([math.sin(az), -math.cos(az)])


def _apply_shadow(img: np.ndarray, shadow: np.ndarray) -> None:
    """Darken (and slightly blue) the ground under `shadow` (0..255), in strips."""
    n = img.shape[0]
    strip = max(64, int(2_000_000 // img.shape[1]))
    tone = np.array((0.42, 0.46, 0.56), np.float32)
    for r0 in range(0, n, strip):
        s = shadow[r0:r0 + strip]
        if not s.any():
            continue
        a = s.astype(np.float32)[..., None] / 255.0
        f = img[r0:r0 + strip].astype(np.float32)
        img[r0:r0 + strip] = np.clip(f * (1 - a + a * tone), 0, 255).astype(np.uint8)
