"""The coarse stage the localizer calls in its RELOCALIZING state: UAV image -> candidate places.

    reloc = RetrievalRelocalizer.from_files("map.retrieval.json", "weights/retrieval_mean")
    for lat, lon, score in reloc.candidates(uav_north_up, k=5, footprint_m=190.0):
        ...  # run the heatmap model in a window around (lat, lon), confirm with odometry

The UAV image should show about one tile's ground footprint (pass `footprint_m` when the
index holds several scales). Heading known: rotate the frame north-up first and call
`candidates`; heading unknown: `candidates(..., rotations=8)` scores each tile by its best
of K rotated queries. `add_frame` + `candidates_multi` average the descriptors of the last
frames (useful while hovering or at slow speed, when consecutive views overlap).
Nearby hits from overlapping tiles are merged (`nms_m`) so k candidates are k places.
"""
from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import torch

from geoloc_ros.geo.distance import haversine_m
from geoloc_ros.retrieval.index import MapIndex, rotations_of
from geoloc_ros.retrieval.model import RetrievalModel, load_model, pick_device, to_tensor


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
        self._frames: deque[np.ndarray] = deque(maxlen=max(1, history))

    @classmethod
    def from_files(cls, index_path: str | Path, model_path: str | Path, **kw) -> "RetrievalRelocalizer":
        return cls(MapIndex.load(index_path), load_model(model_path), **kw)

    @torch.no_grad()
    def describe(self, image: np.ndarray, rotations: int = 1) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> [rotations, D] unit descriptors (rotation j: 360*j/K degrees)."""
        imgs = rotations_of(image, rotations) if rotations > 1 else [image]
        x = to_tensor(imgs, self.model.cfg.img_size).to(self.device)
        return self.model.describe(x).float().cpu().numpy()

    def _ranked(self, q: np.ndarray, k: int, footprint_m: float | None) -> list[tuple[float, float, float]]:
        pool = max(k * 8, 32)                           # oversample, then merge neighbours
        ids, scores = self.index.search(q, pool, reduce="max", size_m=footprint_m)
        out: list[tuple[float, float, float]] = []
        for i, s in zip(ids, scores):
            lat, lon = float(self.index.lat[i]), float(self.index.lon[i])
            if self.nms_m > 0 and any(haversine_m(lat, lon, a, b) < self.nms_m for a, b, _ in out):
                continue
            out.append((lat, lon, float(s)))
            if len(out) == k:
                break
        return out

    def candidates(self, uav_image_north_up: np.ndarray, k: int = 5, footprint_m: float | None = None,
                   rotations: int = 1) -> list[tuple[float, float, float]]:
        """Top-k (lat, lon, cosine score) tile centres, best first.

        `rotations` > 1 when the heading is unknown (the image is then any-heading).
        """
        return self._ranked(self.describe(uav_image_north_up, rotations), k, footprint_m)

    def add_frame(self, uav_image_north_up: np.ndarray) -> None:
        """Remember one north-up frame's descriptor for `candidates_multi`."""
        self._frames.append(self.describe(uav_image_north_up)[0])

    def candidates_multi(self, k: int = 5, footprint_m: float | None = None) -> list[tuple[float, float, float]]:
        """Candidates for the mean descriptor of the remembered frames (multi-query)."""
        if not self._frames:
            raise ValueError("candidates_multi needs at least one add_frame() first")
        q = np.mean(np.stack(self._frames), 0)
        q /= np.linalg.norm(q) + 1e-12
        return self._ranked(q[None], k, footprint_m)

    def reset(self) -> None:
        self._frames.clear()
