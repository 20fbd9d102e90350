"""DMs that are stuck and need a person: paused runs (the account must be reconnected) and failed ones worth
another try (a permission that was missing, Meta failing repeatedly). "Retry now" moves them forward at once.

Retrying goes through the engine's normal path: a failed run is put back to ``matched`` with a fresh attempt
count, and the engine picks up where the run stopped (a public reply already posted is never posted again; a DM
whose outcome is unknown is reconciled first), so nothing is sent twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from replyflow.accounts.models import Account
from replyflow.automation import clock
from replyflow.automation import repository as repo
from replyflow.automation.intake import enqueue_after_commit, resume_paused_runs
from replyflow.automation.models import Run, RunFailure, RunStatus, SendState
from replyflow.automation.window import PRIVATE_REPLY_WINDOW
from replyflow.runtime import Runtime

#: Failures another attempt can fix (after reconnecting, or once Meta recovers). The others are final: the
#: window closed, Meta refused this comment, or the rule or account is gone.
RETRYABLE_FAILURES = frozenset(
    {
        RunFailure.PERMISSION_DENIED.value,
        RunFailure.TOO_MANY_ATTEMPTS.value,
        RunFailure.GRAPH_ERROR.value,
        RunFailure.INVALID_REQUEST.value,
    }
)


@dataclass(frozen=True)
class Stuck:
    """An account's DMs that did not go out and still can."""

    paused: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.paused + self.failed


def _retryable_failed(now: dt.datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        Run.status == RunStatus.FAILED.value,
        Run.reason.in_(sorted(RETRYABLE_FAILURES)),
        Run.dm_state != SendState.SENT.value,
        func.coalesce(Run.comment_created_at, Run.created_at) > now - PRIVATE_REPLY_WINDOW,
    )


def stuck_by_account(*, session: Session, workspace_id: str) -> dict[str, Stuck]:
    """Account id → its paused and retryable failed DMs (accounts with none are left out)."""
    now = clock.now()
    paused = dict(
        session.execute(
            select(Run.account_id, func.count())
            .where(Run.workspace_id == workspace_id, Run.status == RunStatus.PAUSED.value)
            .group_by(Run.account_id)
        ).all()
    )
    failed = dict(
        session.execute(
            select(Run.account_id, func.count())
            .where(Run.workspace_id == workspace_id, *_retryable_failed(now))
            .group_by(Run.account_id)
        ).all()
    )
    return {
        account_id: Stuck(paused=int(paused.get(account_id, 0)), failed=int(failed.get(account_id, 0)))
        for account_id in set(paused) | set(failed)
    }


def retry_stuck(*, session: Session, runtime: Runtime, account: Account) -> Stuck:
    """Resume the account's paused runs and re-try its retryable failed ones now; returns how many moved.

    Nothing moves while the account itself is paused (its token must be fixed first): the caller says so.
    The caller commits; the runs are handed to a worker after the commit.
    """
    if account.automation_paused:
        return Stuck()
    resumed = resume_paused_runs(session=session, account_id=account.id, runtime=runtime)
    now = clock.now()
    failed = session.scalars(select(Run).where(Run.account_id == account.id, *_retryable_failed(now))).all()
    for run in failed:
        previous = run.reason
        run.status = RunStatus.MATCHED.value
        run.reason = None
        run.detail = None
        run.finished_at = None
        run.attempts = 0
        run.next_attempt_at = now
        repo.add_step(session=session, run=run, step="retried", at=now, detail=f"Retried by hand after {previous}.")
        enqueue_after_commit(session=session, runtime=runtime, run_id=run.id)
    return Stuck(paused=resumed, failed=len(failed))
