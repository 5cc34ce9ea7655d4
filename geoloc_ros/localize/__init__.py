"""geoloc_ros.localize: the ROS-free localizer core (filter, gating, search, state machine)."""
from .localizer import Estimate, Frame, Localizer, LocalizerConfig
from .states import LocalizerState

__all__ = ["Estimate", "Frame", "Localizer", "LocalizerConfig", "LocalizerState"]
