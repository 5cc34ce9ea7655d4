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
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from .world import WorldConfig

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


def build_layout(cfg: WorldConfig, rng: np.random.Generator) -> Layout:
    """Draw the whole layout of a world from `rng` (consumed in a fixed order).

    Cached worlds are keyed by their config only, so the order of the steps below (and of
    the draws inside each) is part of every world: farm cells, main then secondary roads,
    a lake, a river, towns, buildings, trees. Each step marks what it placed in the coarse
    occupancy raster so later ones keep clear (no town in a lake, no tree on a roof)."""
    size = float(cfg.size_m)
    sun_az = float(rng.uniform(120, 240))  # southern sun, northern hemisphere mid-latitudes
    sun_el = float(rng.uniform(38, 58))
    lay = _farm_cells(cfg, rng, size, sun_az, sun_el)
    _add_roads(lay, cfg, rng)
    if rng.uniform() < cfg.lake_probability:
        _add_lake(lay, rng)
    if rng.uniform() < cfg.river_probability:
        _add_river(lay, rng)
    for c in _town_centres(lay, cfg, rng):
        _build_town(lay, rng, c)
    for pts, width, _kind in lay.roads:
        _mark_line(lay.occ, pts, width + 6, OCC_ROAD)
    _place_buildings(lay, cfg, rng)
    _place_trees(lay, cfg, rng)
    return lay


def _poly_layer(shape: tuple[int, ...], poly: np.ndarray) -> np.ndarray:
    """A uint8 occupancy-raster layer with `poly` (metres) filled with 1."""
    layer = np.zeros(shape, np.uint8)
    cv2.fillPoly(layer, [_px(poly, OCC_RES_M)], 1, cv2.LINE_8, 3)
    return layer


def _mark_poly(occ: np.ndarray, poly: np.ndarray, flag: int) -> None:
    """Set `flag` in the occupancy raster inside `poly` (metres)."""
    occ[_poly_layer(occ.shape, poly) > 0] |= flag


def _mark_line(occ: np.ndarray, pts: np.ndarray, width: float, flag: int) -> None:
    """Set `flag` in the occupancy raster along the polyline `pts` (metres), `width` wide."""
    layer = np.zeros_like(occ)
    cv2.polylines(layer, [_px(pts, OCC_RES_M)], False, 1, max(1, int(round(width / OCC_RES_M))), cv2.LINE_8, 3)
    occ[layer > 0] |= flag


def _farm_cells(cfg: WorldConfig, rng: np.random.Generator, size: float, sun_az: float, sun_el: float) -> Layout:
    """A new Layout holding only the farm cells: a jittered grid of Voronoi seeds (cells of
    similar size are the look-alikes a localizer must tell apart), each a forest, a meadow
    or a field grid with its orientation and strip size, plus the cells' candidate map and
    an empty occupancy raster."""
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
    return Layout(size, sun_az, sun_el, seeds, kind, ang, strip_w, strip_l, off, cand, occ)


def _add_roads(lay: Layout, cfg: WorldConfig, rng: np.random.Generator) -> None:
    """Main roads crossing the map (their number grows with its side), then secondary roads."""
    size = lay.size_m
    area_km2 = (size / 1000.0) ** 2
    n_main = cfg.main_roads if cfg.main_roads >= 0 else max(1, int(round(1.0 + 1.0 * math.sqrt(area_km2))))
    for _ in range(n_main):
        pts = _wandering_line(rng, size, 0.02 * size)
        lay.roads.append((pts, float(rng.uniform(10.5, 13.5)), 0))
    n_sec = max(1, int(round(1.5 * math.sqrt(area_km2))))
    for _ in range(n_sec):
        pts = _wandering_line(rng, size, 0.03 * size)
        lay.roads.append((pts, float(rng.uniform(6.0, 7.5)), 1))


def _add_lake(lay: Layout, rng: np.random.Generator) -> None:
    """A lake with a wavy shore, kept 10 m clear of every road (up to 25 tries; none when
    no place fits)."""
    size = lay.size_m
    road_mask = np.zeros_like(lay.occ)
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
        layer = _poly_layer(lay.occ.shape, poly)
        if not np.any(layer & road_mask):
            lay.lakes.append(poly)
            lay.occ[layer > 0] |= OCC_WATER
            return


