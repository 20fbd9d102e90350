"""Instagram Login: connect an Instagram professional account with no Facebook Page, and keep its token fresh.

Facts from ``meta-graph-api-notes.md`` §0 and §4: the account is reached on graph.instagram.com with an Instagram
User token; a short-lived token (1 h) is exchanged server-side for a long-lived one (60 days,
``ig_exchange_token``), which can be refreshed (``ig_refresh_token``) once it is at least 24 hours old and not yet
expired, for another 60 days from then. There is no ``debug_token`` for these tokens: replyflow keeps the expiry it
was told at the exchange or refresh, and asks ``/me`` whether the token still works.

As with Facebook Login, each flow asks Meta everything first and writes last, and the same Instagram account in a
workspace is always the same account row, whichever login connected it before: its rules and history stay.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from replyflow.accounts import errors, tokens
from replyflow.accounts.crypto import TokenCipher
from replyflow.accounts.health import EXPIRY_WARNING, TokenVerdict, record_verdict
from replyflow.accounts.models import Account, Login, TokenStatus
from replyflow.accounts.permissions import (
    INSTAGRAM_PROFESSIONAL_URL,
    INSTAGRAM_WEBHOOK_FIELDS,
    missing_instagram_permissions,
)
from replyflow.config import Settings
from replyflow.db import utcnow
from replyflow.graph.client import GraphClient
from replyflow.graph.errors import GraphError, PermissionDenied, RateLimited, TokenInvalid, TransientError
from replyflow.graph.types import InstagramLoginUser
from replyflow.logging import get_logger

log = get_logger("replyflow.accounts.instagram")

INSTAGRAM_TOKEN_TYPE = "INSTAGRAM"  # noqa: S105  (a token kind, not a secret)
LONG_LIVED = dt.timedelta(days=60)
# A token that is already long-lived and under 24 hours old cannot be refreshed yet; it has at least 59 days left.
YOUNG_LONG_LIVED = dt.timedelta(days=59)
REFRESHABLE_AFTER = dt.timedelta(hours=24)
PROFESSIONAL_TYPES = frozenset({"BUSINESS", "MEDIA_CREATOR", "CREATOR"})


def _date(value: dt.datetime) -> str:
    return value.strftime("%d %b %Y")


@dataclass(frozen=True)
class InstagramToken:
    """A long-lived Instagram User token in memory, with what is known of its life."""

    value: str
    issued_at: dt.datetime
    expires_at: dt.datetime


async def _me(graph: GraphClient, token: str, *, during: str) -> InstagramLoginUser:
    try:
        return await graph.get_instagram_me(token=token)
    except TokenInvalid as exc:
        raise errors.TokenRejected(
            "Instagram does not accept this token (it may have expired or been revoked).",
            code="token_expired" if exc.reason.value == "expired" else "token_invalid",
            hint=errors.INSTAGRAM_LOGIN_HINT,
        ) from None
    except GraphError as exc:
        raise errors.translate_graph_error(exc, during=during, subject="Instagram token") from None


async def make_long_lived(*, graph: GraphClient, token: str, now: dt.datetime) -> InstagramToken:
    """The long-lived form of a pasted or freshly issued token.

    A short-lived token is exchanged (``ig_exchange_token``). Meta refuses to exchange a token that already is
    long-lived; such a token is refreshed instead, and when it is too young for that (under 24 hours) it is kept
    as it is, with 59 days left at least.
    """
    try:
        exchanged = await graph.exchange_instagram_token(short_lived_token=token)
        return _lived(exchanged.access_token.get_secret_value(), exchanged.expires_in, now=now)
    except (TransientError, RateLimited):
        raise errors.meta_unavailable(during="making the Instagram token long-lived") from None
    except TokenInvalid:
        raise errors.TokenRejected(
            "Instagram does not accept this token (it may have expired or been revoked).",
            hint=errors.INSTAGRAM_LOGIN_HINT,
        ) from None
    except GraphError:
        pass  # not a short-lived token: it already is long-lived
    try:
        refreshed = await graph.refresh_instagram_token(token=token)
        return _lived(refreshed.access_token.get_secret_value(), refreshed.expires_in, now=now)
    except (TransientError, RateLimited):
        raise errors.meta_unavailable(during="refreshing the Instagram token") from None
    except GraphError:
        return InstagramToken(value=token, issued_at=now, expires_at=now + YOUNG_LONG_LIVED)


def _lived(value: str, expires_in: int | None, *, now: dt.datetime) -> InstagramToken:
    lifetime = dt.timedelta(seconds=expires_in) if expires_in else LONG_LIVED
    return InstagramToken(value=value, issued_at=now, expires_at=now + lifetime)


async def _subscribe(*, graph: GraphClient, token: str) -> tuple[bool, list[str]]:
    """Subscribe the account to our webhook fields; a permission refusal is recorded, not fatal."""
    try:
        ok = await graph.subscribe_instagram(token=token, fields=INSTAGRAM_WEBHOOK_FIELDS)
    except PermissionDenied:
        return False, []
    except GraphError as exc:
        raise errors.translate_graph_error(
            exc, during="subscribing the Instagram account to webhooks", subject="Instagram token"
        ) from None
    return ok, list(INSTAGRAM_WEBHOOK_FIELDS) if ok else []


def instagram_verdict(
    *, expires_at: dt.datetime | None, scopes: list[str], now: dt.datetime, refresh_error: str | None = None
) -> TokenVerdict:
    """The status of a working Instagram token: valid, expiring (within 7 days, or a refresh failed), or invalid."""
    missing = missing_instagram_permissions(scopes) if scopes else []
    if expires_at is not None and expires_at <= now:
        return TokenVerdict(
            TokenStatus.INVALID, f"The Instagram token expired on {_date(expires_at)}.", missing, expires_at, scopes
        )
    if missing:
        return TokenVerdict(
            TokenStatus.MISSING_PERMISSIONS,
            f"The Instagram token lacks {', '.join(missing)}.",
            missing,
            expires_at,
            scopes,
        )
    if refresh_error is not None:
        when = f" It expires on {_date(expires_at)}." if expires_at else ""
        return TokenVerdict(TokenStatus.EXPIRING, refresh_error + when, [], expires_at, scopes)
    if expires_at is not None and expires_at - now <= EXPIRY_WARNING:
        return TokenVerdict(
            TokenStatus.EXPIRING, f"The Instagram token expires on {_date(expires_at)}.", [], expires_at, scopes
        )
    return TokenVerdict(TokenStatus.VALID, None, [], expires_at, scopes)


def find_account(*, session: Session, workspace_id: str, instagram_id: str) -> Account | None:
    """The workspace's row for this Instagram account, whichever login connected it (oldest first)."""
    return session.scalar(
        select(Account)
        .where(Account.workspace_id == workspace_id, Account.instagram_id == instagram_id)
        .order_by(Account.created_at, Account.id)
        .limit(1)
    )


