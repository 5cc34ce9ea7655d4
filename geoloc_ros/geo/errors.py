"""Errors of the geo core: user mistakes (missing file, no CRS, off-map) get one clear line."""


class GeoError(ValueError):
    """A problem with a map file or a coordinate, described in one line that names it."""
