"""Connect with Instagram (Business Login for Instagram): the consent page, its callback, then the Instagram save.

The same guarantees as Connect with Facebook (``replyflow.accounts.oauth``): the ``state`` is random, single-use,
expires after 10 minutes, is stored only hashed, and is bound to the workspace and to a nonce in a cookie of the
browser that started the flow. The code is exchanged server-side (``api.instagram.com/oauth/access_token``); the
short-lived token is made long-lived and saved encrypted; the browser never sees a token.
"""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.responses import Response

from replyflow.accounts import errors
from replyflow.accounts.crypto import TokenCipher
from replyflow.accounts.instagram_login import SavedInstagramAccount, save_instagram_token
from replyflow.accounts.oauth import OAuthStart, accept_callback, clear_oauth_cookie, new_state, set_oauth_cookie
from replyflow.accounts.permissions import INSTAGRAM_SCOPES
from replyflow.config import Settings
from replyflow.errors import ReplyflowError
from replyflow.graph.client import GraphClient
from replyflow.graph.errors import GraphError, RateLimited, TransientError
from replyflow.logging import get_logger
from replyflow.runtime import Runtime

log = get_logger("replyflow.accounts.instagram_oauth")

CALLBACK_PATH = "/oauth/instagram/callback"
OAUTH_COOKIE = "rf_oauth_ig"
COOKIE_PATH = "/oauth/instagram"

_AGAIN = "Start 'Connect with Instagram' again from this page."

#: What a browser sent back from a failed Instagram callback is told (``instagram_error`` in the Integrations URL).
#: Only these codes travel in the URL and only these texts are shown: never text from the query string.
BROWSER_ERRORS: dict[str, tuple[str, str]] = {
    "oauth_failed": ("Connecting with Instagram did not work, so nothing was connected.", _AGAIN),
    "oauth_state_invalid": (errors.oauth_state_invalid().message, _AGAIN),
    "oauth_state_used": (errors.oauth_state_used().message, _AGAIN),
    "oauth_state_expired": (errors.oauth_state_expired().message, _AGAIN + " Approve within 10 minutes."),
    "oauth_browser_mismatch": (errors.oauth_browser_mismatch().message, errors.oauth_browser_mismatch().hint),
    "oauth_denied": (
        "The Instagram consent page was cancelled or did not grant access, so nothing was connected.",
        "Start 'Connect with Instagram' again and allow the permissions replyflow asks for.",
    ),
    "oauth_missing_code": (errors.oauth_missing_code().message, _AGAIN),
    "oauth_code_rejected": ("Instagram did not accept the sign-in replyflow received.", _AGAIN),
    "instagram_account_not_professional": (
        "This Instagram account is a personal account; Meta only lets professional accounts use its API.",
        "Switch it to a Business or Creator account in the Instagram app, then connect again.",
    ),
    "token_invalid": ("Instagram no longer accepts the sign-in replyflow received.", _AGAIN),
    "meta_unavailable": (
        "Instagram's API failed or did not answer in time while connecting. Nothing was saved.",
        "Try again in a minute. If it keeps failing, check https://metastatus.com.",
    ),
}


def browser_error_code(error: ReplyflowError) -> str:
    return error.error_code if error.error_code in BROWSER_ERRORS else "oauth_failed"


def browser_error(code: str | None) -> tuple[str, str] | None:
    if not code:
        return None
    return BROWSER_ERRORS.get(code, BROWSER_ERRORS["oauth_failed"])


def redirect_uri(settings: Settings) -> str:
    """The callback URL; list it under the Instagram app's 'Valid OAuth Redirect URIs' (Business login settings)."""
    return f"{settings.public_url}{CALLBACK_PATH}"


def start_instagram_oauth(*, session: Session, graph: GraphClient, settings: Settings, workspace_id: str) -> OAuthStart:
    """Begin "Connect with Instagram" for a workspace: where to send the browser, and the nonce for its cookie."""
    state, nonce, expires_at = new_state(session=session, workspace_id=workspace_id)
    url = graph.instagram_oauth_url(
        dialog_base_url=settings.instagram_dialog_base_url,
        redirect_uri=redirect_uri(settings),
        state=state,
        scopes=INSTAGRAM_SCOPES,
    )
    log.info("instagram_oauth_started", workspace_id=workspace_id)
    return OAuthStart(authorize_url=url, browser_nonce=nonce, expires_at=expires_at)


def set_cookie(response: Response, *, start: OAuthStart, settings: Settings) -> None:
    set_oauth_cookie(response, start=start, settings=settings, name=OAUTH_COOKIE, path=COOKIE_PATH)


def clear_cookie(response: Response, *, settings: Settings) -> None:
    clear_oauth_cookie(response, settings=settings, name=OAUTH_COOKIE, path=COOKIE_PATH)


async def complete_instagram_oauth(
    *,
    runtime: Runtime,
    graph: GraphClient,
    cipher: TokenCipher,
    state: str | None,
    code: str | None,
    error: str | None,
    error_reason: str | None,
    browser_nonce: str | None,
) -> SavedInstagramAccount:
    """Handle Instagram's redirect back: check the state, exchange the code, save the account (long-lived token)."""
    workspace_id, code = accept_callback(
        runtime=runtime, state=state, code=code, error=error, error_reason=error_reason, browser_nonce=browser_nonce
    )
    # Instagram appends "#_" to the code in some redirects; it is not part of the code.
    code = code.removesuffix("#_")
    try:
        exchanged = await graph.exchange_instagram_code(code=code, redirect_uri=redirect_uri(runtime.settings))
    except (TransientError, RateLimited):
        raise errors.meta_unavailable(during="exchanging the Instagram sign-in code") from None
    except GraphError:
        raise errors.oauth_code_rejected() from None
    with runtime.session() as session:
        return await save_instagram_token(
            session=session,
            graph=graph,
            cipher=cipher,
            settings=runtime.settings,
            workspace_id=workspace_id,
            instagram_access_token=exchanged.access_token.get_secret_value(),
            scopes=list(exchanged.permissions),
        )
