"""geoloc_ros: keep a UAV localized without GPS by matching its camera against a map.

The core (`geo`, `model`, `data`, `localize`) imports nothing from ROS; `ros/` is a thin
adapter over it, and the tools (train, eval, simulate, replay, bench, demo) call the same core.
"""

__version__ = "0.1.0"
