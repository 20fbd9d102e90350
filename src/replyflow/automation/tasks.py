"""Queue jobs of the automation domain: process a run, sweep unattended runs, and the catch-up reconciler.

Jobs carry ids only; the run rows are the truth. The same functions run under SqliteHuey (embedded) and
RedisHuey (``REPLYFLOW_REDIS_URL``): nothing here knows which.
"""

from __future__ import annotations

import datetime as dt

from replyflow import wakeup
from replyflow.automation import clock
from replyflow.automation.engine import engine_for
from replyflow.automation.intake import PROCESS_RUN_JOB
from replyflow.automation.reconcile import Reconciler, due_accounts
from replyflow.logging import get_logger
from replyflow.queue import job, periodic
from replyflow.runtime import current

log = get_logger("replyflow.automation.tasks")

SWEEP_JOB = "automation.sweep"
RECONCILE_DUE_JOB = "automation.reconcile"
RECONCILE_ACCOUNT_JOB = "automation.reconcile_account"


@job(name=PROCESS_RUN_JOB)
def process_run(run_id: str) -> None:
    """Move one run as far as it can go now (a no-op when it is done, not due, or held by another worker).

    Where this process runs a dispatcher, the job only wakes it: the dispatcher claims the run with the rest."""
    runtime = current()
    if wakeup.notify(runtime, wakeup.RUNS):
        return
    engine_for(runtime).process_run(run_id)


@periodic(name=SWEEP_JOB, every_minutes=1)
def sweep_runs() -> None:
    """Re-enqueue runs whose lease expired (a killed worker) or whose job was lost; resume repaired accounts."""
    engine_for(current()).sweep()


@periodic(name=RECONCILE_DUE_JOB, every_minutes=1)
def reconcile_due_accounts() -> None:
    """Every minute: start the check of each account whose ``REPLYFLOW_RECONCILE_INTERVAL`` has passed."""
    runtime = current()
    interval = dt.timedelta(seconds=runtime.settings.reconcile_interval)
    with runtime.session() as session:
        account_ids = due_accounts(session=session, now=clock.now(), interval=interval)
    for account_id in account_ids:
        runtime.queue.enqueue(RECONCILE_ACCOUNT_JOB, account_id)


@job(name=RECONCILE_ACCOUNT_JOB)
def reconcile_account(account_id: str) -> None:
    """Poll one account's targeted posts for comments whose webhook never arrived."""
    runtime = current()
    Reconciler(runtime=runtime, graph=engine_for(runtime).graph).reconcile_account(account_id)
