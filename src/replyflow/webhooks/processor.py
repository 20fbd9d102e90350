"""The delivery processor of a working process: stored deliveries become events and runs on a thread of its own.

The request path only commits the raw delivery and wakes this thread (``replyflow.wakeup``, channel
``DELIVERIES``); the thread drains every pending delivery in batches (``service.drain``: several deliveries per
transaction) and so starts the runs, whose dispatcher intake wakes in turn. A web-only process has no processor:
its deliveries are announced on the job queue instead, for a worker's processor to drain. A slow poll covers
deliveries stored by other processes whose announcement was lost.
"""

from __future__ import annotations

import threading

from replyflow import wakeup
from replyflow.logging import get_logger
from replyflow.runtime import Runtime
from replyflow.webhooks import service

log = get_logger("replyflow.webhooks")


class DeliveryProcessor:
    def __init__(self, runtime: Runtime, *, poll_seconds: float = 5.0) -> None:
        self.runtime = runtime
        self.poll_seconds = poll_seconds
        self._event = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="delivery-processor", daemon=True)

    def start(self) -> None:
        wakeup.register(self.runtime, wakeup.DELIVERIES, self)
        self._event.set()  # whatever a predecessor left pending
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        wakeup.register(self.runtime, wakeup.DELIVERIES, None)
        self._stopping = True
        self._event.set()
        self._thread.join(timeout)

    def wake(self, delay: float | None = None) -> None:
        self._event.set()

    def _run(self) -> None:
        while not self._stopping:
            self._event.wait(self.poll_seconds)
            self._event.clear()
            if self._stopping:
                return
            try:
                service.drain(runtime=self.runtime)
            except Exception as exc:  # the database is away: the next wake-up or poll tries again
                log.warning("webhook_drain_failed", error=exc)