def _add_river(lay: Layout, rng: np.random.Generator) -> None:
    """A meandering river across the map (the roads bridge it)."""
    size = lay.size_m
    pts = _wandering_line(rng, size, 0.03 * size)
    pts2, tan = resample_polyline(pts, 10.0)
    s = np.arange(len(pts2)) * 10.0
    wob = 25 * np.sin(s / rng.uniform(120, 220) + rng.uniform(0, 6)) + 12 * np.sin(s / 57.0 + rng.uniform(0, 6))
    pts2 = pts2 + wob[:, None] * np.stack([-tan[:, 1], tan[:, 0]], 1)
    width = float(rng.uniform(14, 30))
    lay.rivers.append((pts2, width))
    _mark_line(lay.occ, pts2, width + 6, OCC_WATER)


def _town_centres(lay: Layout, cfg: WorldConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """(x, y, radius) of the towns: as many as the density asks for, out of the water and
    60 m apart; a limited number of tries, so a crowded map gets fewer."""
    size = lay.size_m
    occ = lay.occ
    n_towns = max(1, int(round(cfg.town_density_per_km2 * (size / 1000.0) ** 2)))
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
    return centres


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


def _build_town(lay: Layout, rng: np.random.Generator, c: np.ndarray) -> None:
    """A town at `c` (x, y, radius): a wavy outline marked in the occupancy raster, a
    street grid at a random angle, and its blocks (as `kind="block"` entries of
    `lay.buildings`, each with a random type) for `_place_buildings` to fill."""
    cx, cy, r = c
    ang = float(rng.uniform(0, math.pi / 2))
    th = np.linspace(0, 2 * math.pi, 64, endpoint=False)
    rad = r * (1 + 0.12 * np.cos(2 * th + rng.uniform(0, 6)) + 0.06 * np.cos(3 * th + rng.uniform(0, 6)))
    poly = np.stack([cx + np.cos(th) * rad, cy + np.sin(th) * rad], 1)
    lay.towns.append((cx, cy, r, ang, poly))
    _mark_poly(lay.occ, poly, OCC_TOWN)
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


def _place_buildings(lay: Layout, cfg: WorldConfig, rng: np.random.Generator) -> None:
    """Expand the town blocks into buildings, parking lots, pools and garden trees, add the
    farmsteads, and mark all of them built in the occupancy raster.

    Replaces `lay.buildings` (the blocks until now: they move to `lay.blocks`); the garden
    and park trees wait in `lay._town_trees` for `_place_trees`."""
    blocks = [b for b in lay.buildings if b.get("kind") == "block"]
    lay.blocks = blocks
    out: list[dict] = []
    trees: list[tuple] = []
    for b in blocks:
        if b["btype"] in ("houses", "terrace"):
            _place_houses(lay, rng, b, out, trees)
        elif b["btype"] == "commercial":
            _place_commercial(lay, rng, b, out)
        elif b["btype"] == "apartments":
            _place_apartments(lay, rng, b, out)
        else:
            _place_park(cfg, rng, b, trees)
    _draw_new_and_gone(out, rng)
    _place_farmsteads(lay, rng, out)
    lay.buildings = out
    _mark_built(lay)
    lay._town_trees = trees  # type: ignore[attr-defined]


def _is_free(occ: np.ndarray, pts: np.ndarray, flags: int = OCC_ROAD | OCC_WATER) -> bool:
    """Whether none of the points (metres) lies on a cell with any of `flags`."""
    ij = np.clip((np.asarray(pts) / OCC_RES_M).astype(int), 0, occ.shape[0] - 1)
    return not np.any(occ[ij[:, 1], ij[:, 0]] & flags)


def _block_frame(b: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre, along, across) of a town block: its centre and the unit vectors of its grid."""
    d = np.array([math.cos(b["ang"]), math.sin(b["ang"])])
    return np.array([b["cx"], b["cy"]]), d, np.array([-d[1], d[0]])


@dataclass(frozen=True)
class _HouseStyle:
    """How one block's houses look: a terrace repeats one house (the look-alike trap of
    identical rows), detached houses vary in size, roof and colour."""

    terrace: bool
    w: float        # terrace house size (0 for detached houses: drawn per house)
    l: float
    colour: int     # the terrace's roof colour
    gap: float      # between neighbouring houses, metres
    setback: float  # from the street


def _house_style(rng: np.random.Generator, terrace: bool) -> _HouseStyle:
    """Draw a block's house style (in this order: size, colour, gap, setback)."""
    w0, l0 = (rng.uniform(8, 10), rng.uniform(6.5, 8)) if terrace else (0, 0)
    col = int(rng.integers(len(ROOF_COLOURS)))
    gap = rng.uniform(3, 7) if not terrace else 0.15
    setback = rng.uniform(3, 6)
    return _HouseStyle(terrace, w0, l0, col, gap, setback)


