"""Rasterise a world `Layout` into an RGB orthophoto for one epoch.

Per-pixel work (fields, crop rows, ground texture) is vectorised numpy over row strips;
everything with a shape (roads, roofs, trees, cars, shadows) is drawn with OpenCV's
anti-aliased polygon/line/circle primitives at sub-pixel precision. Epoch-specific
appearance comes from its own random stream, so both epochs share the layout exactly.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .world_layout import CROPS, ROOF_COLOURS, Layout, _rect_corners, cell_of, resample_polyline

if TYPE_CHECKING:
    from .world import WorldConfig

#: OpenCV sub-pixel bits of every drawn coordinate
SHIFT = 3

#: ground materials: the crops 0.._N_CROPS-1, then these (indices into the ground palette)
_N_CROPS = len(CROPS)
_FOREST, _MEADOW, _TRACK, _HEDGE, _MARGIN = range(_N_CROPS, _N_CROPS + 5)
#: colours of the non-crop materials, in that order (one colour: they have no rows)
_NON_CROP_TONES = ((46, 66, 40), (104, 128, 72), (168, 152, 122), (58, 82, 46), (99, 122, 68))

#: car paint colours and how common each is
_CAR_COLOURS = ((230, 230, 228), (30, 30, 34), (120, 122, 126), (176, 178, 182), (150, 30, 30),
                (36, 60, 120), (60, 70, 60), (200, 200, 190))
_CAR_COLOUR_SHARES = (0.25, 0.2, 0.15, 0.18, 0.07, 0.08, 0.03, 0.04)


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


def render_epoch(lay: Layout, cfg: WorldConfig, epoch: int, n_px: int,
                 progress: Callable[[str], None] | None = None) -> np.ndarray:
    """The (n_px, n_px, 3) uint8 orthophoto of `lay` as seen at `epoch` (1 or 2).

    Layers are painted bottom-up, each over the last: ground, yards, water, roads, parking
    lots, cars, pools, shadows, roofs, tree crowns, then the sensor's look. Cached worlds
    are keyed by their config only, so the order of the random draws is part of every
    world's pixels: the ground noise comes from a stream both epochs share ([seed, 7]); the
    epoch's own stream ([seed, 100 + epoch]) gives epoch 2's soil variation and then the
    cars, in that order; the grain has a third ([seed, 300 + epoch]). `progress(name)` is
    called after each stage (timings for the CLI).
    """
    g = lay.size_m / n_px
    seed = int(cfg.seed)
    e2 = epoch == 2
    step = progress or (lambda *_: None)
    rng_shared = np.random.default_rng([seed, 7])
    rng_e = np.random.default_rng([seed, 100 + epoch])
    low, mid = _ground_noise(rng_shared, rng_e, n_px, g, e2)
    img = _paint_ground(lay, _grown_crops(cfg), e2, g, low, mid)
    del low
    step("ground")
    pt = Painter(g)
    _paint_yards(img, pt, lay)
    _paint_water(img, pt, lay, e2)
    step("water")
    _paint_roads(img, pt, lay)
    step("roads")
    stalls = _paint_lots(img, pt, lay)
    step("lots")
    shadow_dir = _shadow_dir(lay, e2)
    cars = _place_cars(lay, stalls, rng_e, float(cfg.car_density))
    _paint_cars(img, pt, cars, shadow_dir, rng_e)
    step("cars")
    _paint_pools(img, pt, lay, e2)
    buildings = _standing_buildings(lay, e2)
    trees = _standing_trees(lay, seed, e2)
    _paint_shadows(img, pt, lay, buildings, trees, shadow_dir, e2)
    step("shadows")
    sun_vec = -shadow_dir / max(1e-9, float(np.hypot(*shadow_dir)))
    _paint_roofs(img, pt, buildings, shadow_dir, sun_vec, e2)
    step("roofs")
    _paint_crowns(img, pt, trees, sun_vec, e2)
    step("trees")
    img = _sensor_look(img, mid, seed, epoch)
    step("finish")
    return img


def _strip_rows(n_px: int) -> int:
    """Rows per strip of the per-pixel passes: about a million pixels, so their temporaries
    stay small at any map size."""
    return max(64, int(1_000_000 // n_px))


def _colour(c: np.ndarray) -> tuple[float, ...]:
    """An OpenCV colour from a float RGB array (clipped to 0..255)."""
    return tuple(float(v) for v in np.clip(c, 0, 255))


# ----------------------------------------------------------------------------- ground

@dataclass(frozen=True)
class _GroundPalette:
    """Colours of every ground material (the crops, then the non-crop materials) and the
    crop rows' period and contrast at one resolution."""

    row_colour: np.ndarray    # (materials, 3) float32: the crop rows
    gap_colour: np.ndarray    # (materials, 3) float32: between the rows
    row_period: np.ndarray    # (crops,) float32, metres
    row_contrast: np.ndarray  # (crops,) float32