@dataclass(frozen=True)
class SavedInstagramAccount:
    account: Account
    created: bool
    switched_login: bool = False


async def save_instagram_token(
    *,
    session: Session,
    graph: GraphClient,
    cipher: TokenCipher,
    settings: Settings,
    workspace_id: str,
    instagram_access_token: object,
    scopes: list[str] | None = None,
) -> SavedInstagramAccount:
    """Validate an Instagram User token on the Instagram host, make it long-lived, subscribe webhooks, save.

    ``scopes`` are the permissions Meta reported with the token (the OAuth code exchange lists them); a pasted
    token's are unknown, and then missing permissions show up as refusals on first use. ``settings`` is taken for
    symmetry with ``save_page_token``: the client already carries the Instagram app's id and secret.
    """
    token = tokens.check_token_format(instagram_access_token, login="instagram")
    if session.in_transaction():
        session.commit()  # never hold SQLite's write lock while waiting on Meta (see service.end_read)
    now = utcnow()
    me = await _me(graph, token, during="checking the Instagram token")
    if me.account_type and me.account_type.upper() not in PROFESSIONAL_TYPES:
        raise errors.TokenRejected(
            "This Instagram account is a personal account; Meta only lets professional accounts use its API.",
            code="instagram_account_not_professional",
            status=422,
            hint=f"Switch it to a Business or Creator account in the Instagram app ({INSTAGRAM_PROFESSIONAL_URL}), "
            "then connect again.",
        )
    lived = await make_long_lived(graph=graph, token=token, now=now)
    subscribed, fields = await _subscribe(graph=graph, token=lived.value)

    instagram_id = me.instagram_id
    account = find_account(session=session, workspace_id=workspace_id, instagram_id=instagram_id)
    created = account is None
    switched = account is not None and account.login != Login.INSTAGRAM.value
    if account is None:
        account = Account(workspace_id=workspace_id, instagram_id=instagram_id, created_at=now, health={})
        session.add(account)
    account.login = Login.INSTAGRAM.value
    account.page_id = None
    account.page_name = ""
    account.instagram_id = instagram_id
    account.instagram_user_id = me.id if me.id != instagram_id else account.instagram_user_id
    account.username = me.username or account.username or ""
    account.name = me.name or account.name
    account.profile_picture_url = me.profile_picture_url or account.profile_picture_url
    account.token_ciphertext = cipher.encrypt(lived.value)
    account.token_type = INSTAGRAM_TOKEN_TYPE
    account.token_issued_at = lived.issued_at
    account.disconnected_at = None
    health = {k: v for k, v in (account.health or {}).items() if k not in ("messaging_task", "tasks_known")}
    health.pop("refresh_error", None)
    account.health = health
    verdict = instagram_verdict(expires_at=lived.expires_at, scopes=list(scopes or []), now=now)
    record_verdict(account, verdict, now=now, page_subscribed=subscribed, subscribed_fields=fields)
    session.flush()
    log.info(
        "instagram_account_saved",
        account_id=account.id,
        workspace_id=workspace_id,
        created=created,
        switched_login=switched,
        token_status=account.token_status,
        webhooks_subscribed=subscribed,
    )
    return SavedInstagramAccount(account=account, created=created, switched_login=switched)


