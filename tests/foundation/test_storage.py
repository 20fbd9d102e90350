"""Storage: migrations build the schema the models describe, on SQLite (WAL) and PostgreSQL alike."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from replyflow.db import Base, make_engine, make_session_factory, migrate, session_scope
from replyflow.workspaces.models import Workspace


def test_migrations_match_models(database_url: str) -> None:
    migrate(database_url)
    migrate(database_url)  # idempotent
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
            assert diff == [], f"models and migrations disagree: {diff}"
            tables = set(inspect(conn).get_table_names())
        assert {"workspaces", "api_keys", "users", "accounts"} <= tables
    finally:
        engine.dispose()


def test_round_trip_keeps_utc(database_url: str) -> None:
    migrate(database_url)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    moment = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    try:
        with session_scope(factory) as session:
            session.add(Workspace(id="ws_roundtrip", name="Round trip", created_at=moment))
        with session_scope(factory) as session:
            loaded = session.scalar(select(Workspace).where(Workspace.id == "ws_roundtrip"))
            assert loaded is not None
            assert loaded.created_at == moment
            assert loaded.created_at.tzinfo is not None
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/wal.db")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()


def test_foreign_keys_are_enforced(database_url: str) -> None:
    from sqlalchemy.exc import IntegrityError

    from replyflow.workspaces.models import ApiKey

    migrate(database_url)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    try:
        with pytest.raises(IntegrityError), session_scope(factory) as session:
            session.add(ApiKey(workspace_id="ws_missing", prefix="rf_x", key_hash="0" * 64))
    finally:
        engine.dispose()


def test_a_worker_process_knows_every_table(tmp_path: object) -> None:
    """A worker imports only its jobs' modules; their foreign keys must still resolve when a session flushes.

    Found by a distributed run (PostgreSQL, Redis, a separate ``replyflow worker``): the first run insert failed
    with NoReferencedTableError because nothing in that process had imported the workspaces table.
    """
    import subprocess
    import sys

    code = (
        "import replyflow.cli\n"
        "from replyflow.config import load_settings\n"
        "from replyflow.runtime import Runtime\n"
        f"rt = Runtime(load_settings(data_dir='{tmp_path}', database_url='sqlite:///{tmp_path}/w.db'))\n"
        "rt.queue\n"
        "from replyflow.db import Base\n"
        "Base.metadata.sorted_tables  # resolves every foreign key, as a flush does\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]
