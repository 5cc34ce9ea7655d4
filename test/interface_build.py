"""Build a small ROS 2 interface package (a subset of px4_msgs, tf2_msgs) for a test.

The PyPI ROS wheels ship rosidl and ament_cmake but neither px4_msgs nor tf2_msgs. The
node's optional outputs (PX4 AuxGlobalPosition, /tf) import those at start, so the tests
generate the few messages they need exactly the way scripts/build_msgs.sh builds
geoloc_ros_msgs (cmake + rosidl_generate_interfaces against the venv), but into a
temporary prefix. `InterfacePrefix.env()` is what a process needs to import them: the
Python path, the libraries (rosidl's type-support dispatch searches LD_LIBRARY_PATH at
run time) and the ament index.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "test" / "data" / "interfaces"

CMAKE = """cmake_minimum_required(VERSION 3.16)
project({name})
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
{finds}
rosidl_generate_interfaces(${{PROJECT_NAME}} {msgs} {deps})
ament_export_dependencies(rosidl_default_runtime)
ament_package()
"""

PACKAGE_XML = """<?xml version="1.0"?>
<package format="3">
  <name>{name}</name>
  <version>0.0.1</version>
  <description>test subset of {name} (geoloc_ros tests)</description>
  <maintainer email="test@example.org">geoloc_ros tests</maintainer>
  <license>BSD-3-Clause</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
{depends}
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
"""


@dataclass
class InterfacePrefix:
    prefix: Path

    @property
    def site(self) -> Path:
        v = f"python{sys.version_info.major}.{sys.version_info.minor}"
        return self.prefix / "lib" / v / "site-packages"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)

        def prepend(key: str, value: Path) -> None:
            env[key] = str(value) + (os.pathsep + env[key] if env.get(key) else "")
        prepend("PYTHONPATH", self.site)
        prepend("LD_LIBRARY_PATH", self.prefix / "lib")
        prepend("AMENT_PREFIX_PATH", self.prefix)
        return env

    def activate(self, monkeypatch) -> None:
        """Make this process (and the processes it starts) see the packages. The dynamic
        loader read LD_LIBRARY_PATH when this process started, and rosidl's type-support
        dispatch dlopens the libraries by bare name: they are loaded here by path first
        (a later dlopen of the same soname finds the loaded one)."""
        for k, v in self.env().items():
            if os.environ.get(k) != v:
                monkeypatch.setenv(k, v)
        monkeypatch.syspath_prepend(str(self.site))
        pending = sorted((self.prefix / "lib").glob("lib*.so"))
        while pending:  # dependency order unknown: retry until nothing more loads
            failed = []
            for lib in pending:
                try:
                    ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
                except OSError:
                    failed.append(lib)
            if len(failed) == len(pending):
                raise OSError(f"cannot load {', '.join(map(str, failed))}")
            pending = failed


def build_interfaces(name: str, msg_files: list[str], prefix: Path, *, depends: tuple[str, ...] = (),
                     timeout: float = 600.0) -> InterfacePrefix:
    """Generate and install package `name` with test/data/interfaces/<msg_files> into `prefix`."""
    venv = Path(sys.prefix)
    src = prefix.parent / f"src_{name}"
    (src / "msg").mkdir(parents=True, exist_ok=True)
    for f in msg_files:
        (src / "msg" / f).write_text((DATA / f).read_text())
    finds = "\n".join(f"find_package({d} REQUIRED)" for d in depends)
    msgs = " ".join(f'"msg/{f}"' for f in msg_files)
    deps = ("DEPENDENCIES " + " ".join(depends)) if depends else ""
    (src / "CMakeLists.txt").write_text(CMAKE.format(name=name, finds=finds, msgs=msgs, deps=deps))
    (src / "package.xml").write_text(PACKAGE_XML.format(
        name=name, depends="\n".join(f"  <depend>{d}</depend>" for d in depends)))
    build = prefix.parent / f"build_{name}"
    env = dict(os.environ)
    for key in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH"):
        env[key] = str(venv) + (os.pathsep + env[key] if env.get(key) else "")
    py = sys.executable
    inc = sysconfig.get_paths()["include"]
    cmds = [["cmake", "-S", str(src), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={prefix}",
             f"-DPython3_EXECUTABLE={py}", f"-DPython3_INCLUDE_DIR={inc}", "-DBUILD_TESTING=OFF",
             "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_INSTALL_RPATH={prefix / 'lib'}"],
            ["cmake", "--build", str(build), "-j2"],
            ["cmake", "--install", str(build)]]
    log = prefix.parent / f"build_{name}.log"
    with log.open("w") as fh:
        for cmd in cmds:
            r = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
            if r.returncode != 0:
                raise RuntimeError(f"building {name} failed ({' '.join(cmd[:2])}); log tail:\n"
                                   + "\n".join(log.read_text().splitlines()[-30:]))
    out = InterfacePrefix(prefix)
    check = subprocess.run([py, "-c", f"import {name}.msg"], env=out.env(), capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"{name} built but does not import:\n{check.stderr[-2000:]}")
    return out
