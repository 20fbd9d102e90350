"""Running the queue consumer: threads inside ``replyflow serve`` or a standalone ``replyflow worker`` process."""

from __future__ import annotations

import signal
import threading
from types import FrameType

from replyflow.logging import get_logger
from replyflow.runtime import Runtime, set_current

log = get_logger("replyflow.worker")


class EmbeddedWorker:
    """The working half of a process: the delivery processor, the run dispatcher and huey's consumer.

    Comments take the in-process path (request → processor → dispatcher, each woken directly, the runs table as
    the queue); huey carries periodic jobs (sweeps, reconciler, token health), follow-ups, and the announcements
    of deliveries stored by web-only processes. No signal handlers of its own: the process owner keeps them.
    """

    def __init__(self, runtime: Runtime, *, concurrency: int | None = None) -> None:
        from replyflow.automation.dispatcher import RunDispatcher
        from replyflow.automation.engine import engine_for
        from replyflow.webhooks.processor import DeliveryProcessor

        self.runtime = runtime
        self.concurrency = concurrency or runtime.settings.worker_concurrency
        self._consumer = runtime.queue.create_consumer(workers=max(2, self.concurrency // 2))
        # huey's start() installs its own SIGINT/SIGTERM handlers; the process owner (uvicorn or run_forever)
        # keeps the signals and stops us explicitly.
        self._consumer._set_signal_handlers = lambda: None
        self.dispatcher = RunDispatcher(runtime, engine_for(runtime), concurrency=self.concurrency)
        self.processor = DeliveryProcessor(runtime)
        self._started = False

    def start(self) -> None:
        set_current(self.runtime)
        self.dispatcher.start()
        self.processor.start()
        self._consumer.start()
        self._started = True
        log.info("worker_started", concurrency=self.concurrency, queue=type(self.runtime.queue.huey).__name__)

    def stop(self, *, graceful: bool = True) -> None:
        if self._started:
            self.processor.stop()
            self._consumer.stop(graceful=graceful)
            self.dispatcher.stop()
            self._started = False
            log.info("worker_stopped")


def run_forever(runtime: Runtime, *, concurrency: int) -> None:
    """``replyflow worker``: run until SIGTERM or SIGINT, then finish running jobs and exit 0."""
    stop = threading.Event()

    def _handle(signum: int, _frame: FrameType | None) -> None:
        log.info("worker_signal", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)
    worker = EmbeddedWorker(runtime, concurrency=concurrency)
    worker.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        worker.stop(graceful=True)
