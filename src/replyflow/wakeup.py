"""In-process wake-ups: work made due in this process reaches the thread that does it without a queue round trip.

A component that works in this process registers under a channel for its runtime while it runs: the run
dispatcher (``RUNS``) and the delivery processor (``DELIVERIES``). Producers call :func:`notify` after the commit
that made work due; where nothing is registered (a web-only process, or tests driving things by hand) it returns
False and the caller falls back to the job queue.
"""

from __future__ import annotations

import threading
import weakref
from typing import Protocol

from replyflow.runtime import Runtime

RUNS = "runs"
DELIVERIES = "deliveries"


class Waker(Protocol):
    def wake(self, delay: float | None = None) -> None:
        """Something is due now (``delay`` None or 0) or will be in ``delay`` seconds."""


_wakers: weakref.WeakKeyDictionary[Runtime, dict[str, Waker]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def register(runtime: Runtime, channel: str, waker: Waker | None) -> None:
    with _lock:
        channels = _wakers.setdefault(runtime, {})
        if waker is None:
            channels.pop(channel, None)
        else:
            channels[channel] = waker


def notify(runtime: Runtime, channel: str, delay: float | None = None) -> bool:
    """Wake the registered component; False when there is none in this process (use the queue)."""
    with _lock:
        waker = _wakers.get(runtime, {}).get(channel)
    if waker is None:
        return False
    waker.wake(delay)
    return True
