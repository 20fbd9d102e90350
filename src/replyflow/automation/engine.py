"""The run engine: a persisted state machine that replies publicly, then sends the one Private Reply, exactly once.

A worker *claims* a run with a lease (one atomic UPDATE, on SQLite and PostgreSQL alike), then moves it forward
step by step. Every side effect is written down before it is attempted (``attempting``) and after (``sent``,
``unknown`` …), in the same row, and every write checks the lease is still ours. If the process dies, the
lease runs out, the sweeper hands the run to another worker, and that worker finds ``attempting``: an outcome it
must *reconcile*, never repeat blindly —

* public reply: list the comment's replies and look for ours (our Instagram account, the same text);
* private reply: re-attempt; Meta allows one per comment, so 100/2534025 on the re-attempt means "already sent".

Meta's limits: the account's private-reply budget (``QuotaGate``) is asked before every DM, and a run over budget
is parked as ``waiting_quota`` until the moment its turn comes; 4/17/32/613 answers and usage headers above
~80% slow the account down; transient errors back off exponentially with jitter, a bounded number of times.
``TokenInvalid`` marks the account and pauses its runs until it is re-authorised.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import random
import socket
import threading
import uuid
import weakref
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NoReturn, cast

import structlog
from sqlalchemy import Table, func, insert, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, aliased

from replyflow.accounts.health import mark_token_invalid
from replyflow.accounts.models import Account
from replyflow.automation import clock as automation_clock
from replyflow.automation import direct_messages, follow_gate
from replyflow.automation import repository as repo
from replyflow.automation.graph_calls import AccountGraph, NoToken, Work
from replyflow.automation.intake import (
    decide_run,
    enqueue_run,
    pause,
    pause_account_runs,
)
from replyflow.automation.matching import PostsMode
from replyflow.automation.models import (
    ACTIVE_STATUSES,
    AccountAutomationState,
    Rule,
    Run,
    RunFailure,
    RunStatus,
    RunStep,
    SendState,
)
from replyflow.automation.quota import QuotaGate, build_quota_gate
from replyflow.automation.reasons import SkipReason
from replyflow.automation.schemas import RuleSpec
from replyflow.automation.sql import insert_ignore
from replyflow.automation.templates import template_variables
from replyflow.automation.triggers import is_message_trigger
from replyflow.automation.window import private_reply_deadline
from replyflow.conversations.links import has_tracked_links, track_message
from replyflow.conversations.service import record_private_reply
from replyflow.errors import ReplyflowError
from replyflow.graph.client import GraphClient
from replyflow.graph.errors import (
    CommentFinal,
    CommentFinalReason,
    GraphError,
    InvalidRequest,
    OutcomeUnknown,
    PermissionDenied,
    RateLimited,
    TokenInvalid,
    TransientError,
)
from replyflow.graph.types import Comment, Media, Paginated, SendResult
from replyflow.graph.usage import Usage
from replyflow.logging import get_logger
from replyflow.runtime import Runtime

log = get_logger("replyflow.automation.engine")

UNCERTAIN = frozenset({SendState.ATTEMPTING.value, SendState.UNKNOWN.value})


@dataclass(frozen=True)
class EngineOptions:
    """Tunables; the defaults suit Meta. Tests shorten the lease and the back-off."""

    lease_seconds: float = 30.0
    max_attempts: int = 10
    backoff_base_seconds: float = 5.0
    backoff_max_seconds: float = 1800.0
    # At most this many runs of one account are worked on at once, so a viral post cannot take every worker.
    account_max_in_flight: int = 2
    busy_account_retry_seconds: float = 2.0
    # Above this share of any Meta limit (usage headers), the account's calls are spaced out.
    slowdown_percent: float = 80.0
    # Transitions one claim may make before handing the run back to the queue (a safety net against loops).
    max_steps_per_claim: int = 16
    # Sweeper: a run due this long without being picked up is enqueued again.
    sweep_grace_seconds: float = 30.0
    sweep_batch: int = 1000


class Outcome(StrEnum):
    """What one ``process_run`` call did, for logs and tests."""

    NOT_CLAIMED = "not_claimed"
    BUSY_ACCOUNT = "busy_account"
    FINISHED = "finished"
    SCHEDULED = "scheduled"
    WAITING_QUOTA = "waiting_quota"
    PAUSED = "paused"
    LEASE_LOST = "lease_lost"
    ERROR = "error"


class LeaseLost(Exception):
    """Another worker took the run over (our lease ran out); stop touching it."""


class _Stop(Exception):
    """A stage handed the run back (scheduled, finished, paused); ``outcome`` says how."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


#: A step to record: (step, reason, detail, data).
_StepRow = tuple[str, str | None, str | None, dict[str, Any] | None]
_ACTIVE = frozenset(s.value for s in ACTIVE_STATUSES)
_RUNS = cast(Table, Run.__table__)
_STEPS = cast(Table, RunStep.__table__)


@dataclass
class _Lease:
    run_id: str
    owner: str
    # The run as we last read or wrote it. While we hold the lease nobody else writes the run, so the next step
    # starts from it instead of reading the run, its account and its rule again; an ``apply`` write (which may
    # change anything) forgets it.
    snapshot: _Snapshot | None = None


@dataclass(frozen=True)
class ClaimedRun:
    """A run this process holds the lease of (from :meth:`Engine.claim_due`), to pass to :meth:`Engine.drive`."""

    run_id: str
    owner: str
    comment_id: str
    account_id: str


