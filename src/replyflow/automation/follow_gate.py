""" "Follow to unlock": a gated rule's first DM is the gate, a tap asks Meta whether the person follows, then unlock.

The flow, all on the run (one run model, one lease, one exactly-once path):

1. The run's DM stage sends the gate (``first_message``): the gate text with one postback button whose payload
   names the run (``rf:{run_id}:gate``). For a comment that is the Private Reply; for a DM trigger it goes by
   ``recipient.id``. Once it is out the run is parked ``gated`` (``park``) and a ``follow_gates`` row starts.
2. The tap arrives as a ``messaging_postbacks`` event (``accept_tap``, in the webhook's transaction): one
   conditional UPDATE moves the run ``gated`` → ``unlocking``. A second tap (a double tap, or Meta redelivering
   the postback) finds it no longer ``gated`` and changes nothing; the activity log records it was ignored.
3. The engine claims the ``unlocking`` run (``unlock_stage``) and asks Meta
   ``GET /{igsid}?fields=is_user_follow_business``. A follower gets the rule's DM by ``recipient.id`` (their tap
   opened Meta's 24-hour window); anyone else — and an answer Meta leaves out or refuses, read as "not yet" with
   the reason in the log — gets the gate again, at most ``MAX_GATES`` times per person and rule in all.

Exactly once: the unlocked DM is written down ``attempting`` before the call and ``sent`` after, under the run's
lease. A crash before the call leaves the run ``unlocking``: the next worker checks again and sends it. A crash
during the call leaves ``attempting``: that outcome is unknown and a ``recipient.id`` send cannot be reconciled
with Meta, so it is never sent again (see ``direct_messages``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from replyflow.accounts.models import Account
from replyflow.automation import clock
from replyflow.automation import repository as repo
from replyflow.automation.direct_messages import send_by_id
from replyflow.automation.models import FollowGateState, Run, RunFailure, RunStatus, SendState
from replyflow.automation.private_reply import build_message
from replyflow.automation.reasons import SkipReason
from replyflow.automation.schemas import RuleSpec
from replyflow.automation.templates import template_variables
from replyflow.automation.triggers import messaging_deadline
from replyflow.contacts import service as contacts
from replyflow.conversations.links import track_message
from replyflow.conversations.service import record_direct_message
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
from replyflow.graph.messages import PostbackButton, button_template
from replyflow.logging import get_logger
from replyflow.runtime import Runtime
from replyflow.webhooks.events import PostbackEvent

if TYPE_CHECKING:
    from pydantic import SecretStr

    from replyflow.automation.engine import Engine, _Lease, _Snapshot, _Stop

log = get_logger("replyflow.automation.follow_gate")

#: At most this many gates (the first and the reminders) per person and rule.
MAX_GATES = 3
_PAYLOAD = re.compile(r"^rf:(run_[0-9a-z]{1,36}):gate$")
_UNCERTAIN = frozenset({SendState.ATTEMPTING.value, SendState.UNKNOWN.value})

# Typed reasons, stored on steps (and on runs that end because of the gate).
GATE_LIMIT_REACHED = "gate_limit_reached"
UNLOCK_OUTCOME_UNKNOWN = "unlock_outcome_unknown"
FOLLOW_UNKNOWN = "follow_status_unknown"


def gate_payload(run_id: str) -> str:
    """What Meta sends back in ``postback.payload`` when the person taps the gate's button."""
    return f"rf:{run_id}:gate"


def parse_gate_payload(payload: str | None) -> str | None:
    match = _PAYLOAD.match(payload or "")
    return match.group(1) if match is not None else None


def gate_message(spec: RuleSpec, variables: Mapping[str, str], *, run_id: str) -> tuple[str, dict[str, Any]]:
    """The gate: its text and one postback button."""
    gate = spec.follow_gate
    assert gate is not None
    text = gate.render_text(variables)
    return text, button_template(text, [PostbackButton(title=gate.button_title, payload=gate_payload(run_id))])


def first_message(spec: RuleSpec, variables: Mapping[str, str], *, run_id: str) -> tuple[str, dict[str, Any]]:
    """The first DM a matched run sends: the gate when the rule has one, else the rule's DM."""
    if spec.follow_gate is not None:
        return gate_message(spec, variables, run_id=run_id)
    assert spec.private_reply is not None
    return build_message(spec.private_reply, variables, run_id=run_id)


def gates_sent_to(*, session: Session, rule_id: str | None, igsid: str) -> int:
    """Gates this rule sent this person, over all their runs."""
    return repo.gates_sent(session=session, rule_id=rule_id, igsid=igsid)


