"""geoloc_ros.runtime: messages in, estimates out; the one input path of the node and the replays.

ROS-free: `messages` decodes and validates (duck-typed rclpy or rosbags messages),
`inputs` assembles camera frames and skips bad ones with a reason, `gps` holds the
GPS-denial rule, `session` runs a Localizer from messages.
"""
from .gps import GpsRuleConfig, InitialFixPolicy, Seed
from .inputs import SKIP_REASONS, FrameAssembler, InputConfig, Skip
from .session import Session, StepResult

__all__ = ["FrameAssembler", "GpsRuleConfig", "InitialFixPolicy", "InputConfig", "SKIP_REASONS", "Seed",
           "Session", "Skip", "StepResult"]
