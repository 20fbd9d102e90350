"""Connecting Instagram accounts: User token → Pages (conversion), Page token → saved account, disconnect, media.

Each flow asks Meta everything first and writes to the database last, so a refusal, a timeout or a 5xx at
any step leaves stored data as it was. Tokens exist in plain text only in memory, between the Graph call
that returned them and the cipher that encrypts them.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from replyflow.accounts import errors, tokens
from replyflow.accounts.crypto import TokenCipher
from replyflow.accounts.health import Problem, judge_token, record_verdict
from replyflow.accounts.instagram_login import find_account
from replyflow.accounts.models import Account, Login, OAuthState, TokenConversion, TokenStatus
from replyflow.accounts.permissions import (
    CONDITIONAL_SCOPES,
    LINK_INSTAGRAM_URL,
    MESSAGING_TASK,
    PAGE_TASKS_URL,
    PAGE_WEBHOOK_FIELDS,
    missing_permission_problem,
    missing_permissions,
    permission_hint,
)
from replyflow.config import Settings
from replyflow.db import utcnow
from replyflow.graph.client import GraphClient
from replyflow.graph.errors import GraphError, PermissionDenied, TokenInvalid
from replyflow.graph.types import Media, Page, TokenInfo
from replyflow.logging import get_logger

log = get_logger("replyflow.accounts")

CONVERSION_TTL = dt.timedelta(minutes=15)
# Short-lived user tokens last 1-2 hours, long-lived ones about 60 days; anything under a day is exchanged.
SHORT_LIVED_BELOW = dt.timedelta(days=1)
ConversionSource = Literal["token", "oauth", "cli"]


# -- talking to Meta -------------------------------------------------------------------------------------


def end_read(session: Session) -> None:
    """Finish the session's open transaction before waiting on Meta.

    On SQLite every transaction takes the write lock at BEGIN (``replyflow.db``), so a request that read
    something and then waits seconds for the Graph API would stall webhook ingestion meanwhile. Whatever the
    caller flushed so far is committed; the session carries on in a new transaction.
    """
    if session.in_transaction():
        session.commit()


async def debug_token(*, graph: GraphClient, token: str) -> TokenInfo:
    """``debug_token`` with our app token. A 190 here is about *our* app token, not the one being checked."""
    try:
        return await graph.debug_token(input_token=token)
    except TokenInvalid:
        raise errors.app_credentials_invalid() from None
    except GraphError as exc:
        raise errors.translate_graph_error(exc, during="checking the token with Meta") from None


def _problem_messages(problems: list[Problem]) -> list[str]:
    return [p.message for p in problems]


def page_problems(page: Page, *, info: TokenInfo) -> list[Problem]:
    """Why automation would not work for this Page with this token, in plain words; empty when ready."""
    problems: list[Problem] = []
    ig = page.instagram_business_account
    if ig is None:
        problems.append(
            Problem(
                "page_without_instagram",
                "This Page has no Instagram professional account linked.",
                f"Link your Instagram professional account to this Page ({LINK_INSTAGRAM_URL}), then convert again.",
            )
        )
    if MESSAGING_TASK not in {t.upper() for t in page.tasks}:
        problems.append(
            Problem(
                "messaging_task_missing",
                "You are not an admin of this Page with the MESSAGING task, so Meta will not send DMs for it.",
                f"Ask a Page admin to give you full control or the 'Messages' task ({PAGE_TASKS_URL}).",
            )
        )
    granted = tokens.granted_scopes(info, page_id=page.id, instagram_id=ig.id if ig else None)
    problems.extend(
        Problem("missing_permission", missing_permission_problem(name), permission_hint([name]))
        for name in missing_permissions(granted)
    )
    if page.access_token is None:
        problems.append(
            Problem(
                "page_token_missing",
                "Meta did not return a Page token for this Page.",
                "Make sure you manage this Page yourself and approved pages_show_list, then convert again.",
            )
        )
    return problems


def _conversion_warnings(*, pages: list[Page], info: TokenInfo) -> list[str]:
    warnings: list[str] = []
    lacks_business = "business_management" not in info.scopes
    if not pages:
        text = "Meta found no Facebook Page you manage with this token."
        if lacks_business:
            text += (
                " If your Page belongs to a Business portfolio (Business Manager), grant business_management too: "
                "Meta leaves such Pages out otherwise."
            )
        warnings.append(text)
    elif lacks_business:
        listed = {p.id for p in pages}
        granted_pages = set(info.targets_of("pages_show_list"))
        if granted_pages - listed:
            warnings.append(
                "Some Pages you granted access to are not listed. They probably belong to a Business portfolio; "
                f"grant {', '.join(CONDITIONAL_SCOPES)} to see them."
            )
    return warnings


# -- conversion ------------------------------------------------------------------------------------------


def purge_expired(*, session: Session, now: dt.datetime | None = None) -> int:
    """Delete expired conversions (and their encrypted Page tokens) and spent OAuth states."""
    now = now or utcnow()
    removed = session.execute(delete(TokenConversion).where(TokenConversion.expires_at <= now))
    session.execute(delete(OAuthState).where(OAuthState.expires_at <= now - dt.timedelta(days=1)))
    return int(getattr(removed, "rowcount", 0) or 0)


async def convert_user_token(
    *,
    session: Session,
    graph: GraphClient,
    cipher: TokenCipher,
    settings: Settings,
    workspace_id: str,
    user_access_token: object,
    source: ConversionSource = "token",
) -> TokenConversion:
    """Check a User token, make it long-lived, list its Pages; keep their tokens encrypted for 15 minutes."""
    token = tokens.check_token_format(user_access_token)
    end_read(session)
    now = utcnow()
    info = await debug_token(graph=graph, token=token)
    tokens.require_usable(info, app_id=settings.app_id, expected="USER", now=now)

    expires_at = info.expires_at
    long_lived = expires_at is None or expires_at - now >= SHORT_LIVED_BELOW
    if not long_lived and tokens.token_type(info) == "USER":
        try:
            exchanged = await graph.exchange_long_lived_user_token(user_token=token)
        except GraphError as exc:
            raise errors.translate_graph_error(exc, during="making the token long-lived") from None
        token = exchanged.access_token.get_secret_value()
        expires_at = now + dt.timedelta(seconds=exchanged.expires_in) if exchanged.expires_in else None
        long_lived = True

    try:
        pages = await graph.list_pages(user_token=token)
    except GraphError as exc:
        raise errors.translate_graph_error(exc, during="listing your Facebook Pages") from None

    rows: list[dict[str, Any]] = []
    page_tokens: dict[str, str] = {}
    for page in pages:
        problems = page_problems(page, info=info)
        ig = page.instagram_business_account
        rows.append(
            {
                "page_id": page.id,
                "name": page.name,
                "instagram": {"id": ig.id, "username": ig.username} if ig else None,
                "tasks": sorted(t.upper() for t in page.tasks),
                "has_messaging_task": MESSAGING_TASK in {t.upper() for t in page.tasks},
                "ready": not problems,
                "problems": _problem_messages(problems),
                "problem_details": [p.as_dict() for p in problems],
            }
        )
        if page.access_token is not None:
            page_tokens[page.id] = page.access_token.get_secret_value()

    purge_expired(session=session, now=now)
    conversion = TokenConversion(
        workspace_id=workspace_id,
        source=source,
        token_type=tokens.token_type(info),
        meta_user_id=info.user_id,
        scopes=list(info.scopes),
        missing_permissions=missing_permissions(info.scopes),
        token_expires_at=expires_at,
        long_lived=long_lived,
        pages=rows,
        warnings=_conversion_warnings(pages=pages, info=info),
        page_tokens_ciphertext=cipher.encrypt(json.dumps(page_tokens)),
        created_at=now,
        expires_at=now + CONVERSION_TTL,
    )
    session.add(conversion)
    session.flush()
    log.info(
        "token_converted",
        conversion_id=conversion.id,
        workspace_id=workspace_id,
        pages=len(rows),
        ready=sum(1 for r in rows if r["ready"]),
        source=source,
    )
    return conversion


def get_conversion(*, session: Session, workspace_id: str, conversion_id: str) -> TokenConversion:
    """The conversion, or 404 (unknown or another workspace's) / 410 (expired)."""
    conversion = session.get(TokenConversion, conversion_id)
    if conversion is None or conversion.workspace_id != workspace_id:
        raise errors.conversion_not_found()
    if conversion.expires_at <= utcnow():
        raise errors.conversion_expired()
    return conversion


def _conversion_page(conversion: TokenConversion, page_id: str) -> dict[str, Any]:
    row = next((p for p in conversion.pages if p.get("page_id") == page_id), None)
    if row is None:
        raise errors.page_not_in_conversion()
    return row


def _conversion_page_token(conversion: TokenConversion, cipher: TokenCipher, page_id: str) -> str:
    found = json.loads(cipher.decrypt(conversion.page_tokens_ciphertext)).get(page_id)
    if not isinstance(found, str):
        raise errors.TokenRejected(
            "Meta did not return a Page token for this Page when the token was converted.",
            code="page_token_missing",
            hint="Make sure you manage this Page yourself and approved pages_show_list, then convert again.",
        )
    return found


# -- saving an account -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedAccount:
    account: Account
    created: bool


async def _subscribe_page(*, graph: GraphClient, page_id: str, token: str) -> tuple[bool, list[str]]:
    """Subscribe the Page to our webhook fields. A permission refusal is recorded, not fatal: the account still
    saves and its health says what to fix. Anything else (token dead, Meta down) stops the save."""
    try:
        ok = await graph.subscribe_page(page_id=page_id, token=token, fields=PAGE_WEBHOOK_FIELDS)
    except PermissionDenied:
        return False, []
    except GraphError as exc:
        raise errors.translate_graph_error(
            exc, during="subscribing the Page to webhooks", subject="Page token"
        ) from None
    return ok, list(PAGE_WEBHOOK_FIELDS) if ok else []


async def save_page_token(
    *,
    session: Session,
    graph: GraphClient,
    cipher: TokenCipher,
    settings: Settings,
    workspace_id: str,
    conversion_id: str | None = None,
    page_id: str | None = None,
    page_access_token: object = None,
) -> SavedAccount:
    """Validate a Page token with Meta and create or update the workspace's account for its Page.

    Same workspace and Page → the same account row, so its rules and history stay attached.
    """
    messaging_task: bool | None = None
    if conversion_id is not None:
        if page_id is None:
            raise errors.page_not_in_conversion()
        conversion = get_conversion(session=session, workspace_id=workspace_id, conversion_id=conversion_id)
        row = _conversion_page(conversion, page_id)
        token = _conversion_page_token(conversion, cipher, page_id)
        messaging_task = bool(row.get("has_messaging_task"))
    else:
        token = tokens.check_token_format(page_access_token)

    end_read(session)
    now = utcnow()
    info = await debug_token(graph=graph, token=token)
    tokens.require_usable(info, app_id=settings.app_id, expected="PAGE", now=now)
    if page_id is not None and info.profile_id and info.profile_id != page_id:
        raise errors.page_mismatch()

    try:
        page = await graph.get_page(page_id=page_id or info.profile_id or "me", token=token)
    except GraphError as exc:
        raise errors.translate_graph_error(exc, during="reading the Page", subject="Page token") from None
    if page_id is not None and page.id != page_id:
        raise errors.page_mismatch()
    ig_ref = page.instagram_business_account
    if ig_ref is None:
        raise errors.page_without_instagram(page.name)
    try:
        ig = await graph.get_instagram_account(ig_id=ig_ref.id, token=token)
    except GraphError as exc:
        raise errors.translate_graph_error(exc, during="reading the Instagram account", subject="Page token") from None

    verdict = judge_token(info, app_id=settings.app_id, page_id=page.id, instagram_id=ig.id, now=now)
    subscribed, fields = await _subscribe_page(graph=graph, page_id=page.id, token=token)

    # Same Page, or the same Instagram account connected before through Instagram Login: the same row.
    account = session.scalar(
        select(Account).where(Account.workspace_id == workspace_id, Account.page_id == page.id)
    ) or find_account(session=session, workspace_id=workspace_id, instagram_id=ig.id)
    created = account is None
    if account is None:
        account = Account(workspace_id=workspace_id, page_id=page.id, created_at=now, health={})
        session.add(account)
    account.login = Login.FACEBOOK.value
    account.page_id = page.id
    account.token_issued_at = now
    account.page_name = page.name or ""
    account.instagram_id = ig.id
    account.username = ig.username or ig_ref.username or ""
    account.name = ig.name
    account.profile_picture_url = ig.profile_picture_url
    account.token_ciphertext = cipher.encrypt(token)
    account.token_type = "PAGE"  # noqa: S105  (a token kind, not a secret)
    account.disconnected_at = None
    if messaging_task is None and not created:
        messaging_task = (account.health or {}).get("messaging_task")
    health = dict(account.health or {})
    health["tasks_known"] = messaging_task is not None
    account.health = health
    record_verdict(
        account, verdict, now=now, page_subscribed=subscribed, subscribed_fields=fields, messaging_task=messaging_task
    )
    session.flush()
    log.info(
        "account_saved",
        account_id=account.id,
        workspace_id=workspace_id,
        created=created,
        token_status=account.token_status,
        webhooks_subscribed=subscribed,
    )
    return SavedAccount(account=account, created=created)


async def connect_with_user_token(
    *,
    session: Session,
    graph: GraphClient,
    cipher: TokenCipher,
    settings: Settings,
    workspace_id: str,
    user_access_token: str,
    page_ids: list[str] | None = None,
    source: ConversionSource = "cli",
) -> tuple[TokenConversion, list[SavedAccount]]:
    """Conversion and saving in one go (demo seeding, scripts): ``page_ids``, or every ready Page when None."""
    conversion = await convert_user_token(
        session=session,
        graph=graph,
        cipher=cipher,
        settings=settings,
        workspace_id=workspace_id,
        user_access_token=user_access_token,
        source=source,
    )
    chosen = page_ids if page_ids is not None else [p["page_id"] for p in conversion.pages if p.get("ready")]
    saved = [
        await save_page_token(
            session=session,
            graph=graph,
            cipher=cipher,
            settings=settings,
            workspace_id=workspace_id,
            conversion_id=conversion.id,
            page_id=page_id,
        )
        for page_id in chosen
    ]
    return conversion, saved


# -- disconnecting and reading -----------------------------------------------------------------------------


def disconnect_account(*, session: Session, account: Account) -> None:
    """Forget the token and hide the account; its rules and history stay for a later reconnect."""
    account.token_ciphertext = None
    account.disconnected_at = utcnow()
    account.reauthorization_required = True
    account.token_status = TokenStatus.INVALID.value
    account.token_status_reason = "Disconnected in replyflow."  # noqa: S105  (not a secret)
    session.flush()
    log.info("account_disconnected", account_id=account.id)


def account_token(*, account: Account, cipher: TokenCipher) -> str:
    if account.token_ciphertext is None:
        raise errors.TokenRejected(
            "This account has no stored token.",
            code="token_missing",
            hint="Reconnect the account: convert a User token and save the Page again.",
        )
    return cipher.decrypt(account.token_ciphertext)


@dataclass(frozen=True)
class MediaList:
    items: list[Media]
    next_cursor: str | None


async def list_media(
    *,
    session: Session,
    account: Account,
    graph: GraphClient,
    cipher: TokenCipher,
    cursor: str | None = None,
    limit: int = 25,
) -> MediaList:
    """One page of the account's posts and reels, newest first, straight from Meta."""
    token = account_token(account=account, cipher=cipher)
    end_read(session)
    bound = graph.for_login(account.login, sender_id=account.sender_id)
    page = await bound.list_media(ig_id=account.instagram_id, token=token, after=cursor, limit=limit)
    return MediaList(items=list(page.items), next_cursor=page.next_cursor)


__all__ = [
    "CONVERSION_TTL",
    "MediaList",
    "SavedAccount",
    "account_token",
    "connect_with_user_token",
    "convert_user_token",
    "debug_token",
    "disconnect_account",
    "end_read",
    "get_conversion",
    "list_media",
    "page_problems",
    "purge_expired",
    "save_page_token",
]
