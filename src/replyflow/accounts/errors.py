"""Every way connecting an account can fail, each with a stable code, a plain message and a hint with the fix.

Messages never quote the token, nor Meta's raw text (which can contain one): they say what is wrong in the
words of someone connecting an Instagram account, and where to go to fix it.
"""

from __future__ import annotations

from replyflow.accounts.permissions import GRAPH_API_EXPLORER_URL, LINK_INSTAGRAM_URL, permission_hint
from replyflow.errors import NotFound, ReplyflowError, UpstreamError, ValidationFailed
from replyflow.graph.errors import GraphError, PermissionDenied, RateLimited, TokenInvalid, TokenInvalidReason

EXPLORER_HINT = (
    f"Open Graph API Explorer ({GRAPH_API_EXPLORER_URL}), pick replyflow's app under 'Meta App', choose "
    "'User Token', tick the permissions replyflow lists, press 'Generate Access Token' and paste the token."
)


INSTAGRAM_LOGIN_HINT = (
    "Use 'Connect with Instagram' on the Integrations page, or generate a token in the App Dashboard "
    "(Instagram → API setup with Instagram login → Generate token) and paste it: it starts with IGAA."
)


class TokenRejected(ReplyflowError):
    """Meta (or our format check) says this token cannot be used here."""

    code = "token_invalid"
    status = 400
    default_message = "Meta does not accept this access token."
    default_hint = EXPLORER_HINT


def token_format_invalid(message: str, hint: str | None = None) -> ValidationFailed:
    return ValidationFailed(message, code="token_format_invalid", field="token", hint=hint or EXPLORER_HINT)


def token_invalid(message: str | None = None) -> TokenRejected:
    return TokenRejected(message or "Meta says this access token is not valid (it may have been revoked).")


def token_expired() -> TokenRejected:
    return TokenRejected(
        "This access token has expired.",
        code="token_expired",
        hint="Tokens from Graph API Explorer last about an hour. Generate a fresh one and paste it right away. "
        + EXPLORER_HINT,
    )


def token_from_another_app() -> TokenRejected:
    return TokenRejected(
        "This token was made for a different Meta app, not the one replyflow is configured with.",
        code="token_from_another_app",
        hint=(
            f"In Graph API Explorer ({GRAPH_API_EXPLORER_URL}) choose replyflow's app in the 'Meta App' menu "
            "(its App ID is REPLYFLOW_META_APP_ID) before generating the token."
        ),
    )


def wrong_token_type(*, got: str, want: str) -> TokenRejected:
    if want == "USER" and got == "PAGE":
        message = "This is a Page token; this step needs a User token."
        hint = "Send a Page token to POST /api/instagram/save-page-token instead, or paste a User token here."
    elif want == "PAGE" and got in ("USER", "SYSTEM_USER"):
        message = "This is a User token; saving an account needs a Page token."
        hint = "Convert it first with POST /api/instagram/convert-token, then save one of the Pages it lists."
    elif got == "INSTAGRAM":
        message = "This is an Instagram Login token; this step is for Facebook Login (a User or Page token)."
        hint = (
            "Send it to POST /api/instagram/save-instagram-token instead (or use 'Connect with Instagram'), "
            "or paste a Facebook User token here."
        )
    elif want == "INSTAGRAM":
        message = "This is a Facebook Login token; this step needs an Instagram Login token (it starts with IGAA)."
        hint = (
            "Send Facebook User tokens to POST /api/instagram/convert-token (or use 'Connect with Facebook'). "
            + INSTAGRAM_LOGIN_HINT
        )
    elif got == "APP":
        message = "This is an app token; replyflow needs a token of a person (User token) or of a Page."
        hint = EXPLORER_HINT
    else:
        message = f"This token is of type {got or 'unknown'}; this step needs a {want} token."
        hint = EXPLORER_HINT
    return TokenRejected(message, code="wrong_token_type", status=422, hint=hint)


def page_mismatch() -> TokenRejected:
    return TokenRejected(
        "This Page token belongs to a different Page than the one you asked to connect.",
        code="page_mismatch",
        hint="Use the token of the Page you want to connect, or convert your User token and pick the Page.",
    )


def page_without_instagram(page_name: str | None) -> ValidationFailed:
    what = f"The Page {page_name!r}" if page_name else "This Page"
    return ValidationFailed(
        f"{what} has no Instagram professional account linked.",
        code="page_without_instagram",
        hint=(
            "Link an Instagram professional (Business or Creator) account to the Page in Meta Business Suite "
            f"or in the Instagram app's settings ({LINK_INSTAGRAM_URL}), then convert your token again."
        ),
    )


def missing_permissions_error(names: list[str], *, action: str) -> TokenRejected:
    return TokenRejected(
        f"The token lacks {', '.join(names)}, which replyflow needs to {action}.",
        code="missing_permissions",
        hint=permission_hint(names),
    )


