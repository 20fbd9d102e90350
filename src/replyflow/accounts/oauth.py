"""Connect with Facebook (Facebook Login for Business): the login dialog, its callback, then the usual conversion.

The ``state`` sent to Facebook is random, single-use, expires after 10 minutes and is stored only hashed. It
is bound to the workspace that started the flow and to a random nonce kept in a cookie of the browser that
started it: a callback arriving in another browser (or replayed) is refused before anything is exchanged.
The authorisation code is exchanged server-side; the browser never sees a token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import Response

from replyflow.accounts import errors
from replyflow.accounts.crypto import TokenCipher
from replyflow.accounts.models import OAuthState, TokenConversion
from replyflow.accounts.permissions import OAUTH_SCOPES
from replyflow.accounts.service import convert_user_token
from replyflow.config import Settings
from replyflow.db import utcnow
from replyflow.errors import ReplyflowError
from replyflow.graph.client import GraphClient
from replyflow.graph.errors import GraphError, RateLimited, TransientError
from replyflow.logging import get_logger
from replyflow.runtime import Runtime

log = get_logger("replyflow.accounts.oauth")

STATE_TTL = dt.timedelta(minutes=10)
CALLBACK_PATH = "/oauth/facebook/callback"
OAUTH_COOKIE = "rf_oauth"
COOKIE_PATH = "/oauth/facebook"
# Where the browser lands after a successful callback: the dashboard's page picker.
INTEGRATIONS_PATH = "/app/integrations"


_AGAIN = "Start 'Connect with Facebook' again from this page."

#: What a browser sent back from a failed callback is told, by the ``oauth_error`` code in the Integrations URL.
#: Only these codes travel in the URL (anything else becomes ``oauth_failed``), and the page shows only these
#: texts: never text from the query string.
BROWSER_ERRORS: dict[str, tuple[str, str]] = {
    "oauth_failed": (errors.OAuthFailed.default_message, _AGAIN),
    "oauth_state_invalid": (errors.oauth_state_invalid().message, _AGAIN),
    "oauth_state_used": (errors.oauth_state_used().message, _AGAIN),
    "oauth_state_expired": (errors.oauth_state_expired().message, _AGAIN + " Approve the dialog within 10 minutes."),
    "oauth_browser_mismatch": (errors.oauth_browser_mismatch().message, errors.oauth_browser_mismatch().hint),
    "oauth_denied": (
        "The Facebook dialog was cancelled or did not grant access, so nothing was connected.",
        "Start 'Connect with Facebook' again and approve the permissions replyflow asks for.",
    ),
    "oauth_missing_code": (errors.oauth_missing_code().message, _AGAIN),
    "oauth_code_rejected": (errors.oauth_code_rejected().message, _AGAIN),
    "missing_permissions": (
        "Facebook did not grant every permission replyflow needs, so nothing was connected.",
        "Start 'Connect with Facebook' again, leave every permission ticked and choose the Page of your "
        "Instagram account.",
    ),
    "token_expired": ("The sign-in with Facebook expired before replyflow could use it.", _AGAIN),
    "token_invalid": ("Meta no longer accepts the sign-in replyflow received.", _AGAIN),
    "app_credentials_invalid": (
        errors.app_credentials_invalid().message,
        errors.app_credentials_invalid().hint,
    ),
    "meta_unavailable": (
        "Meta's Graph API failed or did not answer in time while connecting. Nothing was saved.",
        "Try again in a minute. If it keeps failing, check https://metastatus.com.",
    ),
}


def browser_error_code(error: ReplyflowError) -> str:
    """The stable code a browser is sent back to the Integrations page with, for a failed callback."""
    return error.error_code if error.error_code in BROWSER_ERRORS else errors.OAuthFailed.code


def browser_error(code: str | None) -> tuple[str, str] | None:
    """(message, hint) for an ``oauth_error`` code from the URL; unknown codes read as a generic failure."""
    if not code:
        return None
    return BROWSER_ERRORS.get(code, BROWSER_ERRORS[errors.OAuthFailed.code])


def _hash(value: str) -> str:
    return hashlib.sha256(b"replyflow-oauth:" + value.encode()).hexdigest()


def redirect_uri(settings: Settings) -> str:
    """The callback URL; it must be listed under 'Valid OAuth Redirect URIs' in the Meta app."""
    return f"{settings.public_url}{CALLBACK_PATH}"


def new_state(*, session: Session, workspace_id: str, browser_nonce: str | None = None) -> tuple[str, str, dt.datetime]:
    """A fresh single-use ``state`` and browser nonce for a login flow (stored hashed): (state, nonce, expiry)."""
    state = secrets.token_urlsafe(32)
    nonce = browser_nonce or secrets.token_urlsafe(32)
    now = utcnow()
    expires_at = now + STATE_TTL
    session.add(
        OAuthState(
            workspace_id=workspace_id,
            state_hash=_hash(state),
            browser_hash=_hash(nonce),
            created_at=now,
            expires_at=expires_at,
        )
    )
    session.flush()
    return state, nonce, expires_at


@dataclass(frozen=True)
class OAuthStart:
    """Send the browser to ``authorize_url``; put ``browser_nonce`` in its ``rf_oauth`` cookie first."""

    authorize_url: str
    browser_nonce: str
    expires_at: dt.datetime


def start_oauth(
    *,
    session: Session,
    graph: GraphClient,
    settings: Settings,
    workspace_id: str,
    browser_nonce: str | None = None,
) -> OAuthStart:
    """Begin "Connect with Facebook" for a workspace. Pass ``browser_nonce`` to reuse one the caller already set."""
    state, nonce, expires_at = new_state(session=session, workspace_id=workspace_id, browser_nonce=browser_nonce)
    url = graph.oauth_dialog_url(
        dialog_base_url=settings.dialog_base_url, redirect_uri=redirect_uri(settings), state=state, scopes=OAUTH_SCOPES
    )
    log.info("oauth_started", workspace_id=workspace_id)
    return OAuthStart(authorize_url=url, browser_nonce=nonce, expires_at=expires_at)


def set_oauth_cookie(
    response: Response, *, start: OAuthStart, settings: Settings, name: str = OAUTH_COOKIE, path: str = COOKIE_PATH
) -> None:
    """The cookie that binds the flow to this browser; sent back only to the callback path (``name``/``path``:
    another login's cookie)."""
    response.set_cookie(
        name,
        start.browser_nonce,
        max_age=int(STATE_TTL.total_seconds()),
        path=path,
        httponly=True,
        secure=settings.public_url.startswith("https://"),
        samesite="lax",  # the callback is a top-level GET navigation from Facebook or Instagram, which Lax allows
    )


def clear_oauth_cookie(
    response: Response, *, settings: Settings, name: str = OAUTH_COOKIE, path: str = COOKIE_PATH
) -> None:
    response.delete_cookie(name, path=path, secure=settings.public_url.startswith("https://"), httponly=True)


@dataclass(frozen=True)
class StateCheck:
    workspace_id: str | None
    error: errors.OAuthFailed | None


def consume_state(*, session: Session, state: str | None, browser_nonce: str | None) -> StateCheck:
    """Spend the state (whatever happens next) and say whose flow it was, or why it is refused.

    Returns rather than raises so the caller can commit the spending before reporting the refusal.
    """
    if not state or len(state) > 512:
        return StateCheck(None, errors.oauth_state_invalid())
    row = session.scalar(select(OAuthState).where(OAuthState.state_hash == _hash(state)))
    if row is None:
        return StateCheck(None, errors.oauth_state_invalid())
    if row.used_at is not None:
        return StateCheck(None, errors.oauth_state_used())
    now = utcnow()
    row.used_at = now
    session.flush()
    if row.expires_at <= now:
        return StateCheck(None, errors.oauth_state_expired())
    if not browser_nonce or not hmac.compare_digest(row.browser_hash, _hash(browser_nonce)):
        return StateCheck(None, errors.oauth_browser_mismatch())
    return StateCheck(row.workspace_id, None)


def accept_callback(
    *,
    runtime: Runtime,
    state: str | None,
    code: str | None,
    error: str | None,
    error_reason: str | None,
    browser_nonce: str | None,
) -> tuple[str, str]:
    """The checks every login callback makes before exchanging anything: (workspace id, code), or the refusal.

    The state is spent (committed) whatever happens next; a cancelled consent or a missing code is refused.
    """
    with runtime.session() as session:
        check = consume_state(session=session, state=state, browser_nonce=browser_nonce)
    if check.error is not None:
        log.info("oauth_refused", code=check.error.error_code)
        raise check.error
    assert check.workspace_id is not None
    if error or error_reason:
        log.info("oauth_denied", workspace_id=check.workspace_id)
        raise errors.oauth_denied(error_reason)
    if not code or len(code) > 2048:
        raise errors.oauth_missing_code()
    return check.workspace_id, code


async def complete_oauth(
    *,
    runtime: Runtime,
    graph: GraphClient,
    cipher: TokenCipher,
    state: str | None,
    code: str | None,
    error: str | None,
    error_reason: str | None,
    browser_nonce: str | None,
) -> TokenConversion:
    """Handle Facebook's redirect back: check the state, exchange the code, convert the token (as convert-token)."""
    workspace_id, code = accept_callback(
        runtime=runtime, state=state, code=code, error=error, error_reason=error_reason, browser_nonce=browser_nonce
    )
    try:
        exchanged = await graph.exchange_oauth_code(code=code, redirect_uri=redirect_uri(runtime.settings))
    except (TransientError, RateLimited):
        raise errors.meta_unavailable(during="exchanging the sign-in code") from None
    except GraphError:
        raise errors.oauth_code_rejected() from None
    with runtime.session() as session:
        conversion = await convert_user_token(
            session=session,
            graph=graph,
            cipher=cipher,
            settings=runtime.settings,
            workspace_id=workspace_id,
            user_access_token=exchanged.access_token.get_secret_value(),
            source="oauth",
        )
    return conversion
