"""Token health of connected accounts: judge a token, probe it against Meta, record the verdict in plain words.

``token_status`` is one of ``valid``, ``expiring`` (within 7 days), ``invalid`` and ``missing_permissions``;
the last two set ``reauthorization_required`` so automation pauses for the account instead of burning errors.
The health record also keeps what else decides whether DMs can go out: the MESSAGING task on the Page and
the Page's webhook subscription.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from replyflow.accounts import tokens
from replyflow.accounts.crypto import TokenCipher
from replyflow.accounts.models import Account, TokenStatus
from replyflow.accounts.permissions import (
    PAGE_TASKS_URL,
    PAGE_WEBHOOK_FIELDS,
    missing_permission_problem,
    missing_permissions,
    permission_hint,
)
from replyflow.db import utcnow
from replyflow.errors import ReplyflowError
from replyflow.graph.client import GraphClient
from replyflow.graph.errors import PermissionDenied, TokenInvalid, TokenInvalidReason
from replyflow.graph.types import TokenInfo
from replyflow.logging import get_logger

log = get_logger("replyflow.accounts.health")

EXPIRY_WARNING = dt.timedelta(days=7)
RECONNECT_HINT = "Reconnect the account: convert a fresh User token (or use Connect with Facebook) and save the Page."
INSTAGRAM_RECONNECT_HINT = (
    "Reconnect the account with 'Connect with Instagram' on the Integrations page (or paste a fresh Instagram "
    "token); its rules and history stay."
)


def reconnect_hint(login: str | None) -> str:
    """How to reconnect an account, in the words of the login it uses."""
    return INSTAGRAM_RECONNECT_HINT if login == "instagram" else RECONNECT_HINT


@dataclass(frozen=True)
class Problem:
    """One thing standing between an account and working automation, with its fix."""

    code: str
    message: str
    hint: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "hint": self.hint}


@dataclass(frozen=True)
class TokenVerdict:
    status: TokenStatus
    reason: str | None
    missing: list[str]
    expires_at: dt.datetime | None
    scopes: list[str]

    @property
    def reauthorization_required(self) -> bool:
        return self.status in (TokenStatus.INVALID, TokenStatus.MISSING_PERMISSIONS)


def _date(value: dt.datetime) -> str:
    return value.strftime("%d %b %Y %H:%M UTC")


def invalid_reason_text(subcode: int | None) -> str:
    """Meta's reason for a dead token (error 190's subcode), in plain words."""
    return TokenInvalid(subcode=subcode).describe()


def judge_token(
    info: TokenInfo,
    *,
    app_id: str,
    page_id: str,
    instagram_id: str | None,
    now: dt.datetime,
) -> TokenVerdict:
    """What ``debug_token`` says about an account's Page token, as a status and a reason a person understands."""
    scopes = tokens.granted_scopes(info, page_id=page_id, instagram_id=instagram_id)

    def invalid(reason: str) -> TokenVerdict:
        return TokenVerdict(TokenStatus.INVALID, reason, missing_permissions(scopes), info.expires_at, scopes)

    if info.app_id and info.app_id != app_id:
        return invalid("The stored token belongs to a different Meta app than the one replyflow is configured with.")
    if tokens.is_expired(info, now=now):
        return invalid(invalid_reason_text(tokens.EXPIRED_SUBCODE))
    if not info.is_valid:
        return invalid(invalid_reason_text(info.error.subcode if info.error else None))
    if tokens.token_type(info) != "PAGE":
        return invalid("The stored token is not a Page token.")
    if info.profile_id and info.profile_id != page_id:
        return invalid("The stored token belongs to a different Page.")
    missing = missing_permissions(scopes)
    if missing:
        return TokenVerdict(
            TokenStatus.MISSING_PERMISSIONS,
            " ".join(missing_permission_problem(m) for m in missing),
            missing,
            info.expires_at,
            scopes,
        )
    if info.expires_at is not None and info.expires_at - now <= EXPIRY_WARNING:
        return TokenVerdict(
            TokenStatus.EXPIRING,
            f"The token expires on {_date(info.expires_at)}. Reconnect the account before then.",
            [],
            info.expires_at,
            scopes,
        )
    access_ends = info.data_access_expires_at
    if access_ends is not None and access_ends - now <= EXPIRY_WARNING:
        return TokenVerdict(
            TokenStatus.EXPIRING,
            f"Meta's data access for this login ends on {_date(access_ends)}. Reconnect the account to renew it.",
            [],
            info.expires_at,
            scopes,
        )
    return TokenVerdict(TokenStatus.VALID, None, [], info.expires_at, scopes)


