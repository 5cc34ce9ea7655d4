"""The package's layers only import downwards (docs/DESIGN.md, "Layers").

Each top-level module or subpackage of geoloc_ros has a rank; an import of a module of the
same or a higher rank (found statically, including imports inside functions) fails. So the
ROS layer never reaches into the tools, the localizer never builds retrieval objects, and the
core never imports rclpy.
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "geoloc_ros"

#: rank of every top-level part of the package; imports must go to strictly lower ranks
RANKS = {
    "errors": 0,
    "config": 1, "resources": 1, "timeseries": 1, "geo": 1, "cli": 1,
    "metrics": 2, "bags": 2, "model": 2,
    "data": 3, "outputs": 3,
    "localize": 4, "retrieval": 4, "train": 4,
    "runtime": 5,
    "ros": 6,
    "tools": 7,
}
#: parts that only the ROS layer (and tools that start ROS) may import
ROS_ONLY = ("rclpy", "sensor_msgs", "nav_msgs", "geometry_msgs", "std_msgs", "diagnostic_msgs", "std_srvs",
            "geoloc_ros_msgs", "rcl_interfaces", "rosgraph_msgs", "tf2_ros", "tf2_msgs", "px4_msgs")


def _part(rel: Path) -> str:
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in a file, relative ones resolved."""
    rel = path.relative_to(PKG.parent)
    here = list(rel.with_suffix("").parts)
    if path.name == "__init__.py":
        here = here[:-1] + ["__init__"]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:-node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((name, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
    return out


def test_every_part_has_a_rank():
    parts = {_part(p.relative_to(PKG)) for p in PKG.rglob("*.py")} - {"__init__"}
    assert parts <= set(RANKS), sorted(parts - set(RANKS))


def test_imports_go_only_downwards():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        src = _part(rel)
        if src == "__init__":
            continue
        for name, line in _imports(path):
            parts = name.split(".")
            if parts[0] == "geoloc_ros" and len(parts) > 1:
                dst = parts[1]
                if dst != src and RANKS.get(dst, 99) >= RANKS[src]:
                    bad.append(f"{rel}:{line} ({src}, rank {RANKS[src]}) imports {name} (rank {RANKS.get(dst)})")
            elif parts[0] in ROS_ONLY and RANKS[src] < RANKS["ros"]:
                bad.append(f"{rel}:{line}: the core imports {name}")
    assert not bad, "\n".join(bad)
