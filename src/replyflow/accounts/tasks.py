"""Background jobs for accounts: the periodic token re-validation and the immediate check after Meta answered 190."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_

from replyflow.accounts import repository
from replyflow.accounts.crypto import cipher_for
from replyflow.accounts.health import TokenVerdict, apply_probe, probe_account, record_check_failure, stored_token
from replyflow.accounts.instagram_login import InstagramProbe, apply_instagram_probe, probe_instagram_account
from replyflow.accounts.models import Account
from replyflow.accounts.service import purge_expired
from replyflow.db import utcnow
from replyflow.errors import ReplyflowError
from replyflow.graph.client import GraphClient
from replyflow.graph.errors import GraphError
from replyflow.graph_access import run_with_graph
from replyflow.logging import get_logger
from replyflow.queue import Queue, job, periodic
from replyflow.runtime import Runtime, current

log = get_logger("replyflow.accounts.tasks")

# How a sync caller runs Graph work: ``GraphRunner.run_sync`` (the process runner by default).
GraphRun = Callable[[Callable[[GraphClient], Coroutine[Any, Any, Any]]], Any]

CHECK_JOB = "accounts.check_account"
REVALIDATE_JOB = "accounts.revalidate_tokens"
# The periodic job wakes hourly and checks the accounts not checked for ``token_health_interval`` (a day by
# default), so checks spread over the day instead of all landing at midnight.
REVALIDATE_EVERY_MINUTES = 60
MAX_PER_RUN = 500


def request_check(*, queue: Queue, account_id: str) -> None:
    """Re-validate an account as soon as a worker is free (call after Meta answered 190 for it)."""
    queue.enqueue(CHECK_JOB, account_id)


def _default_run(runtime: Runtime) -> GraphRun:
    def run(work: Callable[[GraphClient], Coroutine[Any, Any, Any]]) -> Any:
        return run_with_graph(runtime.settings, work)

    return run


def check_account_now(*, runtime: Runtime, account_id: str, run: GraphRun | None = None) -> TokenVerdict | None:
    """Probe one account's token with Meta and record the verdict; None when the account is gone.

    The database is not held while Meta is asked: read, probe, then write in a second transaction.
    """
    settings = runtime.settings
    cipher = cipher_for(settings)
    run = run or _default_run(runtime)
    with runtime.session() as session:
        account = session.get(Account, account_id)
        if account is None or account.disconnected_at is not None:
            return None
        token = stored_token(account, cipher)
        page_id = account.page_id or ""
        instagram = account.is_instagram_login
    if token is None:
        return None
    try:

        async def work(graph: GraphClient) -> Any:
            if instagram:
                return await probe_instagram_account(graph=graph, token=token)
            return await probe_account(graph=graph, token=token, page_id=page_id, app_id=settings.app_id)

        probe = run(work)
    except (GraphError, ReplyflowError) as exc:
        with runtime.session() as session:
            account = session.get(Account, account_id)
            if account is not None:
                record_check_failure(account, exc, now=utcnow())
        log.warning("account_check_failed", account_id=account_id, code=exc.error_code)
        raise
    with runtime.session() as session:
        account = session.get(Account, account_id)
        if account is None:
            return None
        if isinstance(probe, InstagramProbe):
            verdict = apply_instagram_probe(account, probe, now=utcnow())
        else:
            verdict = apply_probe(account, probe, app_id=settings.app_id, now=utcnow())
    log.info("account_checked", account_id=account_id, token_status=verdict.status.value)
    return verdict


@dataclass(frozen=True)
class RevalidationSummary:
    checked: int
    failed: int
    purged_conversions: int


def revalidate_due_accounts(
    *, runtime: Runtime, now: dt.datetime | None = None, run: GraphRun | None = None
) -> RevalidationSummary:
    """Check every connected account whose last check is older than ``token_health_interval``."""
    now = now or utcnow()
    due_before = now - dt.timedelta(seconds=runtime.settings.token_health_interval)
    with runtime.session() as session:
        purged = purge_expired(session=session, now=now)
        query = (
            repository.connected_accounts_query()
            .where(Account.token_ciphertext.is_not(None))
            .where(or_(Account.token_checked_at.is_(None), Account.token_checked_at <= due_before))
            .order_by(Account.token_checked_at.asc().nulls_first(), Account.id)
            .limit(MAX_PER_RUN)
        )
        account_ids = [a.id for a in session.scalars(query)]
    checked = failed = 0
    for account_id in account_ids:
        try:
            check_account_now(runtime=runtime, account_id=account_id, run=run)
            checked += 1
        except (GraphError, ReplyflowError):
            failed += 1  # recorded on the account; the next run tries again
    if account_ids or purged:
        log.info("tokens_revalidated", checked=checked, failed=failed, purged_conversions=purged)
    return RevalidationSummary(checked=checked, failed=failed, purged_conversions=purged)


@periodic(name=REVALIDATE_JOB, every_minutes=REVALIDATE_EVERY_MINUTES)
def revalidate_tokens() -> None:
    revalidate_due_accounts(runtime=current())


@job(name=CHECK_JOB, retries=3, retry_delay=120)
def check_account_job(account_id: str) -> None:
    check_account_now(runtime=current(), account_id=account_id)


REFRESH_JOB = "accounts.refresh_instagram_tokens"


@periodic(name=REFRESH_JOB, every_minutes=REVALIDATE_EVERY_MINUTES)
def refresh_instagram_tokens() -> None:
    """Hourly: refresh the Instagram Login tokens that expire within REPLYFLOW_INSTAGRAM_TOKEN_REFRESH_DAYS."""
    from replyflow.accounts.refresh import refresh_due_tokens

    refresh_due_tokens(runtime=current())
