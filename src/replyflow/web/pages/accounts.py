"""``/app/accounts``: each connected Instagram account with its token, webhook and quota health, and what to do."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.responses import Response

from replyflow.accounts import errors as account_errors
from replyflow.accounts import repository, service
from replyflow.accounts.crypto import cipher_for
from replyflow.accounts.health import check_account, record_check_failure
from replyflow.accounts.models import Account
from replyflow.automation.attention import Stuck, retry_stuck, stuck_by_account
from replyflow.automation.intake import resume_paused_runs
from replyflow.automation.models import Run
from replyflow.automation.quota import build_quota_gate
from replyflow.db import utcnow
from replyflow.graph.errors import GraphError
from replyflow.web.rendering import (
    CurrentUser,
    PageDb,
    PageRoute,
    SubmittedForm,
    graph_for,
    page_allowed,
    redirect,
    render,
    settings_of,
)
from replyflow.workspaces.roles import Permission

router = APIRouter(route_class=PageRoute)

PATH = "/app/accounts"


@dataclass(frozen=True)
class QuotaUsage:
    used: int
    limit: int
    window_seconds: int

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.used / self.limit)) if self.limit else 0

    @property
    def window_text(self) -> str:
        seconds = self.window_seconds
        if seconds % 3600 == 0:
            hours = seconds // 3600
            return "hour" if hours == 1 else f"{hours} hours"
        if seconds % 60 == 0:
            minutes = seconds // 60
            return "minute" if minutes == 1 else f"{minutes} minutes"
        return f"{seconds} seconds"


def quota_usage(request: Request, accounts: list[Account]) -> dict[str, QuotaUsage]:
    """Private replies used in the current window, per account (call with no transaction open: SQLite)."""
    settings = settings_of(request)
    gate = build_quota_gate(settings=settings, session_factory=request.app.state.session_factory)
    now = utcnow()
    quota = settings.private_reply_quota
    try:
        return {a.id: QuotaUsage(gate.used(account_id=a.id, now=now), quota.count, quota.seconds) for a in accounts}
    finally:
        gate.close()


def last_activity(db: Session, accounts: list[Account]) -> dict[str, dt.datetime]:
    """When each account last heard from Meta: its last comment (a run) or webhook, whichever is newer."""
    found: dict[str, dt.datetime] = {a.id: a.last_webhook_at for a in accounts if a.last_webhook_at is not None}
    if accounts:
        query = (
            select(Run.account_id, func.max(Run.created_at))
            .where(Run.account_id.in_([a.id for a in accounts]))
            .group_by(Run.account_id)
        )
        for account_id, latest in db.execute(query):
            if latest is not None and (account_id not in found or latest > found[account_id]):
                found[account_id] = latest
    return found


@router.get(PATH)
def accounts_page(request: Request, db: PageDb, signed_in: CurrentUser) -> Response:
    accounts = repository.list_accounts(session=db, workspace_id=signed_in.workspace.id)
    heard = last_activity(db, accounts)
    stuck = stuck_by_account(session=db, workspace_id=signed_in.workspace.id)
    service.end_read(db)  # the quota gate reads in its own transaction
    values: dict[str, Any] = {
        "accounts": accounts,
        "quota": quota_usage(request, accounts),
        "heard": heard,
        "stuck": stuck,
    }
    return render(request, "accounts.html", values, signed_in=signed_in)


@router.post(PATH + "/{account_id}/check")
async def check_now(request: Request, account_id: str, db: PageDb, signed_in: CurrentUser) -> Response:
    account = repository.get_account(session=db, workspace_id=signed_in.workspace.id, account_id=account_id)
    settings = settings_of(request)
    try:
        async with graph_for(request) as graph:
            verdict = await check_account(
                session=db, account=account, graph=graph, cipher=cipher_for(settings), app_id=settings.app_id
            )
    except GraphError as exc:
        error = account_errors.translate_graph_error(exc, during="checking the token")
        record_check_failure(account, error, now=utcnow())
        return redirect(request, PATH, flash=("error", f"{error.message} {error.hint}"))
    if not account.automation_paused:
        resume_paused_runs(session=db, account_id=account.id, runtime=request.app.state.runtime)
    stuck = stuck_by_account(session=db, workspace_id=signed_in.workspace.id).get(account.id, Stuck())
    if verdict.status.value == "valid" and not (account.health or {}).get("problems") and stuck.failed:
        text = (
            f"@{account.username}: the token works, but {_dms(stuck.failed)} did not go out. "
            f"Use “Retry now” below to send {'it' if stuck.failed == 1 else 'them'}."
        )
        kind = "info"
    elif verdict.status.value == "valid" and not (account.health or {}).get("problems"):
        text = f"@{account.username}: the token works and everything is in order."
        kind = "success"
    else:
        text = f"@{account.username} was checked; see below what needs attention."
        kind = "info"
    return redirect(request, PATH, flash=(kind, text))


def _dms(count: int) -> str:
    return f"{count} DM" if count == 1 else f"{count} DMs"


@router.post(PATH + "/{account_id}/retry")
def retry_now(request: Request, account_id: str, db: PageDb, signed_in: CurrentUser, form: SubmittedForm) -> Response:
    """ "Retry now": the account's paused and failed DMs go to a worker at once (nothing is sent twice)."""
    account = repository.get_account(session=db, workspace_id=signed_in.workspace.id, account_id=account_id)
    back = str(form.get("next") or "")
    target = back if back in ("/app", PATH) else PATH
    if account.automation_paused:
        return redirect(
            request,
            target,
            flash=(
                "error",
                f"@{account.username}’s DMs can’t go out until the account is reconnected: its token stopped "
                "working. Reconnect it in Integrations; the waiting DMs then go out at once.",
            ),
        )
    moved = retry_stuck(session=db, runtime=request.app.state.runtime, account=account)
    if not moved.total:
        return redirect(request, target, flash=("info", f"@{account.username} has no DM waiting to be retried."))
    return redirect(
        request,
        target,
        flash=("success", f"Retrying {_dms(moved.total)} for @{account.username} now. Follow them in Activity."),
    )


@router.get(PATH + "/{account_id}/disconnect", dependencies=page_allowed(Permission.MANAGE_ACCOUNTS))
def confirm_disconnect(request: Request, account_id: str, db: PageDb, signed_in: CurrentUser) -> Response:
    account = repository.get_account(session=db, workspace_id=signed_in.workspace.id, account_id=account_id)
    return render(request, "account_disconnect.html", {"account": account}, signed_in=signed_in)


@router.post(PATH + "/{account_id}/disconnect", dependencies=page_allowed(Permission.MANAGE_ACCOUNTS))
def disconnect(request: Request, account_id: str, db: PageDb, signed_in: CurrentUser) -> Response:
    account = repository.get_account(session=db, workspace_id=signed_in.workspace.id, account_id=account_id)
    service.disconnect_account(session=db, account=account)
    return redirect(
        request,
        PATH,
        flash=(
            "success",
            f"@{account.username} is disconnected: replyflow deleted its token and stopped its rules. "
            "Connect the same Page again to bring them back.",
        ),
    )
