"""Threads: recording the rule's private reply, finding a person's thread, and the conversations API's queries.

``record_private_reply`` is the engine's hook (call it in the transaction that records ``dm_sent``). It is
idempotent, and the same thread is also built lazily from the run when the person answers first, and by the
periodic sync, so a missed call only delays when the thread appears.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from replyflow.accounts.models import Account
from replyflow.automation import clock
from replyflow.automation.models import Rule, Run, SendState
from replyflow.contacts import service as contacts
from replyflow.conversations import repository as repo
from replyflow.conversations.links import links_of
from replyflow.conversations.models import (
    Direction,
    FollowUp,
    MessageKind,
    Thread,
    ThreadMessage,
    TrackedLink,
)
from replyflow.errors import NotFound
from replyflow.ids import new_id
from replyflow.logging import get_logger
from replyflow.pagination import paginate

log = get_logger("replyflow.conversations")

MESSAGES_IN_LIST = 20
MESSAGES_IN_DETAIL = 500


def ensure_thread(
    *, session: Session, workspace_id: str, account_id: str, igsid: str, username: str | None, at: dt.datetime
) -> Thread:
    """The thread of (account, person), created when missing; concurrent callers get the same row.

    The insert comes first: most people a rule answers write for the first time, and then the new row comes back
    from its INSERT with nothing else to read."""
    thread = repo.insert_ignore_returning(
        session,
        Thread,
        {
            "id": new_id("thr"),
            "workspace_id": workspace_id,
            "account_id": account_id,
            "igsid": igsid,
            "username": username,
            "reply_count": 0,
            "tap_count": 0,
            "click_count": 0,
            "created_at": at,
            "updated_at": at,
        },
    )
    if thread is None:
        thread = repo.thread_for(session=session, account_id=account_id, igsid=igsid)
        assert thread is not None
    return thread


def record_private_reply(*, session: Session, run: Run) -> Thread | None:
    """Record that ``run``'s private reply reached the commenter: their thread, our public reply and our DM.

    Call it in the transaction that marks the run ``dm_sent`` (after ``dm_message_id``, ``dm_recipient_id`` and
    ``dm_sent_at`` are set). Safe to call again for the same run; returns None when the run sent no DM.
    """
    if run.dm_state != SendState.SENT.value:
        return None
    sent_at = run.dm_sent_at or clock.now()
    thread = _thread_of(session=session, run=run, at=sent_at)
    if thread is None:
        return None
    key = run.dm_message_id or f"private_reply:{run.id}"
    existing = repo.message_by_key(session=session, account_id=run.account_id, dedupe_key=key)
    if existing is not None and existing.kind == MessageKind.PRIVATE_REPLY.value:
        return thread
    rows: list[dict[str, Any]] = []
    if run.public_reply_state == SendState.SENT.value and run.public_reply_text:
        rows.append(
            {
                "id": new_id("msg"),
                "thread_id": thread.id,
                "account_id": run.account_id,
                "run_id": run.id,
                "direction": Direction.OUTBOUND.value,
                "kind": MessageKind.PUBLIC_REPLY.value,
                "mid": None,
                "dedupe_key": f"public_reply:{run.id}",
                "text": run.public_reply_text,
                "payload": {"comment_id": run.comment_id, "reply_id": run.public_reply_id},
                "created_at": run.public_replied_at or sent_at,
                "recorded_at": clock.now(),
            }
        )
    if existing is not None:
        # Meta's echo of this DM was processed first and stored as an "echo": it is our private reply.
        existing.kind = MessageKind.PRIVATE_REPLY.value
        existing.run_id = run.id
        existing.thread_id = thread.id
        existing.text = run.dm_text
        existing.payload = run.dm_message
    else:
        rows.append(_dm_row(thread=thread, run=run, mid=run.dm_message_id, key=key, text=run.dm_text,
                            message=run.dm_message, at=sent_at))  # fmt: skip
    repo.insert_ignore_rows(session, ThreadMessage, rows)
    if thread.dm_sent_at is None or sent_at >= thread.dm_sent_at:
        thread.run_id = run.id
        thread.rule_id = run.rule_id
        thread.comment_id = run.comment_id
        thread.comment_text = run.text
        thread.media_id = run.media_id
        thread.commented_at = run.comment_created_at or run.created_at
        thread.public_reply_id = run.public_reply_id
        thread.public_reply_text = run.public_reply_text if run.public_reply_state == SendState.SENT.value else None
        thread.dm_mid = run.dm_message_id
        thread.dm_text = run.dm_text
        thread.dm_sent_at = sent_at
        if run.username:
            thread.username = run.username
    if thread.last_message_at is None or sent_at > thread.last_message_at:
        thread.last_message_at = sent_at
    thread.updated_at = clock.now()
    contacts.note_answered(
        session=session,
        workspace_id=run.workspace_id,
        account_id=run.account_id,
        igsid=thread.igsid,
        username=run.username,
        rule_id=run.rule_id,
        at=sent_at,
    )
    session.flush()
    log.info("conversation_started", thread_id=thread.id, run_id=run.id, comment_id=run.comment_id)
    return thread


def _insert_dm(
    *,
    session: Session,
    thread: Thread,
    run: Run,
    mid: str | None,
    key: str,
    text: str | None,
    message: dict[str, Any] | None,
    at: dt.datetime,
) -> None:
    """One of the rule's DMs on the thread (idempotent by ``key``)."""
    row = _dm_row(thread=thread, run=run, mid=mid, key=key, text=text, message=message, at=at)
    repo.insert_ignore_rows(session, ThreadMessage, [row])


