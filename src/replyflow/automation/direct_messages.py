"""The engine's stage for DMs sent with ``recipient.id``: the answer to a message trigger, a gate reminder, the unlock.

Comment runs send Meta's Private Reply (``recipient.comment_id``), which Meta accepts once per comment, so an
uncertain attempt is simply re-attempted (``engine.Engine._private_reply_stage``). A ``recipient.id`` send has no
such guard: Meta would deliver a second copy. So here a send is written down before the call (``attempting``) and
after, and one whose outcome is unknown — the worker died mid-call, or Meta's answer never came — is never sent
again: the run ends with ``dm_outcome_unknown`` (Meta's echo, when it comes, still shows it in the conversation).
Nobody ever gets the same DM twice; in the rare unknown case they may get none, and the activity log says so.

These sends use the Send API (300/s per account), not the private-reply budget, so the quota gate is not asked.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from sqlalchemy.orm import Session

from replyflow.accounts.models import Account
from replyflow.automation.models import Run, RunFailure, RunStatus, SendState
from replyflow.automation.reasons import SkipReason
from replyflow.automation.templates import template_variables
from replyflow.automation.triggers import messaging_deadline
from replyflow.conversations.links import track_message
from replyflow.errors import ReplyflowError
from replyflow.graph.client import GraphClient
from replyflow.graph.errors import CommentFinal, CommentFinalReason, GraphError, OutcomeUnknown
from replyflow.graph.types import SendResult
from replyflow.graph.usage import Usage

if TYPE_CHECKING:
    from replyflow.automation.engine import Engine, _Lease, _Snapshot

#: A ``recipient.id`` send whose outcome is unknown; it is not sent again.
DM_OUTCOME_UNKNOWN = "dm_outcome_unknown"
UNKNOWN_DETAIL = (
    "The DM may or may not have reached the person (the call to Meta did not finish). replyflow does not send it "
    "again, so nobody gets it twice; check the conversation in Instagram."
)
_UNCERTAIN = frozenset({SendState.ATTEMPTING.value, SendState.UNKNOWN.value})


def check_window(engine: Engine, lease: _Lease, snap: _Snapshot) -> None:
    """A message run whose DM is not out yet ends ``window_closed`` once Meta's 24-hour window has closed."""
    run = snap.run
    if snap.spec is None or snap.spec.private_reply is None or run.dm_state == SendState.SENT.value:
        return
    deadline = messaging_deadline(run.comment_created_at or run.created_at)
    if engine.now() > deadline:
        raise engine._finish(
            lease,
            RunStatus.FAILED,
            step="failed",
            reason=SkipReason.WINDOW_CLOSED.value,
            detail=(
                f"Meta's 24-hour window after the person's message closed at {deadline.isoformat()}; nothing was "
                "sent. A new message from them opens it again."
            ),
        )


def send_by_id(engine: Engine, account: Account, *, recipient_id: str, message: dict[str, Any]) -> SendResult:
    """One Send API call to ``recipient_id`` (raises Meta's errors as ``GraphError``)."""

    async def work(client: GraphClient, token: SecretStr) -> SendResult:
        return await client.send_message(
            page_id=account.page_id, recipient_id=recipient_id, message=message, token=token
        )

    result, usage = engine.graph.call(account, work)
    _note(engine, account, usage)
    return result


def _note(engine: Engine, account: Account, usage: Usage | None) -> None:
    engine._note_usage(account.id, usage)


def dm_stage(engine: Engine, lease: _Lease, snap: _Snapshot) -> None:
    """``public_replied`` for a message trigger: send the rule's DM (or its follow gate) by ``recipient.id``."""
    from replyflow.automation import follow_gate

    run, account, spec = snap.run, snap.account, snap.spec
    assert spec is not None
    if spec.private_reply is None:
        raise engine._finish(lease, RunStatus.DONE, step="done", detail="The rule sends no DM.")
    if run.dm_state == SendState.SENT.value:
        engine._write(lease, changes={"status": RunStatus.DM_SENT.value})
        return
    if run.dm_state in _UNCERTAIN:
        raise engine._finish(lease, RunStatus.FAILED, step="failed", reason=DM_OUTCOME_UNKNOWN, detail=UNKNOWN_DETAIL)
    now = engine.now()
    if run.dm_due_at is not None and run.dm_due_at > now:
        raise engine._schedule(
            lease,
            run.dm_due_at,
            step=None if run.next_attempt_at == run.dm_due_at else "dm_delayed",
            detail=f"The rule waits before the DM, until {run.dm_due_at.isoformat()}.",
        )
    recipient_id = run.from_id
    if not recipient_id:
        raise engine._finish(
            lease, RunStatus.FAILED, step="failed", reason=RunFailure.INVALID_REQUEST.value, detail="No sender id."
        )
    variables = template_variables(username=run.username, first_name=None, keyword=run.matched_keyword)
    try:
        text, message = follow_gate.first_message(spec, variables, run_id=run.id)
    except ReplyflowError as exc:
        raise engine._finish(
            lease, RunStatus.FAILED, step="failed", reason=RunFailure.INVALID_REQUEST.value, detail=exc.message
        ) from None

    def store_message(session: Session, stored: Run, _account: Account) -> None:
        nonlocal message
        message = track_message(
            session=session, run_or_thread=stored, message=message, public_url=engine.runtime.settings.public_url
        )
        stored.dm_message = message

    engine._write(
        lease,
        changes={
            "dm_state": SendState.ATTEMPTING.value,
            "dm_attempts": run.dm_attempts + 1,
            "dm_text": text,
            "status": RunStatus.PUBLIC_REPLIED.value,
        },
        step="dm_attempt",
        data={"attempt": run.dm_attempts + 1, "recipient": "id"},
        apply=store_message,
    )
    try:
        result = send_by_id(engine, account, recipient_id=recipient_id, message=message)
    except OutcomeUnknown:
        raise engine._finish(
            lease,
            RunStatus.FAILED,
            step="failed",
            reason=DM_OUTCOME_UNKNOWN,
            detail=UNKNOWN_DETAIL,
            changes={"dm_state": SendState.UNKNOWN.value},
        ) from None
    except CommentFinal as exc:
        closed = exc.reason is CommentFinalReason.OUTSIDE_WINDOW
        raise engine._finish(
            lease,
            RunStatus.FAILED,
            step="failed",
            reason=SkipReason.WINDOW_CLOSED.value if closed else exc.reason.value,
            detail="Meta answered that the 24-hour messaging window is closed; nothing was sent."
            if closed
            else exc.message,
            changes={"dm_state": SendState.NONE.value},
        ) from None
    except GraphError as exc:
        engine._on_graph_error(lease, snap, exc, what="send_message", changes={"dm_state": SendState.NONE.value})
    raise engine._dm_sent(
        lease, snap, message_id=result.message_id, recipient_id=result.recipient_id or recipient_id, reconciled=False
    )


def window_open(*, opened_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a ``recipient.id`` send is still allowed after the person's message or tap at ``opened_at``."""
    return opened_at is not None and now <= messaging_deadline(opened_at)