class ConversionGone(ReplyflowError):
    code = "conversion_not_found"
    status = 404
    default_message = "There is no pending token conversion with this id."
    default_hint = "Convert your User token again (POST /api/instagram/convert-token) and use the new conversion_id."


def conversion_not_found() -> ConversionGone:
    return ConversionGone()


def conversion_expired() -> ConversionGone:
    return ConversionGone(
        "This token conversion has expired (they last 15 minutes, and the Page tokens are then deleted).",
        code="conversion_expired",
        status=410,
    )


def page_not_in_conversion() -> NotFound:
    return NotFound(
        "This Page is not one of the Pages found for the converted token.",
        code="page_not_in_conversion",
        hint="Pick a page_id from the 'pages' list of the conversion, or convert a token of someone who manages it.",
    )


def app_credentials_invalid() -> UpstreamError:
    return UpstreamError(
        "Meta refused replyflow's app credentials.",
        code="app_credentials_invalid",
        hint=(
            "Check REPLYFLOW_META_APP_ID and REPLYFLOW_META_APP_SECRET against App Dashboard → App settings → Basic, "
            "then restart replyflow. 'replyflow doctor' checks them."
        ),
    )


def meta_unavailable(*, during: str) -> UpstreamError:
    return UpstreamError(
        f"Meta's Graph API failed or did not answer in time while {during}. Nothing was saved.",
        code="meta_unavailable",
        status=502,
        hint="Try again in a minute. If it keeps failing, check https://metastatus.com.",
    )


def translate_graph_error(exc: GraphError, *, during: str, subject: str = "access token") -> ReplyflowError:
    """Our answer for a Graph failure while connecting: token problems are the user's to fix, the rest is Meta's."""
    if isinstance(exc, TokenInvalid):
        if exc.reason is TokenInvalidReason.EXPIRED:
            return token_expired()
        return token_invalid(f"Meta no longer accepts this {subject}: {exc.describe()}")
    if isinstance(exc, PermissionDenied):
        return TokenRejected(
            f"Meta refused access while {during}: the token lacks a permission or the Page task needed for it.",
            code="missing_permissions",
            hint=permission_hint(["pages_show_list", "pages_read_engagement", "instagram_basic"]),
        )
    if isinstance(exc, RateLimited):
        return exc
    return meta_unavailable(during=during)


# -- Connect with Facebook -----------------------------------------------------------------------------------


class OAuthFailed(ReplyflowError):
    code = "oauth_failed"
    status = 400
    default_message = "Connecting with Facebook did not work."
    default_hint = "Start again from replyflow's 'Connect with Facebook' button."


def oauth_state_invalid() -> OAuthFailed:
    return OAuthFailed(
        "This sign-in link is not one replyflow started (its state is unknown).",
        code="oauth_state_invalid",
    )


def oauth_state_used() -> OAuthFailed:
    return OAuthFailed("This sign-in link was already used once.", code="oauth_state_used")


def oauth_state_expired() -> OAuthFailed:
    return OAuthFailed("This sign-in attempt took too long and expired.", code="oauth_state_expired")


def oauth_browser_mismatch() -> OAuthFailed:
    return OAuthFailed(
        "This sign-in was started in a different browser (or its cookie is missing), so replyflow refused it.",
        code="oauth_browser_mismatch",
        status=403,
        hint="Start 'Connect with Facebook' again in this browser, and allow cookies for replyflow.",
    )


def oauth_denied(reason: str | None) -> OAuthFailed:
    cancelled = reason in (None, "", "user_denied")
    return OAuthFailed(
        "You cancelled the Facebook dialog, so nothing was connected."
        if cancelled
        else "Facebook did not grant access, so nothing was connected.",
        code="oauth_denied",
        hint="Start 'Connect with Facebook' again and approve the permissions replyflow asks for.",
    )


def oauth_missing_code() -> OAuthFailed:
    return OAuthFailed("Facebook sent the browser back without a sign-in code.", code="oauth_missing_code")


def oauth_code_rejected() -> OAuthFailed:
    return OAuthFailed(
        "Meta did not accept the sign-in code (it may have been used already or expired).",
        code="oauth_code_rejected",
    )


__all__ = [
    "EXPLORER_HINT",
    "ConversionGone",
    "OAuthFailed",
    "TokenRejected",
    "app_credentials_invalid",
    "conversion_expired",
    "conversion_not_found",
    "meta_unavailable",
    "missing_permissions_error",
    "oauth_browser_mismatch",
    "oauth_code_rejected",
    "oauth_denied",
    "oauth_missing_code",
    "oauth_state_expired",
    "oauth_state_invalid",
    "oauth_state_used",
    "page_mismatch",
    "page_not_in_conversion",
    "page_without_instagram",
    "token_expired",
    "token_format_invalid",
    "token_from_another_app",
    "token_invalid",
    "translate_graph_error",
    "wrong_token_type",
]
