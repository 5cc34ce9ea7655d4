"""Where geoloc_ros finds its non-Python files, the way an installed package does.

Why this module: `Path(__file__).parents[2]` is the repository root only in a source
checkout; after `pip install` or `colcon build` the package lives in site-packages and its
data files (config/, config/scenarios/, launch/, package.xml) are installed by setup.py's
data_files under `<prefix>/share/geoloc_ros/`. Both layouts hold the same relative paths
(`config/localize.yaml`, ...), so a resource is one relative path looked up in an ordered
list of "share" directories:

1. the source checkout the package is imported from (editable install, PYTHONPATH=repo):
   the repository root that holds package.xml next to the package. First, because the code
   being run comes from there too; an older installed copy must not shadow the files you edit;
2. the ament index (`ament_index_python`, a sourced colcon workspace): `<prefix>/share/geoloc_ros`;
3. `<prefix>/share/geoloc_ros` derived from where the imported package lives
   (`<prefix>/lib/pythonX.Y/site-packages/geoloc_ros`), which covers `pip install --prefix`
   and colcon installs that are not sourced;
4. `sys.prefix`, `sysconfig`'s data path and the user base (`pip install --user`).

The packaged weights are package data (inside geoloc_ros/weights/), found next to the code.
A missing resource raises `ResourceNotFoundError` with one line listing where it looked.
Nothing is cached: every call looks again (a few stat calls).
"""
from __future__ import annotations

import site
import sys
import sysconfig
from pathlib import Path

from .errors import GeolocError

PACKAGE = "geoloc_ros"


class ResourceNotFoundError(GeolocError):
    """A data file of geoloc_ros is in none of the places an install or a checkout puts it."""


def package_dir() -> Path:
    """The directory of the imported geoloc_ros package (holds the packaged weights)."""
    return Path(__file__).resolve().parent


def source_root() -> Path | None:
    """The repository root when geoloc_ros is imported from a source checkout, else None.

    A checkout is recognised by package.xml naming geoloc_ros next to the package directory;
    an installed copy sits in site-packages, where there is none.
    """
    root = package_dir().parent
    xml = root / "package.xml"
    try:
        return root if f"<name>{PACKAGE}</name>" in xml.read_text(errors="replace") else None
    except OSError:
        return None


def _ament_share() -> Path | None:
    """share/geoloc_ros from the ament index, or None (no ament_index_python, not registered)."""
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE))
    except (LookupError, OSError, ValueError):  # PackageNotFoundError, AMENT_PREFIX_PATH unset
        return None


def _prefix_of_package() -> Path | None:
    """<prefix> for a package at <prefix>/lib[64]/pythonX.Y/{site,dist}-packages/geoloc_ros."""
    site_dir = Path(__file__).absolute().parent.parent
    if site_dir.name not in ("site-packages", "dist-packages") or not site_dir.parent.name.startswith("python"):
        return None
    return site_dir.parent.parent.parent


def search_dirs() -> list[Path]:
    """The candidate share directories in lookup order (existing or not, no duplicates)."""
    share = Path("share") / PACKAGE
    cands: list[Path | None] = [source_root(), _ament_share()]
    prefix = _prefix_of_package()
    cands.append(prefix / share if prefix else None)
    cands.append(Path(sys.prefix) / share)
    data = sysconfig.get_path("data")
    cands.append(Path(data) / share if data else None)
    try:
        user_base = site.getuserbase()
    except (AttributeError, OSError):
        user_base = None
    cands.append(Path(user_base) / share if user_base else None)
    out: list[Path] = []
    seen: set[Path] = set()
    for c in cands:
        if c is not None and c.resolve() not in seen:  # the ament index and the package's
            seen.add(c.resolve())                      # prefix are usually the same place
            out.append(c.absolute())
    return out


def find(relpath: str | Path) -> Path:
    """The first `<share dir>/relpath` that exists; ResourceNotFoundError (saying where it
    looked) when none does."""
    rel = Path(relpath)
    if rel.is_absolute():
        raise ValueError(f"resource paths are relative to the package's share directory, got {relpath}")
    dirs = search_dirs()
    for d in dirs:
        if (d / rel).exists():
            return d / rel
    where = ", ".join(str(d) for d in dirs)
    raise ResourceNotFoundError(f"{PACKAGE} resource {rel.as_posix()} not found; looked in: {where} "
                                "(install the package with pip or colcon, or run from a source checkout)")


def locate(relpath: str | Path) -> Path:
    """Like `find`, but never raises: where the file is, or where the first candidate would
    hold it. For module-level defaults that must not fail at import; check before use."""
    try:
        return find(relpath)
    except ResourceNotFoundError:
        dirs = search_dirs()
        return (dirs[0] if dirs else Path(sys.prefix) / "share" / PACKAGE) / relpath


def share_dir() -> Path:
    """The share directory holding package.xml (the repository root in a checkout)."""
    return find("package.xml").parent


def config_file(name: str) -> Path:
    """config/<name>, e.g. `config_file("localize.yaml")`."""
    return find(Path("config") / name)


def scenario_file(name: str) -> Path:
    """A packaged flight scenario by name (`short_demo`, `short_demo.yaml`), or by its path
    below config/scenarios/ (`suite/ci/smoke_40s`)."""
    file = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
    try:
        return find(Path("config") / "scenarios" / file)
    except ResourceNotFoundError:
        names = ", ".join(scenario_names()) or "none"
        where = ", ".join(str(d / "config" / "scenarios") for d in search_dirs())
        raise ResourceNotFoundError(f"no packaged scenario {name!r} (packaged: {names}; looked in: {where})") from None


def scenario_names() -> list[str]:
    """Names of the packaged scenarios (from the first share directory that has any)."""
    for d in search_dirs():
        found = sorted(p.stem for p in (d / "config" / "scenarios").glob("*.yaml"))
        if found:
            return found
    return []


def fastdds_profile() -> Path:
    """The Fast DDS XML profile with fast initial discovery announcements."""
    return config_file("fastdds_fast_discovery.xml")


def params_file() -> Path:
    """The node's documented default parameters, config/localize.yaml."""
    return config_file("localize.yaml")


def launch_file(name: str = "localize.launch.py") -> Path:
    """launch/<name>."""
    return find(Path("launch") / name)


def packaged_weights_dir() -> Path:
    """geoloc_ros/weights/: package data shipped inside the package (wheel and colcon alike)."""
    return package_dir() / "weights"


def require_file(path: str | Path, what: str) -> Path:
    """`path` if it is an existing file, else ResourceNotFoundError("<what> not found: path").

    For files a caller asked for explicitly: a missing one is an error, never silently skipped.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ResourceNotFoundError(f"{what} not found: {p}" + (" (a directory)" if p.is_dir() else ""))
    return p
