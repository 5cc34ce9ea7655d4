"""Python `logging` of the core (loggers under "geoloc_ros") -> the node's rclpy logger (/rosout).

The core (localize, retrieval, model, ...) is ROS-free and logs with `logging.getLogger(__name__)`.
Without a bridge those records reach no ROS tool: Python's last-resort handler prints
WARNING and above to stderr, outside /rosout and without the node's name. `attach(node)`
puts one handler on the "geoloc_ros" logger that forwards every record to
`node.get_logger()` with the same severity, and stops propagation to the root logger while
attached, so a record appears exactly once (rclpy prints it to the console and publishes it
on /rosout). `detach()` restores the logger as it was.
"""
from __future__ import annotations

import logging
from typing import Any

#: the parent of every core logger (`logging.getLogger(__name__)` in geoloc_ros.*)
CORE_LOGGER = "geoloc_ros"


class RosLogHandler(logging.Handler):
    """Forwards records to an rclpy logger. rclpy ties a severity to each call site (a
    second severity from the same line raises), so each severity has its own call line."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__(logging.DEBUG)
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.name != CORE_LOGGER:
                text = f"[{record.name}] {text}"
            lg = self.ros_logger
            if record.levelno >= logging.CRITICAL:
                lg.fatal(text)
            elif record.levelno >= logging.ERROR:
                lg.error(text)
            elif record.levelno >= logging.WARNING:
                lg.warning(text)
            elif record.levelno >= logging.INFO:
                lg.info(text)
            else:
                lg.debug(text)
        except Exception:  # noqa: BLE001 - a logging failure must never stop the node
            self.handleError(record)


class LogBridge:
    """The attached handler and what `detach` restores."""

    def __init__(self, ros_logger: Any, name: str = CORE_LOGGER) -> None:
        self.logger = logging.getLogger(name)
        self.handler = RosLogHandler(ros_logger)
        self.handler.setFormatter(logging.Formatter("%(message)s"))
        self._saved = (self.logger.level, self.logger.propagate)
        self.logger.addHandler(self.handler)
        self.logger.propagate = False  # no second copy through the root logger / lastResort
        level = _python_level(ros_logger)
        if level is not None:
            self.logger.setLevel(level)  # records below the node's log level are not even formatted

    def detach(self) -> None:
        if self.handler in self.logger.handlers:
            self.logger.removeHandler(self.handler)
            self.logger.setLevel(self._saved[0])
            self.logger.propagate = self._saved[1]


def _python_level(ros_logger: Any) -> int | None:
    """The logging level matching the rclpy logger's effective level (same numbers: 10 debug,
    20 info, 30 warn, 40 error, 50 fatal); None when unknown."""
    try:
        return int(ros_logger.get_effective_level())
    except Exception:  # noqa: BLE001
        return None


def attach(node: Any, name: str = CORE_LOGGER) -> LogBridge:
    """Forward the core's log records to `node.get_logger()` until `detach()`."""
    return LogBridge(node.get_logger(), name)
