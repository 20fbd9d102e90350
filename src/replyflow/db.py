"""Database plumbing: the declarative base, engines for SQLite (WAL) and PostgreSQL, sessions and migrations."""

from __future__ import annotations

import datetime as dt
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC on the way out, whatever the backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _sqlite_pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets the web process write while workers read; NORMAL sync is durable against a killed process
    # (what "stored before 200" promises); busy_timeout makes writers of *other processes* queue instead of
    # failing (inside this process they queue on the SqliteWriteLock first).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_read_pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA query_only=1")  # a read session that tries to write fails loudly, never takes the lock
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class SqliteWriteLock:
    """One writing transaction at a time per database in this process, waited for on a lock.

    SQLite allows one writer. Left to itself, a second writer sleeps in SQLite's busy handler (1, 2, 5 … up to
    100 ms naps) and retries, so under load threads spend most of their time asleep while the lock is free, and
    whoever polls fastest wins. Taking this lock before ``BEGIN IMMEDIATE`` makes the waiters of this process
    queue and wake the moment the holder commits. Writers in other processes still meet SQLite's busy handler.
    """

    def __init__(self, timeout: float = 10.0) -> None:
        self._lock = threading.Lock()
        self._timeout = timeout
        self._holder: int | None = None  # id() of the DB-API connection whose transaction holds the lock
        self._thread: int | None = None

    def acquire(self, holder: Any) -> bool:
        """True once ``holder`` holds the lock; False when this thread already holds it for another connection
        (a nested transaction: let SQLite's busy handler decide) or after the timeout (the same)."""
        if self._thread == threading.get_ident():
            return False
        if not self._lock.acquire(timeout=self._timeout):
            return False
        self._holder, self._thread = id(holder), threading.get_ident()
        return True

    def release(self, holder: Any) -> None:
        if self._holder is not None and self._holder == id(holder):
            self._holder = self._thread = None
            self._lock.release()


_write_locks: weakref.WeakKeyDictionary[Engine, SqliteWriteLock] = weakref.WeakKeyDictionary()


def write_lock(engine: Engine) -> SqliteWriteLock | None:
    """The in-process write lock of a SQLite engine (None for PostgreSQL, whose writers do not exclude each other)."""
    return _write_locks.get(engine)


def _install_write_lock(engine: Engine) -> None:
    lock = SqliteWriteLock()
    _write_locks[engine] = lock
    dialect: Any = engine.dialect
    do_commit, do_rollback = dialect.do_commit, dialect.do_rollback

    def begin(conn: Any) -> None:
        # Take the write lock at BEGIN so two writers never deadlock upgrading a read lock.
        dbapi_conn = conn.connection.dbapi_connection
        held = lock.acquire(dbapi_conn)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            if held:
                lock.release(dbapi_conn)
            raise

    def commit(dbapi_conn: Any) -> None:
        try:
            do_commit(dbapi_conn)
        finally:
            lock.release(dbapi_conn)

    def rollback(dbapi_conn: Any) -> None:
        try:
            do_rollback(dbapi_conn)
        finally:
            lock.release(dbapi_conn)

    def released(dbapi_conn: Any, *_args: Any) -> None:
        lock.release(dbapi_conn)  # a connection dropped mid-transaction must not keep the lock

    dialect.do_commit = commit
    dialect.do_rollback = rollback
    event.listen(engine, "begin", begin)
    for name in ("checkin", "invalidate", "close", "close_detached"):
        event.listen(engine.pool, name, released)


def _sqlite_begin_deferred(conn: Any) -> None:
    # A read: a consistent snapshot under WAL, no write lock, never waiting for a writer.
    conn.exec_driver_sql("BEGIN")


def make_engine(url: str, *, echo: bool = False, read_only: bool = False) -> Engine:
    """An engine for ``url``. ``read_only`` (SQLite): connections that only read, taking no write lock."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 10, "isolation_level": None},
            pool_size=8,
            max_overflow=8,
        )
        if read_only:
            event.listen(engine, "connect", _sqlite_read_pragmas)
            event.listen(engine, "begin", _sqlite_begin_deferred)
        else:
            event.listen(engine, "connect", _sqlite_pragmas)
            _install_write_lock(engine)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=10)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    here = Path(__file__).parent
    cfg = Config()
    cfg.set_main_option("script_location", str(here / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")


def get_session(request: Request) -> Iterator[Session]:
    factory: sessionmaker[Session] = request.app.state.session_factory
    with session_scope(factory) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
