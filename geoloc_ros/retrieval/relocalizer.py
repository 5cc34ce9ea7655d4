"""The coarse stage the localizer calls in its RELOCALIZING state: UAV image -> candidate places.

    reloc = RetrievalRelocalizer.from_files("map.retrieval.json", "weights/retrieval_mean")
    for lat, lon, score in reloc.candidates(uav_north_up, k=5, footprint_m=190.0):
        ...  # run the heatmap model in a window around (lat, lon), confirm with odometry

The UAV image should show about one tile's ground footprint (pass `footprint_m` when the
index holds several scales). Heading known: rotate the frame north-up first and call
`candidates`; heading unknown: `candidates(..., rotations=8)` scores each tile by its best
of K rotated queries. `add_frame` + `candidates_multi` average the descriptors of the last
frames (Safe-Net's multi-query: consecutive views of the same place, e.g. while hovering or at
slow speed); pass each frame's position (any metric frame, e.g. dead-reckoned ENU) and
`max_shift_m` so that only frames that still overlap the current view enter the average.
`within=(lat, lon, radius_m)` keeps only places the UAV can have reached.
Nearby hits from overlapping tiles are merged (`nms_m`) so k candidates are k places.
"""
from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import torch

from geoloc_ros.geo.distance import haversine_m
from geoloc_ros.retrieval.index import MapIndex, rotations_of
from geoloc_ros.data.tensors import to_tensor
from geoloc_ros.model.device import pick_device
from geoloc_ros.retrieval.model import RetrievalModel, load_model