def _ground_palette(g: float) -> _GroundPalette:
    """The palette at `g` m/px: rows finer than about three pixels would alias into moire,
    so they are drawn at that period instead, with half their contrast."""
    periods = [c[2] for c in CROPS]
    small_rows = np.array(periods) < 3.2 * g
    return _GroundPalette(
        row_colour=np.array([c[0] for c in CROPS] + list(_NON_CROP_TONES), np.float32),
        gap_colour=np.array([c[1] for c in CROPS] + list(_NON_CROP_TONES), np.float32),
        row_period=np.maximum(np.array(periods, np.float32), 3.2 * g).astype(np.float32),
        row_contrast=np.where(small_rows, 0.5, 1.0).astype(np.float32) * np.array([c[3] for c in CROPS], np.float32))


@dataclass(frozen=True)
class _FarmCells:
    """The layout's farm cells as float32 arrays indexed by cell: what the per-pixel pass
    gathers for every pixel (float32 halves its memory traffic)."""

    cos: np.ndarray
    sin: np.ndarray
    x: np.ndarray
    y: np.ndarray
    strip_w: np.ndarray
    strip_l: np.ndarray
    off_u: np.ndarray
    off_v: np.ndarray
    kind: np.ndarray  # int32: 0 field, 1 forest, 2 meadow

    @classmethod
    def of(cls, lay: Layout) -> _FarmCells:
        return cls(cos=np.cos(lay.seed_angle).astype(np.float32), sin=np.sin(lay.seed_angle).astype(np.float32),
                   x=lay.seeds[:, 0].astype(np.float32), y=lay.seeds[:, 1].astype(np.float32),
                   strip_w=lay.seed_w.astype(np.float32), strip_l=lay.seed_l.astype(np.float32),
                   off_u=lay.seed_off[:, 0].astype(np.float32), off_v=lay.seed_off[:, 1].astype(np.float32),
                   kind=lay.seed_kind.astype(np.int32))


def _grown_crops(cfg: WorldConfig) -> np.ndarray:
    """Indices of the crops the world's fields may grow: `cfg.crop_types` (look-alike
    farmland), or every crop."""
    if getattr(cfg, "crop_types", ()):
        return np.asarray(cfg.crop_types, np.int32)
    return np.arange(_N_CROPS, dtype=np.int32)


def _ground_noise(rng_shared: np.random.Generator, rng_e: np.random.Generator, n_px: int, g: float,
                  e2: bool) -> tuple[np.ndarray, np.ndarray]:
    """(low, mid): ~40 m soil/vegetation variation and ~6 m mottling. Both epochs share
    them, so the ground matches; epoch 2 mixes some of its own into the low band."""
    low = value_noise(rng_shared, (n_px, n_px), 40.0 / g, 4)
    mid = value_noise(rng_shared, (n_px, n_px), 6.0 / g, 3)
    if e2:
        low = 0.7 * low + 0.3 * value_noise(rng_e, (n_px, n_px), 40.0 / g, 3)
    return low, mid


def _paint_ground(lay: Layout, crops: np.ndarray, e2: bool, g: float, low: np.ndarray,
                  mid: np.ndarray) -> np.ndarray:
    """A new image of the bare ground (fields with crop rows, forest floor, meadow, hedges,
    tracks), computed per pixel in row strips."""
    n_px = low.shape[0]
    pal = _ground_palette(g)
    cells = _FarmCells.of(lay)
    img = np.empty((n_px, n_px, 3), np.uint8)
    xs = ((np.arange(n_px, dtype=np.float32) + 0.5) * g)
    strip = _strip_rows(n_px)
    for r0 in range(0, n_px, strip):
        r1 = min(n_px, r0 + strip)
        ys = ((np.arange(r0, r1, dtype=np.float32) + 0.5) * g)
        x, y = np.meshgrid(xs, ys)
        img[r0:r1] = _ground_strip(lay, cells, pal, crops, e2, x, y, low[r0:r1], mid[r0:r1])
    return img