def _place_houses(lay: Layout, rng: np.random.Generator, b: dict, out: list[dict], trees: list[tuple]) -> None:
    """Houses facing the street on all four sides of a block, with garden trees and pools."""
    ctr, d, nrm = _block_frame(b)
    style = _house_style(rng, b["btype"] == "terrace")
    for t_dir in (d, nrm, -d, -nrm):
        _place_house_row(lay, rng, style, ctr, b["size"], t_dir, out, trees)


def _place_house_row(lay: Layout, rng: np.random.Generator, style: _HouseStyle, ctr: np.ndarray, s: float,
                     t_dir: np.ndarray, out: list[dict], trees: list[tuple]) -> None:
    """One side of a block: houses one after another along `t_dir`, set back from the
    street, leaving the corners free; a house on a road or in water is left out."""
    out_dir = np.array([-t_dir[1], t_dir[0]])  # towards the street on this side
    edge_c = ctr + out_dir * s / 2
    a = math.atan2(t_dir[1], t_dir[0])
    along = -s / 2 + style.setback + 11.0
    while along < s / 2 - 2:
        w = style.w if style.terrace else rng.uniform(7.5, 12)
        l = style.l if style.terrace else rng.uniform(9, 16)
        pos = edge_c + t_dir * (along + l / 2) - out_dir * (style.setback + w / 2)
        along += l + style.gap
        if along > s / 2 - 2:
            break
        corners = _rect_corners(pos[0], pos[1], w, l, a)
        if not _is_free(lay.occ, np.vstack([corners, pos[None]])):
            continue
        out.append(_house(rng, style, pos, w, l, a))
        _place_garden(lay, rng, style, pos, w, out_dir, a, trees)


def _house(rng: np.random.Generator, style: _HouseStyle, pos: np.ndarray, w: float, l: float, a: float) -> dict:
    """A house at `pos`: terraces share height, gable roof and colour; detached houses draw
    their own (in this order: height, roof, colour, then the repaint chance)."""
    same = style.terrace
    return dict(cx=pos[0], cy=pos[1], w=w, l=l, ang=a,
                h=rng.uniform(6, 9) if not same else 7.5,
                roof="gable" if (same or rng.uniform() < 0.8) else "flat",
                colour=style.colour if same else int(rng.integers(len(ROOF_COLOURS))),
                repaint=float(rng.uniform()), new=False)


def _place_garden(lay: Layout, rng: np.random.Generator, style: _HouseStyle, pos: np.ndarray, w: float,
                  out_dir: np.ndarray, a: float, trees: list[tuple]) -> None:
    """Behind the house at `pos` (`w` deep, its street along `out_dir`): maybe a tree, and
    behind a detached house sometimes a pool."""
    back = pos - out_dir * (w / 2 + rng.uniform(5, 10))
    if rng.uniform() < 0.45 and _is_free(lay.occ, back[None]):
        trees.append((back[0], back[1], rng.uniform(2.0, 4.0), rng.uniform(6, 12), rng.uniform(), 0))
    if rng.uniform() < 0.05 and not style.terrace and _is_free(lay.occ, back[None]):
        lay.pools.append((back[0] + rng.uniform(-3, 3), back[1], 3.5, 7.0, a))


