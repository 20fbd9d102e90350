"""The dispatcher: the runs table is the queue, and this process's worker threads take their work from it.

One thread per process claims due runs in batches (``Engine.claim_due``: one ``UPDATE … RETURNING``, fair
between accounts) and hands each to a pool of worker threads that move it forward (``Engine.drive``). It sleeps
until the next run is due and is woken at once, in-process, when intake or the engine makes one due
(``replyflow.wakeup``), so a comment never waits for a queue poll. A slow poll (``poll_seconds``) picks
up what other processes scheduled.

Leases belong to this process while it lives: a heartbeat renews those of runs in flight, so a lease only runs out
when its process died, and at start-up the leases of dead predecessors on this host are released at once. The
database run state stays the only truth; nothing is lost with the process.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import Counter

from replyflow import wakeup
from replyflow.automation.engine import ClaimedRun, Engine
from replyflow.logging import get_logger
from replyflow.runtime import Runtime

log = get_logger("replyflow.automation.dispatcher")


class RunDispatcher:
    """Claims due runs and drives them on ``concurrency`` threads; one per process that works."""

    def __init__(
        self,
        runtime: Runtime,
        engine: Engine,
        *,
        concurrency: int,
        poll_seconds: float = 1.0,
        per_account: int | None = None,
    ) -> None:
        self.runtime = runtime
        self.engine = engine
        self.concurrency = concurrency
        # One busy account never takes every thread: the others' comments keep flowing beside a viral post.
        self.per_account = per_account or max(1, concurrency - max(1, concurrency // 4))
        self.poll_seconds = poll_seconds
        self._cond = threading.Condition()
        self._woken = False
        self._wake_at: float | None = None  # monotonic
        self._stopping = False
        self._stopped = threading.Event()  # for the heartbeat, which must not share the dispatcher's condition
        self._in_flight: dict[str, ClaimedRun] = {}
        self._per_account: Counter[str] = Counter()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="run-worker")
        self._thread = threading.Thread(target=self._loop, name="run-dispatcher", daemon=True)
        self._heartbeat = threading.Thread(target=self._beat, name="run-heartbeat", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self.engine.release_dead_leases()
        except Exception as exc:  # the leases then run out on their own
            log.warning("dead_leases_release_failed", error=exc)
        wakeup.register(self.runtime, wakeup.RUNS, self)
        self._thread.start()
        self._heartbeat.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming, let runs in flight finish (their state is saved at every step either way)."""
        wakeup.register(self.runtime, wakeup.RUNS, None)
        self._stopped.set()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._heartbeat.join(timeout=2)

    # -- waking ---------------------------------------------------------------------------------------------

    def wake(self, delay: float | None = None) -> None:
        with self._cond:
            if delay is None or delay <= 0:
                self._woken = True
            else:
                at = time.monotonic() + delay
                if self._wake_at is None or at < self._wake_at:
                    self._wake_at = at
            self._cond.notify()

    def _free(self) -> int:
        return self.concurrency - len(self._in_flight)

    def _wait(self) -> None:
        """Sleep until woken, until the earliest known due time, or for one poll interval, with a thread free."""
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                due = self._woken or (self._wake_at is not None and self._wake_at <= now)
                if due and self._free() > 0:
                    self._woken = False
                    if self._wake_at is not None and self._wake_at <= now:
                        self._wake_at = None
                    return
                timeout = self.poll_seconds
                if self._wake_at is not None:
                    timeout = min(timeout, max(0.0, self._wake_at - now))
                if not self._cond.wait(timeout) and self._free() > 0:
                    return  # the poll: another process may have made runs due

    # -- the loop -------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self._wait()
            if self._stopping:
                return
            try:
                claimed = self._claim()
            except Exception as exc:  # the database is away: try again on the next poll
                log.warning("run_claim_failed", error=exc)
                time.sleep(self.poll_seconds)
                continue
            if claimed:
                continue  # more may be due: claim again as soon as a thread is free
            self._schedule_next()

    def _claim(self) -> list[ClaimedRun]:
        with self._cond:
            free = self._free()
            busy = {account for account, n in self._per_account.items() if n >= self.per_account}
        if free <= 0:
            return []
        claimed = self.engine.claim_due(limit=free, per_account=self.per_account, skip_accounts=busy)
        with self._cond:
            for item in claimed:
                self._in_flight[item.run_id] = item
                self._per_account[item.account_id] += 1
        for item in claimed:
            self._pool.submit(self._drive, item)
        return claimed

    def _schedule_next(self) -> None:
        try:
            moment = self.engine.next_due()
        except Exception as exc:
            log.warning("run_next_due_failed", error=exc)
            return
        if moment is None:
            return
        delay = (moment - self.engine.now()).total_seconds()
        if delay <= 0:
            # Due already but not claimed: held by a live lease elsewhere, or our threads are busy. The poll or
            # a finishing thread comes back to it.
            return
        self.wake(delay + 0.001)

    def _drive(self, item: ClaimedRun) -> None:
        try:
            self.engine.drive(item)
        except Exception as exc:  # the engine records its own failures; this only keeps the thread alive
            log.error("run_drive_crashed", run_id=item.run_id, error=exc, exc_info=exc)
        finally:
            with self._cond:
                self._in_flight.pop(item.run_id, None)
                self._per_account[item.account_id] -= 1
                if self._per_account[item.account_id] <= 0:
                    del self._per_account[item.account_id]
                self._woken = True  # a thread is free: anything due can be claimed now
                self._cond.notify()

    def _beat(self) -> None:
        interval = max(0.5, self.engine.options.lease_seconds / 3)
        while not self._stopped.wait(interval):
            with self._cond:
                held = list(self._in_flight.values())
            try:
                self.engine.renew_leases(held)
            except Exception as exc:  # a missed beat: the lease still has two more intervals to go
                log.warning("run_heartbeat_failed", error=exc)