def _ground_strip(lay: Layout, cells: _FarmCells, pal: _GroundPalette, crops: np.ndarray, e2: bool,
                  x: np.ndarray, y: np.ndarray, low: np.ndarray, mid: np.ndarray) -> np.ndarray:
    """uint8 RGB of the ground at the pixel centres (x, y) (metres, one strip of rows).

    Every farm cell is a grid of field strips along its own orientation; a hash of (cell,
    strip) picks each field's crop and row direction, so a field is the same wherever a
    strip boundary falls and in both epochs."""
    cell, other, bdist = cell_of(x, y, lay)
    u, v, fu, fv, sw, sl = _field_coords(cells, cell, x, y)
    iu, iv = np.floor(fu), np.floor(fv)
    h = _hash(cell, iu.astype(np.int32) + 1000, iv.astype(np.int32) + 1000)
    ctype = _crop_type(h, crops, e2)
    rows_along = ((h >> np.uint32(20)) & np.uint32(1)).astype(bool)
    t = _row_pattern(pal, ctype, np.where(rows_along, u, v))
    shade = np.float32(1.0) + np.float32(0.10) * low + np.float32(0.07) * mid
    shade[_tramlines(np.where(rows_along, v, u), ctype)] *= np.float32(0.85)
    field_edge = np.minimum(np.minimum(fu - iu, 1 - (fu - iu)) * sw, np.minimum(fv - iv, 1 - (fv - iv)) * sl)
    mat = _ground_material(ctype, field_edge, cells.kind[cell], cell, other, bdist)
    t[mat >= _N_CROPS] = 0.0
    a = pal.row_colour[mat]
    col = a + (pal.gap_colour[mat] - a) * t[..., None]
    col *= shade[..., None]
    np.clip(col, 0, 255, out=col)
    return col.astype(np.uint8)


def _field_coords(cells: _FarmCells, cell: np.ndarray, x: np.ndarray,
                  y: np.ndarray) -> tuple[np.ndarray, ...]:
    """(u, v, fu, fv, strip_w, strip_l) of points in their cell: u, v metres along and
    across the cell's orientation from its seed; fu, fv the same in strips (offset per
    cell), whose integer parts name the field."""
    dx, dy = x - cells.x[cell], y - cells.y[cell]
    c, s = cells.cos[cell], cells.sin[cell]
    u = dx * c + dy * s
    v = dy * c - dx * s
    sw, sl = cells.strip_w[cell], cells.strip_l[cell]
    return u, v, u / sw + cells.off_u[cell], v / sl + cells.off_v[cell], sw, sl


def _crop_type(h: np.ndarray, crops: np.ndarray, e2: bool) -> np.ndarray:
    """The crop (index into CROPS) of each field from its hash `h`. In epoch 2 about half
    of the fields grow another of `crops` (crop rotation, another growth phase): the change
    a localizer must see through."""
    n = len(crops)
    ci = (h % np.uint32(n)).astype(np.int32)
    if e2 and n > 1:
        h2 = _hash(h, 77)
        change = (h2 % np.uint32(100)) < 50
        ci = np.where(change, (ci + 1 + ((h2 >> np.uint32(8)) % np.uint32(n - 1)).astype(np.int32)) % n, ci)
    return crops[ci]


def _row_pattern(pal: _GroundPalette, ctype: np.ndarray, coord: np.ndarray) -> np.ndarray:
    """Blend weight between row and gap colour (0..contrast): a sine across the rows."""
    two_pi = np.float32(2 * np.pi)
    return pal.row_contrast[ctype] * (np.float32(0.5) + np.float32(0.5)
                                      * np.sin(coord * (two_pi / pal.row_period[ctype])))


def _tramlines(coord: np.ndarray, ctype: np.ndarray) -> np.ndarray:
    """Where the tractor tramlines run: every 20 m along the rows of cereal-like fields."""
    return (np.abs(((coord * np.float32(0.05)) % 1.0) - 0.5) < 0.025) & (ctype <= 2)


