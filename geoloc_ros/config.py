"""Small helpers to load configuration dataclasses from YAML or dicts.

Unknown keys are an error (a typo in a YAML file must not silently fall back to a
default), and the message names the key and the file.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
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
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {', '.join(unknown)} for {cls.__name__}")
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
