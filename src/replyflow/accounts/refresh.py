"""Instagram Login tokens that refresh themselves (``ig_refresh_token``), periodically and on demand.

A long-lived Instagram User token lasts 60 days and can be refreshed once it is at least 24 hours old and not yet
expired (``meta-graph-api-notes.md`` §4). The hourly job refreshes every connected Instagram Login account whose
token expires within ``REPLYFLOW_INSTAGRAM_TOKEN_REFRESH_DAYS`` (10 by default) and records the new expiry. A
refusal (190) pauses the account (``invalid``, re-authorisation required); any other failure marks it
``expiring`` with the reason and is retried the next hour. Either way the account's alerts say what happened.

Meta is never asked while the database is held: read, call, then write in a second transaction, and only if the
account still holds the token that was refreshed (a reconnect meanwhile wins).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, or_, select

from replyflow.accounts import repository
from replyflow.accounts.crypto import cipher_for
from replyflow.accounts.health import TokenVerdict, record_verdict
from replyflow.accounts.instagram_login import LONG_LIVED, REFRESHABLE_AFTER, instagram_verdict
from replyflow.accounts.models import Account, Login, TokenStatus
from replyflow.db import utcnow
from replyflow.errors import ReplyflowError
from replyflow.graph.client import GraphClient
from replyflow.graph.errors import GraphError, TokenInvalid
from replyflow.graph.types import AccessToken
from replyflow.graph_access import run_with_graph
from replyflow.logging import get_logger
from replyflow.runtime import Runtime

log = get_logger("replyflow.accounts.refresh")

GraphRun = Callable[[Callable[[GraphClient], Coroutine[Any, Any, Any]]], Any]
Outcome = Literal["refreshed", "not_due", "too_new", "not_instagram", "failed", "invalid"]
MAX_PER_RUN = 500


@dataclass(frozen=True)
class RefreshResult:
    account_id: str
    outcome: Outcome
    message: str
    expires_at: dt.datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "outcome": self.outcome,
            "message": self.message,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


def _date(value: dt.datetime) -> str:
    return value.strftime("%d %b %Y %H:%M UTC")


def refresh_window(runtime: Runtime) -> dt.timedelta:
    return dt.timedelta(days=runtime.settings.instagram_token_refresh_days)


def is_due(account: Account, *, now: dt.datetime, window: dt.timedelta) -> bool:
    """An Instagram Login token due for a refresh: expiring within ``window`` (or of unknown expiry)."""
    return account.token_expires_at is None or account.token_expires_at - now <= window


def due_account_ids(*, runtime: Runtime, now: dt.datetime) -> list[str]:
    """Connected Instagram Login accounts whose token is due and old enough to be refreshed."""
    horizon = now + refresh_window(runtime)
    old_enough = now - REFRESHABLE_AFTER
    query = (
        repository.connected_accounts_query()
        .where(Account.login == Login.INSTAGRAM.value)
        .where(Account.token_ciphertext.is_not(None))
        .where(Account.reauthorization_required.is_(False))
        .where(or_(Account.token_expires_at.is_(None), Account.token_expires_at <= horizon))
        .where(or_(Account.token_issued_at.is_(None), and_(Account.token_issued_at <= old_enough)))
        .order_by(Account.token_expires_at.asc().nulls_first(), Account.id)
        .limit(MAX_PER_RUN)
    )
    with runtime.session() as session:
        return [a.id for a in session.scalars(query)]


def _default_run(runtime: Runtime) -> GraphRun:
    def run(work: Callable[[GraphClient], Coroutine[Any, Any, Any]]) -> Any:
        return run_with_graph(runtime.settings, work)

    return run


def refresh_account(
    *,
    runtime: Runtime,
    account_id: str,
    now: dt.datetime | None = None,
    run: GraphRun | None = None,
    force: bool = False,
) -> RefreshResult:
    """Refresh one account's Instagram token when due (``force``: whenever Meta allows it, i.e. 24 h old)."""
    now = now or utcnow()
    cipher = cipher_for(runtime.settings)
    run = run or _default_run(runtime)
    with runtime.session() as session:
        account = session.get(Account, account_id)
        if account is None or account.disconnected_at is not None or account.token_ciphertext is None:
            return RefreshResult(account_id, "not_instagram", "No connected account with a token has this id.")
        if not account.is_instagram_login:
            return RefreshResult(
                account_id,
                "not_instagram",
                "This account uses Facebook Login: its Page token does not expire and needs no refresh.",
                account.token_expires_at,
            )
        expires_at, issued_at = account.token_expires_at, account.token_issued_at
        if not force and not is_due(account, now=now, window=refresh_window(runtime)):
            assert expires_at is not None
            return RefreshResult(
                account_id, "not_due", f"Not due: the token is valid until {_date(expires_at)}.", expires_at
            )
        if issued_at is not None and now - issued_at < REFRESHABLE_AFTER:
            return RefreshResult(
                account_id,
                "too_new",
                "Meta refreshes a token only once it is 24 hours old; this one is younger.",
                expires_at,
            )
        token = cipher.decrypt(account.token_ciphertext)

    async def work(graph: GraphClient) -> AccessToken:
        return await graph.refresh_instagram_token(token=token)

    try:
        refreshed: AccessToken = run(work)
    except (GraphError, ReplyflowError) as exc:
        return _record_failure(runtime=runtime, account_id=account_id, issued_at=issued_at, error=exc, now=now)
    lifetime = dt.timedelta(seconds=refreshed.expires_in) if refreshed.expires_in else LONG_LIVED
    new_expiry = now + lifetime
    with runtime.session() as session:
        account = session.get(Account, account_id)
        if account is None or account.token_issued_at != issued_at or account.token_ciphertext is None:
            return RefreshResult(account_id, "not_due", "The account was reconnected meanwhile; nothing changed.")
        account.token_ciphertext = cipher.encrypt(refreshed.access_token.get_secret_value())
        account.token_issued_at = now
        health = dict(account.health or {})
        health.pop("refresh_error", None)
        health["refreshed_at"] = now.isoformat()
        account.health = health
        verdict = instagram_verdict(expires_at=new_expiry, scopes=list(account.scopes or []), now=now)
        record_verdict(account, verdict, now=now)
    log.info("instagram_token_refreshed", account_id=account_id, expires_at=new_expiry.isoformat())
    return RefreshResult(account_id, "refreshed", f"Refreshed: valid until {_date(new_expiry)}.", new_expiry)


