"""One background event loop per process that owns the shared ``GraphClient``, for sync callers (huey workers).

Worker threads call ``runner.run_sync(lambda graph: graph.get_page(page_id=..., token=...))``: the coroutine is
created and awaited on the runner's loop, so the client's connection pool lives on exactly one loop. Nothing
is cancelled from outside: a send in flight always finishes (or times out inside the client), which keeps
"did it reach Meta?" answerable.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from replyflow.graph.client import GraphClient
from replyflow.logging import get_logger

log = get_logger("replyflow.graph.runner")

T = TypeVar("T")
CoroFactory = Callable[[GraphClient], Coroutine[Any, Any, T]]


class RunnerClosed(RuntimeError):
    """``run_sync`` after ``close()``."""


class GraphRunner:
    """A daemon thread running an asyncio loop with one ``GraphClient`` built on that loop."""

    def __init__(self, client_factory: Callable[[], GraphClient], *, name: str = "replyflow-graph") -> None:
        self._loop = asyncio.new_event_loop()
        self._closed = False
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._thread = threading.Thread(target=self._run_loop, name=name, daemon=True)
        self._thread.start()
        self.pid = os.getpid()
        try:
            # Built on the loop thread so anything the client binds to a loop binds to this one.
            self._client = self._submit(_build(client_factory)).result()
        except BaseException:
            self._stop_loop()
            raise

    @property
    def client(self) -> GraphClient:
        return self._client

    @property
    def closed(self) -> bool:
        return self._closed

    def run_sync(self, coro_factory: CoroFactory[T]) -> T:
        """Run ``coro_factory(client)`` on the runner's loop and wait for its result (exceptions propagate)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("run_sync called from the runner's own loop; await the coroutine instead")
        with self._lock:
            if self._closed:
                raise RunnerClosed("the Graph runner is closed")
            future = self._submit(_call(coro_factory, self._client))
            self._pending.add(future)
        try:
            return future.result()
        finally:
            with self._lock:
                self._pending.discard(future)

    def close(self, *, timeout: float = 30.0) -> None:
        """Refuse new work, let calls in flight finish (up to ``timeout``), close the client, stop the loop."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._pending)
        _, not_done = concurrent.futures.wait(pending, timeout=timeout)
        if not_done:
            log.warning("graph_runner_close_timeout", unfinished=len(not_done))
        try:
            self._submit(self._client.aclose()).result(timeout=timeout)
        except Exception:
            log.exception("graph_runner_close_failed")
        self._stop_loop()

    def __enter__(self) -> GraphRunner:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


async def _build(factory: Callable[[], GraphClient]) -> GraphClient:
    return factory()


async def _call(factory: CoroFactory[T], client: GraphClient) -> T:
    return await factory(client)


# -- the process-wide runner -----------------------------------------------------------------------------

_runner: GraphRunner | None = None
_runner_lock = threading.Lock()


def get_runner(client_factory: Callable[[], GraphClient]) -> GraphRunner:
    """This process's runner, started on first use. After a fork the child gets its own (threads do not survive)."""
    global _runner
    with _runner_lock:
        if _runner is None or _runner.closed or _runner.pid != os.getpid():
            _runner = GraphRunner(client_factory)
        return _runner


def shutdown_runner(*, timeout: float = 30.0) -> None:
    global _runner
    with _runner_lock:
        runner, _runner = _runner, None
    if runner is not None and runner.pid == os.getpid():
        runner.close(timeout=timeout)
