"""Changes painted into a finished world raster: the part of an appearance gap that lives on
the ground, not in the camera.

Why: between the map's acquisition and the flight, ground changes that no colour shift can
model: fields are cut or ploughed, new buildings and parking lots appear, a wood is
cleared, and a cloud throws a shadow the satellite never saw. `apply_world_changes` paints
such patches and soft cloud shadows into a north-up RGB raster (the camera's epoch of a
procedural world, or any map), deterministically from `WorldChanges.seed`. The map the
localizer carries is never touched. Coordinates here are image-like metres (x east from
the west edge, y south from the north edge), as in `world_layout`.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from .world_layout import ROOF_COLOURS, _rect_corners
from .world_render import Painter, value_noise

#: patch kinds and how often each is drawn
PATCH_KINDS = (("cut_field", 0.35), ("new_buildings", 0.3), ("asphalt", 0.15), ("cleared", 0.2))
#: colours of cut / ploughed / bare ground (RGB)
BARE_COLOURS = np.array([(186, 170, 120), (150, 124, 96), (120, 100, 80), (170, 160, 110), (132, 112, 88)],
                        np.float32)


@dataclass
class WorldChanges:
    """Ground changes painted into the camera's world (all off by default)."""

    changed_fraction: float = 0.0          # share of the ground under changed patches
    patch_size_m: tuple = (25.0, 90.0)     # side lengths of a patch (uniform in this range)
    cloud_shadow_cover: float = 0.0        # share of the ground under cloud shadow
    cloud_shadow_depth: float = 0.4        # darkening at a shadow's core (0..1)
    cloud_scale_m: float = 150.0           # typical size of a cloud shadow
    sun_azimuth_deg: float | None = None   # where new buildings' shadows point away from (None: from the seed)
    seed: int = 0

    def __post_init__(self) -> None:
        if not (0.0 <= self.changed_fraction <= 1.0 and 0.0 <= self.cloud_shadow_cover <= 1.0
                and 0.0 <= self.cloud_shadow_depth <= 1.0):
            raise ValueError("changed_fraction, cloud_shadow_cover and cloud_shadow_depth must be in [0, 1]")
        self.patch_size_m = tuple(float(v) for v in self.patch_size_m)
        if len(self.patch_size_m) != 2 or not 1.0 <= self.patch_size_m[0] <= self.patch_size_m[1]:
            raise ValueError(f"patch_size_m must be [min, max] metres with 1 <= min <= max, got {self.patch_size_m}")

    @property
    def active(self) -> bool:
        return self.changed_fraction > 0 or (self.cloud_shadow_cover > 0 and self.cloud_shadow_depth > 0)

    def cache_key(self) -> str:
        """Short stable digest of every field (names the changed raster's file)."""
        from ..config import to_dict

        return hashlib.sha1(json.dumps(to_dict(self), sort_keys=True).encode()).hexdigest()[:10]


def plan_patches(width_m: float, height_m: float, ch: WorldChanges, rng: np.random.Generator,
                 avoid: Callable[[np.ndarray], np.ndarray] | None = None) -> list[dict]:
    """Where the changed patches go: kind, centre, size, angle (image metres).

    The count is chosen so that the patches cover about `changed_fraction` of the area;
    `avoid((N, 2) points) -> bool` rejects centres (e.g. water) and the patch is redrawn."""
    if ch.changed_fraction <= 0:
        return []
    lo, hi = ch.patch_size_m
    mean_area = ((lo + hi) / 2.0) ** 2
    n = int(round(ch.changed_fraction * width_m * height_m / mean_area))
    kinds = [k for k, _ in PATCH_KINDS]
    p = np.array([w for _, w in PATCH_KINDS])
    out = []
    for _ in range(n):
        for _try in range(4):
            c = rng.uniform((0.0, 0.0), (width_m, height_m))
            if avoid is None or not bool(np.asarray(avoid(c[None]))[0]):
                break
        else:
            continue
        out.append(dict(kind=kinds[int(rng.choice(len(kinds), p=p / p.sum()))], cx=float(c[0]), cy=float(c[1]),
                        w=float(rng.uniform(lo, hi)), l=float(rng.uniform(lo, hi)), ang=float(rng.uniform(0, math.pi)),
                        seed=int(rng.integers(1 << 31))))
    return out