def _place_commercial(lay: Layout, rng: np.random.Generator, b: dict, out: list[dict]) -> None:
    """A large flat-roofed building on one side of the block and a parking lot beside it."""
    s, ang = b["size"], b["ang"]
    ctr, _d, nrm = _block_frame(b)
    bw, bl = s * rng.uniform(0.35, 0.5), s * rng.uniform(0.45, 0.75)
    pos = ctr + nrm * (s / 2 - bw / 2 - 4)
    if _is_free(lay.occ, _rect_corners(pos[0], pos[1], bw, bl, ang)):
        out.append(dict(cx=pos[0], cy=pos[1], w=bw, l=bl, ang=ang, h=rng.uniform(6, 12), roof="flat",
                        colour=int(rng.choice([4, 5, 8, 9, 10])), repaint=float(rng.uniform()), new=False))
    lot = ctr - nrm * (s / 2 - (s - bw - 10) / 2 - 2)
    lw = s - bw - 12
    if lw > 12 and _is_free(lay.occ, _rect_corners(lot[0], lot[1], lw - 4, s - 14, ang)):
        lay.lots.append((lot[0], lot[1], lw, s - 8, ang))


def _place_apartments(lay: Layout, rng: np.random.Generator, b: dict, out: list[dict]) -> None:
    """Two or three tall parallel apartment bars across the block."""
    s, ang = b["size"], b["ang"]
    ctr, _d, nrm = _block_frame(b)
    n_bar = int(rng.integers(2, 4))
    for q in range(n_bar):
        pos = ctr + nrm * ((q - (n_bar - 1) / 2) * s / n_bar)
        bw, bl = rng.uniform(11, 14), s * rng.uniform(0.6, 0.8)
        if _is_free(lay.occ, _rect_corners(pos[0], pos[1], bw, bl, ang)):
            out.append(dict(cx=pos[0], cy=pos[1], w=bw, l=bl, ang=ang, h=rng.uniform(12, 24),
                            roof="flat", colour=int(rng.choice([3, 4, 5, 8, 9])),
                            repaint=float(rng.uniform()), new=False))


def _place_park(cfg: WorldConfig, rng: np.random.Generator, b: dict, trees: list[tuple]) -> None:
    """Scattered park trees (their number scales with `cfg.tree_density`)."""
    s = b["size"]
    ctr = np.array([b["cx"], b["cy"]])
    m = int(s * s / 180 * cfg.tree_density)
    pts = ctr + rng.uniform(-s / 2 + 3, s / 2 - 3, (m, 2))
    for p in pts:
        if rng.uniform() < 0.6:
            trees.append((p[0], p[1], rng.uniform(2.5, 5.0), rng.uniform(8, 18), rng.uniform(), 0))


def _draw_new_and_gone(buildings: list[dict], rng: np.random.Generator) -> None:
    """The town's changes between epochs: about 3 % of the buildings are built only by
    epoch 2, about 2 % are demolished by then."""
    for bd in buildings:
        u = rng.uniform()
        bd["new"] = bool(u < 0.03)
        bd["gone"] = bool(0.03 <= u < 0.05)


def _place_farmsteads(lay: Layout, rng: np.random.Generator, out: list[dict]) -> None:
    """Rural farmsteads (two or three barns) beside the secondary roads, out of the towns."""
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
                if _is_free(lay.occ, np.vstack([cs, pos[None]]), OCC_ROAD | OCC_WATER | OCC_TOWN):
                    out.append(dict(cx=pos[0], cy=pos[1], w=w, l=l, ang=a, h=rng.uniform(6, 10), roof="gable",
                                    colour=int(rng.integers(len(ROOF_COLOURS))), repaint=float(rng.uniform()),
                                    new=False, gone=False))


def _mark_built(lay: Layout) -> None:
    """Mark the buildings (with a 1 m margin) and the parking lots built, so no tree stands
    on a roof or a lot."""
    for bd in lay.buildings:
        _mark_poly(lay.occ, _rect_corners(bd["cx"], bd["cy"], bd["w"] + 2, bd["l"] + 2, bd["ang"]), OCC_BUILT)
    for lot in lay.lots:
        _mark_poly(lay.occ, _rect_corners(*lot), OCC_BUILT)


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
