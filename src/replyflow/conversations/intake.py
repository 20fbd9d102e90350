"""Where messaging webhooks meet rule conversations: replies, taps, read receipts and echoes, tied to their thread.

``accept_messaging`` is the webhooks domain's consumer for ``messages``, ``messaging_postbacks`` and
``messaging_seen`` events (``replyflow.webhooks.dispatch``). It runs inside the transaction that marks the event
dispatched and never commits; a follow-up job is enqueued only after that commit.

A message belongs to a thread by (account, the person's IGSID). Echoes — copies of what the account itself sent,
``is_echo`` or sent *by* the account's id — confirm our own messages (matched by mid, or by text when the mid
is not known yet) and are never taken for the person's words: they neither open Meta's window nor trigger a
follow-up. Messages from people no rule wrote to are not replyflow's business and are left alone.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from replyflow.accounts.models import Account
from replyflow.automation import clock, follow_gate, message_intake
from replyflow.automation.models import Run
from replyflow.contacts import service as contacts
from replyflow.conversations import followups
from replyflow.conversations import repository as repo
from replyflow.conversations.models import (
    MESSAGING_WINDOW,
    TAP_KINDS,
    Direction,
    FollowUp,
    MessageKind,
    Thread,
    ThreadMessage,
)
from replyflow.conversations.service import record_private_reply, thread_for_person
from replyflow.ids import new_id
from replyflow.logging import get_logger
from replyflow.monitoring import metrics
from replyflow.monitoring.context import log_context
from replyflow.runtime import Runtime
from replyflow.webhooks.events import MessageEvent, PostbackEvent, SeenEvent

log = get_logger("replyflow.conversations.intake")

# Payloads replyflow puts on quick replies and postback buttons start with the run they belong to.
_RUN_PAYLOAD = re.compile(r"^rf:(run_[0-9a-z]{1,36}):")


def accept_messaging(
    *, session: Session, account: Account, event: MessageEvent | PostbackEvent | SeenEvent, runtime: Runtime
) -> None:
    """Record one messaging event on its thread (idempotent) and trigger the rule's follow-up when it is due."""
    ours = event.sender_id in {account.instagram_id, account.page_id}
    if not ours and not isinstance(event, SeenEvent) and not (isinstance(event, MessageEvent) and event.is_echo):
        contacts.touch(
            session=session,
            workspace_id=account.workspace_id,
            account_id=account.id,
            igsid=event.sender_id,
            username=None,
            at=_at(event.timestamp),
        )
    with log_context(account_id=account.id, event_kind=event.kind):
        if isinstance(event, MessageEvent):
            if event.is_echo or ours:
                _accept_echo(session=session, account=account, event=event)
            elif event.is_deleted:
                _accept_unsend(session=session, account=account, event=event)
            else:
                message = _accept_inbound(session=session, account=account, event=event, runtime=runtime)
                _start_message_trigger(session=session, account=account, event=event, runtime=runtime, message=message)
        elif isinstance(event, PostbackEvent):
            if not ours:
                _accept_inbound(session=session, account=account, event=event, runtime=runtime)
                follow_gate.accept_tap(session=session, account=account, event=event, runtime=runtime)
        elif not ours:
            _accept_seen(session=session, account=account, event=event)


def _at(timestamp: dt.datetime | None) -> dt.datetime:
    return timestamp.astimezone(dt.UTC) if timestamp is not None else clock.now()


# -- the person's messages and taps --------------------------------------------------------------------------------


def _start_message_trigger(
    *, session: Session, account: Account, event: MessageEvent, runtime: Runtime, message: ThreadMessage | None
) -> None:
    """A DM may start a rule of its own (story reply, story mention, DM keyword) unless a follow-up answered it."""
    answered = message is not None and (
        session.scalar(select(FollowUp.id).where(FollowUp.trigger_message_id == message.id).limit(1)) is not None
    )
    thread = repo.thread_for(session=session, account_id=account.id, igsid=event.sender_id)
    message_intake.accept_message(
        session=session,
        account=account,
        event=event,
        runtime=runtime,
        answered_by_follow_up=answered,
        username=thread.username if thread is not None else None,
    )