def apply_world_changes(img: np.ndarray, gsd_m: float, ch: WorldChanges,
                        avoid: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """`img` (H, W, 3) uint8 north-up at `gsd_m` with the changes of `ch` painted in (a copy)."""
    out = img.copy()
    if not ch.active:
        return out
    h, w = img.shape[:2]
    rng = np.random.default_rng([int(ch.seed), 41])
    az = float(rng.uniform(120, 240)) if ch.sun_azimuth_deg is None else float(ch.sun_azimuth_deg)
    shadow_dir = -np.array([math.sin(math.radians(az)), -math.cos(math.radians(az))])
    for patch in plan_patches(w * gsd_m, h * gsd_m, ch, rng, avoid):
        _paint_patch(out, gsd_m, patch, shadow_dir)
    if ch.cloud_shadow_cover > 0 and ch.cloud_shadow_depth > 0:
        _cloud_shadows(out, gsd_m, ch, np.random.default_rng([int(ch.seed), 43]))
    return out


def _paint_patch(img: np.ndarray, g: float, patch: dict, shadow_dir: np.ndarray) -> None:
    """Paint one patch into `img` in place, working on its bounding box only."""
    corners = _rect_corners(patch["cx"], patch["cy"], patch["w"], patch["l"], patch["ang"])
    margin = 20.0  # room for building shadows
    x0 = max(0, int((corners[:, 0].min() - margin) / g))
    y0 = max(0, int((corners[:, 1].min() - margin) / g))
    x1 = min(img.shape[1], int(math.ceil((corners[:, 0].max() + margin) / g)))
    y1 = min(img.shape[0], int(math.ceil((corners[:, 1].max() + margin) / g)))
    if x1 <= x0 or y1 <= y0:
        return
    sub = img[y0:y1, x0:x1]
    off = np.array([x0 * g, y0 * g])
    pt = Painter(g)
    rng = np.random.default_rng(patch["seed"])
    mask = np.zeros(sub.shape[:2], np.uint8)
    pt.poly(mask, corners - off, 255)
    a = mask.astype(np.float32)[..., None] / 255.0
    # patch frame: u along `ang`, v across, in metres
    yy, xx = np.mgrid[0:sub.shape[0], 0:sub.shape[1]].astype(np.float32)
    xm, ym = (xx + 0.5) * g + off[0] - patch["cx"], (yy + 0.5) * g + off[1] - patch["cy"]
    ca, sa = math.cos(patch["ang"]), math.sin(patch["ang"])
    u, v = xm * ca + ym * sa, ym * ca - xm * sa
    mottle = value_noise(rng, sub.shape[:2], max(2.0, 4.0 / g), 2)[..., None]
    kind = patch["kind"]
    if kind == "cut_field":
        base = BARE_COLOURS[int(rng.integers(len(BARE_COLOURS)))]
        period = float(rng.uniform(3.0, 6.0))  # mowing / ploughing stripes
        stripe = np.sign(np.sin(v * np.float32(2 * math.pi / period)))[..., None]
        fill = base * (1.0 + 0.07 * stripe) * (1.0 + 0.06 * mottle)
    elif kind == "cleared":
        base = BARE_COLOURS[int(rng.integers(1, len(BARE_COLOURS)))]
        fill = base * (1.0 + 0.18 * mottle)
    elif kind == "asphalt":
        fill = np.float32(rng.uniform(78, 100)) * np.ones(3, np.float32) * (1.0 + 0.04 * mottle)
        lines = (np.abs(((u / np.float32(2.6)) % 1.0) - 0.5) > 0.46) & (np.abs(np.abs(v) - patch["w"] / 4) < 2.5)
        fill = np.where(lines[..., None], np.float32(200.0), fill)
    else:  # new_buildings: a concrete yard, painted below
        fill = np.float32(rng.uniform(140, 175)) * np.array([1.0, 0.99, 0.95], np.float32) * (1.0 + 0.05 * mottle)
    f = sub.astype(np.float32)
    f = f * (1.0 - a) + np.clip(fill, 0, 255) * a
    sub[:] = np.clip(f + 0.5, 0, 255).astype(np.uint8)
    if kind == "new_buildings":
        _paint_buildings(sub, pt, off, patch, rng, shadow_dir)


def _paint_buildings(sub: np.ndarray, pt: Painter, off: np.ndarray, patch: dict, rng: np.random.Generator,
                     shadow_dir: np.ndarray) -> None:
    """1-6 buildings on a grid inside the yard, each with a cast shadow."""
    nu = int(rng.integers(1, 4))
    nv = int(rng.integers(1, 3))
    d = np.array([math.cos(patch["ang"]), math.sin(patch["ang"])])
    nrm = np.array([-d[1], d[0]])
    cell_l, cell_w = patch["l"] / nu, patch["w"] / nv
    shadow = np.zeros(sub.shape[:2], np.uint8)
    roofs = []
    for i in range(nu):
        for j in range(nv):
            c = (np.array([patch["cx"], patch["cy"]]) + d * (-patch["l"] / 2 + (i + 0.5) * cell_l)
                 + nrm * (-patch["w"] / 2 + (j + 0.5) * cell_w))
            bl, bw = cell_l * rng.uniform(0.55, 0.8), cell_w * rng.uniform(0.55, 0.8)
            cs = _rect_corners(c[0], c[1], bw, bl, patch["ang"])
            height = float(rng.uniform(6, 15))
            hull = cv2.convexHull(pt.p(np.vstack([cs, cs + shadow_dir * height * 0.8]) - off))
            cv2.fillPoly(shadow, [hull], 255, cv2.LINE_AA, 3)
            roofs.append((cs, ROOF_COLOURS[int(rng.integers(len(ROOF_COLOURS)))]))
    a = cv2.GaussianBlur(shadow, (0, 0), 0.8).astype(np.float32)[..., None] / 255.0
    tone = np.array((0.42, 0.46, 0.56), np.float32)
    sub[:] = np.clip(sub.astype(np.float32) * (1 - a + a * tone), 0, 255).astype(np.uint8)
    for cs, col in roofs:
        pt.poly(sub, cs - off, tuple(float(v) for v in col * 0.85))
        ctr = cs.mean(0)
        pt.poly(sub, ctr + (cs - ctr) * 0.9 - off, tuple(float(v) for v in col))


def _cloud_shadows(img: np.ndarray, g: float, ch: WorldChanges, rng: np.random.Generator) -> None:
    """Soft, slightly blue cloud shadows over about `cloud_shadow_cover` of the ground (in place)."""
    h, w = img.shape[:2]
    res = 5.0  # metres per cell of the shadow field
    lh, lw = max(2, int(math.ceil(h * g / res))), max(2, int(math.ceil(w * g / res)))
    noise = value_noise(rng, (lh, lw), ch.cloud_scale_m / res, 3)
    q = float(np.quantile(noise, 1.0 - ch.cloud_shadow_cover))
    soft = 0.25 * float(noise.std()) + 1e-6
    alpha = np.clip((noise - q) / soft + 0.5, 0.0, 1.0)
    full = cv2.resize((alpha * 255.0).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    weight = np.array((1.0, 0.96, 0.82), np.float32) * np.float32(ch.cloud_shadow_depth / 255.0)
    strip = max(64, int(2_000_000 // w))
    for r0 in range(0, h, strip):
        s = full[r0:r0 + strip]
        if not s.any():
            continue
        f = img[r0:r0 + strip].astype(np.float32)
        f *= 1.0 - s.astype(np.float32)[..., None] * weight
        img[r0:r0 + strip] = np.clip(f + 0.5, 0, 255).astype(np.uint8)
