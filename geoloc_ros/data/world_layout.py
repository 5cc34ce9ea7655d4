"""The layout of a procedural world: where roads, towns, fields, forests, water and
buildings are, in metres, drawn from one seed.

The layout is everything that stays the same between two "epochs" of a world (two
satellite passes years apart); `world_render.py` turns it into pixels and applies the
epoch-specific appearance (season, cars, roofs, vegetation growth, crop phases). The
world frame here is image-like: x east from the west edge, y south from the north edge,
both in metres.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

#: occupancy flags of the coarse layout raster
OCC_WATER, OCC_ROAD, OCC_TOWN, OCC_BUILT = 1, 2, 4, 8
OCC_RES_M = 2.0  # metres per occupancy cell
VOR_RES_M = 8.0  # metres per cell of the farm-cell candidate maps

ROOF_COLOURS = np.array([
    (168, 88, 62), (132, 72, 56), (150, 100, 80), (76, 76, 82), (118, 118, 120), (176, 174, 168),
    (120, 96, 78), (96, 110, 100), (212, 210, 204), (58, 58, 62), (82, 92, 108), (186, 120, 90),
], dtype=np.float32)

# crop types: colour, soil colour between rows, row period (m), row contrast
CROPS = [
    ((88, 122, 58), (120, 100, 78), 1.6, 0.35),    # green crop rows
    ((122, 140, 80), (138, 116, 92), 0.9, 0.45),   # young crop over soil
    ((196, 176, 116), (178, 156, 100), 0.5, 0.10),  # ripe cereal
    ((142, 116, 92), (118, 96, 76), 0.7, 0.18),    # ploughed soil
    ((104, 88, 72), (90, 76, 62), 1.2, 0.12),      # dark tilled soil
    ((102, 130, 70), (92, 118, 62), 3.0, 0.06),    # grass ley
    ((206, 196, 82), (170, 160, 70), 1.0, 0.10),   # rapeseed
    ((178, 164, 124), (150, 138, 100), 5.0, 0.12),  # stubble with mowing stripes
    ((72, 104, 52), (64, 88, 48), 2.2, 0.20),      # maize
]


@dataclass
class Layout:
    size_m: float
    sun_azimuth_deg: float
    sun_elevation_deg: float
    # farm cells (Voronoi seeds): xy (K,2), kind (0 field, 1 forest, 2 meadow), angle, strip w, strip l, offsets
    seeds: np.ndarray
    seed_kind: np.ndarray
    seed_angle: np.ndarray
    seed_w: np.ndarray
    seed_l: np.ndarray
    seed_off: np.ndarray
    cand: np.ndarray  # (Hc, Wc, 2) int32: two nearest seeds per VOR_RES_M cell
    occ: np.ndarray   # (Ho, Wo) uint8 occupancy flags
    roads: list = field(default_factory=list)      # (points (M,2), width_m, kind) kind 0 main 1 secondary 2 street
    towns: list = field(default_factory=list)      # (cx, cy, radius_m, angle, polygon (M,2))
    lakes: list = field(default_factory=list)      # polygon (M,2)
    rivers: list = field(default_factory=list)     # (points (M,2), width_m)
    buildings: list = field(default_factory=list)  # dicts
    trees: np.ndarray = field(default_factory=lambda: np.zeros((0, 6), np.float32))  # x, y, r, height, shade, flag
    lots: list = field(default_factory=list)       # parking lots: (cx, cy, w, l, angle)
    pools: list = field(default_factory=list)      # (cx, cy, w, l, angle)
    blocks: list = field(default_factory=list)     # town blocks: dicts cx, cy, size, ang, btype


def chaikin(pts: np.ndarray, iterations: int = 3, closed: bool = False) -> np.ndarray:
    """Corner-cutting smoothing: a polyline that looks drawn by a road engineer, not a ruler."""
    p = np.asarray(pts, dtype=np.float64)
    for _ in range(iterations):
        q = np.roll(p, -1, axis=0) if closed else p[1:]
        a = p if closed else p[:-1]
        new = np.empty((2 * len(a), 2))
        new[0::2] = 0.75 * a + 0.25 * q
        new[1::2] = 0.25 * a + 0.75 * q
        p = new if closed else np.vstack([p[:1], new, p[-1:]])
    return p


def resample_polyline(pts: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every `step` metres along a polyline and the unit tangent there."""
    seg = np.diff(pts, axis=0)
    ln = np.hypot(seg[:, 0], seg[:, 1])
    cum = np.concatenate([[0.0], np.cumsum(ln)])
    s = np.arange(0.0, cum[-1], step)
    x = np.interp(s, cum, pts[:, 0])
    y = np.interp(s, cum, pts[:, 1])
    idx = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(seg) - 1)
    t = seg[idx] / np.maximum(ln[idx], 1e-9)[:, None]
    return np.stack([x, y], 1), t


