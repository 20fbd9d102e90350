"""Where a comment becomes a run: one per (account, comment), its rules decided, and the engine told to act.

``accept_comment`` is the webhooks domain's consumer for comment events (``replyflow.webhooks.dispatch``); it
runs inside the transaction that marks the event dispatched and never commits. Work for the engine is enqueued
only after that transaction commits, so a rollback leaves nothing behind; a lost job is repaired by the sweeper.
"""

from __future__ import annotations

import datetime as dt
import random

from pydantic import ValidationError
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from replyflow import wakeup
from replyflow.accounts.models import Account
from replyflow.automation import clock
from replyflow.automation import repository as repo
from replyflow.automation.matching import CommentContext, PostsMode, RuleDecision, choose_rule
from replyflow.automation.models import ACTIVE_STATUSES, KnownMedia, Rule, Run, RunStatus
from replyflow.automation.reasons import SkipReason
from replyflow.automation.schemas import RuleSpec
from replyflow.automation.sql import insert_ignore_returning
from replyflow.automation.triggers import Trigger, is_message_trigger, messaging_deadline, rule_answers
from replyflow.automation.window import pick_delay, private_reply_deadline
from replyflow.contacts import service as contacts
from replyflow.ids import new_id
from replyflow.logging import get_logger
from replyflow.runtime import Runtime
from replyflow.webhooks.events import CommentEvent

log = get_logger("replyflow.automation.intake")

PROCESS_RUN_JOB = "automation.process_run"
_PENDING = "replyflow.automation.pending_jobs"
_LISTENING = "replyflow.automation.listening"
_RULES = "replyflow.automation.rules"
#: Set in ``session.info`` by the reconciler while it feeds polled comments, so their runs say where they came from.
RECONCILING_KEY = "replyflow.automation.reconciling"
#: A delayed DM is due at least this long before the last moment Meta's window allows.
DM_DELAY_SLACK = dt.timedelta(minutes=5)


def accept_comment(*, session: Session, account: Account, event: CommentEvent, runtime: Runtime) -> None:
    """Create the comment's run (a redelivery finds the existing one and does nothing) and decide its rule."""
    now = clock.now()
    run_id = new_id("run")
    run = _insert_run(session=session, account=account, event=event, run_id=run_id, now=now)
    if run is None:
        log.info("comment_already_received", account_id=account.id, comment_id=event.comment_id)
        return
    if event.from_id and event.from_id != account.instagram_id:
        contacts.touch(
            session=session,
            workspace_id=account.workspace_id,
            account_id=account.id,
            igsid=event.from_id,
            username=event.from_username,
            at=run.comment_created_at or now,
        )
    # Nothing below reads what it adds: the run's update goes out in one flush, its steps in one INSERT.
    with session.no_autoflush, repo.steps_in_one_insert(session):
        repo.add_step(
            session=session,
            run=run,
            step="received",
            at=now,
            detail=f"Comment {event.comment_id} on {event.media_id} ({event.field}).",
            data={"source": run.source},
        )
        decide_run(session=session, run=run, account=account, now=now, defer_unknown_media=True)
    log.info(
        "comment_received",
        run_id=run.id,
        comment_id=run.comment_id,
        account_id=account.id,
        status=run.status,
        reason=run.reason,
        rule_id=run.rule_id,
    )
    if run.status in ACTIVE_STATUSES:
        enqueue_after_commit(session=session, runtime=runtime, run_id=run.id)


def _insert_run(
    *, session: Session, account: Account, event: CommentEvent, run_id: str, now: dt.datetime
) -> Run | None:
    source = "reconciler" if session.info.get(RECONCILING_KEY) else "webhook"
    return insert_ignore_returning(
        session,
        Run,
        {
            "id": run_id,
            "workspace_id": account.workspace_id,
            "account_id": account.id,
            "source": source,
            "comment_id": event.comment_id,
            "media_id": event.media_id,
            "media_product_type": event.media_product_type,
            "parent_id": event.parent_id,
            "text": event.text or "",
            "from_id": event.from_id,
            "username": event.from_username,
            "is_live": event.is_live,
            "trigger": Trigger.LIVE_COMMENT.value if event.is_live else Trigger.COMMENT.value,
            "comment_created_at": event.entry_time or now,
            "status": RunStatus.RECEIVED.value,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        },
    )


# -- deciding which rule handles a comment ----------------------------------------------------------------


