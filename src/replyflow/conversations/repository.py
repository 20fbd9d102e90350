"""Queries and small atomic writes for threads, messages, follow-ups, links and per-run engagement."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Insert, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from replyflow.automation.models import Run, SendState
from replyflow.automation.sql import insert_ignore_returning as insert_ignore_returning
from replyflow.conversations.models import RunEngagement, Thread, ThreadMessage
from replyflow.db import Base

ENGAGEMENT_COUNTERS = ("replies", "taps", "clicks", "links", "follow_ups")


def _insert(session: Session, model: type[Base]) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def insert_ignore(session: Session, model: type[Base], values: dict[str, Any]) -> bool:
    """``INSERT … ON CONFLICT DO NOTHING``; True when the row is new (any unique constraint may refuse it)."""
    statement: Insert = _insert(session, model).values(**values).on_conflict_do_nothing()
    result = session.execute(statement)
    return bool(getattr(result, "rowcount", 0))


def insert_ignore_rows(session: Session, model: type[Base], rows: list[dict[str, Any]]) -> None:
    """``insert_ignore`` of several rows (same keys) in one statement."""
    if rows:
        session.execute(_insert(session, model).values(rows).on_conflict_do_nothing())


def bump_engagement(*, session: Session, run_id: str, account_id: str, at: dt.datetime, **deltas: int) -> None:
    """Add to one run's engagement counters atomically (created on first use); ``at`` feeds the analytics refresh."""
    unknown = set(deltas) - set(ENGAGEMENT_COUNTERS)
    if unknown:
        raise ValueError(f"unknown engagement counters: {sorted(unknown)}")
    values: dict[str, Any] = {name: deltas.get(name, 0) for name in ENGAGEMENT_COUNTERS}
    statement = _insert(session, RunEngagement).values(run_id=run_id, account_id=account_id, updated_at=at, **values)
    table = RunEngagement.__table__
    updates: dict[str, Any] = {name: table.c[name] + statement.excluded[name] for name in deltas}
    updates["updated_at"] = statement.excluded.updated_at
    session.execute(statement.on_conflict_do_update(index_elements=["run_id"], set_=updates))


def thread_for(*, session: Session, account_id: str, igsid: str, for_update: bool = False) -> Thread | None:
    query = select(Thread).where(Thread.account_id == account_id, Thread.igsid == igsid)
    if for_update:
        query = query.with_for_update()
    return session.scalar(query)


def message_by_key(*, session: Session, account_id: str, dedupe_key: str) -> ThreadMessage | None:
    return session.scalar(
        select(ThreadMessage).where(ThreadMessage.account_id == account_id, ThreadMessage.dedupe_key == dedupe_key)
    )


def message_by_mid(*, session: Session, account_id: str, mid: str) -> ThreadMessage | None:
    return session.scalar(
        select(ThreadMessage).where(ThreadMessage.account_id == account_id, ThreadMessage.mid == mid).limit(1)
    )


def latest_dm_run(*, session: Session, account_id: str, igsid: str) -> Run | None:
    """The most recent run whose private reply reached this person (for threads the engine did not record)."""
    return session.scalar(
        select(Run)
        .where(
            Run.account_id == account_id,
            Run.dm_state == SendState.SENT.value,
            (Run.dm_recipient_id == igsid) | ((Run.dm_recipient_id.is_(None)) & (Run.from_id == igsid)),
        )
        .order_by(Run.dm_sent_at.desc(), Run.id.desc())
        .limit(1)
    )


def run_by_dm_mid(*, session: Session, account_id: str, mid: str) -> Run | None:
    return session.scalar(select(Run).where(Run.account_id == account_id, Run.dm_message_id == mid).limit(1))


def messages_of(
    *, session: Session, thread_ids: Sequence[str], limit_per_thread: int
) -> dict[str, list[ThreadMessage]]:
    """Each thread's messages, oldest first: the newest ``limit_per_thread`` of each (ranked in the database)."""
    found: dict[str, list[ThreadMessage]] = {thread_id: [] for thread_id in thread_ids}
    if not thread_ids:
        return found
    rank = (
        func.row_number()
        .over(
            partition_by=ThreadMessage.thread_id,
            order_by=(ThreadMessage.created_at.desc(), ThreadMessage.id.desc()),
        )
        .label("rank")
    )
    newest = select(ThreadMessage.id.label("id"), rank).where(ThreadMessage.thread_id.in_(list(thread_ids))).subquery()
    rows = session.scalars(
        select(ThreadMessage)
        .join(newest, newest.c.id == ThreadMessage.id)
        .where(newest.c.rank <= limit_per_thread)
        .order_by(ThreadMessage.thread_id, ThreadMessage.created_at, ThreadMessage.id)
    )
    for message in rows:
        found[message.thread_id].append(message)
    return found
