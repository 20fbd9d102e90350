"""Inbox storage: the portable insert-or-skip for events (deliveries are stored by ``webhooks.writer``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert, Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from replyflow.webhooks.models import WebhookEvent

# Table-level (Core) statements: through a Session an ORM-entity insert takes the bulk path and reports no rowcount.
_EVENTS: Table = WebhookEvent.__table__  # type: ignore[assignment]


def _insert_event_statement(dialect: str) -> Insert:
    # RETURNING, not rowcount: psycopg reports -1 for this statement through SQLAlchemy.
    if dialect == "postgresql":
        return postgresql.insert(_EVENTS).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(_EVENTS.c.id)
    if dialect == "sqlite":
        return sqlite.insert(_EVENTS).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(_EVENTS.c.id)
    raise RuntimeError(f"unsupported database dialect {dialect!r}")


_EVENT_INSERTS: dict[str, Insert] = {}


def insert_event_if_new(session: Session, row: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT (dedupe_key) DO NOTHING; True when the row is new.

    The unique key decides, not a prior SELECT, so two processors racing on the same update cannot both win.
    """
    dialect = session.get_bind().dialect.name
    statement = _EVENT_INSERTS.get(dialect)
    if statement is None:
        statement = _EVENT_INSERTS[dialect] = _insert_event_statement(dialect)
    return session.execute(statement, row).first() is not None


def insert_event(session: Session, row: dict[str, Any]) -> None:
    session.execute(insert(_EVENTS), row)