def account_problems(
    *,
    verdict: TokenVerdict | None,
    messaging_task: bool | None,
    page_subscribed: bool | None,
    login: str | None = None,
) -> list[Problem]:
    problems: list[Problem] = []
    hint = reconnect_hint(login)
    if verdict is not None and verdict.status is TokenStatus.INVALID:
        problems.append(Problem("token_invalid", verdict.reason or "The token no longer works.", hint))
    if verdict is not None and verdict.missing:
        problems.extend(
            Problem("missing_permission", missing_permission_problem(name), permission_hint([name]))
            for name in verdict.missing
        )
    if verdict is not None and verdict.status is TokenStatus.EXPIRING:
        problems.append(Problem("token_expiring", verdict.reason or "The token expires soon.", hint))
    if messaging_task is False:
        problems.append(
            Problem(
                "messaging_task_missing",
                "The person who connected this Page does not have the MESSAGING task on it, so Meta will not send "
                "DMs for it.",
                f"Give that person full control or the 'Messages' task in the Page's settings ({PAGE_TASKS_URL}), "
                "then reconnect the account.",
            )
        )
    if page_subscribed is False and login == "instagram":
        problems.append(
            Problem(
                "instagram_not_subscribed",
                "The Instagram account is not subscribed to replyflow's webhooks, so replyflow does not hear about "
                "new comments.",
                "Run the account check again (it re-subscribes the account). If it keeps failing, reconnect with "
                "Instagram and approve instagram_business_manage_comments and instagram_business_manage_messages.",
            )
        )
    elif page_subscribed is False:
        problems.append(
            Problem(
                "page_not_subscribed",
                "The Page is not subscribed to replyflow's webhooks, so replyflow does not hear about new comments.",
                "Run the account check again (it re-subscribes the Page). If it keeps failing, reconnect with "
                "pages_manage_metadata granted.",
            )
        )
    return problems


def record_verdict(
    account: Account,
    verdict: TokenVerdict,
    *,
    now: dt.datetime,
    page_subscribed: bool | None = None,
    subscribed_fields: list[str] | None = None,
    messaging_task: bool | None = None,
) -> None:
    """Write a verdict (and what the probe learnt about the Page) onto the account."""
    account.token_status = verdict.status.value
    account.token_status_reason = verdict.reason
    account.scopes = verdict.scopes
    account.missing_permissions = verdict.missing
    account.token_expires_at = verdict.expires_at
    account.reauthorization_required = verdict.reauthorization_required
    account.token_checked_at = now
    health: dict[str, Any] = dict(account.health or {})
    if messaging_task is not None:
        health["messaging_task"] = messaging_task
    if page_subscribed is not None:
        account.webhooks_subscribed = page_subscribed
        account.subscribed_fields = list(subscribed_fields or [])
    health["page_subscribed"] = account.webhooks_subscribed
    health["checked_at"] = now.isoformat()
    health.pop("last_check_error", None)
    health["problems"] = [
        p.as_dict()
        for p in account_problems(
            verdict=verdict,
            messaging_task=health.get("messaging_task"),
            page_subscribed=account.webhooks_subscribed,
            login=account.login,
        )
    ]
    account.health = health


def mark_token_invalid(*, session: Session, account: Account, reason: str | TokenInvalidReason | None = None) -> None:
    """Call after Meta answered 190 for this account: pause its automation until it is reconnected or re-checked.

    The engine calls this inside its own transaction, then :func:`replyflow.accounts.tasks.request_check`
    so a spurious 190 is cleared by a fresh check.
    """
    if isinstance(reason, TokenInvalidReason) or reason is None:
        text = TokenInvalid(reason=reason or TokenInvalidReason.INVALID).describe()
    else:
        text = reason
    now = utcnow()
    verdict = TokenVerdict(
        TokenStatus.INVALID, text, list(account.missing_permissions or []), account.token_expires_at, account.scopes
    )
    record_verdict(account, verdict, now=now)
    session.flush()
    log.info("account_token_invalid", account_id=account.id)


# -- probing Meta ----------------------------------------------------------------------------------------