def _accept_inbound(
    *, session: Session, account: Account, event: MessageEvent | PostbackEvent, runtime: Runtime
) -> ThreadMessage | None:
    thread = thread_for_person(session=session, account=account, igsid=event.sender_id)
    if thread is None:
        log.debug("message_outside_rule_conversations", sender_id=event.sender_id)
        return None
    at = _at(event.timestamp)
    kind, text, payload, tap = _describe(event)
    dedupe_key = event.mid or event.natural_key
    run_id = _attributed_run(session=session, account=account, thread=thread, payload=tap)
    message_id = new_id("msg")
    inserted = repo.insert_ignore(
        session,
        ThreadMessage,
        {
            "id": message_id,
            "thread_id": thread.id,
            "account_id": account.id,
            "run_id": run_id,
            "direction": Direction.INBOUND.value,
            "kind": kind.value,
            "mid": event.mid,
            "dedupe_key": dedupe_key,
            "text": text,
            "payload": payload,
            "created_at": at,
            "recorded_at": clock.now(),
        },
    )
    if not inserted:
        return None  # the same message again (a replayed delivery): already recorded
    message = session.get(ThreadMessage, message_id)
    assert message is not None
    # The person's own message or tap opens (or extends) Meta's standard 24-hour window.
    if thread.last_user_message_at is None or at > thread.last_user_message_at:
        thread.last_user_message_at = at
        thread.window_expires_at = at + MESSAGING_WINDOW
    if thread.last_message_at is None or at > thread.last_message_at:
        thread.last_message_at = at
    # SQL increments: two events of one thread processed at once must both count.
    is_tap = kind in TAP_KINDS
    counter = {"tap_count": Thread.tap_count + 1} if is_tap else {"reply_count": Thread.reply_count + 1}
    session.execute(
        update(Thread).where(Thread.id == thread.id).values(**counter).execution_options(synchronize_session=False)
    )
    if run_id is not None and kind is MessageKind.USER_TEXT:
        run = session.get(Run, run_id)
        contacts.capture_email(
            session=session,
            account_id=account.id,
            igsid=event.sender_id,
            rule_id=run.rule_id if run is not None else None,
            text=text,
            at=at,
        )
    if run_id is not None and is_tap:
        repo.bump_engagement(session=session, run_id=run_id, account_id=account.id, at=clock.now(), taps=1)
    elif run_id is not None:
        repo.bump_engagement(session=session, run_id=run_id, account_id=account.id, at=clock.now(), replies=1)
    thread.updated_at = clock.now()
    metrics.observe_conversation_event(kind=kind.value)
    log.info("conversation_message", thread_id=thread.id, run_id=run_id, kind=kind.value)
    story_reply = isinstance(event, MessageEvent) and event.reply_to_story_id is not None
    gate_tap = isinstance(event, PostbackEvent) and follow_gate.parse_gate_payload(event.payload) is not None
    if not story_reply and not gate_tap:
        # A reply to one of the account's stories answers the story, not the rule's DM; a tap on a follow gate
        # is the gate's business (it unlocks the DM), not a reply the follow-up answers.
        followups.trigger(session=session, runtime=runtime, thread=thread, message=message, now=clock.now())
    return message


def _describe(
    event: MessageEvent | PostbackEvent,
) -> tuple[MessageKind, str | None, dict[str, Any] | None, str | None]:
    """(kind, text, payload to keep, the tap's payload) of an inbound event."""
    if isinstance(event, PostbackEvent):
        return MessageKind.POSTBACK, event.title, {"payload": event.payload, "title": event.title}, event.payload
    payload: dict[str, Any] = {}
    if event.attachments:
        payload["attachments"] = [{"type": a.type} for a in event.attachments]
    if event.reply_to_mid:
        payload["reply_to_mid"] = event.reply_to_mid
    if event.reply_to_story_id:
        payload["reply_to_story_id"] = event.reply_to_story_id
    if event.quick_reply_payload is not None:
        payload["quick_reply_payload"] = event.quick_reply_payload
        return MessageKind.QUICK_REPLY, event.text, payload, event.quick_reply_payload
    return MessageKind.USER_TEXT, event.text, payload or None, None


def _attributed_run(*, session: Session, account: Account, thread: Thread, payload: str | None) -> str | None:
    """The run a reply or tap answers: the one named in replyflow's payload, else the thread's latest DM."""
    match = _RUN_PAYLOAD.match(payload or "")
    if match is not None:
        run = session.get(Run, match.group(1))
        # Only a run of this account that DMed this very person: payloads come back from the outside world.
        if run is not None and run.account_id == account.id and (run.dm_recipient_id or run.from_id) == thread.igsid:
            return run.id
    return thread.run_id


def _accept_unsend(*, session: Session, account: Account, event: MessageEvent) -> None:
    """The person unsent a message: forget its words, keep that it happened."""
    message = repo.message_by_mid(session=session, account_id=account.id, mid=event.mid)
    if message is None or message.direction != Direction.INBOUND.value:
        return
    message.text = None
    message.payload = None
    message.deleted_at = _at(event.timestamp)
    metrics.observe_conversation_event(kind="unsent")


# -- echoes of the account's own messages -----------------------------------------------------------------------