# -- 1. the gate is out: park the run ------------------------------------------------------------------------------


def park(engine: Engine, lease: _Lease, snap: _Snapshot) -> _Stop:
    """After the first DM (the gate) is sent: wait for the tap. Returns the engine's stop signal to raise."""
    now = engine.now()

    def start(session: Session, run: Run, _account: Account) -> None:
        repo_insert_gate(session=session, run=run, now=now)

    engine._write(
        lease,
        changes={"status": RunStatus.GATED.value, "next_attempt_at": None},
        step="gate_sent",
        detail="The follow gate is out; the DM unlocks when the person taps its button and follows the account.",
        apply=start,
        release=True,
    )
    log.info("follow_gate_sent", run_id=lease.run_id)
    from replyflow.automation import engine as engine_module

    return engine_module._Stop(engine_module.Outcome.FINISHED)


def repo_insert_gate(*, session: Session, run: Run, now: Any) -> None:
    from replyflow.automation.sql import insert_ignore

    insert_ignore(
        session,
        FollowGateState,
        {
            "run_id": run.id,
            "workspace_id": run.workspace_id,
            "account_id": run.account_id,
            "rule_id": run.rule_id,
            "igsid": run.dm_recipient_id or run.from_id or "",
            "gates_sent": 1,
            "regate_state": SendState.NONE.value,
            "taps": 0,
            "checks": 0,
            "unlock_state": SendState.NONE.value,
            "created_at": now,
            "updated_at": now,
        },
    )


# -- 2. the tap (inside the webhook's transaction) -------------------------------------------------------------------


def accept_tap(*, session: Session, account: Account, event: PostbackEvent, runtime: Runtime) -> bool:
    """A tap on a gate's button: move its run to ``unlocking`` once. False when the payload is not a gate's."""
    from replyflow.automation.intake import enqueue_after_commit

    run_id = parse_gate_payload(event.payload)
    if run_id is None:
        return False
    run = session.get(Run, run_id)
    gate = session.get(FollowGateState, run_id)
    # Payloads come back from the outside world: only a gate of this account, tapped by the person it went to.
    if run is None or gate is None or run.account_id != account.id or gate.igsid != event.sender_id:
        log.info("gate_tap_unknown", run_id=run_id)
        return True
    now = clock.now()
    at = event.timestamp or now
    session.execute(
        update(FollowGateState)
        .where(FollowGateState.run_id == run_id)
        .values(
            taps=FollowGateState.taps + 1,
            first_tap_at=func.coalesce(FollowGateState.first_tap_at, at),
            last_tap_at=at,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    moved = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.GATED.value)
        .values(status=RunStatus.UNLOCKING.value, next_attempt_at=now, updated_at=now, reason=None, detail=None)
        .execution_options(synchronize_session=False)
    )
    session.refresh(run)
    if getattr(moved, "rowcount", 0):
        repo.add_step(
            session=session,
            run=run,
            step="gate_tapped",
            at=now,
            rule_id=run.rule_id,
            detail="The person tapped the gate's button; checking with Meta whether they follow.",
        )
        enqueue_after_commit(session=session, runtime=runtime, run_id=run.id)
        log.info("gate_tapped", run_id=run.id)
    else:
        repo.add_step(
            session=session,
            run=run,
            step="gate_tap_ignored",
            at=now,
            rule_id=run.rule_id,
            detail="Another tap on the gate while it is already being checked or unlocked: nothing more is sent.",
        )
        log.info("gate_tap_ignored", run_id=run.id, status=run.status)
    return True


# -- 3. the engine: ask Meta, then unlock or gate again -----------------------------------------------------------


def _read_gate(engine: Engine, run_id: str) -> FollowGateState | None:
    with engine.runtime.read_session() as session:
        return session.get(FollowGateState, run_id)


def _update_gate(session: Session, run_id: str, **values: Any) -> None:
    session.execute(
        update(FollowGateState)
        .where(FollowGateState.run_id == run_id)
        .values(updated_at=clock.now(), **values)
        .execution_options(synchronize_session=False)
    )