def decide_run(
    *, session: Session, run: Run, account: Account, now: dt.datetime, defer_unknown_media: bool
) -> RuleDecision[str] | None:
    """Evaluate the account's enabled rules for ``run`` (first match wins) and move it to its next status.

    Returns None when the decision has to wait: an unbound ``next`` rule needs to know whether the post is new,
    and only the engine may ask Meta (``defer_unknown_media``); the run then stays ``received``.
    """
    rules = _rules_for(session, account.id, run.media_id, run.trigger or Trigger.COMMENT.value)
    binds: dict[str, bool] = {}
    for rule in rules:
        if not rule.waits_for_next_post or rule.next_armed_at is None:
            continue
        verdict = next_post_verdict(session=session, account_id=account.id, rule=rule, media_id=run.media_id)
        if verdict is None and defer_unknown_media:
            repo.add_step(
                session=session,
                run=run,
                step="waiting_for_post_info",
                at=now,
                rule_id=rule.id,
                detail="Checking whether this post is the new one a 'next' rule waits for.",
            )
            return None
        if verdict:
            if repo.bind_next_rule(session=session, rule=rule, media_id=run.media_id, now=now):
                log.info("next_rule_bound", rule_id=rule.id, media_id=run.media_id, via="comment")
            binds[rule.id] = rule.bound_media_id == run.media_id

    candidates: list[tuple[str, RuleSpec, CommentContext]] = []
    specs: dict[str, RuleSpec] = {}
    for rule in rules:
        try:
            spec = rule.spec()
        except ValidationError:
            log.error("stored_rule_invalid", rule_id=rule.id)
            continue
        specs[rule.id] = spec
        candidates.append((rule.id, spec, _context(session=session, run=run, rule=rule, now=now, binds=binds)))

    decision = choose_rule(candidates, now=now, account_ig_id=account.own_ids)
    for rule_id, result in decision.results:
        repo.add_step(
            session=session,
            run=run,
            step="rule_checked",
            at=now,
            rule_id=rule_id,
            reason=result.reason.value if result.reason else None,
            detail=result.detail,
            data={"match": result.match},
        )

    if decision.winner is None:
        reason = decision.result.reason or SkipReason.NO_RULE
        run.status = RunStatus.SKIPPED.value
        run.reason = reason.value
        run.detail = decision.result.detail
        run.next_attempt_at = None
        run.finished_at = now
        repo.add_step(session=session, run=run, step="skipped", at=now, reason=reason.value, detail=run.detail)
        return decision

    spec = specs[decision.winner]
    run.rule_id = decision.winner
    run.matched_keyword = decision.result.keyword
    run.matched_at = now
    run.reason = None
    run.detail = decision.result.detail
    run.dm_due_at = _dm_due_at(spec=spec, run=run, now=now)
    run.next_attempt_at = now
    if account.automation_paused:
        pause(session=session, run=run, resume_to=RunStatus.MATCHED, now=now)
    else:
        run.status = RunStatus.MATCHED.value
        repo.add_step(
            session=session,
            run=run,
            step="matched",
            at=now,
            rule_id=decision.winner,
            detail=decision.result.detail,
            data={"keyword": run.matched_keyword, "dm_due_at": run.dm_due_at.isoformat() if run.dm_due_at else None},
        )
    return decision


def _rules_for(session: Session, account_id: str, media_id: str, trigger: str) -> list[Rule]:
    """``repo.rules_for_post`` for the rules that answer ``trigger``, looked up once per session, post and trigger:
    a processing batch decides many comments of the same post in one transaction, and nothing in it edits rules (a
    ``next`` rule's binding changes the very objects kept here)."""
    cache: dict[tuple[str, str, str], list[Rule]] = session.info.setdefault(_RULES, {})
    rules = cache.get((account_id, media_id, trigger))
    if rules is None:
        answering = sorted(t.value for t in Trigger if rule_answers(t.value, trigger))
        rules = cache[(account_id, media_id, trigger)] = repo.rules_for_post(
            session=session, account_id=account_id, media_id=media_id, triggers=answering
        )
    return rules


def _context(*, session: Session, run: Run, rule: Rule, now: dt.datetime, binds: dict[str, bool]) -> CommentContext:
    def claim() -> bool:
        # Only asked for the rule about to win (the last check in the chain), so the claim is the win.
        if run.from_id is None:
            return False
        claimed = repo.claim_user(
            session=session, rule_id=rule.id, media_id=run.media_id, from_id=run.from_id, run_id=run.id, now=now
        )
        return not claimed

    def gates_exhausted() -> bool:
        from replyflow.automation.follow_gate import MAX_GATES

        return bool(run.from_id) and repo.gates_sent(session=session, rule_id=rule.id, igsid=run.from_id or "") >= (
            MAX_GATES
        )

    return CommentContext(
        text=run.text,
        media_id=run.media_id,
        from_id=run.from_id,
        username=run.username,
        comment_id=run.comment_id,
        parent_id=run.parent_id,
        created_at=run.comment_created_at,
        is_live=run.is_live,
        trigger=run.trigger or Trigger.COMMENT.value,
        binds_next_post=binds.get(rule.id, False),
        already_handled_user=claim,
        gates_exhausted=gates_exhausted,
    )


def _dm_due_at(*, spec: RuleSpec, run: Run, now: dt.datetime) -> dt.datetime | None:
    delay = spec.private_reply.delay if spec.private_reply is not None else None
    if delay is None or delay.max_seconds == 0:
        return None
    wait = pick_delay(
        min_seconds=delay.min_seconds,
        max_seconds=delay.max_seconds,
        now=now,
        comment_created_at=run.comment_created_at,
        rng=random.SystemRandom(),
    )
    due = now + wait
    if run.comment_created_at is not None and is_message_trigger(run.trigger):
        return min(due, max(now, messaging_deadline(run.comment_created_at) - DM_DELAY_SLACK))
    if run.comment_created_at is not None:
        # Land well before the deadline: a worker must still pick the run up and Meta must still accept it.
        due = min(due, max(now, private_reply_deadline(run.comment_created_at) - DM_DELAY_SLACK))
    return due