def _wandering_line(rng, size: float, amp: float, through=None) -> np.ndarray:
    """A gently curving line crossing the whole square (extends past its edges)."""
    ang = rng.uniform(0, math.pi)
    c = np.asarray(through if through is not None else rng.uniform(0.2 * size, 0.8 * size, 2), dtype=float)
    d = np.array([math.cos(ang), math.sin(ang)])
    nrm = np.array([-d[1], d[0]])
    t = np.linspace(-size * 1.5, size * 1.5, 16)
    off = np.cumsum(rng.normal(0, amp, len(t)))
    off -= np.linspace(off[0], off[-1], len(t))
    pts = c + t[:, None] * d + off[:, None] * nrm
    return chaikin(pts, 4)


def _px(pts_m: np.ndarray, res: float) -> np.ndarray:
    return np.round((np.asarray(pts_m) / res - 0.5) * 8).astype(np.int32)


def _rect_corners(cx, cy, w, l, ang) -> np.ndarray:
    """Corners of a w (across) x l (along `ang`) rectangle, image-frame metres."""
    d = np.array([math.cos(ang), math.sin(ang)])
    n = np.array([-d[1], d[0]])
    c = np.array([cx, cy])
    return np.array([c + d * l / 2 + n * w / 2, c - d * l / 2 + n * w / 2,
                     c - d * l / 2 - n * w / 2, c + d * l / 2 - n * w / 2])