def unlock_stage(engine: Engine, lease: _Lease, snap: _Snapshot) -> None:
    """``unlocking``: the person tapped. Always ends in a stop (done, gated again, retry, failed)."""
    run, spec = snap.run, snap.spec
    assert spec is not None
    gate = _read_gate(engine, run.id)
    if gate is None or spec.private_reply is None:
        raise engine._finish(
            lease,
            RunStatus.FAILED,
            step="failed",
            reason=RunFailure.RULE_REMOVED.value,
            detail="The rule no longer has a follow gate and a DM.",
        )
    if gate.unlock_state == SendState.SENT.value:
        raise engine._finish(lease, RunStatus.DONE, step="done")
    if gate.unlock_state in _UNCERTAIN:
        raise engine._finish(
            lease,
            RunStatus.FAILED,
            step="failed",
            reason=UNLOCK_OUTCOME_UNKNOWN,
            detail=(
                "The unlocked DM may or may not have reached the person (the call to Meta did not finish). It is "
                "not sent again, so nobody gets it twice; check the conversation in Instagram."
            ),
        )
    now = engine.now()
    opened = gate.last_tap_at or now
    if now > messaging_deadline(opened):
        raise engine._finish(
            lease,
            RunStatus.FAILED,
            step="failed",
            reason=SkipReason.WINDOW_CLOSED.value,
            detail="Meta's 24-hour window after the person's tap closed before the DM could go; nothing was sent.",
        )
    igsid = gate.igsid
    follows, why = _ask_meta(engine, lease, snap, igsid)

    def note_check(session: Session, _run: Run, _account: Account) -> None:
        values: dict[str, Any] = {"checks": FollowGateState.checks + 1, "follows": follows}
        if follows:
            values["followed_at"] = func.coalesce(FollowGateState.followed_at, now)
        _update_gate(session, run.id, **values)
        contacts.set_follows(session=session, account_id=run.account_id, igsid=igsid, follows=follows, at=now)

    verdict = "follows" if follows else ("does_not_follow" if follows is False else "unknown")
    engine._write(
        lease,
        step="follow_checked",
        reason=None if follows is not None else FOLLOW_UNKNOWN,
        detail=why,
        data={"follows": follows, "verdict": verdict},
        apply=note_check,
    )
    variables = template_variables(username=run.username, first_name=None, keyword=run.matched_keyword)
    if follows:
        _unlock(engine, lease, snap, gate, variables)
    _gate_again(engine, lease, snap, gate, variables)


def _ask_meta(engine: Engine, lease: _Lease, snap: _Snapshot, igsid: str) -> tuple[bool | None, str]:
    """(Meta's answer, a plain sentence for the activity log). Throttling and outages retry the run."""

    async def work(client: GraphClient, token: SecretStr) -> bool | None:
        return await client.get_follow_status(igsid=igsid, token=token)

    try:
        follows, usage = engine.graph.call(snap.account, work)
    except (RateLimited, TransientError, OutcomeUnknown, TokenInvalid) as exc:
        engine._on_graph_error(lease, snap, exc, what="get_follow_status")
    except GraphError as exc:
        # Refused (no consent yet, a permission missing, an unknown person): the answer is simply not known.
        return None, (
            "Meta did not say whether this person follows the account "
            f"({exc.message}); replyflow treats that as 'not yet' and sends the gate again."
        )
    engine._note_usage(snap.account.id, usage)
    if follows is None:
        return None, (
            "Meta's answer did not say whether this person follows the account; replyflow treats that as 'not yet' "
            "and sends the gate again."
        )
    if follows:
        return True, "Meta says the person follows the account: sending the DM."
    return False, "Meta says the person does not follow the account yet: sending the gate again."


