"""Coarse relocalization by cross-view retrieval (MEAN, Safe-Net, QDFL).

A global descriptor per image, a precomputed index of map tiles, nearest-neighbour search;
the heatmap model then refines inside the best tiles. Public API:
`build_model`, `load_model`, `save_model`, `RetrievalConfig`, `MapIndex`, `build_index`,
`RetrievalRelocalizer`.
"""
from geoloc_ros.retrieval.model import (HEADS, RetrievalConfig, RetrievalModel, build_model, describe_images,
                                        load_model, save_model, to_tensor)

__all__ = ["HEADS", "RetrievalConfig", "RetrievalModel", "build_model", "describe_images", "load_model",
           "save_model", "to_tensor", "MapIndex", "build_index", "RetrievalRelocalizer"]


def __getattr__(name):
    # index / relocalizer pull in the geo stack (rasterio); import them only when asked
    if name in ("MapIndex", "build_index"):
        from geoloc_ros.retrieval import index
        return getattr(index, name)
    if name == "RetrievalRelocalizer":
        from geoloc_ros.retrieval.relocalizer import RetrievalRelocalizer
        return RetrievalRelocalizer
    raise AttributeError(name)