def nearest_two(points: np.ndarray, seeds: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Indices of the two nearest seeds for each point (brute force, chunked)."""
    out = np.empty((len(points), 2), np.int32)
    for i in range(0, len(points), chunk):
        p = points[i:i + chunk]
        d = ((p[:, None, :] - seeds[None, :, :]) ** 2).sum(-1)
        k = min(2, seeds.shape[0])
        part = np.argpartition(d, k - 1, axis=1)[:, :2] if seeds.shape[0] > 2 else np.tile(np.arange(k), (len(p), 1))
        dd = np.take_along_axis(d, part, 1)
        order = np.argsort(dd, axis=1)
        out[i:i + chunk] = np.take_along_axis(part, order, 1)
    return out


def cell_of(x: np.ndarray, y: np.ndarray, lay: Layout):
    """Farm cell of points (metres) and their distance to the cell boundary (metres)."""
    hc, wc = lay.cand.shape[:2]
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float32)
    flat = (np.clip((y * np.float32(1.0 / VOR_RES_M)).astype(np.int32), 0, hc - 1) * wc
            + np.clip((x * np.float32(1.0 / VOR_RES_M)).astype(np.int32), 0, wc - 1))
    cand = lay.cand.reshape(-1, 2)
    c1 = cand[flat, 0]
    c2 = cand[flat, 1]
    sxy = lay.seeds.astype(np.float32)
    sx, sy = sxy[:, 0], sxy[:, 1]
    dx1, dy1 = x - sx[c1], y - sy[c1]
    dx2, dy2 = x - sx[c2], y - sy[c2]
    d1 = dx1 * dx1 + dy1 * dy1
    d2 = dx2 * dx2 + dy2 * dy2
    swap = d2 < d1
    cell = np.where(swap, c2, c1)
    other = np.where(swap, c1, c2)
    # distance to the bisector of the two seeds: |d2 - d1| / (2 |s1 - s2|)
    k = len(sx)
    pair_sep = np.hypot(sx[:, None] - sx[None, :], sy[:, None] - sy[None, :]).astype(np.float32)
    sep = pair_sep.ravel()[c1 * k + c2]
    bdist = np.abs(d2 - d1) / (2.0 * np.maximum(sep, np.float32(1e-3)))
    return cell, other, bdist


def build_layout(cfg, rng: np.random.Generator) -> Layout:
    """Draw the whole layout of a world from `rng` (consumed in a fixed order)."""
    size = float(cfg.size_m)
    area_km2 = (size / 1000.0) ** 2
    sun_az = float(rng.uniform(120, 240))  # southern sun, northern hemisphere mid-latitudes
    sun_el = float(rng.uniform(38, 58))

    # --- farm cells: a jittered grid of Voronoi seeds (similar-size cells = look-alikes)
    pitch = float(cfg.farm_cell_m)
    n = max(2, int(round(size / pitch)))
    gx, gy = np.meshgrid((np.arange(n) + 0.5) * size / n, (np.arange(n) + 0.5) * size / n)
    seeds = np.stack([gx.ravel(), gy.ravel()], 1) + rng.uniform(-0.35, 0.35, (n * n, 2)) * (size / n)
    k = len(seeds)
    u = rng.uniform(0, 1, k)
    kind = np.where(u < cfg.forest_fraction, 1, np.where(u < cfg.forest_fraction + cfg.meadow_fraction, 2, 0))
    # neighbouring farms often share an orientation (land registry grids)
    base_ang = rng.uniform(0, math.pi)
    ang = np.where(rng.uniform(0, 1, k) < 0.5, base_ang + rng.choice([0, math.pi / 2], k),
                   rng.uniform(0, math.pi, k))
    strip_w = rng.choice([24.0, 36.0, 48.0, 64.0, 90.0], k)
    strip_l = rng.uniform(120, 420, k)
    off = rng.uniform(0, 1, (k, 2))
    if getattr(cfg, "field_uniformity", 0.0) > 0:  # own stream: worlds without it draw exactly as before
        ang, strip_w, strip_l = _uniform_fields(cfg, base_ang, ang, strip_w, strip_l)
    hc = wc = int(math.ceil(size / VOR_RES_M))
    cy, cx = np.mgrid[0:hc, 0:wc]
    cpts = np.stack([(cx.ravel() + 0.5) * VOR_RES_M, (cy.ravel() + 0.5) * VOR_RES_M], 1)
    cand = nearest_two(cpts, seeds).reshape(hc, wc, 2)

    ho = int(math.ceil(size / OCC_RES_M))
    occ = np.zeros((ho, ho), np.uint8)
    lay = Layout(size, sun_az, sun_el, seeds, kind, ang, strip_w, strip_l, off, cand, occ)

    def mark_poly(poly, flag):
        layer = np.zeros_like(occ)
        cv2.fillPoly(layer, [_px(poly, OCC_RES_M)], 1, cv2.LINE_8, 3)
        occ[layer > 0] |= flag

    def mark_line(pts, width, flag):
        layer = np.zeros_like(occ)
        cv2.polylines(layer, [_px(pts, OCC_RES_M)], False, 1, max(1, int(round(width / OCC_RES_M))), cv2.LINE_8, 3)
        occ[layer > 0] |= flag

    # --- roads: main roads crossing the map, secondary roads
    n_main = cfg.main_roads if cfg.main_roads >= 0 else max(1, int(round(1.0 + 1.0 * math.sqrt(area_km2))))
    for _ in range(n_main):
        pts = _wandering_line(rng, size, 0.02 * size)
        lay.roads.append((pts, float(rng.uniform(10.5, 13.5)), 0))
    n_sec = max(1, int(round(1.5 * math.sqrt(area_km2))))
    for _ in range(n_sec):
        pts = _wandering_line(rng, size, 0.03 * size)
        lay.roads.append((pts, float(rng.uniform(6.0, 7.5)), 1))

    # --- water: a lake (kept clear of the roads) and/or a river (bridged by them)
    if rng.uniform() < cfg.lake_probability:
        road_mask = np.zeros_like(occ)
        for pts, width, _k in lay.roads:
            cv2.polylines(road_mask, [_px(pts, OCC_RES_M)], False, 1, max(1, int(round((width + 20) / OCC_RES_M))),
                          cv2.LINE_8, 3)
        for _try in range(25):
            r0 = rng.uniform(0.04, 0.09) * size + 30
            c = rng.uniform(0.2 * size, 0.8 * size, 2)
            th = np.linspace(0, 2 * math.pi, 96, endpoint=False)
            rad = np.full_like(th, r0)
            for h in range(2, 6):
                rad += r0 * rng.uniform(0.03, 0.18) / (h - 1) * np.cos(h * th + rng.uniform(0, 2 * math.pi))
            poly = c + np.stack([np.cos(th) * rad * rng.uniform(1.0, 1.6), np.sin(th) * rad], 1)
            layer = np.zeros_like(occ)
            cv2.fillPoly(layer, [_px(poly, OCC_RES_M)], 1, cv2.LINE_8, 3)
            if not np.any(layer & road_mask):
                lay.lakes.append(poly)
                occ[layer > 0] |= OCC_WATER
                break
    if rng.uniform() < cfg.river_probability:
        pts = _wandering_line(rng, size, 0.03 * size)
        # meanders
        pts2, tan = resample_polyline(pts, 10.0)
        s = np.arange(len(pts2)) * 10.0
        wob = 25 * np.sin(s / rng.uniform(120, 220) + rng.uniform(0, 6)) + 12 * np.sin(s / 57.0 + rng.uniform(0, 6))
        pts2 = pts2 + wob[:, None] * np.stack([-tan[:, 1], tan[:, 0]], 1)
        width = float(rng.uniform(14, 30))
        lay.rivers.append((pts2, width))
        mark_line(pts2, width + 6, OCC_WATER)

    # --- towns with street grids
    n_towns = max(1, int(round(cfg.town_density_per_km2 * area_km2)))
    centres: list[np.ndarray] = []
    for _ in range(n_towns * 8):
        if len(centres) >= n_towns:
            break
        c = rng.uniform(0.15 * size, 0.85 * size, 2) if size > 600 else rng.uniform(0.4 * size, 0.6 * size, 2)
        r = min(float(rng.uniform(*cfg.town_radius_m)), 0.45 * size)
        oi, oj = int(c[1] / OCC_RES_M), int(c[0] / OCC_RES_M)
        rr = int(r / OCC_RES_M)
        win = occ[max(0, oi - rr):oi + rr + 1, max(0, oj - rr):oj + rr + 1]
        if np.mean((win & OCC_WATER) > 0) > 0.02 or any(np.hypot(*(c - cc[:2])) < r + cc[2] + 60 for cc in centres):
            continue
        centres.append(np.array([c[0], c[1], r]))
    for c in centres:
        _build_town(lay, cfg, rng, c, mark_line, mark_poly)
    for pts, width, kind_r in lay.roads:
        mark_line(pts, width + 6, OCC_ROAD)

    _place_buildings(lay, cfg, rng)
    _place_trees(lay, cfg, rng)
    return lay


def _uniform_fields(cfg, base_ang: float, ang: np.ndarray, strip_w: np.ndarray, strip_l: np.ndarray):
    """Look-alike farmland: `field_uniformity` of the cells get one orientation, strip width
    and length (a land consolidation grid), so neighbouring fields differ only in their crop."""
    rng = np.random.default_rng([int(cfg.seed), 13])
    pick = rng.uniform(0, 1, len(ang)) < cfg.field_uniformity
    ang, strip_w, strip_l = ang.copy(), strip_w.copy(), strip_l.copy()
    ang[pick] = base_ang
    strip_w[pick] = float(rng.choice([36.0, 48.0, 64.0]))
    strip_l[pick] = float(rng.uniform(250, 400))
    return ang, strip_w, strip_l


def _build_town(lay: Layout, cfg, rng, c, mark_line, mark_poly) -> None:
    cx, cy, r = c
    ang = float(rng.uniform(0, math.pi / 2))
    th = np.linspace(0, 2 * math.pi, 64, endpoint=False)
    rad = r * (1 + 0.12 * np.cos(2 * th + rng.uniform(0, 6)) + 0.06 * np.cos(3 * th + rng.uniform(0, 6)))
    poly = np.stack([cx + np.cos(th) * rad, cy + np.sin(th) * rad], 1)
    lay.towns.append((cx, cy, r, ang, poly))
    mark_poly(poly, OCC_TOWN)
    d = np.array([math.cos(ang), math.sin(ang)])
    nrm = np.array([-d[1], d[0]])
    pitch = float(rng.uniform(62, 90))
    street_w = float(rng.uniform(6.5, 8.5))
    kmax = int(r // pitch) + 1
    ctr = np.array([cx, cy])
    for axis in (d, nrm):
        other = nrm if axis is d else d
        for kk in range(-kmax, kmax + 1):
            off = kk * pitch
            if abs(off) >= r * 0.95:
                continue
            half = math.sqrt(r * r - off * off) * 0.95
            t = np.linspace(-half, half, 8)
            pts = ctr + off * other + t[:, None] * axis
            lay.roads.append((pts, street_w, 2))
    # blocks: cells of the street grid inside the town
    block_types = []
    for i in range(-kmax, kmax):
        for j in range(-kmax, kmax):
            bc = ctr + (i + 0.5) * pitch * nrm + (j + 0.5) * pitch * d
            if np.hypot(*(bc - ctr)) + pitch * 0.72 > r * 0.95:
                continue
            u = rng.uniform()
            btype = "houses" if u < 0.55 else "terrace" if u < 0.72 else "commercial" if u < 0.84 \
                else "apartments" if u < 0.93 else "park"
            block_types.append((bc, btype))
    inner = pitch - street_w - 3.0
    for bc, btype in block_types:
        lay.buildings.append(dict(kind="block", cx=bc[0], cy=bc[1], size=inner, ang=ang, btype=btype))


def _place_buildings(lay: Layout, cfg, rng) -> None:
    """Expand the town blocks into buildings, parking lots, pools and garden trees."""
    blocks = [b for b in lay.buildings if b.get("kind") == "block"]
    lay.blocks = blocks
    out: list[dict] = []
    trees: list[tuple] = []
    occ = lay.occ
    ho = occ.shape[0]

    def free(pts, flags=OCC_ROAD | OCC_WATER):
        ij = np.clip((np.asarray(pts) / OCC_RES_M).astype(int), 0, ho - 1)
        return not np.any(occ[ij[:, 1], ij[:, 0]] & flags)

    for b in blocks:
        cx, cy, s, ang, btype = b["cx"], b["cy"], b["size"], b["ang"], b["btype"]
        d = np.array([math.cos(ang), math.sin(ang)])
        nrm = np.array([-d[1], d[0]])
        ctr = np.array([cx, cy])
        if btype in ("houses", "terrace"):
            same = btype == "terrace"
            w0, l0 = (rng.uniform(8, 10), rng.uniform(6.5, 8)) if same else (0, 0)
            col = int(rng.integers(len(ROOF_COLOURS)))
            gap = rng.uniform(3, 7) if not same else 0.15
            setback = rng.uniform(3, 6)
            for side in range(4):
                t_dir = [d, nrm, -d, -nrm][side]
                out_dir = np.array([-t_dir[1], t_dir[0]])  # towards the street on this side
                edge_c = ctr + out_dir * s / 2
                along = -s / 2 + setback + 11.0
                while along < s / 2 - 2:
                    w = w0 if same else rng.uniform(7.5, 12)
                    l = l0 if same else rng.uniform(9, 16)
                    pos = edge_c + t_dir * (along + l / 2) - out_dir * (setback + w / 2)
                    along += l + gap
                    if along > s / 2 - 2:
                        break
                    a = math.atan2(t_dir[1], t_dir[0])
                    corners = _rect_corners(pos[0], pos[1], w, l, a)
                    if not free(np.vstack([corners, pos[None]])):
                        continue
                    out.append(dict(cx=pos[0], cy=pos[1], w=w, l=l, ang=a,
                                    h=rng.uniform(6, 9) if not same else 7.5,
                                    roof="gable" if (same or rng.uniform() < 0.8) else "flat",
                                    colour=col if same else int(rng.integers(len(ROOF_COLOURS))),
                                    repaint=float(rng.uniform()), new=False))
                    back = pos - out_dir * (w / 2 + rng.uniform(5, 10))
                    if rng.uniform() < 0.45 and free(back[None]):
                        trees.append((back[0], back[1], rng.uniform(2.0, 4.0), rng.uniform(6, 12), rng.uniform(), 0))
                    if rng.uniform() < 0.05 and not same and free(back[None]):
                        lay.pools.append((back[0] + rng.uniform(-3, 3), back[1], 3.5, 7.0, a))
        elif btype == "commercial":
            bw, bl = s * rng.uniform(0.35, 0.5), s * rng.uniform(0.45, 0.75)
            pos = ctr + nrm * (s / 2 - bw / 2 - 4)
            if free(_rect_corners(pos[0], pos[1], bw, bl, ang)):
                out.append(dict(cx=pos[0], cy=pos[1], w=bw, l=bl, ang=ang, h=rng.uniform(6, 12), roof="flat",
                                colour=int(rng.choice([4, 5, 8, 9, 10])), repaint=float(rng.uniform()), new=False))
            lot = ctr - nrm * (s / 2 - (s - bw - 10) / 2 - 2)
            lw = s - bw - 12
            if lw > 12 and free(_rect_corners(lot[0], lot[1], lw - 4, s - 14, ang)):
                lay.lots.append((lot[0], lot[1], lw, s - 8, ang))
        elif btype == "apartments":
            n_bar = int(rng.integers(2, 4))
            for q in range(n_bar):
                off = (q - (n_bar - 1) / 2) * s / n_bar
                pos = ctr + nrm * off
                bw, bl = rng.uniform(11, 14), s * rng.uniform(0.6, 0.8)
                if free(_rect_corners(pos[0], pos[1], bw, bl, ang)):
                    out.append(dict(cx=pos[0], cy=pos[1], w=bw, l=bl, ang=ang, h=rng.uniform(12, 24),
                                    roof="flat", colour=int(rng.choice([3, 4, 5, 8, 9])),
                                    repaint=float(rng.uniform()), new=False))
        else:  # park
            m = int(s * s / 180 * cfg.tree_density)
            pts = ctr + rng.uniform(-s / 2 + 3, s / 2 - 3, (m, 2))
            for p in pts:
                if rng.uniform() < 0.6:
                    trees.append((p[0], p[1], rng.uniform(2.5, 5.0), rng.uniform(8, 18), rng.uniform(), 0))
    # a few buildings appear only in epoch 2 (new construction) and some only in epoch 1 (demolished)
    for bd in out:
        u = rng.uniform()
        bd["new"] = bool(u < 0.03)
        bd["gone"] = bool(0.03 <= u < 0.05)
    # rural farmsteads next to secondary roads
    for pts, width, kind in lay.roads:
        if kind != 1:
            continue
        rp, tan = resample_polyline(pts, 20.0)
        inside = (rp[:, 0] > 0) & (rp[:, 1] > 0) & (rp[:, 0] < lay.size_m) & (rp[:, 1] < lay.size_m)
        idx = np.flatnonzero(inside)
        for i in idx[rng.uniform(0, 1, len(idx)) < 0.03]:
            side = rng.choice([-1, 1])
            nrm = np.array([-tan[i, 1], tan[i, 0]]) * side
            a = math.atan2(tan[i, 1], tan[i, 0])
            for q in range(int(rng.integers(2, 4))):
                pos = rp[i] + nrm * (width / 2 + 12 + q * 18) + tan[i] * rng.uniform(-10, 10)
                w, l = rng.uniform(10, 16), rng.uniform(16, 30)
                cs = _rect_corners(pos[0], pos[1], w, l, a)
                if free(np.vstack([cs, pos[None]]), OCC_ROAD | OCC_WATER | OCC_TOWN):
                    out.append(dict(cx=pos[0], cy=pos[1], w=w, l=l, ang=a, h=rng.uniform(6, 10), roof="gable",
                                    colour=int(rng.integers(len(ROOF_COLOURS))), repaint=float(rng.uniform()),
                                    new=False, gone=False))
    lay.buildings = out
    for bd in out:
        cs = _rect_corners(bd["cx"], bd["cy"], bd["w"] + 2, bd["l"] + 2, bd["ang"])
        layer = np.zeros_like(occ)
        cv2.fillPoly(layer, [_px(cs, OCC_RES_M)], 1, cv2.LINE_8, 3)
        occ[layer > 0] |= OCC_BUILT
    for lot in lay.lots:
        layer = np.zeros_like(occ)
        cv2.fillPoly(layer, [_px(_rect_corners(*lot), OCC_RES_M)], 1, cv2.LINE_8, 3)
        occ[layer > 0] |= OCC_BUILT
    lay._town_trees = trees  # type: ignore[attr-defined]


def _place_trees(lay: Layout, cfg, rng) -> None:
    """Forest canopy, hedgerow and meadow trees, riverbank trees, street trees."""
    size = lay.size_m
    occ = lay.occ
    ho = occ.shape[0]
    m = int(size * size / 14.0 * cfg.tree_density)
    pts = rng.uniform(0, size, (m, 2))
    r = rng.uniform(1.8, 4.2, m)
    h = rng.uniform(10, 24, m)
    shade = rng.uniform(0, 1, m)
    keep_u = rng.uniform(0, 1, m)
    cell, other, bdist = cell_of(pts[:, 0], pts[:, 1], lay)
    k = lay.seed_kind[cell]
    hedge = ((cell + other) % 3 == 0) & (bdist < 2.0)
    keep = (k == 1) | ((k == 2) & (keep_u < 0.015)) | (hedge & (keep_u < 0.5))
    ij = np.clip((pts / OCC_RES_M).astype(int), 0, ho - 1)
    o = occ[ij[:, 1], ij[:, 0]]
    keep &= (o & (OCC_ROAD | OCC_WATER | OCC_BUILT | OCC_TOWN)) == 0
    flag = np.where(k == 1, 1, 0)  # 1 = forest tree
    trees = [np.stack([pts[keep, 0], pts[keep, 1], r[keep], h[keep], shade[keep], flag[keep]], 1)]
    # riverbank trees
    for rp, width in lay.rivers:
        q, tan = resample_polyline(rp, 7.0)
        nrm = np.stack([-tan[:, 1], tan[:, 0]], 1)
        for side in (-1, 1):
            sel = rng.uniform(0, 1, len(q)) < 0.55
            p = q + nrm * side * (width / 2 + rng.uniform(2, 6, (len(q), 1)))
            trees.append(np.stack([p[sel, 0], p[sel, 1], rng.uniform(2, 4, sel.sum()),
                                   rng.uniform(8, 18, sel.sum()), rng.uniform(0, 1, sel.sum()),
                                   np.zeros(sel.sum())], 1))
    # street trees along some town streets
    for pts_r, width, kind in lay.roads:
        if kind != 2 or rng.uniform() > 0.4:
            continue
        q, tan = resample_polyline(pts_r, float(rng.uniform(9, 14)))
        nrm = np.stack([-tan[:, 1], tan[:, 0]], 1)
        for side in (-1, 1):
            p = q + nrm * side * (width / 2 + 2.0)
            trees.append(np.stack([p[:, 0], p[:, 1], np.full(len(p), 2.6), np.full(len(p), 9.0),
                                   np.full(len(p), rng.uniform()), np.zeros(len(p))], 1))
    tt = getattr(lay, "_town_trees", [])
    if tt:
        trees.append(np.asarray(tt, dtype=np.float64))
    allt = np.concatenate(trees, 0).astype(np.float32)
    # trees must not stand in water or on roofs/roads (street trees sit on the verge)
    ij = np.clip((allt[:, :2] / OCC_RES_M).astype(int), 0, ho - 1)
    o = occ[ij[:, 1], ij[:, 0]]
    allt = allt[(o & (OCC_WATER | OCC_BUILT)) == 0]
    lay.trees = allt