def next_post_verdict(*, session: Session, account_id: str, rule: Rule, media_id: str) -> bool | None:
    """Whether ``media_id`` is the first post published after the ``next`` rule was saved; None: not known yet."""
    armed = rule.next_armed_at
    if armed is None or rule.posts_mode != PostsMode.NEXT.value:
        return False
    known = session.get(KnownMedia, (account_id, media_id))
    if known is None:
        return None
    if known.published_at is None or known.published_at <= armed:
        return False
    first = repo.first_media_after(session=session, account_id=account_id, after=armed)
    return first is not None and first.media_id == media_id


# -- pausing and resuming --------------------------------------------------------------------------------------


def pause(*, session: Session, run: Run, resume_to: RunStatus, now: dt.datetime) -> None:
    """Park a run until its account is re-authorised (``resume_paused_runs``)."""
    run.resume_status = resume_to.value
    run.status = RunStatus.PAUSED.value
    run.reason = SkipReason.ACCOUNT_NEEDS_REAUTH.value
    run.detail = SkipReason.ACCOUNT_NEEDS_REAUTH.description
    run.next_attempt_at = None
    run.lease_owner = None
    run.lease_expires_at = None
    repo.add_step(session=session, run=run, step="paused", at=now, reason=run.reason, detail=run.detail)


def pause_account_runs(*, session: Session, account_id: str, now: dt.datetime, except_run_id: str | None = None) -> int:
    """Pause every active run of the account that no worker holds right now (held ones pause themselves)."""
    runs = session.scalars(
        select(Run).where(
            Run.account_id == account_id,
            Run.status.in_([s.value for s in ACTIVE_STATUSES]),
            Run.id != (except_run_id or ""),
            (Run.lease_expires_at.is_(None)) | (Run.lease_expires_at <= now),
        )
    ).all()
    for run in runs:
        status = RunStatus(run.status)
        pause(
            session=session,
            run=run,
            resume_to=RunStatus.PUBLIC_REPLIED if status is RunStatus.WAITING_QUOTA else status,
            now=now,
        )
    return len(runs)


def resume_paused_runs(*, session: Session, account_id: str, runtime: Runtime) -> int:
    """Call when an account has been re-authorised: its paused runs continue where they stopped.

    Runs in ``session`` (the caller commits); their jobs are enqueued after the commit. Returns how many resumed.
    Comments that aged out of Meta's 7-day window meanwhile end with ``outside_window`` when processed.
    """
    account = session.get(Account, account_id)
    if account is None or account.automation_paused:
        return 0
    now = clock.now()
    runs = session.scalars(select(Run).where(Run.account_id == account_id, Run.status == RunStatus.PAUSED.value)).all()
    for run in runs:
        run.status = run.resume_status or RunStatus.RECEIVED.value
        run.resume_status = None
        run.reason = None
        run.detail = None
        run.next_attempt_at = now
        repo.add_step(session=session, run=run, step="resumed", at=now, detail="The account was re-authorised.")
        enqueue_after_commit(session=session, runtime=runtime, run_id=run.id)
    if runs:
        log.info("runs_resumed", account_id=account_id, count=len(runs))
    return len(runs)


# -- jobs after commit ---------------------------------------------------------------------------------------


def enqueue_after_commit(*, session: Session, runtime: Runtime, run_id: str, delay: float | None = None) -> None:
    """Ask a worker to process ``run_id`` once ``session`` commits (never if it rolls back)."""
    pending: list[tuple[Runtime, str, float | None]] = session.info.setdefault(_PENDING, [])
    pending.append((runtime, run_id, delay))
    if not session.info.get(_LISTENING):
        session.info[_LISTENING] = True
        event.listen(session, "after_commit", _flush_pending)
        event.listen(session, "after_rollback", _drop_pending)


def _flush_pending(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a SAVEPOINT was released; the outer transaction (and the run with it) is not committed yet
    pending: list[tuple[Runtime, str, float | None]] = session.info.pop(_PENDING, [])
    for runtime, run_id, delay in pending:
        enqueue_run(runtime=runtime, run_id=run_id, delay=delay)


def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def enqueue_run(*, runtime: Runtime, run_id: str, delay: float | None = None) -> None:
    """Have the run looked at (now, or in ``delay`` seconds): this process's dispatcher when one runs here (the runs
    table is its queue), else ``automation.process_run`` on the job queue. A failure is logged, not raised (the
    dispatcher's poll and the sweeper pick the run up)."""
    if wakeup.notify(runtime, wakeup.RUNS, delay):
        return
    try:
        runtime.queue.enqueue(PROCESS_RUN_JOB, run_id, delay=delay)
    except Exception as exc:
        log.warning("run_enqueue_failed", run_id=run_id, error=exc)
