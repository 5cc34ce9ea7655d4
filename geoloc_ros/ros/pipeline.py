"""The node's latest-frame slot: the one piece of the node's logic that is about threads.

Everything else the node decides (decoding, skipping, the GPS-denial rule, restarts) lives
in geoloc_ros/runtime, shared with the offline replay.
"""
from __future__ import annotations

import threading
from typing import Any


class LatestSlot:
    """A one-item mailbox where the newest item wins: `put` never blocks and replaces an
    item nobody has taken yet (so latency never accumulates); `take` waits for one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._has = False
        self._closed = False
        self.dropped = 0

    def put(self, item: Any) -> bool:
        """Store `item`; True when it replaced an untaken one (a dropped frame)."""
        with self._cond:
            replaced = self._has
            if replaced:
                self.dropped += 1
            self._item, self._has = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> Any:
        """The newest item, or None after `timeout` seconds / when closed."""
        with self._cond:
            if not self._has and not self._closed:
                self._cond.wait(timeout)
            if not self._has:
                return None
            item, self._item, self._has = self._item, None, False
            return item

    def clear(self) -> None:
        with self._cond:
            self._item, self._has = None, False

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