def _ground_material(ctype: np.ndarray, field_edge: np.ndarray, kind: np.ndarray, cell: np.ndarray,
                     other: np.ndarray, bdist: np.ndarray) -> np.ndarray:
    """The ground material index of each pixel: its crop, a margin along field edges,
    forest floor or meadow in those cells, and a hedge or a track along cell boundaries
    (which of the two is fixed per pair of neighbouring cells)."""
    mat = np.where(field_edge < 0.9, _MARGIN, ctype)
    mat[kind == 1] = _FOREST
    mat[kind == 2] = _MEADOW
    is_hedge = ((cell + other) % 3) == 0
    edge = bdist < np.where(is_hedge, np.float32(2.0), np.float32(1.6))
    mat[edge & is_hedge] = _HEDGE
    mat[edge & ~is_hedge] = _TRACK
    return mat


# ----------------------------------------------------------------------------- flat things on the ground

def _paint_yards(img: np.ndarray, pt: Painter, lay: Layout) -> None:
    """Lawns of the residential blocks and paved yards of the commercial ones."""
    for b in lay.blocks:
        cs = _rect_corners(b["cx"], b["cy"], b["size"] + 3.0, b["size"] + 3.0, b["ang"])
        pt.poly(img, cs, (120, 138, 92) if b["btype"] != "commercial" else (134, 136, 124))


def _paint_water(img: np.ndarray, pt: Painter, lay: Layout, e2: bool) -> None:
    """Lakes with a shore and rivers with banks; the water's colour changes between epochs
    (algae, sediment, sky reflection)."""
    water = (44, 66, 78) if not e2 else (52, 78, 74)
    for poly in lay.lakes:
        pt.poly(img, poly, (150, 140, 110))  # shore
        inner = poly.mean(0) + (poly - poly.mean(0)) * 0.97
        pt.poly(img, inner, water)
    for pts, width in lay.rivers:
        pt.line(img, pts, (120, 118, 92), width + 3)
        pt.line(img, pts, water, width)


def _paint_roads(img: np.ndarray, pt: Painter, lay: Layout) -> None:
    """Roads in three passes (verges, asphalt, markings) so no road's verge covers another
    road's asphalt at a junction."""
    for pts, width, kind in lay.roads:  # verges / sidewalks
        colour = (150, 148, 140) if kind == 2 else (146, 140, 120)
        pt.line(img, pts, colour, width + (3.0 if kind == 2 else 2.0))
    for pts, width, kind in lay.roads:
        tone = {0: (78, 79, 82), 1: (96, 95, 92), 2: (92, 92, 94)}[kind]
        pt.line(img, pts, tone, width)
    for pts, width, kind in lay.roads:
        if kind != 2:  # town streets have no markings
            _paint_markings(img, pt, pts, width, kind, lay.size_m)


def _paint_markings(img: np.ndarray, pt: Painter, pts: np.ndarray, width: float, kind: int,
                    size_m: float) -> None:
    """Edge lines (main roads) and the dashed centre line, clipped to the map (plus a
    margin): only what is visible is drawn."""
    q, tan = resample_polyline(pts, 1.0)
    nrm = np.stack([-tan[:, 1], tan[:, 0]], 1)
    inside = (q[:, 0] > -5) & (q[:, 1] > -5) & (q[:, 0] < size_m + 5) & (q[:, 1] < size_m + 5)
    if kind == 0:
        for side in (-1, 1):
            e = q + nrm * side * (width / 2 - 0.6)
            pt.line(img, e[inside], (214, 214, 206), 0.18)
    dash = (np.arange(len(q)) % 9) < 3
    idx = np.flatnonzero(dash & inside)
    if len(idx):
        br = np.flatnonzero(np.diff(idx) > 1)
        for seg in np.split(idx, br + 1):
            if len(seg) >= 2:
                pt.line(img, q[seg], (222, 222, 214), 0.16)


def _paint_lots(img: np.ndarray, pt: Painter, lay: Layout) -> list[tuple[float, float, float]]:
    """Parking lots with their stall lines; returns every stall (x, y, heading) for the cars."""
    stalls: list[tuple[float, float, float]] = []
    for cx, cy, w, l, ang in lay.lots:
        pt.poly(img, _rect_corners(cx, cy, w, l, ang), (88, 88, 90))
        stalls += _paint_stalls(img, pt, cx, cy, w, l, ang)
    return stalls


