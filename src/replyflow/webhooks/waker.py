"""Wakes the delivery processor without putting a queue write on the request path.

The request handler only sets an event (about a microsecond); one background thread turns any number of those
into at most one ``enqueue`` per interval. Every notify is followed by an enqueue that starts after it, so a
delivery committed before its notify is always seen by a processor run (and the periodic sweep covers the rest,
for example when the queue itself is down).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from replyflow.logging import get_logger

log = get_logger("replyflow.webhooks")


class Waker:
    def __init__(self, send: Callable[[], None], *, min_interval: float = 0.02, name: str = "webhook-waker") -> None:
        self._send = send
        self._min_interval = min_interval
        self._event = threading.Event()
        self._dirty = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def notify(self) -> None:
        self._dirty = True
        self._event.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        self._event.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._event.wait()
            self._event.clear()
            if self._dirty:
                self._dirty = False
                try:
                    self._send()
                except Exception as exc:  # the sweep picks the deliveries up; never let this thread die
                    log.warning("webhook_wake_failed", error=exc)
            if self._stopping:
                return
            # Coalesce a burst of deliveries into one processor run.
            time.sleep(self._min_interval)
