"""The ROS 2 workspace recipe, checked without building: the package.xml keys resolve with rosdep,
scripts/make_workspace.sh parses and prints the README's commands, setup_env installs the tools.

(test_ros2_launch.py builds and runs the workspace where the vendored launch stack is present.)
"""
from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_XMLS = [ROOT / "package.xml", ROOT / "interfaces" / "geoloc_ros_msgs" / "package.xml"]

# ROS packages released for Humble, Jazzy and Kilted (rosdistro distribution.yaml) that the
# package.xml files name, and rosdep keys of rosdep/python.yaml (Debian/Ubuntu); a new
# dependency goes here only after checking it there. Not keys (rosdep install fails on them):
# ament_python, python3-pymavlink (only python3-pymavlink-pip), python3-timm/-safetensors/-rosbags.
RELEASED = {"ament_cmake", "rosidl_default_generators", "rosidl_default_runtime", "rclpy", "std_msgs", "std_srvs",
            "sensor_msgs", "nav_msgs", "geometry_msgs", "diagnostic_msgs", "geographic_msgs", "launch", "launch_ros"}
ROSDEP_PYTHON = {"python3-numpy", "python3-opencv", "python3-pyproj", "python3-rasterio", "python3-torch",
                 "python3-yaml", "python3-tqdm", "python3-matplotlib", "python3-pytest"}
WORKSPACE = {"geoloc_ros", "geoloc_ros_msgs"}


def _deps(path: Path) -> set[str]:
    root = ET.parse(path).getroot()
    return {e.text.strip() for e in root if e.tag.endswith("depend") and e.text}


def test_every_package_xml_dependency_resolves():
    for path in PACKAGE_XMLS:
        unknown = _deps(path) - RELEASED - ROSDEP_PYTHON - WORKSPACE
        assert not unknown, f"{path.relative_to(ROOT)}: no rosdep key / released package for {sorted(unknown)}"


def test_make_workspace_script_and_readme_agree():
    script = ROOT / "scripts" / "make_workspace.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    help_text = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=30).stdout
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## ROS 2 workspace"):]
    for line in ("source underlay.bash", "colcon build --base-paths src src/geoloc_ros/interfaces",
                 "source install/setup.bash", "ros2 launch geoloc_ros localize.launch.py"):
        assert line in help_text and line in section, line
    assert "./scripts/make_workspace.sh" in section


def test_setup_env_installs_the_tools():
    tools = (ROOT / "requirements" / "tools.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", tools, re.M))
    assert {"ruff", "colcon-core", "colcon-ros", "colcon-cmake", "colcon-bash", "osrf-pycommon", "psutil",
            "argcomplete"} <= set(pins)
    setup_env = (ROOT / "scripts" / "setup_env.sh").read_text()
    assert "requirements/tools.txt" in setup_env and "--no-deps -r \"$ROOT/requirements/tools.txt\"" in setup_env
