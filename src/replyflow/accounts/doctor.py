"""``replyflow doctor``: check the whole chain against the Graph API and say, for each problem, how to fix it.

The chain: configuration → app credentials (app token) → the app's webhook subscription → stored tokens
decrypt → for each account: the token, its permissions, the MESSAGING task and the Page subscription (Facebook
Login), or the token on graph.instagram.com, its refresh and the account's own webhook subscription (Instagram
Login).
The checks only read; ``replyflow accounts check`` is the one that records verdicts and re-subscribes Pages.
The CLI, ``GET /api/doctor`` and the dashboard all call :func:`run_doctor`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

from sqlalchemy.orm import Session

from replyflow.accounts import repository
from replyflow.accounts.crypto import KeyMismatch, TokenCipher
from replyflow.accounts.health import INSTAGRAM_RECONNECT_HINT, RECONNECT_HINT, judge_token, probe_account
from replyflow.accounts.instagram_login import judge_instagram_probe, probe_instagram_account
from replyflow.accounts.instagram_oauth import redirect_uri as instagram_redirect_uri
from replyflow.accounts.models import Account, TokenStatus
from replyflow.accounts.permissions import (
    APP_WEBHOOK_FIELDS,
    APP_WEBHOOK_OBJECT,
    GRAPH_API_EXPLORER_URL,
    INSTAGRAM_WEBHOOK_FIELDS,
    PAGE_TASKS_URL,
    PAGE_WEBHOOK_FIELDS,
    permission_hint,
)
from replyflow.config import Settings
from replyflow.db import utcnow
from replyflow.errors import ReplyflowError
from replyflow.graph.client import GraphClient
from replyflow.graph.errors import GraphError, PermissionDenied, TokenInvalid
from replyflow.graph.types import AppSubscription

Status = Literal["ok", "warning", "error", "skipped"]
WEBHOOK_PATH = "/webhooks/instagram"
APP_DASHBOARD_URL = "https://developers.facebook.com/apps/"


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    status: Status
    message: str
    hint: str | None = None
    account_id: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


@dataclass(frozen=True)
class DoctorReport:
    sandbox: bool
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != "error" for c in self.checks)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status in ("error", "warning")]


def _instagram_login_check(settings: Settings) -> Check:
    which = (
        f"Instagram app {settings.instagram_client_id}"
        if settings.instagram_app_id
        else f"the Meta app's id ({settings.app_id})"
    )
    return Check(
        "config.instagram_login",
        "Instagram Login",
        "ok",
        f"Accounts without a Facebook Page connect through {settings.instagram_base_url} with {which}.",
        f"Connect with Instagram sends people back to {instagram_redirect_uri(settings)}: list it under the "
        "Instagram app's Business login settings (OAuth redirect URIs). If the Instagram app has its own id and "
        "secret, set REPLYFLOW_INSTAGRAM_APP_ID and REPLYFLOW_INSTAGRAM_APP_SECRET.",
    )


def _config_checks(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    if settings.is_sandbox:
        checks.append(
            Check(
                "config.mode",
                "Mode",
                "ok",
                "Sandbox mode: Meta is emulated on this machine; nothing reaches Instagram.",
                "To use a real Meta app set REPLYFLOW_META_APP_ID and REPLYFLOW_META_APP_SECRET "
                "(see docs/meta-setup.md).",
            )
        )
        return [*checks, _instagram_login_check(settings)]
    checks.append(Check("config.mode", "Mode", "ok", f"Live mode with Meta app {settings.app_id}."))
    if settings.public_url.startswith("https://"):
        checks.append(
            Check("config.public_url", "Public URL", "ok", f"replyflow is reachable at {settings.public_url}.")
        )
    else:
        checks.append(
            Check(
                "config.public_url",
                "Public URL",
                "error",
                f"REPLYFLOW_PUBLIC_URL is {settings.public_url}; Meta only delivers webhooks to https:// addresses.",
                "Put replyflow behind HTTPS (a reverse proxy or a tunnel) and set REPLYFLOW_PUBLIC_URL to that "
                "address.",
            )
        )
    return [*checks, _instagram_login_check(settings)]


def _webhook_check(settings: Settings, subscriptions: list[AppSubscription]) -> Check:
    expected_url = f"{settings.public_url}{WEBHOOK_PATH}"
    setup_hint = (
        f"In the App Dashboard ({APP_DASHBOARD_URL}) open Webhooks, choose 'Instagram', set the callback URL to "
        f"{expected_url} with your REPLYFLOW_WEBHOOK_VERIFY_TOKEN, and subscribe to {', '.join(APP_WEBHOOK_FIELDS)}."
    )
    ours = next((s for s in subscriptions if s.object_type == APP_WEBHOOK_OBJECT), None)
    if ours is None:
        return Check(
            "app.webhooks", "App webhooks", "error", "The app has no webhook subscription for Instagram.", setup_hint
        )
    missing = [f for f in APP_WEBHOOK_FIELDS if f not in ours.field_names]
    if missing:
        return Check(
            "app.webhooks",
            "App webhooks",
            "error",
            f"The app's Instagram webhook is not subscribed to {', '.join(missing)}.",
            setup_hint,
        )
    if not ours.active:
        return Check("app.webhooks", "App webhooks", "error", "The app's Instagram webhook is inactive.", setup_hint)
    if ours.callback_url and ours.callback_url.rstrip("/") != expected_url and not settings.is_sandbox:
        return Check(
            "app.webhooks",
            "App webhooks",
            "warning",
            f"Meta sends webhooks to {ours.callback_url}, not to {expected_url}.",
            "That is fine if a proxy forwards it here; otherwise change the callback URL. " + setup_hint,
        )
    return Check(
        "app.webhooks",
        "App webhooks",
        "ok",
        f"The app receives Instagram {', '.join(APP_WEBHOOK_FIELDS)} webhooks.",
    )


async def _app_checks(settings: Settings, graph: GraphClient) -> list[Check]:
    try:
        subscriptions = await graph.list_app_subscriptions()
    except (TokenInvalid, PermissionDenied):
        return [
            Check(
                "app.credentials",
                "App credentials",
                "error",
                "Meta refused replyflow's app credentials.",
                "Copy the App ID and App Secret from App Dashboard → App settings → Basic into REPLYFLOW_META_APP_ID "
                "and REPLYFLOW_META_APP_SECRET, then restart replyflow.",
            ),
            Check("app.webhooks", "App webhooks", "skipped", "Not checked: the app credentials do not work."),
        ]
    except (GraphError, ReplyflowError) as exc:
        return [
            Check(
                "app.credentials",
                "App credentials",
                "error",
                f"Could not reach Meta's Graph API at {settings.graph_base_url} ({exc.error_code}).",
                "Check the network and REPLYFLOW_GRAPH_API_URL; in sandbox mode 'replyflow serve' must be running.",
            ),
            Check("app.webhooks", "App webhooks", "skipped", "Not checked: Meta could not be reached."),
        ]
    return [
        Check("app.credentials", "App credentials", "ok", f"Meta accepts the credentials of app {settings.app_id}."),
        _webhook_check(settings, subscriptions),
    ]


async def _account_checks(
    account: Account, *, graph: GraphClient, cipher: TokenCipher, settings: Settings, now: dt.datetime
) -> list[Check]:
    label = f"@{account.username}" if account.username else account.page_name or account.sender_id
    aid = account.id

    def check(kind: str, title: str, status: Status, message: str, hint: str | None = None) -> Check:
        return Check(f"account.{kind}", f"{label}: {title}", status, message, hint, aid)

    if account.token_ciphertext is None:
        return [check("token", "token", "error", "No token is stored for this account.", RECONNECT_HINT)]
    try:
        token = cipher.decrypt(account.token_ciphertext)
    except KeyMismatch as exc:
        return [check("token", "token", "error", "The stored token cannot be decrypted.", exc.hint)]
    if account.is_instagram_login:
        return await _instagram_account_checks(account, token=token, graph=graph, now=now, check=check)
    try:
        probe = await probe_account(
            graph=graph, token=token, page_id=account.page_id or "", app_id=settings.app_id, resubscribe=False
        )
    except (GraphError, ReplyflowError) as exc:
        return [check("token", "token", "skipped", f"Not checked: Meta did not answer ({exc.error_code}).")]
    assert probe.info is not None
    verdict = judge_token(
        probe.info, app_id=settings.app_id, page_id=account.page_id or "", instagram_id=account.instagram_id, now=now
    )
    verdict_status, verdict_reason = verdict.status, verdict.reason
    if probe.token_refused is not None:
        verdict_status, verdict_reason = TokenStatus.INVALID, probe.token_refused.describe()
    checks: list[Check] = []
    if verdict_status is TokenStatus.INVALID:
        checks.append(check("token", "token", "error", verdict_reason or "The token no longer works.", RECONNECT_HINT))
        return checks
    if verdict_status is TokenStatus.EXPIRING:
        checks.append(check("token", "token", "warning", verdict_reason or "The token expires soon.", RECONNECT_HINT))
    else:
        expiry = "never expires" if verdict.expires_at is None else f"is valid until {verdict.expires_at:%d %b %Y}"
        checks.append(check("token", "token", "ok", f"The Page token works and {expiry}."))
    if verdict.missing:
        checks.append(
            check(
                "permissions",
                "permissions",
                "error",
                f"The token lacks {', '.join(verdict.missing)}.",
                permission_hint(verdict.missing),
            )
        )
    else:
        checks.append(check("permissions", "permissions", "ok", "The token has every permission replyflow needs."))
    task = (account.health or {}).get("messaging_task")
    if task is True:
        checks.append(check("messaging_task", "MESSAGING task", "ok", "The connecting user has the MESSAGING task."))
    elif task is False:
        checks.append(
            check(
                "messaging_task",
                "MESSAGING task",
                "error",
                "The person who connected the Page lacks the MESSAGING task, so Meta will not send DMs.",
                f"Give them full control or the 'Messages' task in the Page's settings ({PAGE_TASKS_URL}), then "
                "reconnect.",
            )
        )
    else:
        checks.append(
            check(
                "messaging_task",
                "MESSAGING task",
                "warning",
                "Unknown: the account was connected with a pasted Page token, which does not say.",
                "Reconnect by converting a User token (or with Connect with Facebook) so replyflow can see the tasks.",
            )
        )
    if probe.page_subscribed:
        checks.append(
            check("page_subscription", "Page webhooks", "ok", "The Page is subscribed to replyflow's webhooks.")
        )
    else:
        checks.append(
            check(
                "page_subscription",
                "Page webhooks",
                "error",
                "The Page is not subscribed to replyflow's webhooks"
                + (f" ({', '.join(PAGE_WEBHOOK_FIELDS)})." if probe.page_subscribed is False else "."),
                "Run 'replyflow accounts check' (it re-subscribes the Page), or reconnect with pages_manage_metadata "
                f"granted ({GRAPH_API_EXPLORER_URL}).",
            )
        )
    return checks


CheckMaker = Callable[..., Check]


async def _instagram_account_checks(
    account: Account, *, token: str, graph: GraphClient, now: dt.datetime, check: CheckMaker
) -> list[Check]:
    """An Instagram Login account: the token on graph.instagram.com, its refresh, and the account's webhooks."""
    bound = graph.for_login(account.login, sender_id=account.sender_id)
    try:
        probe = await probe_instagram_account(graph=bound, token=token, resubscribe=False)
    except (GraphError, ReplyflowError) as exc:
        return [check("token", "token", "skipped", f"Not checked: Instagram did not answer ({exc.error_code}).")]
    verdict = judge_instagram_probe(account, probe, now=now)
    if verdict.status is TokenStatus.INVALID:
        return [
            check("token", "token", "error", verdict.reason or "The token no longer works.", INSTAGRAM_RECONNECT_HINT)
        ]
    checks: list[Check] = []
    if verdict.status is TokenStatus.EXPIRING:
        checks.append(
            check(
                "token",
                "token",
                "warning",
                verdict.reason or "The token expires soon.",
                "Run 'replyflow accounts refresh' to refresh it now. " + INSTAGRAM_RECONNECT_HINT,
            )
        )
    else:
        until = f" until {verdict.expires_at:%d %b %Y}" if verdict.expires_at else ""
        checks.append(
            check(
                "token",
                "token",
                "ok",
                f"The Instagram token works{until}; replyflow refreshes it by itself before then.",
            )
        )
    if verdict.missing:
        checks.append(
            check(
                "permissions",
                "permissions",
                "error",
                f"The token lacks {', '.join(verdict.missing)}.",
                "Connect with Instagram again and allow every permission replyflow asks for.",
            )
        )
    if probe.subscribed:
        checks.append(
            check("instagram_subscription", "webhooks", "ok", "The account is subscribed to replyflow's webhooks.")
        )
    else:
        checks.append(
            check(
                "instagram_subscription",
                "webhooks",
                "error",
                f"The account is not subscribed to replyflow's webhooks ({', '.join(INSTAGRAM_WEBHOOK_FIELDS)}).",
                "Run 'replyflow accounts check' (it re-subscribes the account), or connect with Instagram again.",
            )
        )
    return checks


async def run_doctor(
    *,
    session: Session,
    graph: GraphClient,
    cipher: TokenCipher,
    settings: Settings,
    workspace_id: str | None = None,
) -> DoctorReport:
    """Every check, in chain order. ``workspace_id`` limits the account checks to one workspace."""
    now = utcnow()
    accounts = repository.list_accounts(session=session, workspace_id=workspace_id)
    if session.in_transaction():
        session.commit()  # read-only; never hold SQLite's write lock while waiting on Meta
    checks = _config_checks(settings)
    checks.extend(await _app_checks(settings, graph))
    if not accounts:
        checks.append(
            Check(
                "accounts",
                "Accounts",
                "warning",
                "No Instagram account is connected yet.",
                "Connect one: the dashboard's Connect with Facebook or Connect with Instagram, "
                "'replyflow accounts connect', POST /api/instagram/convert-token or "
                "POST /api/instagram/save-instagram-token.",
            )
        )
    for account in accounts:
        checks.extend(await _account_checks(account, graph=graph, cipher=cipher, settings=settings, now=now))
    return DoctorReport(sandbox=settings.is_sandbox, checks=checks)
