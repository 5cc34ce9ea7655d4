"""The flags every geoloc tool shares, spelled once, and the one way an entry point ends.

Why one place: the tools had grown their own spellings (`--no-progress` / `--quiet`, `-o` /
`--out` / a positional, `--batch` / `--batch-size`, `--config` for four kinds of file). Each
shared flag is added here with one spelling and one meaning; a tool's older spelling stays
accepted as a hidden alias (`aliases=`), so scripts written against it keep working.

`--config` is always a YAML of the tool's own config dataclass; a model configuration is
`--model-config`, model weights are `--weights`.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .errors import GeolocError

#: errors about a path the user named (missing input, existing output, ...): their message
#: names the file, so they end a tool like a GeolocError rather than as a traceback
USER_PATH_ERRORS: tuple[type[OSError], ...] = (FileNotFoundError, FileExistsError, NotADirectoryError,
                                               IsADirectoryError, PermissionError)


def tool_parser(prog: str, doc: str | None, *, epilog: bool = False) -> argparse.ArgumentParser:
    """A tool's parser: description = the first paragraph of its module docstring (`doc`),
    laid out as written; `epilog` adds the rest of the docstring after the options."""
    parts = (doc or "").strip().split("\n\n", 1)
    return argparse.ArgumentParser(prog=prog, description=parts[0],
                                   epilog=parts[1] if epilog and len(parts) > 1 else None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_aliases(ap: argparse.ArgumentParser, action: argparse.Action, *old: str) -> None:
    """Accept the older spellings `old` of `action`'s option: same destination and parsing,
    not shown in --help (deprecated)."""
    for name in old:
        kw: dict[str, Any] = dict(dest=action.dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS)
        if action.nargs == 0:  # store_true / store_const
            ap.add_argument(name, action="store_const", const=action.const, **kw)
        else:
            ap.add_argument(name, action=type(action), nargs=action.nargs, type=action.type, choices=action.choices,
                            metavar=action.metavar, **kw)


def _add(ap: argparse.ArgumentParser, name: str, aliases: Iterable[str], **kw: Any) -> argparse.Action:
    action = ap.add_argument(name, **kw)
    add_aliases(ap, action, *aliases)
    return action


def add_out(ap: argparse.ArgumentParser, help: str, *, default: str | None = None, required: bool = False,
            aliases: Iterable[str] = ()) -> argparse.Action:
    """`--out PATH`: where the tool writes (a folder or a file, as `help` says)."""
    return _add(ap, "--out", aliases, default=default, required=required, metavar="PATH", help=help)


def add_device(ap: argparse.ArgumentParser, *, default: str | None = "auto",
               help: str = "auto (CUDA when present) | cpu | cuda | cuda:N", aliases: Iterable[str] = ()) -> argparse.Action:
    """`--device`: where the model runs (None: the tool's config decides)."""
    return _add(ap, "--device", aliases, default=default, help=f"{help} (default {default})" if default else help)


def add_config(ap: argparse.ArgumentParser, what: str, *, required: bool = False,
               aliases: Iterable[str] = ()) -> argparse.Action:
    """`--config YAML`: fields of the tool's own config dataclass (`what` names it)."""
    return _add(ap, "--config", aliases, default=None, required=required, metavar="YAML",
                help=f"YAML with {what} fields")


def add_model_config(ap: argparse.ArgumentParser, help: str = "model YAML (AMCFConfig fields); default: the full model",
                     *, aliases: Iterable[str] = ()) -> argparse.Action:
    """`--model-config YAML`: a model configuration (not the tool's own config, not weights)."""
    return _add(ap, "--model-config", aliases, default=None, metavar="YAML", help=help)


def add_weights(ap: argparse.ArgumentParser, help: str, *, default: str | None = None, required: bool = False,
                aliases: Iterable[str] = ()) -> argparse.Action:
    """`--weights PATH`: trained weights (<path>.safetensors + <path>.json)."""
    return _add(ap, "--weights", aliases, default=default, required=required, help=help)


def add_quiet(ap: argparse.ArgumentParser, help: str = "no progress bars", *,
              aliases: Iterable[str] = ("--no-progress",)) -> argparse.Action:
    """`--quiet`: no progress bars (the result is still printed); `--no-progress` is its old name."""
    return _add(ap, "--quiet", aliases, action="store_true", help=help)


def add_batch_size(ap: argparse.ArgumentParser, help: str = "images per forward", *, default: int | None = None,
                   aliases: Iterable[str] = ("--batch",)) -> argparse.Action:
    """`--batch-size N`; `--batch` is its old name."""
    return _add(ap, "--batch-size", aliases, type=int, default=default,
                help=f"{help} (default {default})" if default is not None else help)


def add_set(ap: argparse.ArgumentParser, what: str) -> argparse.Action:
    """`--set KEY=VALUE` (repeatable): override one field of the tool's config after --config."""
    return ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=f"override a {what} field")


def entry_point(build_parser: Callable[[], argparse.ArgumentParser], body: Callable[[argparse.Namespace], int | None],
                *, log_level: int | None = None) -> Callable[[Sequence[str] | None], int]:
    """A tool's `main(argv=None) -> int`: parse, set up logging (`log_level`, when the tool
    logs), run `body` under run_main. Tests call it with an argv list; console scripts with none."""

    def main(argv: Sequence[str] | None = None) -> int:
        args = build_parser().parse_args(argv)
        if log_level is not None:
            logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
        return run_main(body, args)

    return main


def run_main(fn: Callable[..., int | None], *args: Any, **kwargs: Any) -> int:
    """Run a tool's body and return its exit code (None: 0, as for sys.exit): an expected
    error (GeolocError, or a path the user named that is missing or in the way) ends it with
    one `error: ...` line on stderr and exit code 2; anything else is a bug and keeps its
    traceback."""
    try:
        return fn(*args, **kwargs) or 0
    except (GeolocError, *USER_PATH_ERRORS) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
