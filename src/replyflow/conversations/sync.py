"""Threads for every DM: the repair pass that records private replies the engine's hook did not (yet) record."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from replyflow.automation.models import Run, SendState
from replyflow.conversations.models import MessageKind, SyncCursor, ThreadMessage
from replyflow.conversations.repository import insert_ignore
from replyflow.conversations.service import record_private_reply
from replyflow.db import utcnow
from replyflow.logging import get_logger
from replyflow.runtime import Runtime

log = get_logger("replyflow.conversations.sync")

MARGIN = dt.timedelta(minutes=2)
BATCH = 500


def sync_threads(*, runtime: Runtime, max_batches: int = 20) -> int:
    """Record the private replies of runs changed since the last pass that have no thread message yet."""
    recorded = 0
    for _ in range(max_batches):
        with runtime.session() as session:
            count, more = _sync_batch(session)
        recorded += count
        if not more:
            break
    if recorded:
        log.info("conversations_backfilled", threads=recorded)
    return recorded


def _sync_batch(session: Session) -> tuple[int, bool]:
    insert_ignore(session, SyncCursor, {"name": "private_replies", "updated_at": utcnow()})
    cursor = session.scalar(select(SyncCursor).where(SyncCursor.name == "private_replies").with_for_update())
    assert cursor is not None
    recorded_already = exists().where(
        ThreadMessage.run_id == Run.id, ThreadMessage.kind == MessageKind.PRIVATE_REPLY.value
    )
    query = (
        select(Run.id, Run.updated_at)
        .where(Run.dm_state == SendState.SENT.value, ~recorded_already)
        .order_by(Run.updated_at, Run.id)
        .limit(BATCH)
    )
    if cursor.position is not None:
        query = query.where(Run.updated_at >= cursor.position - MARGIN)
    rows = session.execute(query).all()
    count = 0
    for run_id, _updated in rows:
        run = session.get(Run, run_id)
        if run is not None and record_private_reply(session=session, run=run) is not None:
            count += 1
    # Only runs changed after the last one seen need looking at next time (the margin covers late commits).
    newest = session.scalar(select(Run.updated_at).order_by(Run.updated_at.desc()).limit(1))
    if len(rows) < BATCH and newest is not None:
        cursor.position = newest
    elif rows:
        cursor.position = rows[-1][1]
    cursor.updated_at = utcnow()
    return count, len(rows) == BATCH