def _echo_text(event: MessageEvent) -> str | None:
    if event.text:
        return event.text
    for attachment in event.attachments:  # a button template's words travel in the attachment payload
        text = attachment.payload.get("text")
        if isinstance(text, str) and text:
            return text
    return None


def _accept_echo(*, session: Session, account: Account, event: MessageEvent) -> None:
    at = _at(event.timestamp)
    metrics.observe_conversation_event(kind="echo")
    known = repo.message_by_mid(session=session, account_id=account.id, mid=event.mid)
    if known is not None:
        if known.echoed_at is None:
            known.echoed_at = at
        return
    run = repo.run_by_dm_mid(session=session, account_id=account.id, mid=event.mid)
    if run is not None:
        # Our private reply, echoed before the engine's record of it reached the thread.
        record_private_reply(session=session, run=run)
        recorded = repo.message_by_mid(session=session, account_id=account.id, mid=event.mid)
        if recorded is not None and recorded.echoed_at is None:
            recorded.echoed_at = at
        return
    thread = thread_for_person(session=session, account=account, igsid=event.recipient_id)
    if thread is None:
        return  # the account wrote to someone outside rule conversations
    text = _echo_text(event)
    if _confirm_ours(session=session, account=account, thread=thread, mid=event.mid, text=text, at=at):
        return
    payload = {"attachments": [{"type": a.type} for a in event.attachments]} if event.attachments else None
    inserted = repo.insert_ignore(
        session,
        ThreadMessage,
        {
            "id": new_id("msg"),
            "thread_id": thread.id,
            "account_id": account.id,
            "run_id": None,
            "direction": Direction.OUTBOUND.value,
            "kind": MessageKind.ECHO.value,
            "mid": event.mid,
            "dedupe_key": event.mid,
            "text": text,
            "payload": payload,
            "created_at": at,
            "recorded_at": clock.now(),
            "echoed_at": at,
        },
    )
    if inserted and (thread.last_message_at is None or at > thread.last_message_at):
        thread.last_message_at = at
    log.info("conversation_echo", thread_id=thread.id, recorded=inserted)


def _confirm_ours(
    *, session: Session, account: Account, thread: Thread, mid: str, text: str | None, at: dt.datetime
) -> bool:
    """An echo whose mid we never learned: a follow-up in flight, or a DM known only as "already sent"."""
    follow_up = followups.in_flight_with_text(session=session, thread_id=thread.id, text=text)
    if follow_up is not None:
        followups.confirm_sent(session=session, follow_up_id=follow_up.id, mid=mid, at=at)
        message = repo.message_by_mid(session=session, account_id=account.id, mid=mid)
        if message is not None:
            message.echoed_at = at
        log.info("follow_up_confirmed_by_echo", follow_up_id=follow_up.id, thread_id=thread.id)
        return True
    if not text:
        return False
    result = session.execute(
        update(ThreadMessage)
        .where(
            ThreadMessage.thread_id == thread.id,
            ThreadMessage.direction == Direction.OUTBOUND.value,
            ThreadMessage.kind.in_([MessageKind.PRIVATE_REPLY.value, MessageKind.FOLLOW_UP.value]),
            ThreadMessage.mid.is_(None),
            ThreadMessage.text == text,
        )
        .values(mid=mid, echoed_at=at)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


# -- read receipts ----------------------------------------------------------------------------------------------


def _accept_seen(*, session: Session, account: Account, event: SeenEvent) -> None:
    thread = thread_for_person(session=session, account=account, igsid=event.sender_id)
    if thread is None:
        return
    at = _at(event.timestamp)
    mark = at
    if event.watermark is not None:
        seconds = event.watermark / 1000 if event.watermark >= 100_000_000_000 else event.watermark
        mark = dt.datetime.fromtimestamp(seconds, dt.UTC)
    elif event.mid:
        read = repo.message_by_mid(session=session, account_id=account.id, mid=event.mid)
        if read is not None:
            mark = max(read.created_at, thread.seen_up_to or read.created_at)
    if thread.seen_at is None or at > thread.seen_at:
        thread.seen_at = at
    if thread.seen_up_to is None or mark > thread.seen_up_to:
        thread.seen_up_to = mark
    session.execute(
        update(ThreadMessage)
        .where(
            ThreadMessage.thread_id == thread.id,
            ThreadMessage.direction == Direction.OUTBOUND.value,
            ThreadMessage.kind != MessageKind.PUBLIC_REPLY.value,
            ThreadMessage.read_at.is_(None),
            ThreadMessage.created_at <= thread.seen_up_to,
        )
        .values(read_at=at)
        .execution_options(synchronize_session=False)
    )
    metrics.observe_conversation_event(kind="seen")
    log.info("conversation_seen", thread_id=thread.id)
