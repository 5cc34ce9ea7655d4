"""The one base class for errors a user can cause and fix (bad input, bad configuration).

Why one base: entry points (the node, every CLI) catch `GeolocError` and print its one-line
message with exit code 2, while anything else is a bug and keeps its traceback. It derives
from ValueError so that callers written against the older per-module error types (which
were ValueErrors) keep working.
"""
from __future__ import annotations


class GeolocError(ValueError):
    """An expected error with a one-line message that says what to change."""