@dataclass
class Probe:
    """What Meta says now about an account's token and Page subscription."""

    info: TokenInfo | None = None
    page_subscribed: bool | None = None
    subscribed_fields: list[str] = field(default_factory=list)
    resubscribed: bool = False
    token_refused: TokenInvalid | None = None  # a call with the Page token answered 190


async def probe_account(
    *, graph: GraphClient, token: str, page_id: str, app_id: str, resubscribe: bool = True
) -> Probe:
    """Ask Meta about the token (``debug_token``) and the Page's subscription to our app; restore it if lost.

    Raises ``GraphError`` only for failures that say nothing about the token (Meta down, app credentials).
    """
    info = await graph.debug_token(input_token=token)
    probe = Probe(info=info)
    if not info.is_valid or tokens.token_type(info) != "PAGE":
        return probe
    try:
        subscriptions = await graph.list_page_subscriptions(page_id=page_id, token=token)
        ours = next((s for s in subscriptions if s.id == app_id), None)
        fields = list(ours.subscribed_fields) if ours else []
        lost = not set(PAGE_WEBHOOK_FIELDS) <= set(fields)
        if (
            lost
            and resubscribe
            and await graph.subscribe_page(page_id=page_id, token=token, fields=PAGE_WEBHOOK_FIELDS)
        ):
            fields = sorted(set(fields) | set(PAGE_WEBHOOK_FIELDS))
            probe.resubscribed = True
        probe.page_subscribed = set(PAGE_WEBHOOK_FIELDS) <= set(fields)
        probe.subscribed_fields = fields
    except TokenInvalid as exc:
        probe.token_refused = exc
    except PermissionDenied:
        probe.page_subscribed = False
    return probe


def apply_probe(account: Account, probe: Probe, *, app_id: str, now: dt.datetime) -> TokenVerdict:
    assert probe.info is not None
    verdict = judge_token(
        probe.info, app_id=app_id, page_id=account.page_id or "", instagram_id=account.instagram_id, now=now
    )
    if probe.token_refused is not None and verdict.status is not TokenStatus.INVALID:
        verdict = TokenVerdict(
            TokenStatus.INVALID, probe.token_refused.describe(), verdict.missing, verdict.expires_at, verdict.scopes
        )
    record_verdict(
        account,
        verdict,
        now=now,
        page_subscribed=probe.page_subscribed,
        subscribed_fields=probe.subscribed_fields if probe.page_subscribed is not None else None,
    )
    if probe.resubscribed:
        log.info("page_resubscribed", account_id=account.id, page_id=account.page_id)
    return verdict


def record_check_failure(account: Account, error: ReplyflowError, *, now: dt.datetime) -> None:
    """A check that could not reach a verdict (Meta down): keep the last status, remember why."""
    health = dict(account.health or {})
    health["last_check_error"] = error.message
    health["last_check_failed_at"] = now.isoformat()
    account.health = health


def stored_token(account: Account, cipher: TokenCipher) -> str | None:
    return cipher.decrypt(account.token_ciphertext) if account.token_ciphertext is not None else None


async def check_account(
    *, session: Session, account: Account, graph: GraphClient, cipher: TokenCipher, app_id: str
) -> TokenVerdict:
    """Re-validate one account now and record the verdict (raises ``GraphError`` when Meta gave none)."""
    now = utcnow()
    token = stored_token(account, cipher)
    if token is None:
        verdict = TokenVerdict(TokenStatus.INVALID, "No token is stored for this account.", [], None, [])
        record_verdict(account, verdict, now=now)
        session.flush()
        return verdict
    if session.in_transaction():
        session.commit()  # never hold SQLite's write lock while waiting on Meta (see service.end_read)
    if account.is_instagram_login:
        from replyflow.accounts import instagram_login  # it builds on this module

        ig_probe = await instagram_login.probe_instagram_account(graph=graph, token=token)
        verdict = instagram_login.apply_instagram_probe(account, ig_probe, now=now)
    else:
        probe = await probe_account(graph=graph, token=token, page_id=account.page_id or "", app_id=app_id)
        verdict = apply_probe(account, probe, app_id=app_id, now=now)
    session.flush()
    log.info("account_checked", account_id=account.id, token_status=verdict.status.value)
    return verdict


__all__ = [
    "EXPIRY_WARNING",
    "Probe",
    "Problem",
    "TokenVerdict",
    "account_problems",
    "apply_probe",
    "check_account",
    "judge_token",
    "mark_token_invalid",
    "probe_account",
    "record_check_failure",
    "record_verdict",
]
