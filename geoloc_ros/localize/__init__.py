"""geoloc_ros.localize: the ROS-free localizer core (filter, evidence, tracker, search, states)."""
from .config import LocalizerConfig
from .localizer import Localizer
from .states import LocalizerState
from .types import Estimate, Frame

__all__ = ["Estimate", "Frame", "Localizer", "LocalizerConfig", "LocalizerState"]