def _record_failure(
    *,
    runtime: Runtime,
    account_id: str,
    issued_at: dt.datetime | None,
    error: GraphError | ReplyflowError,
    now: dt.datetime,
) -> RefreshResult:
    with runtime.session() as session:
        account = session.get(Account, account_id)
        if account is None or account.token_issued_at != issued_at:
            return RefreshResult(account_id, "not_due", "The account was reconnected meanwhile; nothing changed.")
        expires_at = account.token_expires_at
        scopes = list(account.scopes or [])
        health = dict(account.health or {})
        if isinstance(error, TokenInvalid) or (expires_at is not None and expires_at <= now):
            why = error.describe() if isinstance(error, TokenInvalid) else "the token has expired"
            reason = f"Instagram refused to refresh the token ({why}). Connect with Instagram again."
            health["refresh_error"] = reason
            account.health = health
            verdict = TokenVerdict(TokenStatus.INVALID, reason, [], expires_at, scopes)
            outcome: Outcome = "invalid"
        else:
            reason = (
                f"replyflow could not refresh the Instagram token ({error.message.rstrip('.')}); "
                "it tries again every hour."
            )
            health["refresh_error"] = reason
            health["refresh_failed_at"] = now.isoformat()
            account.health = health
            verdict = instagram_verdict(expires_at=expires_at, scopes=scopes, now=now, refresh_error=reason)
            outcome = "failed"
        record_verdict(account, verdict, now=now)
    log.warning("instagram_token_refresh_failed", account_id=account_id, code=error.error_code, outcome=outcome)
    return RefreshResult(account_id, outcome, verdict.reason or reason, expires_at)


def refresh_due_tokens(
    *, runtime: Runtime, now: dt.datetime | None = None, run: GraphRun | None = None
) -> list[RefreshResult]:
    """The periodic pass: refresh every due Instagram Login token."""
    now = now or utcnow()
    results = [
        refresh_account(runtime=runtime, account_id=account_id, now=now, run=run)
        for account_id in due_account_ids(runtime=runtime, now=now)
    ]
    if results:
        counts: dict[str, int] = {}
        for result in results:
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
        log.info("instagram_tokens_refreshed", **counts)
    return results


def instagram_account_ids(*, runtime: Runtime, workspace_id: str | None = None) -> list[str]:
    query = select(Account.id).where(Account.login == Login.INSTAGRAM.value, Account.disconnected_at.is_(None))
    if workspace_id is not None:
        query = query.where(Account.workspace_id == workspace_id)
    with runtime.session() as session:
        return list(session.scalars(query.order_by(Account.id)))


__all__ = [
    "RefreshResult",
    "due_account_ids",
    "instagram_account_ids",
    "is_due",
    "refresh_account",
    "refresh_due_tokens",
]
