"""The rule's follow-up: sent on the person's reply or tap, with ``recipient.id``, inside Meta's 24-hour window.

At most one follow-up row per trigger (``trigger_message_id`` is unique) and at most one that is pending, in
flight or sent per run (``claim_key`` holds the run id). Sending is written down before the call (``sending``)
and after; a follow-up whose outcome is unknown is never sent again (Meta's echo may still confirm it). Outside
the window nothing is sent and the follow-up is recorded ``skipped`` with reason ``outside_window``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import SecretStr, ValidationError
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from replyflow.accounts.models import Account
from replyflow.automation import clock
from replyflow.automation.graph_calls import AccountGraph, NoToken
from replyflow.automation.models import Rule, Run
from replyflow.automation.schemas import FollowUp as FollowUpSpec
from replyflow.automation.templates import template_variables
from replyflow.conversations import repository as repo
from replyflow.conversations.links import track_message
from replyflow.conversations.models import (
    Direction,
    FollowUp,
    FollowUpSkip,
    FollowUpStatus,
    MessageKind,
    Thread,
    ThreadMessage,
)
from replyflow.errors import ReplyflowError
from replyflow.graph.client import GraphClient
from replyflow.graph.errors import (
    CommentFinal,
    CommentFinalReason,
    GraphError,
    OutcomeUnknown,
    RateLimited,
    TokenInvalid,
    TransientError,
)
from replyflow.graph.messages import UrlButton, button_template, text_message
from replyflow.graph.types import SendResult
from replyflow.ids import new_id
from replyflow.logging import get_logger
from replyflow.monitoring import metrics
from replyflow.monitoring.context import log_context
from replyflow.runtime import Runtime

log = get_logger("replyflow.conversations.followups")

SEND_FOLLOW_UP_JOB = "conversations.send_follow_up"
MAX_ATTEMPTS = 5
RETRY_BASE_SECONDS = 30.0
RETRY_MAX_SECONDS = 1800.0
# A follow-up still "sending" after this long belongs to a worker that died mid-call: its outcome is unknown.
SENDING_LEASE = dt.timedelta(minutes=5)
_PENDING = "replyflow.conversations.pending_jobs"
_LISTENING = "replyflow.conversations.listening"


# -- triggering (inside intake's transaction) ------------------------------------------------------------------


def trigger(*, session: Session, runtime: Runtime, thread: Thread, message: ThreadMessage, now: dt.datetime) -> None:
    """The person answered (``message``): create the follow-up of the run it answers, if its rule has one."""
    run = session.get(Run, message.run_id) if message.run_id else None
    rule = session.get(Rule, run.rule_id) if run is not None and run.rule_id else None
    if run is None or rule is None or not rule.follow_up:
        return
    skip: FollowUpSkip | None = None
    if rule.deleted_at is not None:
        skip = FollowUpSkip.RULE_REMOVED
    elif not rule.enabled:
        skip = FollowUpSkip.RULE_DISABLED
    values: dict[str, Any] = {
        "id": new_id("fu"),
        "thread_id": thread.id,
        "account_id": thread.account_id,
        "run_id": run.id,
        "rule_id": rule.id,
        "trigger_message_id": message.id,
        "claim_key": None if skip else run.id,
        "status": (FollowUpStatus.SKIPPED if skip else FollowUpStatus.PENDING).value,
        "reason": skip.value if skip else None,
        "detail": "The rule was turned off or deleted; no follow-up is sent." if skip else None,
        "attempts": 0,
        "next_attempt_at": None if skip else now,
        "created_at": now,
        "updated_at": now,
    }
    if repo.insert_ignore(session, FollowUp, values):
        if skip is None:
            log.info("follow_up_triggered", follow_up_id=values["id"], run_id=run.id, thread_id=thread.id)
            enqueue_after_commit(session=session, runtime=runtime, follow_up_id=values["id"])
        else:
            metrics.observe_follow_up(outcome=f"skipped_{skip.value}")


def enqueue_after_commit(*, session: Session, runtime: Runtime, follow_up_id: str, delay: float | None = None) -> None:
    """Ask a worker to send the follow-up once ``session`` commits (never if it rolls back)."""
    pending: list[tuple[Runtime, str, float | None]] = session.info.setdefault(_PENDING, [])
    pending.append((runtime, follow_up_id, delay))
    if not session.info.get(_LISTENING):
        session.info[_LISTENING] = True
        event.listen(session, "after_commit", _flush_pending)
        event.listen(session, "after_rollback", _drop_pending)


def _flush_pending(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a SAVEPOINT was released (a delivery of a batch); the follow-up's row is not committed yet
    for runtime, follow_up_id, delay in session.info.pop(_PENDING, []):
        enqueue(runtime=runtime, follow_up_id=follow_up_id, delay=delay)


def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def enqueue(*, runtime: Runtime, follow_up_id: str, delay: float | None = None) -> None:
    """A lost job is not lost work: the periodic sync re-enqueues pending follow-ups."""
    try:
        runtime.queue.enqueue(SEND_FOLLOW_UP_JOB, follow_up_id, delay=delay)
    except Exception as exc:
        log.warning("follow_up_enqueue_failed", follow_up_id=follow_up_id, error=exc)


# -- sending (the job) ----------------------------------------------------------------------------------------------


def send(*, runtime: Runtime, follow_up_id: str, graph: AccountGraph | None = None) -> str:
    """Send one pending follow-up if Meta's window is open; returns the follow-up's status afterwards."""
    prepared = _prepare(runtime=runtime, follow_up_id=follow_up_id)
    if isinstance(prepared, str):
        return prepared
    follow_up_id, account, recipient_id, message = prepared
    graph = graph or _default_graph(runtime)

    async def work(client: GraphClient, token: SecretStr) -> SendResult:
        return await client.send_message(
            page_id=account.page_id, recipient_id=recipient_id, message=message, token=token
        )

    with log_context(follow_up_id=follow_up_id, account_id=account.id):
        try:
            result, _usage = graph.call(account, work)
        except NoToken:
            return _finish(
                runtime, follow_up_id, FollowUpStatus.FAILED, "account_disconnected", "The account has no token."
            )
        except OutcomeUnknown as exc:
            log.warning("follow_up_outcome_unknown", follow_up_id=follow_up_id, cause=exc.cause)
            return _finish(runtime, follow_up_id, FollowUpStatus.UNKNOWN, exc.error_code, exc.message, release=False)
        except CommentFinal as exc:
            if exc.reason is CommentFinalReason.OUTSIDE_WINDOW:
                return _finish(
                    runtime,
                    follow_up_id,
                    FollowUpStatus.SKIPPED,
                    FollowUpSkip.OUTSIDE_WINDOW.value,
                    "Meta answered that the 24-hour messaging window is closed; nothing was sent.",
                )
            return _finish(runtime, follow_up_id, FollowUpStatus.FAILED, exc.reason.value, exc.message)
        except (RateLimited, TransientError) as exc:
            return _retry(runtime, follow_up_id, exc)
        except TokenInvalid as exc:
            return _finish(runtime, follow_up_id, FollowUpStatus.FAILED, exc.error_code, exc.message)
        except GraphError as exc:
            return _finish(runtime, follow_up_id, FollowUpStatus.FAILED, exc.error_code, exc.message)
        return mark_sent(runtime=runtime, follow_up_id=follow_up_id, mid=result.message_id)


def _default_graph(runtime: Runtime) -> AccountGraph:
    # The engine's Graph access for this runtime: the same wiring (and, in tests, the same sandbox).
    from replyflow.automation.engine import engine_for

    return engine_for(runtime).graph


def _prepare(*, runtime: Runtime, follow_up_id: str) -> str | tuple[str, Account, str, dict[str, Any]]:
    """Check everything and write ``sending`` (committed) before the call; a string is the final status."""
    now = clock.now()
    with runtime.session() as session:
        follow_up = session.scalar(select(FollowUp).where(FollowUp.id == follow_up_id).with_for_update())
        if follow_up is None:
            return "missing"
        if follow_up.status != FollowUpStatus.PENDING.value:
            return follow_up.status
        thread = session.get(Thread, follow_up.thread_id)
        account = session.get(Account, follow_up.account_id)
        run = session.get(Run, follow_up.run_id)
        rule = session.get(Rule, follow_up.rule_id) if follow_up.rule_id else None
        skip: tuple[FollowUpSkip, str] | None = None
        spec: FollowUpSpec | None = None
        if thread is None or account is None or rule is None or rule.deleted_at is not None:
            skip = (FollowUpSkip.RULE_REMOVED, "The rule (or its account) was deleted.")
        elif not rule.enabled:
            skip = (FollowUpSkip.RULE_DISABLED, "The rule was turned off.")
        elif not rule.follow_up:
            skip = (FollowUpSkip.NO_FOLLOW_UP, "The rule no longer has a follow-up.")
        elif account.automation_paused:
            skip = (FollowUpSkip.ACCOUNT_PAUSED, "The account must be reconnected before anything can be sent.")
        elif not thread.window_open(now):
            closed = thread.window_expires_at.isoformat() if thread.window_expires_at else "never opened"
            skip = (
                FollowUpSkip.OUTSIDE_WINDOW,
                f"Meta's 24-hour window after the person's last message closed ({closed}); nothing was sent.",
            )
        else:
            try:
                spec = FollowUpSpec.model_validate(rule.follow_up)
            except ValidationError:
                skip = (FollowUpSkip.NO_FOLLOW_UP, "The rule's follow-up is not valid any more.")
        if skip is not None or spec is None or thread is None or account is None:
            reason, detail = skip or (FollowUpSkip.NO_FOLLOW_UP, "Nothing to send.")
            _apply_finish(follow_up, FollowUpStatus.SKIPPED, reason.value, detail, now=now, release=True)
            log.info("follow_up_skipped", follow_up_id=follow_up.id, reason=reason.value, thread_id=follow_up.thread_id)
            metrics.observe_follow_up(outcome=f"skipped_{reason.value}")
            return follow_up.status
        variables = template_variables(
            username=thread.username, first_name=None, keyword=run.matched_keyword if run is not None else None
        )
        text = spec.render_text(variables)
        try:
            if spec.buttons:
                message = button_template(text, [UrlButton(title=b.title, url=b.url) for b in spec.buttons])
            else:
                message = text_message(text)
        except ReplyflowError as exc:
            _apply_finish(follow_up, FollowUpStatus.FAILED, "invalid_message", exc.message, now=now, release=True)
            return follow_up.status
        message = track_message(
            session=session,
            run_or_thread=thread,
            message=message,
            public_url=runtime.settings.public_url,
            source="follow_up",
        )
        follow_up.status = FollowUpStatus.SENDING.value
        follow_up.attempts += 1
        follow_up.text = text
        follow_up.message = message
        follow_up.updated_at = now
        return follow_up.id, account, thread.igsid, message


def _apply_finish(
    follow_up: FollowUp,
    status: FollowUpStatus,
    reason: str | None,
    detail: str | None,
    *,
    now: dt.datetime,
    release: bool,
) -> None:
    follow_up.status = status.value
    follow_up.reason = reason
    follow_up.detail = detail
    follow_up.next_attempt_at = None
    follow_up.updated_at = now
    if release:
        # Not sent: a later reply or tap of the person may trigger a new attempt.
        follow_up.claim_key = None


def _finish(
    runtime: Runtime, follow_up_id: str, status: FollowUpStatus, reason: str, detail: str, *, release: bool = True
) -> str:
    now = clock.now()
    with runtime.session() as session:
        follow_up = session.get(FollowUp, follow_up_id, with_for_update=True)
        if follow_up is None:
            return "missing"
        if follow_up.status != FollowUpStatus.SENDING.value:
            return follow_up.status  # an echo already confirmed it
        _apply_finish(follow_up, status, reason, detail, now=now, release=release)
    log.info("follow_up_finished", follow_up_id=follow_up_id, status=status.value, reason=reason)
    metrics.observe_follow_up(outcome=status.value if status is not FollowUpStatus.SKIPPED else f"skipped_{reason}")
    return status.value


def _retry(runtime: Runtime, follow_up_id: str, exc: GraphError) -> str:
    now = clock.now()
    with runtime.session() as session:
        follow_up = session.get(FollowUp, follow_up_id, with_for_update=True)
        if follow_up is None or follow_up.status != FollowUpStatus.SENDING.value:
            return follow_up.status if follow_up is not None else "missing"
        if follow_up.attempts >= MAX_ATTEMPTS:
            _apply_finish(
                follow_up,
                FollowUpStatus.FAILED,
                "too_many_attempts",
                f"Gave up after {follow_up.attempts} attempts; the last error: {exc.message}",
                now=now,
                release=True,
            )
            return follow_up.status
        wait = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (follow_up.attempts - 1))
        if exc.retry_after_seconds:
            wait = max(wait, float(exc.retry_after_seconds))
        follow_up.status = FollowUpStatus.PENDING.value
        follow_up.reason = exc.error_code
        follow_up.detail = exc.message
        follow_up.next_attempt_at = now + dt.timedelta(seconds=wait)
        follow_up.updated_at = now
    log.info("follow_up_retry_scheduled", follow_up_id=follow_up_id, wait_seconds=round(wait), code=exc.error_code)
    enqueue(runtime=runtime, follow_up_id=follow_up_id, delay=wait)
    return FollowUpStatus.PENDING.value


def mark_sent(*, runtime: Runtime, follow_up_id: str, mid: str | None) -> str:
    with runtime.session() as session:
        confirm_sent(session=session, follow_up_id=follow_up_id, mid=mid, at=clock.now())
        follow_up = session.get(FollowUp, follow_up_id)
        return follow_up.status if follow_up is not None else "missing"


def confirm_sent(*, session: Session, follow_up_id: str, mid: str | None, at: dt.datetime) -> bool:
    """Move a follow-up in flight (or of unknown outcome) to ``sent`` and record its message; False if already done."""
    result = session.execute(
        update(FollowUp)
        .where(
            FollowUp.id == follow_up_id,
            FollowUp.status.in_([FollowUpStatus.SENDING.value, FollowUpStatus.UNKNOWN.value]),
        )
        .values(status=FollowUpStatus.SENT.value, mid=mid, sent_at=at, updated_at=at, reason=None, detail=None)
        .execution_options(synchronize_session=False)
    )
    if not getattr(result, "rowcount", 0):
        return False
    follow_up = session.get(FollowUp, follow_up_id, populate_existing=True)
    assert follow_up is not None
    repo.insert_ignore(
        session,
        ThreadMessage,
        {
            "id": new_id("msg"),
            "thread_id": follow_up.thread_id,
            "account_id": follow_up.account_id,
            "run_id": follow_up.run_id,
            "direction": Direction.OUTBOUND.value,
            "kind": MessageKind.FOLLOW_UP.value,
            "mid": mid,
            "dedupe_key": mid or f"follow_up:{follow_up.id}",
            "text": follow_up.text,
            "payload": follow_up.message,
            "created_at": at,
            "recorded_at": at,
        },
    )
    session.execute(
        update(Thread)
        .where(Thread.id == follow_up.thread_id)
        .values(last_message_at=at, updated_at=at)
        .execution_options(synchronize_session=False)
    )
    repo.bump_engagement(session=session, run_id=follow_up.run_id, account_id=follow_up.account_id, at=at, follow_ups=1)
    log.info("follow_up_sent", follow_up_id=follow_up.id, run_id=follow_up.run_id, mid=mid)
    metrics.observe_follow_up(outcome="sent")
    return True


def in_flight_with_text(*, session: Session, thread_id: str, text: str | None) -> FollowUp | None:
    """A follow-up of this thread whose send is unconfirmed and whose text is ``text`` (to match an echo)."""
    if not text:
        return None
    return session.scalar(
        select(FollowUp)
        .where(
            FollowUp.thread_id == thread_id,
            FollowUp.status.in_([FollowUpStatus.SENDING.value, FollowUpStatus.UNKNOWN.value]),
            FollowUp.text == text,
        )
        .order_by(FollowUp.created_at)
        .limit(1)
    )


# -- repair (the periodic sync) -----------------------------------------------------------------------------------


def sweep(*, runtime: Runtime, now: dt.datetime | None = None) -> tuple[int, int]:
    """Re-enqueue due pending follow-ups whose job was lost; declare stale ``sending`` ones ``unknown``."""
    now = now or clock.now()
    with runtime.session() as session:
        due = list(
            session.scalars(
                select(FollowUp.id)
                .where(
                    FollowUp.status == FollowUpStatus.PENDING.value,
                    (FollowUp.next_attempt_at.is_(None)) | (FollowUp.next_attempt_at <= now - dt.timedelta(seconds=30)),
                )
                .limit(1000)
            )
        )
        stale = session.execute(
            update(FollowUp)
            .where(FollowUp.status == FollowUpStatus.SENDING.value, FollowUp.updated_at < now - SENDING_LEASE)
            .values(
                status=FollowUpStatus.UNKNOWN.value,
                reason="outcome_unknown",
                detail="The worker sending it stopped mid-call; it is not sent again.",
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    for follow_up_id in due:
        enqueue(runtime=runtime, follow_up_id=follow_up_id)
    return len(due), int(getattr(stale, "rowcount", 0) or 0)


__all__ = [
    "SEND_FOLLOW_UP_JOB",
    "confirm_sent",
    "enqueue",
    "in_flight_with_text",
    "send",
    "sweep",
    "trigger",
]