def _paint_stalls(img: np.ndarray, pt: Painter, cx: float, cy: float, w: float, l: float,
                  ang: float) -> list[tuple[float, float, float]]:
    """Double rows of stalls (5 m deep, 2.6 m wide) every 16 m across one lot; returns the
    stalls' centres and headings."""
    stalls = []
    d = np.array([math.cos(ang), math.sin(ang)])
    nrm = np.array([-d[1], d[0]])
    n_rows = max(1, int((w - 2) // 16))
    for rr in range(n_rows):
        row_c = np.array([cx, cy]) + nrm * (-w / 2 + 8 + rr * 16)
        for side in (-1, 1):
            for a_ in np.arange(-l / 2 + 3, l / 2 - 3, 2.6):
                base = row_c + d * a_ + nrm * side * 0.2
                pt.line(img, [base, base + nrm * side * 5.0], (200, 200, 196), 0.14)
                stalls.append((*(row_c + d * (a_ + 1.3) + nrm * side * 2.6), ang + math.pi / 2))
    return stalls


def _place_cars(lay: Layout, stalls: list[tuple[float, float, float]], rng: np.random.Generator,
                density: float) -> list[tuple[float, float, float]]:
    """Cars (x, y, heading) of this epoch: parked in stalls, along town streets, on roads.
    They are what changes most between two passes, so they come from the epoch's stream."""
    cars = [(sx, sy, a) for sx, sy, a in stalls if rng.uniform() < 0.55 * density]
    for pts, width, kind in lay.roads:
        cars += _road_cars(pts, width, kind, lay.size_m, rng, density)
    return cars


def _road_cars(pts: np.ndarray, width: float, kind: int, size_m: float, rng: np.random.Generator,
               density: float) -> list[tuple[float, float, float]]:
    """Cars on one road (kerbside on town streets, in a lane elsewhere), one chance every 6 m."""
    q, tan = resample_polyline(pts, 6.0)
    inside = (q[:, 0] > 0) & (q[:, 1] > 0) & (q[:, 0] < size_m) & (q[:, 1] < size_m)
    p_car = {0: 0.04, 1: 0.02, 2: 0.12}[kind] * density
    cars = []
    for i in np.flatnonzero(inside & (rng.uniform(0, 1, len(q)) < p_car)):
        side = 1 if rng.uniform() < 0.5 else -1
        lane = width / 2 - (1.6 if kind == 2 else width / 4 + 0.4)
        c = q[i] + np.array([-tan[i, 1], tan[i, 0]]) * side * lane
        cars.append((c[0], c[1], math.atan2(tan[i, 1], tan[i, 0]) + rng.normal(0, 0.03)))
    return cars


def _paint_cars(img: np.ndarray, pt: Painter, cars: list[tuple[float, float, float]], shadow_dir: np.ndarray,
                rng: np.random.Generator) -> None:
    """Each car: its shadow, a body in a common car colour, a dark windscreen."""
    colours = np.array(_CAR_COLOURS, np.float32)
    shares = np.array(_CAR_COLOUR_SHARES)
    for cx, cy, a_ in cars:
        col = colours[rng.choice(len(colours), p=shares)] * rng.uniform(0.9, 1.1)
        body = _rect_corners(cx, cy, 1.85, 4.5, a_)
        pt.poly(img, body + shadow_dir * 0.9, (50, 52, 58))
        pt.poly(img, body, _colour(col))
        d = np.array([math.cos(a_), math.sin(a_)])
        pt.poly(img, _rect_corners(cx + d[0] * 0.9, cy + d[1] * 0.9, 1.5, 0.9, a_), (40, 44, 50))


def _paint_pools(img: np.ndarray, pt: Painter, lay: Layout, e2: bool) -> None:
    """Garden pools with a paved rim; a few have turned green by epoch 2."""
    for cx, cy, w, l, ang in lay.pools:
        pt.poly(img, _rect_corners(cx, cy, w + 1.2, l + 1.2, ang), (215, 212, 200))
        pt.poly(img, _rect_corners(cx, cy, w, l, ang), (70, 170, 200) if not (e2 and cx % 7 < 1) else (60, 120, 110))


# ----------------------------------------------------------------------------- things with a height

def _standing_buildings(lay: Layout, e2: bool) -> list[dict]:
    """The buildings that stand at this epoch: new ones only in epoch 2, demolished ones
    only in epoch 1."""
    return [b for b in lay.buildings if (b.get("new") and e2) or (not b.get("new") and not (e2 and b.get("gone")))]


def _standing_trees(lay: Layout, seed: int, e2: bool) -> np.ndarray:
    """The trees that stand at this epoch: about 3 % are felled by epoch 2."""
    trees = lay.trees
    if e2:
        keep = _hash(np.arange(len(trees)), seed) % np.uint32(100) >= 3
        trees = trees[keep]
    return trees


def _crown_growth(e2: bool) -> float:
    """Scale of the tree crowns: they have grown by epoch 2."""
    return 1.12 if e2 else 1.0


def _paint_shadows(img: np.ndarray, pt: Painter, lay: Layout, buildings: list[dict], trees: np.ndarray,
                   shadow_dir: np.ndarray, e2: bool) -> None:
    """Darken the ground where buildings and trees cast shadows, under this epoch's sun.

    Shadows are collected in one soft mask first, so overlapping shadows do not darken twice."""
    g = pt.g
    k_sh = 1.0 / math.tan(math.radians(lay.sun_elevation_deg + (6.0 if e2 else 0.0)))
    shadow = np.zeros(img.shape[:2], np.uint8)
    for b in buildings:  # the hull of the roof and its projection along the sun
        cs = _rect_corners(b["cx"], b["cy"], b["w"], b["l"], b["ang"])
        sh = cs + shadow_dir * b["h"] * k_sh
        hull = cv2.convexHull(pt.p(np.vstack([cs, sh])))
        cv2.fillPoly(shadow, [hull], 255, cv2.LINE_AA, SHIFT)
    grow = _crown_growth(e2)
    sc = pt.p(trees[:, :2] + shadow_dir[None, :] * (trees[:, 3:4] * k_sh * 0.55)).tolist()
    sr = np.maximum(1, np.round(trees[:, 2] * grow * 0.95 / g * (1 << SHIFT))).astype(int).tolist()
    for (cx_, cy_), r_ in zip(sc, sr):
        cv2.circle(shadow, (cx_, cy_), r_, 255, -1, cv2.LINE_AA, SHIFT)
    shadow = cv2.GaussianBlur(shadow, (0, 0), max(0.6, 0.25 / g))
    _apply_shadow(img, shadow)


def _paint_roofs(img: np.ndarray, pt: Painter, buildings: list[dict], shadow_dir: np.ndarray, sun_vec: np.ndarray,
                 e2: bool) -> None:
    """Roofs over the shadows: gables lit by the sun on one side, flat roofs with a parapet
    and (when large) equipment."""
    for b in buildings:
        base = _roof_base_colour(b, e2)
        if b["roof"] == "gable":
            _paint_gable_roof(img, pt, b, base, sun_vec)
        else:
            _paint_flat_roof(img, pt, b, base, shadow_dir)


def _roof_base_colour(b: dict, e2: bool) -> np.ndarray:
    """A roof's colour (float32 RGB): about 12 % of the roofs are repainted by epoch 2, and
    a small per-building brightness variation keeps identical houses from being identical
    pixels."""
    ci = b["colour"]
    if e2 and b["repaint"] < 0.12:
        ci = (ci + 1 + int(b["repaint"] * 1000) % (len(ROOF_COLOURS) - 1)) % len(ROOF_COLOURS)
    return ROOF_COLOURS[ci] * (0.92 + 0.16 * ((b["cx"] * 13.1 + b["cy"] * 7.7) % 1.0))


def _paint_gable_roof(img: np.ndarray, pt: Painter, b: dict, base: np.ndarray, sun_vec: np.ndarray) -> None:
    """Two roof halves shaded by how much each faces the sun, and a bright ridge line."""
    cx, cy, w, l, ang = b["cx"], b["cy"], b["w"], b["l"], b["ang"]
    d = np.array([math.cos(ang), math.sin(ang)])
    nrm = np.array([-d[1], d[0]])
    for side in (-1, 1):
        f = 0.86 + 0.32 * float(np.dot(nrm * side, sun_vec))
        half = _rect_corners(cx + nrm[0] * side * w / 4, cy + nrm[1] * side * w / 4, w / 2, l, ang)
        pt.poly(img, half, _colour(base * f))
    pt.line(img, [np.array([cx, cy]) - d * l / 2, np.array([cx, cy]) + d * l / 2], _colour(base * 1.15), 0.3)


def _paint_flat_roof(img: np.ndarray, pt: Painter, b: dict, base: np.ndarray, shadow_dir: np.ndarray) -> None:
    """A flat roof: a darker parapet around it, and equipment boxes on large roofs (their
    positions hashed from the building's, so they are the same in both epochs)."""
    cx, cy, w, l, ang = b["cx"], b["cy"], b["w"], b["l"], b["ang"]
    pt.poly(img, _rect_corners(cx, cy, w, l, ang), _colour(base * 0.8))
    pt.poly(img, _rect_corners(cx, cy, w - 0.8, l - 0.8, ang), _colour(base))
    if w * l <= 250:
        return
    rr = np.random.default_rng(int(_hash(int(cx * 10), int(cy * 10))))
    along = np.array([math.cos(ang), math.sin(ang)])
    across = np.array([-math.sin(ang), math.cos(ang)])
    for _ in range(int(w * l // 300)):
        p = np.array([cx, cy]) + rr.uniform(-0.35, 0.35) * l * along + rr.uniform(-0.35, 0.35) * w * across
        box = _rect_corners(p[0], p[1], 2.0, 3.0, ang)
        pt.poly(img, box + shadow_dir * 0.8, _colour(base * 0.6))
        pt.poly(img, box, (196, 196, 194))


def _paint_crowns(img: np.ndarray, pt: Painter, trees: np.ndarray, sun_vec: np.ndarray, e2: bool) -> None:
    """Tree crowns, back to front (north to south, so southern crowns overlap), each with a
    sunlit highlight; forest trees are darker and more varied than single trees, and epoch
    2 is another season."""
    g = pt.g
    order = np.argsort(trees[:, 1], kind="stable")
    tone_single = np.array([(70, 100, 52), (84, 112, 60), (60, 88, 50)], np.float32)
    tone_forest = np.array([(52, 84, 42), (64, 96, 48), (44, 72, 44), (78, 104, 56)], np.float32)
    season = np.array((1.08, 1.0, 0.82), np.float32) if e2 else np.ones(3, np.float32)
    tones_all = np.concatenate([tone_single, tone_forest])
    ti = np.where(trees[:, 5] >= 1, len(tone_single) + (trees[:, 4] * 997).astype(int) % len(tone_forest),
                  (trees[:, 4] * 997).astype(int) % len(tone_single))
    base = tones_all[ti] * (0.85 + 0.3 * trees[:, 4:5]) * season
    crown = (base * 0.8).tolist()
    light = np.clip(base * 1.12, 0, 255).tolist()
    rr = trees[:, 2] * _crown_growth(e2)
    c1 = pt.p(trees[:, :2]).tolist()
    c2 = pt.p(trees[:, :2] + sun_vec[None, :] * rr[:, None] * 0.3).tolist()
    r1 = np.maximum(1, np.round(rr / g * (1 << SHIFT))).astype(int).tolist()
    r2 = np.maximum(1, np.round(rr * 0.62 / g * (1 << SHIFT))).astype(int).tolist()
    for i in order.tolist():
        cv2.circle(img, c1[i], r1[i], crown[i], -1, cv2.LINE_AA, SHIFT)
        cv2.circle(img, c2[i], r2[i], light[i], -1, cv2.LINE_AA, SHIFT)


def _sensor_look(img: np.ndarray, mid: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The satellite's look over everything: season/sensor tint and gain, a texture from
    the mottling noise, film grain (own stream), and the optics' blur."""
    e2 = epoch == 2
    n_px = img.shape[0]
    tint = np.array((1.0, 1.0, 1.0), np.float32) if not e2 else np.array((1.06, 1.0, 0.9), np.float32)
    gain = 1.0 if not e2 else 1.04
    fine_rng = np.random.default_rng([seed, 300 + epoch])
    strip = _strip_rows(n_px)
    for r0 in range(0, n_px, strip):
        r1 = min(n_px, r0 + strip)
        f = img[r0:r1].astype(np.float32)
        mi = mid[r0:r1, :, None]
        grain = fine_rng.standard_normal((r1 - r0, n_px, 1), dtype=np.float32)
        f = f * (tint * gain) * (1.0 + 0.06 * mi) + grain * 4.0
        img[r0:r1] = np.clip(f, 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(img, (0, 0), 0.55)


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
