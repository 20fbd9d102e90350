"""Inbox storage: the one-INSERT fast path for deliveries and the portable insert-or-skip for events."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Insert, Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from replyflow.db import utcnow
from replyflow.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEvent

# Table-level (Core) statements: through a Session an ORM-entity insert takes the bulk path and reports no rowcount.
_DELIVERIES: Table = WebhookDelivery.__table__  # type: ignore[assignment]
_EVENTS: Table = WebhookEvent.__table__  # type: ignore[assignment]
_INSERT_DELIVERY = insert(_DELIVERIES)


def store_delivery(engine: Engine, *, body: bytes, secret_index: int) -> int:
    """Store a verified delivery and commit before returning its id (the "stored before 200" promise).

    Core, not the ORM: this runs on the request path for every delivery and nothing here needs an identity map.
    """
    with engine.begin() as conn:
        result = conn.execute(
            _INSERT_DELIVERY,
            {
                "received_at": utcnow(),
                "body": body,
                "body_size": len(body),
                "secret_index": secret_index,
                "status": DeliveryStatus.PENDING.value,
                "attempts": 0,
            },
        )
        primary_key = result.inserted_primary_key
    assert primary_key is not None
    return int(primary_key[0])


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