# -- checking ------------------------------------------------------------------------------------------------


@dataclass
class InstagramProbe:
    """What Meta says now about an Instagram Login account's token and webhook subscription."""

    me: InstagramLoginUser | None = None
    token_refused: TokenInvalid | None = None
    subscribed: bool | None = None
    subscribed_fields: list[str] = field(default_factory=list)
    resubscribed: bool = False


async def probe_instagram_account(*, graph: GraphClient, token: str, resubscribe: bool = True) -> InstagramProbe:
    """Ask ``/me`` whether the token works and ``/me/subscribed_apps`` whether webhooks still arrive (restoring
    them when lost). Raises ``GraphError`` only for failures that say nothing about the token (Meta down)."""
    probe = InstagramProbe()
    try:
        probe.me = await graph.get_instagram_me(token=token)
    except TokenInvalid as exc:
        probe.token_refused = exc
        return probe
    try:
        rows = await graph.list_instagram_subscriptions(token=token)
        fields = sorted({f for row in rows for f in row.subscribed_fields})
        lost = not set(INSTAGRAM_WEBHOOK_FIELDS) <= set(fields)
        if lost and resubscribe and await graph.subscribe_instagram(token=token, fields=INSTAGRAM_WEBHOOK_FIELDS):
            fields = sorted(set(fields) | set(INSTAGRAM_WEBHOOK_FIELDS))
            probe.resubscribed = True
        probe.subscribed = set(INSTAGRAM_WEBHOOK_FIELDS) <= set(fields)
        probe.subscribed_fields = fields
    except TokenInvalid as exc:
        probe.token_refused = exc
    except PermissionDenied:
        probe.subscribed = False
    return probe


def judge_instagram_probe(account: Account, probe: InstagramProbe, *, now: dt.datetime) -> TokenVerdict:
    scopes = list(account.scopes or [])
    if probe.token_refused is not None:
        return TokenVerdict(TokenStatus.INVALID, probe.token_refused.describe(), [], account.token_expires_at, scopes)
    if probe.me is not None and probe.me.instagram_id != account.instagram_id:
        return TokenVerdict(
            TokenStatus.INVALID,
            "The stored token belongs to a different Instagram account.",
            [],
            account.token_expires_at,
            scopes,
        )
    refresh_error = (account.health or {}).get("refresh_error")
    return instagram_verdict(
        expires_at=account.token_expires_at,
        scopes=scopes,
        now=now,
        refresh_error=refresh_error if isinstance(refresh_error, str) else None,
    )


def apply_instagram_probe(account: Account, probe: InstagramProbe, *, now: dt.datetime) -> TokenVerdict:
    verdict = judge_instagram_probe(account, probe, now=now)
    record_verdict(
        account,
        verdict,
        now=now,
        page_subscribed=probe.subscribed,
        subscribed_fields=probe.subscribed_fields if probe.subscribed is not None else None,
    )
    if probe.resubscribed:
        log.info("instagram_account_resubscribed", account_id=account.id)
    return verdict


__all__ = [
    "INSTAGRAM_TOKEN_TYPE",
    "InstagramProbe",
    "SavedInstagramAccount",
    "apply_instagram_probe",
    "find_account",
    "instagram_verdict",
    "judge_instagram_probe",
    "make_long_lived",
    "probe_instagram_account",
    "save_instagram_token",
]