class RetrievalRelocalizer:
    def __init__(self, index: MapIndex | str | Path, model: RetrievalModel | str | Path,
                 device: str | torch.device = "auto", nms_m: float | None = None, history: int = 5,
                 check_model: bool = True):
        self.index = index if isinstance(index, MapIndex) else MapIndex.load(index)
        self.device = pick_device(device)
        model = model if isinstance(model, RetrievalModel) else load_model(model)
        self.model = model.to(self.device).eval()
        if check_model:
            self.index.check_model(self.model)
        # by default merge direct and diagonal neighbour tiles (same place, overlapping views)
        self.nms_m = float(self.index.meta["stride_m"]) * 1.5 if nms_m is None else float(nms_m)
        self._frames: deque[tuple[np.ndarray, np.ndarray | None]] = deque(maxlen=max(1, history))

    @classmethod
    def from_files(cls, index_path: str | Path, model_path: str | Path, **kw) -> "RetrievalRelocalizer":
        return cls(MapIndex.load(index_path), load_model(model_path), **kw)

    @torch.no_grad()
    def describe(self, image: np.ndarray, rotations: int = 1) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> [rotations, D] unit descriptors (rotation j: 360*j/K degrees)."""
        imgs = rotations_of(image, rotations) if rotations > 1 else [image]
        x = to_tensor(imgs, self.model.eval_size).to(self.device)
        return self.model.describe(x).float().cpu().numpy()

    def _rows(self, footprint_m: float | None, within: tuple[float, float, float] | None) -> np.ndarray | None:
        """Tile ids allowed by the footprint scale and the reachable region (None = all)."""
        if footprint_m is None and within is None:
            return None
        ok = np.ones(len(self.index), dtype=bool)
        if footprint_m is not None:
            size = self.index.size_m
            near = np.abs(size / footprint_m - 1.0) <= 0.2
            if not near.any():                       # no scale close enough: the nearest one
                near = size == size[np.argmin(np.abs(np.log(size / footprint_m)))]
            ok &= near
        if within is not None:
            lat, lon, radius = within
            ok &= haversine_m(lat, lon, self.index.lat, self.index.lon) <= radius
        return np.flatnonzero(ok)

    def _ranked(self, q: np.ndarray, k: int, footprint_m: float | None,
                within: tuple[float, float, float] | None = None) -> list[tuple[float, float, float]]:
        rows = self._rows(footprint_m, within)
        if rows is not None and len(rows) == 0:
            return []
        s = self.index.scores(q, rows).max(0)           # a tile scores its best query row
        pool = min(max(k * 8, 32), len(s))              # oversample, then merge neighbours
        top = np.argpartition(-s, pool - 1)[:pool] if pool < len(s) else np.arange(len(s))
        top = top[np.argsort(-s[top], kind="stable")]
        ids = top if rows is None else rows[top]
        out: list[tuple[float, float, float]] = []
        for i, sc in zip(ids, s[top]):
            lat, lon = float(self.index.lat[i]), float(self.index.lon[i])
            if self.nms_m > 0 and any(haversine_m(lat, lon, a, b) < self.nms_m for a, b, _ in out):
                continue
            out.append((lat, lon, float(sc)))
            if len(out) == k:
                break
        return out

    def candidates(self, uav_image_north_up: np.ndarray, k: int = 5, footprint_m: float | None = None,
                   rotations: int = 1, within: tuple[float, float, float] | None = None
                   ) -> list[tuple[float, float, float]]:
        """Top-k (lat, lon, cosine score) tile centres, best first.

        `rotations` > 1 when the heading is unknown (the image is then any-heading);
        `within=(lat, lon, radius_m)` keeps only tiles whose centre lies within the circle.
        """
        return self._ranked(self.describe(uav_image_north_up, rotations), k, footprint_m, within)

    def add_frame(self, uav_image_north_up: np.ndarray, position: np.ndarray | None = None) -> np.ndarray:
        """Remember one north-up frame's descriptor (and where it was taken, any metric 2-D
        frame) for `candidates_multi`; returns the descriptor [D]."""
        d = self.describe(uav_image_north_up)[0]
        self._frames.append((d, None if position is None else np.asarray(position, np.float64)[:2].copy()))
        return d

    def mean_descriptor(self, position: np.ndarray | None = None, max_shift_m: float | None = None
                        ) -> tuple[np.ndarray, int]:
        """Unit mean of the remembered descriptors and how many entered it. With `position` and
        `max_shift_m`, frames taken farther than that from `position` are left out (they show
        another place); the newest frame always counts."""
        if not self._frames:
            raise ValueError("candidates_multi needs at least one add_frame() first")
        use = [self._frames[-1][0]]
        for d, p in list(self._frames)[:-1]:
            if position is None or max_shift_m is None or p is None or \
                    float(np.hypot(*(p - np.asarray(position, np.float64)[:2]))) <= max_shift_m:
                use.append(d)
        q = np.mean(np.stack(use), 0)
        return q / (np.linalg.norm(q) + 1e-12), len(use)

    def candidates_multi(self, k: int = 5, footprint_m: float | None = None, position: np.ndarray | None = None,
                         max_shift_m: float | None = None, within: tuple[float, float, float] | None = None
                         ) -> list[tuple[float, float, float]]:
        """Candidates for the mean descriptor of the remembered frames (multi-query)."""
        q, _ = self.mean_descriptor(position, max_shift_m)
        return self._ranked(q[None], k, footprint_m, within)

    @property
    def img_size(self) -> int:
        """Input side (px) of the descriptor model: the query image needs no larger side."""
        return int(self.model.eval_size)

    def reset(self) -> None:
        self._frames.clear()


def place_recognizer_from_config(cfg, map_path: str | Path, device="cpu") -> tuple[RetrievalRelocalizer | None, str]:
    """The place recognizer a LocalizerConfig asks for (`relocalization: retrieval`), built from
    its index and model paths, and '' - or (None, why not) when it cannot be built (the
    localizer then relocalizes with the window sweep). The node and the replay call this and
    pass the result to `Localizer(..., relocalization=...)`."""
    if getattr(cfg, "relocalization", "sweep") != "retrieval":
        return None, ""
    if not cfg.retrieval_model:
        return None, "localizer.retrieval_model is not set"
    from .index import default_index_prefix

    index = cfg.retrieval_index or str(default_index_prefix(map_path)) + ".json"
    try:
        return RetrievalRelocalizer.from_files(index, cfg.retrieval_model, device=device,
                                               history=cfg.retrieval_frames), ""
    except (ValueError, OSError, KeyError) as exc:  # MapIndexError / WeightsError are ValueErrors
        return None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