def _thread_of(*, session: Session, run: Run, at: dt.datetime) -> Thread | None:
    """The thread of the person the run's DM went to (created when missing); None when the run names nobody."""
    igsid = run.dm_recipient_id or run.from_id
    if not igsid:
        return None
    return ensure_thread(
        session=session,
        workspace_id=run.workspace_id,
        account_id=run.account_id,
        igsid=igsid,
        username=run.username,
        at=at,
    )


def _dm_row(
    *, thread: Thread, run: Run, mid: str | None, key: str, text: str | None, message: dict[str, Any] | None,
    at: dt.datetime,
) -> dict[str, Any]:  # fmt: skip
    return {
        "id": new_id("msg"),
        "thread_id": thread.id,
        "account_id": run.account_id,
        "run_id": run.id,
        "direction": Direction.OUTBOUND.value,
        "kind": MessageKind.PRIVATE_REPLY.value,
        "mid": mid,
        "dedupe_key": key,
        "text": text,
        "payload": message,
        "created_at": at,
        "recorded_at": clock.now(),
    }


def record_direct_message(
    *, session: Session, run: Run, text: str, message: dict[str, Any], mid: str | None, at: dt.datetime
) -> None:
    """A rule's DM sent by ``recipient.id`` after the first one (a follow gate's reminder, the unlocked DM): one more
    outbound message on the person's thread."""
    thread = _thread_of(session=session, run=run, at=at)
    if thread is None:
        return
    _insert_dm(session=session, thread=thread, run=run, mid=mid, key=mid or f"dm:{run.id}:{at.isoformat()}", text=text,
               message=message, at=at)  # fmt: skip
    if thread.last_message_at is None or at > thread.last_message_at:
        thread.last_message_at = at
    thread.updated_at = clock.now()


def thread_for_person(*, session: Session, account: Account, igsid: str) -> Thread | None:
    """The person's thread; built from their latest DM run when the engine's record is missing, else None."""
    thread = repo.thread_for(session=session, account_id=account.id, igsid=igsid)
    if thread is not None and thread.run_id is not None:
        return thread
    run = repo.latest_dm_run(session=session, account_id=account.id, igsid=igsid)
    if run is None:
        return thread
    return record_private_reply(session=session, run=run)


# -- the API's reads ---------------------------------------------------------------------------------------------


@dataclass
class ThreadView:
    thread: Thread
    rule: Rule | None
    messages: list[ThreadMessage]
    follow_ups: list[FollowUp]
    links: list[TrackedLink]


def list_threads(
    *,
    session: Session,
    workspace_id: str,
    account_id: str | None = None,
    rule_id: str | None = None,
    media_id: str | None = None,
    replied: bool | None = None,
    window_open: bool | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[ThreadView], str | None]:
    query = select(Thread).where(Thread.workspace_id == workspace_id, Thread.run_id.is_not(None))
    if account_id:
        query = query.where(Thread.account_id == account_id)
    if rule_id:
        query = query.where(Thread.rule_id == rule_id)
    if media_id:
        query = query.where(Thread.media_id == media_id)
    if replied is not None:
        answered = (Thread.reply_count + Thread.tap_count) > 0
        query = query.where(answered if replied else ~answered)
    if window_open is not None:
        now = clock.now()
        is_open = Thread.window_expires_at > now
        query = query.where(is_open if window_open else ((Thread.window_expires_at.is_(None)) | ~is_open))
    threads, next_cursor = paginate(session, query, id_column=Thread.id, cursor=cursor, limit=limit)
    return _views(session=session, threads=threads, per_thread=MESSAGES_IN_LIST), next_cursor


def get_thread(*, session: Session, workspace_id: str, thread_id: str) -> ThreadView:
    thread = session.get(Thread, thread_id)
    if thread is None or thread.workspace_id != workspace_id or thread.run_id is None:
        raise NotFound("No conversation with this id.", hint="List conversations with GET /api/conversations.")
    return _views(session=session, threads=[thread], per_thread=MESSAGES_IN_DETAIL)[0]


def _views(*, session: Session, threads: list[Thread], per_thread: int) -> list[ThreadView]:
    ids = [t.id for t in threads]
    messages = repo.messages_of(session=session, thread_ids=ids, limit_per_thread=per_thread)
    follow_ups: dict[str, list[FollowUp]] = {thread_id: [] for thread_id in ids}
    if ids:
        for follow_up in session.scalars(
            select(FollowUp).where(FollowUp.thread_id.in_(ids)).order_by(FollowUp.created_at, FollowUp.id)
        ):
            follow_ups[follow_up.thread_id].append(follow_up)
    rule_ids = {t.rule_id for t in threads if t.rule_id}
    rules = {r.id: r for r in session.scalars(select(Rule).where(Rule.id.in_(rule_ids)))} if rule_ids else {}
    links = links_of(session=session, threads=threads)
    return [
        ThreadView(
            thread=t,
            rule=rules.get(t.rule_id or ""),
            messages=messages[t.id],
            follow_ups=follow_ups[t.id],
            links=links[t.id],
        )
        for t in threads
    ]
