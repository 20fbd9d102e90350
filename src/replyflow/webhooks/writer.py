"""Group commit for the request path: one thread writes waiting deliveries in a single transaction each round.

Each request hands its verified body to the writer and waits for its own row's id, which is only given once the
transaction holding that row has committed, so "stored before 200" holds for every request in the group. Under
load many requests share one commit (on PostgreSQL a commit is a WAL flush); alone, a request costs one short
transaction as before. The statement is plain DB-API SQL on a connection the thread keeps: this is the hottest
path in the product, and the ORM and Core layers roughly tripled its cost when measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from replyflow.db import utcnow, write_lock
from replyflow.logging import get_logger
from replyflow.webhooks.models import DeliveryStatus, WebhookDelivery

log = get_logger("replyflow.webhooks")

_LOCK_TIMEOUT = 10.0  # as the engine's busy_timeout: then the request gets a 503 and Meta retries
_LOCK_POLL = 0.0005
_COLUMNS = ("received_at", "body", "body_size", "secret_index", "status", "attempts")


class WriterClosed(RuntimeError):
    """The app is shutting down; the delivery was not stored (the caller answers 503 and Meta retries)."""


@dataclass
class _Waiting:
    body: bytes
    secret_index: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[int]


def _insert_sql(paramstyle: str) -> str:
    if paramstyle == "qmark":
        marks = ", ".join("?" for _ in _COLUMNS)
    elif paramstyle in ("format", "pyformat"):
        marks = ", ".join("%s" for _ in _COLUMNS)
    else:  # pragma: no cover - replyflow supports SQLite and PostgreSQL only
        raise RuntimeError(f"unsupported DB-API paramstyle {paramstyle!r}")
    table = WebhookDelivery.__tablename__
    return f"INSERT INTO {table} ({', '.join(_COLUMNS)}) VALUES ({marks}) RETURNING id"  # noqa: S608


def _sqlite_time(value: dt.datetime) -> str:
    # The text form SQLAlchemy's SQLite DATETIME (under UTCDateTime) writes and reads: naive UTC.
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _resolve(future: asyncio.Future[int], value: int | BaseException) -> None:
    if future.done():  # the request was cancelled (client gone); its row is stored all the same
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


def _resolve_all(outcomes: list[tuple[asyncio.Future[int], int | BaseException]]) -> None:
    for future, value in outcomes:
        _resolve(future, value)


class DeliveryWriter:
    def __init__(self, engine: Engine, *, max_batch: int = 200, name: str = "webhook-writer") -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._sql = _insert_sql(engine.dialect.paramstyle)
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Waiting | None] = queue.SimpleQueue()
        self._connection: Any = None
        self._lock = write_lock(engine)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def store(self, *, body: bytes, secret_index: int) -> int:
        """The delivery's id, once it is committed."""
        if self._closed:
            raise WriterClosed("the webhook writer is stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._queue.put(_Waiting(body=body, secret_index=secret_index, loop=loop, future=future))
        return await future

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then close the connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._write(batch)
        self._close_connection()

    def _write(self, batch: list[_Waiting]) -> None:
        results: list[int | BaseException]
        try:
            reused = self._connection is not None
            try:
                ids = self._insert(batch)
            except Exception:
                if not reused:
                    raise
                # The kept connection may have gone stale (a database restart, an idle timeout): retry once on a
                # fresh one. Should the first commit have landed after all, the copy is a harmless duplicate
                # delivery (events are deduplicated by natural key).
                self._close_connection(invalidate=True)
                ids = self._insert(batch)
            results = list(ids)
        except Exception as exc:
            log.error("webhook_store_failed", error=exc, batch=len(batch))
            self._close_connection(invalidate=True)
            results = [exc] * len(batch)
        # One wake-up per event loop for the whole batch, not one per delivery: each call_soon_threadsafe is a
        # write to the loop's self-pipe and a GIL hand-over, and the batch commits (or fails) as one.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int | BaseException]]] = {}
        for waiting, result in zip(batch, results, strict=True):
            by_loop.setdefault(waiting.loop, []).append((waiting.future, result))
        for loop, outcomes in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that event loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(_resolve_all, outcomes)

    def _connect(self) -> Any:
        connection = self._engine.raw_connection()
        if self._sqlite:
            # Waits for the write lock are ours (see _begin_sqlite), not SQLite's busy handler.
            connection.execute("PRAGMA busy_timeout=0")
        return connection

    def _begin_sqlite(self, cursor: Any) -> None:
        """BEGIN IMMEDIATE after taking the process's write lock (see ``replyflow.db.SqliteWriteLock``); a writer in
        another process is retried every half millisecond rather than through SQLite's napping busy handler."""
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")  # the driver runs in autocommit mode; see replyflow.db
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
            time.sleep(_LOCK_POLL)

    def _insert(self, batch: list[_Waiting]) -> list[int]:
        if self._connection is None:
            self._connection = self._connect()
        connection = self._connection
        now = utcnow()
        received_at: Any = _sqlite_time(now) if self._sqlite else now
        pending = DeliveryStatus.PENDING.value
        cursor = connection.cursor()
        dbapi = connection.dbapi_connection
        locked = self._lock is not None and self._lock.acquire(dbapi)
        try:
            if self._sqlite:
                self._begin_sqlite(cursor)
            ids = []
            for waiting in batch:
                cursor.execute(
                    self._sql, (received_at, waiting.body, len(waiting.body), waiting.secret_index, pending, 0)
                )
                ids.append(int(cursor.fetchone()[0]))
            if self._sqlite:
                cursor.execute("COMMIT")
            else:
                connection.commit()
            return ids
        except BaseException:
            with contextlib.suppress(Exception):  # the connection is gone; the caller discards it
                connection.rollback()
            raise
        finally:
            cursor.close()
            if locked and self._lock is not None:
                self._lock.release(dbapi)

    def _close_connection(self, *, invalidate: bool = False) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail; it is dropped anyway
                if invalidate:
                    self._connection.invalidate()
                else:
                    if self._sqlite:  # back to the pool with the engine's usual busy timeout
                        self._connection.execute("PRAGMA busy_timeout=10000")
                    self._connection.close()
            self._connection = None