def _unlock(
    engine: Engine,
    lease: _Lease,
    snap: _Snapshot,
    gate: FollowGateState,
    variables: Mapping[str, str],
) -> None:
    run, account, spec = snap.run, snap.account, snap.spec
    assert spec is not None and spec.private_reply is not None
    text, message = build_message(spec.private_reply, variables, run_id=run.id)

    def attempting(session: Session, stored: Run, _account: Account) -> None:
        nonlocal message
        message = track_message(
            session=session, run_or_thread=stored, message=message, public_url=engine.runtime.settings.public_url
        )
        _update_gate(session, run.id, unlock_state=SendState.ATTEMPTING.value, unlock_text=text, unlock_message=message)

    engine._write(lease, step="unlock_attempt", apply=attempting)
    try:
        result = send_by_id(engine, account, recipient_id=gate.igsid, message=message)
    except OutcomeUnknown:

        def unknown(session: Session, _run: Run, _account: Account) -> None:
            _update_gate(session, run.id, unlock_state=SendState.UNKNOWN.value)

        engine._write(lease, apply=unknown)
        raise engine._finish(
            lease,
            RunStatus.FAILED,
            step="failed",
            reason=UNLOCK_OUTCOME_UNKNOWN,
            detail="Meta did not confirm the unlocked DM; it is not sent again, so nobody gets it twice.",
        ) from None
    except GraphError as exc:

        def not_sent(session: Session, _run: Run, _account: Account) -> None:
            _update_gate(session, run.id, unlock_state=SendState.NONE.value)

        engine._write(lease, apply=not_sent)
        if isinstance(exc, CommentFinal) and exc.reason is CommentFinalReason.OUTSIDE_WINDOW:
            raise engine._finish(
                lease,
                RunStatus.FAILED,
                step="failed",
                reason=SkipReason.WINDOW_CLOSED.value,
                detail="Meta answered that the 24-hour messaging window is closed; nothing was sent.",
            ) from None
        engine._on_graph_error(lease, snap, exc, what="send_message")
    now = engine.now()

    def sent(session: Session, stored: Run, _account: Account) -> None:
        _update_gate(
            session,
            run.id,
            unlock_state=SendState.SENT.value,
            unlock_message_id=result.message_id,
            unlocked_at=now,
        )
        record_direct_message(session=session, run=stored, text=text, message=message, mid=result.message_id, at=now)

    engine._write(lease, step="unlocked", data={"message_id": result.message_id}, apply=sent)
    log.info("follow_gate_unlocked", run_id=run.id, message_id=result.message_id)
    raise engine._finish(lease, RunStatus.DONE, step="done")


def _gate_again(
    engine: Engine,
    lease: _Lease,
    snap: _Snapshot,
    gate: FollowGateState,
    variables: Mapping[str, str],
) -> None:
    run, account, spec = snap.run, snap.account, snap.spec
    assert spec is not None
    with engine.runtime.read_session() as session:
        sent_so_far = gates_sent_to(session=session, rule_id=gate.rule_id, igsid=gate.igsid)
    if sent_so_far >= MAX_GATES or spec.follow_gate is None:
        raise engine._finish(
            lease,
            RunStatus.DONE,
            step=GATE_LIMIT_REACHED,
            detail=(
                f"The person did not follow after {sent_so_far} gates; replyflow stops asking (at most {MAX_GATES} "
                "per person and rule)."
            ),
        )
    text, message = gate_message(spec, variables, run_id=run.id)

    def attempting(session: Session, _run: Run, _account: Account) -> None:
        _update_gate(
            session, run.id, regate_state=SendState.ATTEMPTING.value, gates_sent=FollowGateState.gates_sent + 1
        )

    engine._write(lease, step="gate_again_attempt", apply=attempting)
    outcome = SendState.SENT.value
    mid: str | None = None
    try:
        mid = send_by_id(engine, account, recipient_id=gate.igsid, message=message).message_id
    except OutcomeUnknown:
        outcome = SendState.UNKNOWN.value  # a reminder that may be out: not sent again; the person can still tap
    except GraphError as exc:

        def not_sent(session: Session, _run: Run, _account: Account) -> None:
            _update_gate(session, run.id, regate_state=SendState.NONE.value, gates_sent=FollowGateState.gates_sent - 1)

        engine._write(lease, apply=not_sent)
        engine._on_graph_error(lease, snap, exc, what="send_message")

    def parked(session: Session, stored: Run, _account: Account) -> None:
        _update_gate(session, run.id, regate_state=outcome)
        if outcome == SendState.SENT.value:
            record_direct_message(session=session, run=stored, text=text, message=message, mid=mid, at=engine.now())

    engine._write(
        lease,
        changes={"status": RunStatus.GATED.value, "next_attempt_at": None},
        step="gate_sent_again",
        detail=f"Gate {sent_so_far + 1} of at most {MAX_GATES} is out; waiting for the person's next tap.",
        apply=parked,
        release=True,
    )
    from replyflow.automation import engine as engine_module

    raise engine_module._Stop(engine_module.Outcome.FINISHED)


def funnel_counts(*, session: Session, workspace_id: str, rule_id: str | None = None) -> dict[str, int]:
    """The gate's funnel: gates sent (people gated) → tapped → followed → unlocked."""
    query = select(
        func.count(),
        func.count(FollowGateState.first_tap_at),
        func.count(FollowGateState.followed_at),
        func.count(FollowGateState.unlocked_at),
    ).where(FollowGateState.workspace_id == workspace_id)
    if rule_id is not None:
        query = query.where(FollowGateState.rule_id == rule_id)
    row = session.execute(query).one()
    return {"gate_sent": int(row[0]), "tapped": int(row[1]), "followed": int(row[2]), "unlocked": int(row[3])}