def lease_owner_process(owner: str) -> tuple[str, int] | None:
    """(host, pid) of the process that wrote a lease owner ``host:pid:token``; None for another form."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@dataclass
class _Snapshot:
    """The run, its account and its rule as read at the top of a step (detached copies)."""

    run: Run
    account: Account
    rule: Rule | None
    spec: RuleSpec | None
    throttled_until: dt.datetime | None = None


class Engine:
    """Processes runs. One per process (``engine_for``); safe to call from many worker threads at once."""

    def __init__(
        self,
        *,
        runtime: Runtime,
        graph: AccountGraph,
        gate: QuotaGate,
        options: EngineOptions | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        rng: random.Random | None = None,
        enqueue: Callable[[str, float | None], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.graph = graph
        self.gate = gate
        self.options = options or EngineOptions(lease_seconds=float(runtime.settings.run_lease_seconds))
        self._clock = clock
        self.rng = rng or random.SystemRandom()
        self._enqueue = enqueue or (lambda run_id, delay: enqueue_run(runtime=runtime, run_id=run_id, delay=delay))
        self.worker_name = f"{socket.gethostname()[:32]}:{os.getpid()}"

    def now(self) -> dt.datetime:
        return self._clock() if self._clock is not None else automation_clock.now()

    @property
    def lease(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.options.lease_seconds)

    # -- entry points ------------------------------------------------------------------------------------

    def process_run(self, run_id: str) -> Outcome:
        """Claim the run and move it as far as it can go now. Safe to call any number of times, concurrently."""
        lease = _Lease(run_id=run_id, owner=f"{self.worker_name}:{uuid.uuid4().hex[:10]}")
        now = self.now()
        if not self._claim(lease, now):
            return self._not_claimed(run_id, now)
        with self.runtime.session() as session:
            ids = session.execute(select(Run.comment_id, Run.account_id).where(Run.id == run_id)).first()
        if ids is None:
            return Outcome.NOT_CLAIMED
        # Every log line of this claim (ours and the Graph client's) names the run and the comment.
        with structlog.contextvars.bound_contextvars(run_id=run_id, comment_id=ids[0], account_id=ids[1]):
            return self._drive(lease)

    def claim_due(self, *, limit: int, per_account: int, skip_accounts: Collection[str] = ()) -> list[ClaimedRun]:
        """Lease up to ``limit`` due runs in one statement, fairly: every account's first due run before any
        account's second, and at most ``per_account`` of one account. Runs whose lease ran out (a dead worker) are
        due too, so a crashed process's work is taken over here without a sweep."""
        if limit <= 0:
            return []
        now = self.now()
        active = [s.value for s in ACTIVE_STATUSES]
        free = or_(Run.lease_expires_at.is_(None), Run.lease_expires_at <= now)
        conditions = [Run.status.in_(active), free, or_(Run.next_attempt_at.is_(None), Run.next_attempt_at <= now)]
        if skip_accounts:
            conditions.append(Run.account_id.not_in(sorted(skip_accounts)))
        with self.runtime.read_session() as session:
            # Most wake-ups after a run finishes find nothing due: a read says so without taking the write lock.
            if session.scalar(select(Run.id).where(*conditions).limit(1)) is None:
                return []
        rank = func.row_number().over(partition_by=Run.account_id, order_by=(Run.next_attempt_at, Run.id))
        ranked = select(Run.id, Run.next_attempt_at, rank.label("rank")).where(*conditions).subquery()
        chosen = (
            select(ranked.c.id)
            .where(ranked.c.rank <= per_account)
            .order_by(ranked.c.rank, ranked.c.next_attempt_at)
            .limit(limit)
        )
        owner = f"{self.worker_name}:{uuid.uuid4().hex[:10]}"
        statement = (
            update(Run)
            # Checked again row by row: a concurrent claimer (another worker on PostgreSQL) may have won it.
            .where(Run.id.in_(chosen.scalar_subquery()), Run.status.in_(active), free)
            .values(lease_owner=owner, lease_expires_at=now + self.lease, updated_at=now)
            .returning(Run.id, Run.comment_id, Run.account_id)
            .execution_options(synchronize_session=False)
        )
        with self.runtime.session() as session:
            rows = session.execute(statement).all()
        return [ClaimedRun(run_id=r[0], owner=owner, comment_id=r[1], account_id=r[2]) for r in rows]

    def drive(self, claimed: ClaimedRun) -> Outcome:
        """Move a run leased by :meth:`claim_due` as far as it can go now."""
        lease = _Lease(run_id=claimed.run_id, owner=claimed.owner)
        with structlog.contextvars.bound_contextvars(
            run_id=claimed.run_id, comment_id=claimed.comment_id, account_id=claimed.account_id
        ):
            return self._drive(lease)

    def next_due(self) -> dt.datetime | None:
        """When the next run becomes claimable: the earliest due time of a free run, or lease end of a held one."""
        active = [s.value for s in ACTIVE_STATUSES]
        with self.runtime.read_session() as session:
            due = session.scalar(
                select(func.min(Run.next_attempt_at)).where(Run.status.in_(active), Run.lease_owner.is_(None))
            )
            lease_end = session.scalar(
                select(func.min(Run.lease_expires_at)).where(Run.status.in_(active), Run.lease_owner.is_not(None))
            )
        moments = [m for m in (due, lease_end) if m is not None]
        return min(moments) if moments else None

    def renew_leases(self, claimed: Collection[ClaimedRun]) -> int:
        """Heartbeat: push out the leases this process holds, so only a dead process's leases run out."""
        if not claimed:
            return 0
        by_owner: dict[str, list[str]] = {}
        for item in claimed:
            by_owner.setdefault(item.owner, []).append(item.run_id)
        return self._move_lease_ends(by_owner, self.now() + self.lease)

    def _move_lease_ends(self, by_owner: dict[str, list[str]], until: dt.datetime) -> int:
        """Set the lease end of the given runs, only where each owner still holds them; returns how many."""
        moved = 0
        with self.runtime.session() as session:
            for owner, ids in by_owner.items():
                result = session.execute(
                    update(Run)
                    .where(Run.id.in_(ids), Run.lease_owner == owner)
                    .values(lease_expires_at=until)
                    .execution_options(synchronize_session=False)
                )
                moved += int(getattr(result, "rowcount", 0) or 0)
        return moved

    def release_dead_leases(self) -> int:
        """Free at once the leases of processes on this host that are gone (this process restarting after a
        crash): their runs continue now instead of when the lease would have run out."""
        now = self.now()
        host, me = self.worker_name.rsplit(":", 1)
        with self.runtime.read_session() as session:
            held = session.execute(
                select(Run.id, Run.lease_owner).where(Run.lease_owner.is_not(None), Run.lease_expires_at > now)
            ).all()
        dead: dict[str, list[str]] = {}
        for run_id, owner in held:
            process = lease_owner_process(owner or "")
            if process is not None and process[0] == host and str(process[1]) != me and not _process_alive(process[1]):
                dead.setdefault(owner or "", []).append(run_id)
        released = self._move_lease_ends(dead, now) if dead else 0
        if released:
            log.info("dead_leases_released", runs=released)
        return released

    def _drive(self, lease: _Lease) -> Outcome:
        run_id = lease.run_id
        try:
            for _ in range(self.options.max_steps_per_claim):
                self._step(lease)
            self._hand_back(lease, delay=0.0)
            return Outcome.SCHEDULED
        except _Stop as stop:
            return stop.outcome
        except LeaseLost:
            log.warning("run_lease_lost", run_id=run_id)
            return Outcome.LEASE_LOST
        except Exception as exc:
            log.error("run_step_crashed", run_id=run_id, error=exc, exc_info=exc)
            try:
                self._retry(lease, reason="internal_error", detail=f"{type(exc).__name__} while processing.")
            except Exception as inner:  # the database itself is gone: the lease expires and the sweeper retries
                log.error("run_retry_failed", run_id=run_id, error=inner)
            return Outcome.ERROR

    def sweep(self) -> int:
        """Enqueue runs that are due but unattended (lost job, killed worker); resume runs of repaired accounts."""
        from replyflow.automation.intake import resume_paused_runs

        now = self.now()
        grace = now - dt.timedelta(seconds=self.options.sweep_grace_seconds)
        active = [s.value for s in ACTIVE_STATUSES]
        with self.runtime.session() as session:
            due = session.scalars(
                select(Run.id)
                .where(
                    Run.status.in_(active),
                    or_(
                        (Run.lease_owner.is_not(None)) & (Run.lease_expires_at <= now),
                        (Run.lease_owner.is_(None))
                        & (or_(Run.next_attempt_at.is_(None), Run.next_attempt_at <= grace)),
                    ),
                )
                .order_by(Run.next_attempt_at)
                .limit(self.options.sweep_batch)
            ).all()
            paused_accounts = session.scalars(
                select(Run.account_id).where(Run.status == RunStatus.PAUSED.value).distinct()
            ).all()
        for run_id in due:
            self._enqueue(run_id, None)
        resumed = 0
        for account_id in paused_accounts:
            with self.runtime.session() as session:
                resumed += resume_paused_runs(session=session, account_id=account_id, runtime=self.runtime)
        if due or resumed:
            log.info("runs_swept", enqueued=len(due), resumed=resumed)
        return len(due) + resumed

    # -- claiming ----------------------------------------------------------------------------------------

    def _claim(self, lease: _Lease, now: dt.datetime) -> bool:
        other = aliased(Run)
        in_flight = (
            select(func.count())
            .select_from(other)
            .where(other.account_id == Run.account_id, other.lease_expires_at > now, other.id != Run.id)
            .scalar_subquery()
        )
        statement = (
            update(Run)
            .where(
                Run.id == lease.run_id,
                Run.status.in_([s.value for s in ACTIVE_STATUSES]),
                or_(Run.lease_expires_at.is_(None), Run.lease_expires_at <= now),
                or_(Run.next_attempt_at.is_(None), Run.next_attempt_at <= now + dt.timedelta(seconds=1)),
                in_flight < self.options.account_max_in_flight,
            )
            .values(lease_owner=lease.owner, lease_expires_at=now + self.lease, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        with self.runtime.session() as session:
            result = session.execute(statement)
            return bool(getattr(result, "rowcount", 0))

    def _not_claimed(self, run_id: str, now: dt.datetime) -> Outcome:
        with self.runtime.session() as session:
            run = session.get(Run, run_id)
            if run is None or run.status not in ACTIVE_STATUSES:
                return Outcome.NOT_CLAIMED
            leased = run.lease_expires_at is not None and run.lease_expires_at > now
            due = run.next_attempt_at is None or run.next_attempt_at <= now + dt.timedelta(seconds=1)
        if not leased and due:
            # Only the per-account limit can refuse a free, due run: come back shortly, others go first.
            delay = self.options.busy_account_retry_seconds * self.rng.uniform(0.5, 1.5)
            self._enqueue(run_id, delay)
            return Outcome.BUSY_ACCOUNT
        return Outcome.NOT_CLAIMED

    # -- writing under the lease -------------------------------------------------------------------------

    def _write(
        self,
        lease: _Lease,
        *,
        changes: dict[str, Any] | None = None,
        step: str | None = None,
        reason: str | None = None,
        detail: str | None = None,
        data: dict[str, Any] | None = None,
        release: bool = False,
        apply: Callable[[Session, Run, Account], None] | None = None,
        finish: bool = False,
        hook: Callable[[Session, Run], None] | None = None,
    ) -> None:
        """One transaction on the run, only while we still hold it; extends the lease unless ``release``.
        ``finish``: then the run is done (its ``done`` step recorded after the others), in the same transaction.
        ``apply`` may change the run and its account; ``hook`` writes beside the run (reads it, never changes it)."""
        now = self.now()
        steps = [(step, reason, detail, data)] if step is not None else []
        if apply is None and lease.snapshot is not None:
            known = lease.snapshot.run
            self._write_known(lease, known, now, changes or {}, steps, release=release, finish=finish, hook=hook)
            return
        lease.snapshot = None
        with self.runtime.session() as session:
            run = session.scalar(select(Run).where(Run.id == lease.run_id).with_for_update())
            if run is None or run.lease_owner != lease.owner:
                raise LeaseLost(lease.run_id)
            for key, value in (changes or {}).items():
                setattr(run, key, value)
            run.updated_at = now
            if apply is not None:
                account = session.get(Account, run.account_id)
                assert account is not None
                apply(session, run, account)
            if hook is not None:
                hook(session, run)
            for name, step_reason, step_detail, step_data in steps:
                repo.add_step(
                    session=session,
                    run=run,
                    step=name,
                    at=now,
                    reason=step_reason,
                    detail=step_detail,
                    rule_id=run.rule_id,
                    data=step_data,
                )
            if finish:
                run.status, run.finished_at, run.next_attempt_at = RunStatus.DONE.value, now, None
                repo.add_step(session=session, run=run, step="done", at=now, rule_id=run.rule_id)
            if release or run.status not in ACTIVE_STATUSES:
                run.lease_owner = None
                run.lease_expires_at = None
            else:
                run.lease_expires_at = now + self.lease

    def _write_known(
        self,
        lease: _Lease,
        run: Run,
        now: dt.datetime,
        changes: dict[str, Any],
        steps: list[_StepRow],
        *,
        release: bool,
        finish: bool,
        hook: Callable[[Session, Run], None] | None,
    ) -> None:
        """``_write`` for a run whose state we know (``lease.snapshot``): one ``UPDATE … WHERE lease_owner`` and
        one insert of its steps, no ORM unit of work. The detached snapshot is kept equal to the row."""
        values = dict(changes)
        values["updated_at"] = now
        status = values.get("status", run.status)
        rows = [
            (name, status, step_reason, step_detail, step_data) for name, step_reason, step_detail, step_data in steps
        ]
        if finish:
            values.update(status=RunStatus.DONE.value, finished_at=now, next_attempt_at=None)
            rows.append(("done", RunStatus.DONE.value, None, None, None))
        if release or values.get("status", run.status) not in _ACTIVE:
            values.update(lease_owner=None, lease_expires_at=None)
        else:
            values["lease_expires_at"] = now + self.lease
        try:
            with self.runtime.session() as session:
                conn = session.connection()
                result = conn.execute(
                    update(_RUNS).where(_RUNS.c.id == lease.run_id, _RUNS.c.lease_owner == lease.owner).values(values)
                )
                if result.rowcount != 1:
                    raise LeaseLost(lease.run_id)
                if rows:
                    conn.execute(
                        insert(_STEPS),
                        [
                            repo.step_row(
                                run_id=lease.run_id,
                                at=now,
                                step=name,
                                status=step_status,
                                reason=step_reason,
                                detail=step_detail,
                                rule_id=run.rule_id,
                                data=step_data,
                            )
                            for name, step_status, step_reason, step_detail, step_data in rows
                        ],
                    )
                for key, value in values.items():
                    setattr(run, key, value)
                if hook is not None:
                    hook(session, run)
        except BaseException:
            lease.snapshot = None  # the row may not be what the snapshot now says: read it again
            raise

    def _read(self, lease: _Lease) -> _Snapshot:
        if lease.snapshot is not None:
            return self._refresh(lease.snapshot)
        lease.snapshot = self._load(lease)
        return lease.snapshot

    def _refresh(self, snap: _Snapshot) -> _Snapshot:
        """What other runs and the dashboard may have changed since we read: the account's token and connection
        (a 190 on another run, a re-connect) and its throttle (a 613 or high usage on another run)."""
        accounts, states = Account.__table__, AccountAutomationState.__table__
        columns = ("reauthorization_required", "token_status", "disconnected_at", "token_ciphertext")
        with self.runtime.read_engine.connect() as conn:
            row = conn.execute(
                select(*(accounts.c[name] for name in columns), states.c.throttled_until)
                .select_from(accounts.outerjoin(states, states.c.account_id == accounts.c.id))
                .where(accounts.c.id == snap.account.id)
            ).first()
        if row is None:
            raise _Stop(Outcome.FINISHED)
        for name, value in zip(columns, row, strict=False):
            setattr(snap.account, name, value)
        snap.throttled_until = row.throttled_until
        return snap

    def _load(self, lease: _Lease) -> _Snapshot:
        # A read session: on SQLite it does not queue for the write lock.
        with self.runtime.read_session() as session:
            # The run, its account, its rule and the account's throttle in one statement.
            states = AccountAutomationState
            found = session.execute(
                select(Run, Account, Rule, states.throttled_until)
                .outerjoin(Account, Account.id == Run.account_id)
                .outerjoin(Rule, Rule.id == Run.rule_id)
                .outerjoin(states, states.account_id == Run.account_id)
                .where(Run.id == lease.run_id)
            ).first()
            if found is None or found[0].lease_owner != lease.owner:
                raise LeaseLost(lease.run_id)
            run, account, rule, throttled_until = found
            if account is None:
                raise _Stop(Outcome.FINISHED)
            spec = None
            if rule is not None:
                try:
                    spec = rule.spec()
                except ValueError:
                    log.error("stored_rule_invalid", rule_id=rule.id)
            return _Snapshot(run=run, account=account, rule=rule, spec=spec, throttled_until=throttled_until)

    def _hand_back(self, lease: _Lease, *, delay: float) -> None:
        self._write(lease, release=True)
        self._enqueue(lease.run_id, delay)

    def _schedule(
        self,
        lease: _Lease,
        at: dt.datetime,
        *,
        step: str | None,
        reason: str | None = None,
        detail: str | None = None,
        changes: dict[str, Any] | None = None,
        outcome: Outcome = Outcome.SCHEDULED,
    ) -> _Stop:
        """Park the run until ``at`` and enqueue it for then (a relative delay, so clocks need not agree)."""
        now = self.now()
        values = dict(changes or {})
        values["next_attempt_at"] = at
        self._write(lease, changes=values, step=step, reason=reason, detail=detail, release=True)
        self._enqueue(lease.run_id, max(0.0, (at - now).total_seconds()))
        return _Stop(outcome)

    def _finish(
        self,
        lease: _Lease,
        status: RunStatus,
        *,
        step: str,
        reason: str | None = None,
        detail: str | None = None,
        changes: dict[str, Any] | None = None,
    ) -> _Stop:
        now = self.now()
        values = dict(changes or {})
        values.update(status=status.value, finished_at=now, next_attempt_at=None)
        if status is not RunStatus.DONE:
            values.update(reason=reason, detail=detail)

        def release_claim(session: Session, run: Run, _account: Account) -> None:
            nothing_reached_person = run.dm_state != SendState.SENT.value and (
                run.public_reply_state != SendState.SENT.value
            )
            if status is not RunStatus.DONE and nothing_reached_person:
                repo.release_user_claim(session=session, run=run)

        self._write(lease, changes=values, step=step, reason=reason, detail=detail, release=True, apply=release_claim)
        log.info("run_finished", run_id=lease.run_id, status=status.value, reason=reason)
        return _Stop(Outcome.FINISHED)

    def _retry(
        self,
        lease: _Lease,
        *,
        reason: str,
        detail: str,
        error: GraphError | None = None,
        changes: dict[str, Any] | None = None,
    ) -> _Stop:
        """Back off after a transient failure (exponential, jittered), or give up after ``max_attempts``."""
        if lease.snapshot is not None:
            attempts = lease.snapshot.run.attempts + 1
        else:
            with self.runtime.read_session() as session:
                run = session.get(Run, lease.run_id)
                attempts = (run.attempts if run is not None else 0) + 1
        values = dict(changes or {})
        values["attempts"] = attempts
        if attempts >= self.options.max_attempts:
            return self._finish(
                lease,
                RunStatus.FAILED,
                step="failed",
                reason=RunFailure.TOO_MANY_ATTEMPTS.value,
                detail=f"Gave up after {attempts} attempts; the last error: {detail}",
                changes=values,
            )
        wait = min(self.options.backoff_max_seconds, self.options.backoff_base_seconds * 2 ** (attempts - 1))
        wait *= self.rng.uniform(0.5, 1.5)
        if error is not None and error.retry_after_seconds:
            wait = max(wait, float(error.retry_after_seconds))
        at = self.now() + dt.timedelta(seconds=wait)
        log.info("run_retry_scheduled", run_id=lease.run_id, reason=reason, attempts=attempts, wait_seconds=round(wait))
        return self._schedule(
            lease,
            at,
            step="retry_scheduled",
            reason=reason,
            detail=detail,
            changes=values,
        )

    # -- the state machine -------------------------------------------------------------------------------

    def _step(self, lease: _Lease) -> None:
        """Move the run one transition forward; raises ``_Stop`` when it is handed back."""
        snap = self._read(lease)
        run, account = snap.run, snap.account
        status = RunStatus(run.status)
        bound_log = log.bind(run_id=run.id, comment_id=run.comment_id, account_id=account.id, status=status.value)
        if status not in ACTIVE_STATUSES:
            raise _Stop(Outcome.FINISHED)
        if account.automation_paused:
            bound_log.info("run_paused", reason=SkipReason.ACCOUNT_NEEDS_REAUTH.value)
            raise self._pause(lease, status)
        if status is RunStatus.RECEIVED:
            self._decide(lease, snap)
            return
        if snap.rule is None or snap.spec is None:
            raise self._finish(
                lease,
                RunStatus.FAILED,
                step="failed",
                reason=RunFailure.RULE_REMOVED.value,
                detail="The rule that matched this comment no longer exists.",
            )
        nothing_sent = run.public_reply_state not in (SendState.SENT.value, *UNCERTAIN) and run.dm_state == (
            SendState.NONE.value
        )
        if nothing_sent and (snap.rule.deleted_at is not None or not snap.rule.enabled):
            raise self._finish(
                lease,
                RunStatus.SKIPPED,
                step="skipped",
                reason=SkipReason.RULE_DISABLED.value,
                detail="The rule was turned off or deleted before anything was sent.",
            )
        now = self.now()
        if is_message_trigger(run.trigger):
            direct_messages.check_window(self, lease, snap)
        elif snap.spec.private_reply is not None and run.dm_state != SendState.SENT.value:
            deadline = private_reply_deadline(run.comment_created_at or run.created_at)
            if now > deadline:
                raise self._finish(
                    lease,
                    RunStatus.FAILED,
                    step="failed",
                    reason=SkipReason.OUTSIDE_WINDOW.value,
                    detail=f"Meta's 7-day window for a private reply closed at {deadline.isoformat()}.",
                )
        self._respect_throttle(lease, snap.throttled_until)
        if status is RunStatus.MATCHED:
            self._public_reply_stage(lease, snap)
        elif status in (RunStatus.PUBLIC_REPLIED, RunStatus.WAITING_QUOTA):
            if is_message_trigger(run.trigger):
                direct_messages.dm_stage(self, lease, snap)
            else:
                self._private_reply_stage(lease, snap)
        elif status is RunStatus.UNLOCKING:
            follow_gate.unlock_stage(self, lease, snap)
        elif status is RunStatus.DM_SENT:
            raise self._finish(lease, RunStatus.DONE, step="done")

    def _pause(self, lease: _Lease, status: RunStatus) -> _Stop:
        resume_to = RunStatus.PUBLIC_REPLIED if status is RunStatus.WAITING_QUOTA else status

        def apply(session: Session, run: Run, _account: Account) -> None:
            pause(session=session, run=run, resume_to=resume_to, now=self.now())

        self._write(lease, apply=apply, release=True)
        return _Stop(Outcome.PAUSED)

    # -- received: decide the rule -----------------------------------------------------------------------

    def _decide(self, lease: _Lease, snap: _Snapshot) -> None:
        with self.runtime.session() as session:
            unbound = [
                r
                for r in repo.rules_in_order(session=session, account_id=snap.account.id)
                if r.posts_mode == PostsMode.NEXT.value and r.bound_media_id is None
            ]
        if unbound:
            self._learn_recent_media(lease, snap)

        def apply(session: Session, run: Run, account: Account) -> None:
            decide_run(session=session, run=run, account=account, now=self.now(), defer_unknown_media=False)

        self._write(lease, apply=apply)

    def _learn_recent_media(self, lease: _Lease, snap: _Snapshot) -> None:
        """Ask Meta for the account's newest posts, so a ``next`` rule can tell whether this post is new."""

        async def work(client: GraphClient, token: Any) -> Paginated[Media]:
            return await client.list_media(ig_id=snap.account.instagram_id, token=token, limit=25)

        try:
            page, usage = self.graph.call(snap.account, work)
        except GraphError as exc:
            self._on_graph_error(lease, snap, exc, what="list_media")
            return
        self._note_usage(snap.account.id, usage)
        now = self.now()
        with self.runtime.session() as session:
            for media in page.items:
                repo.remember_media(
                    session=session,
                    account_id=snap.account.id,
                    media_id=media.id,
                    published_at=media.timestamp,
                    media_product_type=media.media_product_type,
                    now=now,
                )
            if all(media.id != snap.run.media_id for media in page.items):
                # Not among the newest posts: an older one, never the "next" post.
                repo.remember_media(
                    session=session,
                    account_id=snap.account.id,
                    media_id=snap.run.media_id,
                    published_at=None,
                    media_product_type=snap.run.media_product_type,
                    now=now,
                )

    # -- matched: the public reply (and hiding) ---------------------------------------------------------

    def _public_reply_stage(self, lease: _Lease, snap: _Snapshot) -> None:
        run, spec = snap.run, snap.spec
        assert spec is not None
        wanted = spec.public_reply
        state = run.public_reply_state
        if state == SendState.SENT.value:
            if wanted is not None and wanted.hide_comment and run.hide_state == SendState.NONE.value:
                self._hide(lease, snap)
                return
            self._write(lease, changes={"status": RunStatus.PUBLIC_REPLIED.value})
            return
        if state in (SendState.FAILED.value, SendState.SKIPPED.value):
            self._write(lease, changes={"status": RunStatus.PUBLIC_REPLIED.value})
            return
        if wanted is None:
            self._write(
                lease,
                changes={"public_reply_state": SendState.SKIPPED.value, "status": RunStatus.PUBLIC_REPLIED.value},
                step="public_reply_skipped",
                detail="The rule has no public reply (DM only).",
            )
            return
        if run.is_live:
            reason = SkipReason.LIVE_COMMENT_NOT_SUPPORTED_FOR_PUBLIC_REPLY
            self._write(
                lease,
                changes={"public_reply_state": SendState.SKIPPED.value, "status": RunStatus.PUBLIC_REPLIED.value},
                step="public_reply_skipped",
                reason=reason.value,
                detail=reason.description,
            )
            return
        if state in UNCERTAIN and run.public_reply_text and self._find_our_reply(lease, snap):
            return
        self._post_public_reply(lease, snap)

    def _find_our_reply(self, lease: _Lease, snap: _Snapshot) -> bool:
        """After an unknown outcome: is our reply already under the comment? Records it when it is."""
        run, account = snap.run, snap.account

        # Meta files a reply to a reply under the top-level comment: look for ours there.
        thread_id = run.parent_id or run.comment_id

        async def work(client: GraphClient, token: Any) -> list[Comment]:
            return await client.list_comment_replies(comment_id=thread_id, token=token)

        try:
            replies, usage = self.graph.call(account, work)
        except (CommentFinal, InvalidRequest) as exc:
            # The comment is gone: no reply can be checked or posted; the DM will tell the rest.
            self._write(
                lease,
                changes={"public_reply_state": SendState.FAILED.value, "status": RunStatus.PUBLIC_REPLIED.value},
                step="public_reply_failed",
                reason=exc.error_code,
                detail=exc.message,
            )
            return True
        except GraphError as exc:
            self._on_graph_error(lease, snap, exc, what="list_comment_replies")
            return True
        self._note_usage(account.id, usage)
        expected = (run.public_reply_text or "").strip()
        for reply in replies:
            author = reply.author
            ours = author is not None and (
                author.id == account.instagram_id or (bool(account.username) and author.username == account.username)
            )
            if ours and reply.text.strip() == expected:
                self._write(
                    lease,
                    changes={
                        "public_reply_state": SendState.SENT.value,
                        "public_reply_id": reply.id,
                        "public_replied_at": reply.timestamp or self.now(),
                        "status": _status_after_reply(snap.spec),
                    },
                    step="public_reply_reconciled",
                    detail="Our reply was already under the comment; it was not posted again.",
                    data={"reply_id": reply.id},
                )
                return True
        log.info("public_reply_not_found", run_id=run.id, comment_id=run.comment_id)
        return False

    def _post_public_reply(self, lease: _Lease, snap: _Snapshot) -> None:
        run, account, spec = snap.run, snap.account, snap.spec
        assert spec is not None and spec.public_reply is not None
        variables = template_variables(username=run.username, first_name=None, keyword=run.matched_keyword)
        text = run.public_reply_text or spec.public_reply.render(variables, rng=self.rng)
        previous = run.public_reply_state
        self._write(
            lease,
            changes={
                "public_reply_state": SendState.ATTEMPTING.value,
                "public_reply_text": text,
                "public_reply_attempts": run.public_reply_attempts + 1,
            },
            step="public_reply_attempt",
            data={"attempt": run.public_reply_attempts + 1},
        )

        async def work(client: GraphClient, token: Any) -> str:
            return await client.reply_to_comment(comment_id=run.comment_id, message=text, token=token)

        try:
            reply_id, usage = self.graph.call(account, work)
        except OutcomeUnknown as exc:
            raise self._retry(
                lease,
                reason="public_reply_outcome_unknown",
                detail=exc.message,
                error=exc,
                changes={"public_reply_state": SendState.UNKNOWN.value},
            ) from None
        except (CommentFinal, InvalidRequest) as exc:
            self._write(
                lease,
                changes={"public_reply_state": SendState.FAILED.value, "status": RunStatus.PUBLIC_REPLIED.value},
                step="public_reply_failed",
                reason=exc.error_code,
                detail=exc.message,
            )
            return
        except GraphError as exc:
            # Refused outright: nothing was posted (unless an earlier attempt's outcome is still open).
            restore = SendState.UNKNOWN.value if previous in UNCERTAIN else SendState.NONE.value
            self._on_graph_error(lease, snap, exc, what="reply_to_comment", changes={"public_reply_state": restore})
            return
        self._note_usage(account.id, usage)
        now = self.now()
        self._write(
            lease,
            changes={
                "public_reply_state": SendState.SENT.value,
                "public_reply_id": reply_id,
                "public_replied_at": now,
                "status": _status_after_reply(spec),
            },
            step="public_replied",
            data={"reply_id": reply_id},
        )
        log.info("public_reply_sent", run_id=run.id, comment_id=run.comment_id, reply_id=reply_id)

    def _hide(self, lease: _Lease, snap: _Snapshot) -> None:
        run, account = snap.run, snap.account

        async def work(client: GraphClient, token: Any) -> bool:
            return await client.hide_comment(comment_id=run.comment_id, token=token, hide=True)

        try:
            _, usage = self.graph.call(account, work)
        except (TransientError, RateLimited, TokenInvalid, OutcomeUnknown) as exc:
            self._on_graph_error(lease, snap, exc, what="hide_comment")
            return
        except GraphError as exc:
            self._write(
                lease,
                changes={"hide_state": SendState.FAILED.value, "status": RunStatus.PUBLIC_REPLIED.value},
                step="hide_failed",
                reason=exc.error_code,
                detail=exc.message,
            )
            return
        self._note_usage(account.id, usage)
        self._write(
            lease,
            changes={"hide_state": SendState.SENT.value, "status": RunStatus.PUBLIC_REPLIED.value},
            step="comment_hidden",
        )

    # -- public_replied / waiting_quota: the private reply -----------------------------------------------

    def _private_reply_stage(self, lease: _Lease, snap: _Snapshot) -> None:
        run, account, spec = snap.run, snap.account, snap.spec
        assert spec is not None
        if spec.private_reply is None:
            raise self._finish(lease, RunStatus.DONE, step="done", detail="The rule sends no DM.")
        if run.dm_state == SendState.SENT.value:
            self._write(lease, changes={"status": RunStatus.DM_SENT.value})
            return
        now = self.now()
        if run.dm_due_at is not None and run.dm_due_at > now:
            raise self._schedule(
                lease,
                run.dm_due_at,
                step=None if run.next_attempt_at == run.dm_due_at else "dm_delayed",
                detail=f"The rule waits before the DM, until {run.dm_due_at.isoformat()}.",
            )
        attempt = run.dm_attempts + 1
        slot = f"{run.id}:dm{attempt}"
        decision = self.gate.acquire(account_id=account.id, key=slot, now=now)
        if not decision.granted:
            first_wait = run.status != RunStatus.WAITING_QUOTA.value
            log.info("private_reply_waiting_quota", run_id=run.id, until=decision.at.isoformat())
            raise self._schedule(
                lease,
                decision.at,
                step="waiting_quota" if first_wait else None,
                reason="private_reply_quota",
                detail=(
                    f"The account's private-reply budget ({self.gate.quota}) is used up; "
                    f"its turn comes at {decision.at.isoformat()}."
                ),
                changes={"status": RunStatus.WAITING_QUOTA.value},
                outcome=Outcome.WAITING_QUOTA,
            )
        uncertain_before = run.dm_state in UNCERTAIN
        resend = uncertain_before and run.dm_text is not None and run.dm_message is not None
        if resend:
            # An earlier attempt may have reached the person: send exactly that message again (same links),
            # even if the rule was edited since.
            text, message = run.dm_text or "", dict(run.dm_message or {})
        else:
            variables = template_variables(username=run.username, first_name=None, keyword=run.matched_keyword)
            try:
                text, message = follow_gate.first_message(spec, variables, run_id=run.id)
            except ReplyflowError as exc:
                self.gate.release(account_id=account.id, key=f"{run.id}:dm{attempt}")
                raise self._finish(
                    lease, RunStatus.FAILED, step="failed", reason=RunFailure.INVALID_REQUEST.value, detail=exc.message
                ) from None

        def store_message(session: Session, stored: Run, _account: Account) -> None:
            nonlocal message
            # Link buttons go out as /r/{code}; codes are kept per (run, URL), so a rebuilt message gets the same.
            message = track_message(
                session=session, run_or_thread=stored, message=message, public_url=self.runtime.settings.public_url
            )
            stored.dm_message = message

        tracked = not resend and has_tracked_links(message)
        self._write(
            lease,
            changes={
                "dm_state": SendState.ATTEMPTING.value,
                "dm_attempts": attempt,
                "dm_text": text,
                "status": RunStatus.PUBLIC_REPLIED.value,
                **({} if tracked else {"dm_message": message}),
            },
            step="dm_attempt",
            data={"attempt": attempt, "reconciling": uncertain_before},
            apply=store_message if tracked else None,
        )

        async def work(client: GraphClient, token: Any) -> SendResult:
            return await client.send_private_reply(
                page_id=account.page_id, comment_id=run.comment_id, message=message, token=token
            )

        try:
            result, usage = self._send_in_slot(account, slot, work)
        except OutcomeUnknown as exc:
            raise self._retry(
                lease,
                reason="dm_outcome_unknown",
                detail=exc.message,
                error=exc,
                changes={"dm_state": SendState.UNKNOWN.value},
            ) from None
        except CommentFinal as exc:
            if uncertain_before and exc.reason is CommentFinalReason.PRIVATE_REPLY_ALREADY_SENT_OR_INVALID:
                # The earlier attempt got through: Meta allows one private reply per comment.
                raise self._dm_sent(lease, snap, message_id=None, recipient_id=run.from_id, reconciled=True) from None
            raise self._finish(
                lease,
                RunStatus.FAILED,
                step="failed",
                reason=exc.reason.value,
                detail=exc.message,
                changes={"dm_state": SendState.UNKNOWN.value if uncertain_before else SendState.NONE.value},
            ) from None
        except GraphError as exc:
            restore = SendState.UNKNOWN.value if uncertain_before else SendState.NONE.value
            if isinstance(exc, RateLimited) and _meta_budget_refusal(exc):
                # Only this run waits, at most one quota window: not the whole account for Meta's default 5 min.
                wait = min(float(exc.retry_after_seconds), float(self.gate.quota.seconds))
                raise self._schedule(
                    lease,
                    self.now() + dt.timedelta(seconds=wait * self.rng.uniform(1.0, 1.2)),
                    step="waiting_quota",
                    reason="private_reply_quota",
                    detail="Meta refused the DM for now: the account's private-reply budget is spent at Meta.",
                    changes={"status": RunStatus.WAITING_QUOTA.value, "dm_state": restore},
                    outcome=Outcome.WAITING_QUOTA,
                ) from None
            self._on_graph_error(lease, snap, exc, what="send_private_reply", changes={"dm_state": restore})
        # The private-reply budget shows up in the usage headers too; our quota gate already paces it exactly.
        self._note_usage(account.id, _without_messaging_budget(usage))
        raise self._dm_sent(
            lease,
            snap,
            message_id=result.message_id,
            recipient_id=result.recipient_id or run.from_id,
            reconciled=False,
            slot=slot,
        )

    def _send_in_slot(self, account: Account, slot: str, work: Work[SendResult]) -> tuple[SendResult, Usage | None]:
        """Make a send the quota gate granted, and settle its slot. Given back when the DM certainly reached nobody
        (no connection, a refused or missing token, Meta's budget refusal); otherwise counted from the end of the
        call, when Meta has certainly seen it, not from the grant: Meta counts a DM when it arrives, so our window
        never runs ahead of Meta's however long the call took to get there. A send that went through is confirmed
        by ``_dm_sent``, in the transaction that records it."""
        try:
            return self.graph.call(account, work)
        except Exception as exc:
            if isinstance(exc, TransientError | TokenInvalid | NoToken) or _meta_budget_refusal(exc):
                self.gate.release(account_id=account.id, key=slot)
            else:
                self._confirm_slot(account.id, slot)
            raise

    def _confirm_slot(self, account_id: str, slot: str) -> None:
        try:
            self.gate.confirm(account_id=account_id, key=slot, at=self.now())
        except Exception as exc:  # the slot keeps its grant time: the safety margin still covers most of it
            log.warning("quota_confirm_failed", account_id=account_id, error=exc)

    def _dm_sent(
        self,
        lease: _Lease,
        snap: _Snapshot,
        *,
        message_id: str | None,
        recipient_id: str | None,
        reconciled: bool,
        slot: str | None = None,
    ) -> _Stop:
        """Record the DM as sent and the run done; ``slot``: the quota slot of the send that just went through,
        confirmed in the same transaction (or after it, for a gate outside the database)."""
        now = self.now()
        confirmed = slot is None
        # A gated rule's first DM is the gate: the run then waits for the tap instead of being done.
        gated = snap.spec is not None and snap.spec.follow_gate is not None

        def record_thread(session: Session, run: Run) -> None:
            nonlocal confirmed
            if not confirmed:
                confirmed = self.gate.confirm_in(session, account_id=run.account_id, key=slot or "", at=now)
            # The conversation starts now, before Meta's echo arrives. The thread can be rebuilt from the run
            # (conversations.sync), so a failure here must never undo the record that the DM was sent.
            try:
                with session.begin_nested():
                    record_private_reply(session=session, run=run)
            except OperationalError:
                raise
            except Exception as exc:
                log.error("conversation_record_failed", run_id=run.id, error=exc, exc_info=exc)

        # "dm_sent" and "done" in one transaction: nothing is left to do once the DM is out.
        self._write(
            lease,
            changes={
                "dm_state": SendState.SENT.value,
                "dm_message_id": message_id,
                "dm_recipient_id": recipient_id,
                "dm_sent_at": now,
                "dm_reconciled": reconciled,
                "status": RunStatus.DM_SENT.value,
            },
            step="dm_sent",
            detail=(
                "Meta answered that the comment already has its private reply: the earlier attempt got through."
                if reconciled
                else None
            ),
            data={"message_id": message_id, "reconciled": reconciled},
            hook=record_thread,
            finish=not gated,
        )
        if not confirmed and slot is not None:
            self._confirm_slot(snap.account.id, slot)
        log.info(
            "private_reply_sent",
            run_id=snap.run.id,
            comment_id=snap.run.comment_id,
            message_id=message_id,
            reconciled=reconciled,
        )
        if gated:
            return follow_gate.park(self, lease, snap)
        log.info("run_finished", run_id=lease.run_id, status=RunStatus.DONE.value, reason=None)
        return _Stop(Outcome.FINISHED)

    # -- Meta's answers ----------------------------------------------------------------------------------

    def _on_graph_error(
        self, lease: _Lease, snap: _Snapshot, exc: GraphError, *, what: str, changes: dict[str, Any] | None = None
    ) -> NoReturn:
        """Turn a failed call into the run's next state; always raises ``_Stop``."""
        account = snap.account
        log.info(
            "graph_call_failed",
            run_id=snap.run.id,
            comment_id=snap.run.comment_id,
            call=what,
            code=exc.error_code,
            meta_code=exc.meta_code,
            subcode=exc.subcode,
        )
        if isinstance(exc, TokenInvalid):
            raise self._token_invalid(lease, snap, exc, changes=changes)
        if isinstance(exc, RateLimited):
            until = self.now() + dt.timedelta(seconds=exc.retry_after_seconds)
            self._throttle(account.id, until=until, usage=exc.usage)
            raise self._schedule(
                lease,
                until,
                step="throttled",
                reason=exc.error_code,
                detail=f"Meta asked us to slow down ({what}); continuing at {until.isoformat()}.",
                changes=changes,
            )
        if isinstance(exc, TransientError | OutcomeUnknown):
            raise self._retry(lease, reason=exc.error_code, detail=exc.message, error=exc, changes=changes)
        if isinstance(exc, PermissionDenied):
            raise self._finish(
                lease,
                RunStatus.FAILED,
                step="failed",
                reason=RunFailure.PERMISSION_DENIED.value,
                detail=exc.message,
                changes=changes,
            )
        if isinstance(exc, CommentFinal):
            raise self._finish(
                lease, RunStatus.FAILED, step="failed", reason=exc.reason.value, detail=exc.message, changes=changes
            )
        failure = RunFailure.INVALID_REQUEST if isinstance(exc, InvalidRequest) else RunFailure.GRAPH_ERROR
        raise self._finish(
            lease, RunStatus.FAILED, step="failed", reason=failure.value, detail=exc.message, changes=changes
        )

    def _token_invalid(
        self, lease: _Lease, snap: _Snapshot, exc: TokenInvalid, *, changes: dict[str, Any] | None
    ) -> _Stop:
        status = RunStatus(snap.run.status)
        resume_to = RunStatus.PUBLIC_REPLIED if status is RunStatus.WAITING_QUOTA else status
        now = self.now()

        def apply(session: Session, run: Run, account: Account) -> None:
            mark_token_invalid(session=session, account=account, reason=exc.reason)
            pause(session=session, run=run, resume_to=resume_to, now=now)
            paused = pause_account_runs(session=session, account_id=account.id, now=now, except_run_id=run.id)
            log.warning("account_token_invalid_runs_paused", account_id=account.id, paused=paused + 1)

        self._write(lease, changes=changes, apply=apply, release=True)
        try:
            from replyflow.accounts.tasks import request_check

            request_check(queue=self.runtime.queue, account_id=snap.account.id)
        except Exception as error:  # the periodic token check covers it
            log.warning("token_check_request_failed", account_id=snap.account.id, error=error)
        return _Stop(Outcome.PAUSED)

    # -- throttling ---------------------------------------------------------------------------------------

    def _respect_throttle(self, lease: _Lease, until: dt.datetime | None) -> None:
        if until is not None and until > self.now():
            raise self._schedule(
                lease,
                until + dt.timedelta(seconds=self.rng.uniform(0, 1)),
                step=None,
                detail="Meta's usage for this account is high; waiting.",
            )

    def _note_usage(self, account_id: str, usage: Usage | None) -> None:
        """Usage headers above ``slowdown_percent`` space this account's next calls out."""
        if usage is None or usage.is_empty:
            return
        percent = usage.max_percent
        if percent < self.options.slowdown_percent:
            return
        if percent >= 100 and usage.regain_seconds:
            wait = float(usage.regain_seconds)
        else:
            # 80% → ~1 s between calls, 90% → ~6 s, 100% → ~32 s: slow down smoothly before Meta says no.
            wait = min(300.0, 2 ** ((percent - self.options.slowdown_percent) / 4))
        self._throttle(account_id, until=self.now() + dt.timedelta(seconds=wait), usage=usage)

    def _throttle(self, account_id: str, *, until: dt.datetime, usage: Usage | None) -> None:
        now = self.now()
        with self.runtime.session() as session:
            insert_ignore(session, AccountAutomationState, {"account_id": account_id, "updated_at": now})
            state = session.get(AccountAutomationState, account_id, with_for_update=True)
            assert state is not None
            if state.throttled_until is None or state.throttled_until < until:
                state.throttled_until = until
            if usage is not None and not usage.is_empty:
                state.usage_percent = usage.max_percent
                state.usage_at = now
        log.info("account_throttled", account_id=account_id, until=until.isoformat())


def _meta_budget_refusal(exc: Exception) -> bool:
    """A 613 on a DM with no usage header saying for how long: Meta counts the account's private replies apart from
    us (sends made outside replyflow, or clocks); the send was refused and reached nobody."""
    return isinstance(exc, RateLimited) and exc.meta_code == 613 and not (exc.usage and exc.usage.regain_seconds)


def _without_messaging_budget(usage: Usage | None) -> Usage | None:
    if usage is None:
        return None
    return dataclasses.replace(usage, business=tuple(b for b in usage.business if b.type != "messenger"))


def _status_after_reply(spec: RuleSpec | None) -> str:
    """Still ``matched`` while hiding the comment is pending, else ``public_replied``."""
    hide = spec is not None and spec.public_reply is not None and spec.public_reply.hide_comment
    return RunStatus.MATCHED.value if hide else RunStatus.PUBLIC_REPLIED.value


# -- one engine per runtime ------------------------------------------------------------------------------------

_engines: weakref.WeakKeyDictionary[Runtime, Engine] = weakref.WeakKeyDictionary()
_engines_lock = threading.Lock()


def engine_for(runtime: Runtime) -> Engine:
    """This process's engine for ``runtime``, built from its settings on first use."""
    with _engines_lock:
        engine = _engines.get(runtime)
        if engine is None:
            gate = build_quota_gate(settings=runtime.settings, session_factory=runtime.session_factory)
            runtime.on_close(gate.close)
            engine = Engine(runtime=runtime, graph=AccountGraph.from_settings(runtime.settings), gate=gate)
            _engines[runtime] = engine
        return engine


def install_engine(runtime: Runtime, engine: Engine | None) -> None:
    """Use ``engine`` for ``runtime`` (tests wire one to the sandbox); None forgets it."""
    with _engines_lock:
        if engine is None:
            _engines.pop(runtime, None)
        else:
            _engines[runtime] = engine
