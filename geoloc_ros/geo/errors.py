"""Errors of the geo core: user mistakes (missing file, no CRS, off-map) get one clear line."""
from ..errors import GeolocError


class GeoError(GeolocError):
    """A problem with a map file or a coordinate, described in one line that names it."""
