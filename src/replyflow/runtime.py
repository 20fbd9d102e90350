"""The process-wide objects built from configuration: engine, sessions, queue, graph access, cipher.

One ``Runtime`` per process (the web app keeps it on ``app.state.runtime``; a worker builds its own). Services
receive what they need from it explicitly; nothing reads globals behind their back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from replyflow.config import Settings
from replyflow.db import make_engine, make_session_factory, session_scope

if TYPE_CHECKING:
    from replyflow.queue import Queue

_current: Runtime | None = None
_current_lock = threading.Lock()


class Runtime:
    def __init__(self, settings: Settings, *, engine: Engine | None = None) -> None:
        from replyflow.models import load_all

        # Every mapper must be known before the first query: a worker process imports only its jobs' modules,
        # and their foreign keys point at tables (workspaces, accounts) those modules never import.
        load_all()
        self.settings = settings
        self.engine = engine or make_engine(settings.database_url)
        self.session_factory: sessionmaker[Session] = make_session_factory(self.engine)
        # Reads that must not queue behind writers: on SQLite a second pool of query-only connections (WAL gives
        # each a snapshot); elsewhere the same engine.
        in_memory = self.engine.url.database in (None, "", ":memory:")
        if self.engine.dialect.name == "sqlite" and not in_memory:
            self.read_engine = make_engine(self.engine.url.render_as_string(hide_password=False), read_only=True)
        else:
            self.read_engine = self.engine
        self.read_session_factory: sessionmaker[Session] = make_session_factory(self.read_engine)
        self._closers: list[Any] = []

    @contextmanager
    def session(self) -> Iterator[Session]:
        with session_scope(self.session_factory) as session:
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for reads only (it never commits anything; on SQLite it cannot write at all)."""
        session = self.read_session_factory()
        try:
            yield session
        finally:
            session.close()  # ends the read transaction; loaded objects stay readable (detached, not expired)

    @cached_property
    def queue(self) -> Queue:
        from replyflow.queue import build_queue

        return build_queue(self.settings)

    def on_close(self, closer: Any) -> None:
        self._closers.append(closer)

    def close(self) -> None:
        for closer in reversed(self._closers):
            closer()
        self._closers.clear()
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


def set_current(runtime: Runtime | None) -> None:
    """Huey jobs are plain functions; they find the runtime of the process they run in here."""
    global _current
    with _current_lock:
        _current = runtime


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("no replyflow runtime in this process")
    return _current
