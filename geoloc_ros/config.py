"""Small helpers to load configuration dataclasses from YAML or dicts.

Unknown keys are an error (a typo in a YAML file must not silently fall back to a
default), and the message names the key and the file.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import GeolocError

T = TypeVar("T")


class ConfigError(GeolocError):
    """A configuration file or mapping that does not fit its dataclass."""


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping gives one clear line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return data


def read_json(path: str | Path, error: type[GeolocError] = ConfigError, missing: str = "") -> Any:
    """Read a JSON document with read_yaml's one-line errors, raised as `error` (the caller's
    error type): `missing` (default 'file not found: <path>') when the file is not there."""
    p = Path(path)
    if not p.is_file():
        raise error(missing or f"file not found: {p}")
    try:
        return json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise error(f"{p}: not valid JSON ({exc})") from None


def load_dataclass(cls: type[T], source: Mapping[str, Any] | str | Path | None, where: str = "") -> T:
    """Build dataclass `cls` from a mapping or a YAML path, rejecting unknown keys.

    Nested dataclass fields are built recursively; lists become tuples where the default is
    a tuple.
    """
    if source is None:
        return cls()
    if isinstance(source, (str, Path)):
        where = str(source)
        source = read_yaml(source)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(source) - set(fields))
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {', '.join(map(str, unknown))} for "
                          f"{cls.__name__}{did_you_mean(str(unknown[0]), fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in source.items():
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if dataclasses.is_dataclass(default) and isinstance(value, Mapping):
            value = load_dataclass(type(default), value, where=f"{where}:{name}" if where else name)
        elif isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the closest known name, or '' (difflib): a typo should say
    what was meant, not only that it is wrong."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


_TYPE_WORDS = {bool: "a bool (true or false)", int: "an integer", float: "a number", str: "a string"}
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def typed_scalar(name: str, want: type, value: Any, limits: tuple[float, float] | None = None) -> Any:
    """`value` (as YAML read it) as a `want` (bool, int, float or str) field value, strictly.

    Why: a wrong type must stop a tool at start, not as a TypeError deep in a run. Ints are
    fine for floats; a string that is a decimal number is a float too (YAML 1.1 reads 1e6 as
    a string); a float is never an int and nothing but true/false is a bool. `limits` is an
    inclusive range (NaN is outside it). ConfigError names the field, the value and the rule."""
    if want is float and isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        value = float(value)
    ok = (isinstance(value, bool) if want is bool else
          isinstance(value, int) and not isinstance(value, bool) if want is int else
          isinstance(value, (int, float)) and not isinstance(value, bool) if want is float else
          isinstance(value, str))
    if not ok:
        got = "nothing" if value is None else f"{type(value).__name__} {value!r}"
        raise ConfigError(f"{name} must be {_TYPE_WORDS.get(want, want.__name__)}, got {got}")
    if want is float:
        value = float(value)
    if limits is not None and not (limits[0] <= value <= limits[1]):
        raise ConfigError(f"{name} must be in [{limits[0]:g}, {limits[1]:g}], got {value!r}")
    if want is float and limits is None and not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return value


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (tuples become lists) for JSON/YAML output."""
    def conv(v):
        if dataclasses.is_dataclass(v):
            return {k: conv(x) for k, x in dataclasses.asdict(v).items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(obj)
