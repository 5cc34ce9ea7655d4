"""geoloc_ros.geo: maps, coordinates and distances (no ROS).

Public API: `OrthoMap` / `MapCrop` (metric, rotatable crops from any GeoTIFF/COG),
`LocalENU` and UTM helpers, `haversine_m`, `write_cog`, `GeoError`.
"""
from .cog import overview_factors, write_cog
from .distance import MEAN_EARTH_RADIUS_M, UL14_EARTH_RADIUS_M, haversine_m
from .errors import GeoError
from .frames import LocalENU, cached_transformer, utm_crs_for, utm_to_wgs84, wgs84_to_utm
from .orthomap import MapCrop, OrthoMap

__all__ = [
    "GeoError", "LocalENU", "MapCrop", "MEAN_EARTH_RADIUS_M", "OrthoMap", "UL14_EARTH_RADIUS_M",
    "cached_transformer", "haversine_m", "overview_factors", "utm_crs_for", "utm_to_wgs84",
    "wgs84_to_utm", "write_cog",
]
