"""Judging a pasted access token: a format check before anything leaves the server, then debug_token's verdict."""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from replyflow.accounts import errors
from replyflow.graph.types import TokenInfo

MIN_TOKEN_LENGTH = 32
MAX_TOKEN_LENGTH = 2048
# Facebook Login tokens are letters and digits (EAA…); a few other issuers add url-safe punctuation.
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-.]+")
_APP_TOKEN = re.compile(r"\d{5,}\|\S+")
_INSTAGRAM_LOGIN_PREFIXES = ("IGAA", "IGQV", "IGQ")
EXPIRED_SUBCODE = 463
ExpectedType = Literal["USER", "PAGE"]
USER_TYPES = frozenset({"USER", "SYSTEM_USER"})


def is_instagram_login_token(token: str) -> bool:
    return token.startswith(_INSTAGRAM_LOGIN_PREFIXES)


def check_token_format(value: object, *, login: Literal["facebook", "instagram"] = "facebook") -> str:
    """The token with surrounding whitespace removed, or ``token_format_invalid`` (422) saying what is wrong.

    ``login`` says which kind is expected: a Facebook Login token (User or Page, ``EAA…``) or an Instagram
    Login token (``IGAA…``); the other kind is refused with a hint naming the endpoint it belongs to. The value
    is never repeated back: people paste secrets into the wrong box.
    """
    instagram = login == "instagram"
    explorer = errors.INSTAGRAM_LOGIN_HINT if instagram else errors.EXPLORER_HINT
    starts = "IGAA" if instagram else "EAA"
    if not isinstance(value, str):
        raise errors.token_format_invalid("The access token must be a text value.", explorer)
    token = value.strip()
    if not token:
        raise errors.token_format_invalid("The access token is empty.", explorer)
    lowered = token.lower()
    if "://" in token or lowered.startswith("www."):
        raise errors.token_format_invalid(
            "This looks like a web address, not an access token.",
            "Copy the value of the 'Access Token' box in Graph API Explorer, not the page's address.",
        )
    if token[0] in "{[\"'":
        raise errors.token_format_invalid(
            "This looks like JSON or quoted text, not an access token.",
            'Paste only the token itself: the long value after "access_token", without quotes or braces.',
        )
    if lowered.startswith(("bearer ", "oauth ")):
        raise errors.token_format_invalid(
            "Paste only the token, without the word in front of it.",
            f"Remove 'Bearer' (or 'OAuth') and the space; the token starts with {starts}.",
        )
    if any(ch.isspace() for ch in token):
        raise errors.token_format_invalid(
            "The access token contains spaces or line breaks; real tokens never do.",
            "Copy the token again in one piece (use the copy button next to it in Graph API Explorer).",
        )
    if _APP_TOKEN.fullmatch(token):
        raise errors.token_format_invalid(
            "This is an app access token (app id | app secret), not a User or Page token.",
            "Do not share it: it contains the app secret. Paste a User token from Graph API Explorer instead. "
            + errors.EXPLORER_HINT,
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise errors.token_format_invalid(
            "This is too short to be an access token (they are usually about 200 characters).", explorer
        )
    if len(token) > MAX_TOKEN_LENGTH:
        raise errors.token_format_invalid(
            f"This is too long to be an access token (over {MAX_TOKEN_LENGTH} characters).", explorer
        )
    if not _TOKEN_CHARS.fullmatch(token):
        raise errors.token_format_invalid(
            "This contains characters that access tokens never have.",
            f"Copy the token again; it is only letters and digits and starts with {starts}.",
        )
    if instagram and not is_instagram_login_token(token):
        raise errors.wrong_token_type(got="FACEBOOK", want="INSTAGRAM")
    if not instagram and is_instagram_login_token(token):
        raise errors.wrong_token_type(got="INSTAGRAM", want="USER")
    return token


def token_type(info: TokenInfo) -> str:
    return (info.type or "").upper()


def is_expired(info: TokenInfo, *, now: dt.datetime) -> bool:
    if info.error is not None and info.error.subcode == EXPIRED_SUBCODE:
        return True
    return info.expires_at is not None and info.expires_at <= now


def require_usable(info: TokenInfo, *, app_id: str, expected: ExpectedType, now: dt.datetime) -> None:
    """Raise the error that explains why ``debug_token``'s verdict rules this token out for ``expected``."""
    if info.app_id and info.app_id != app_id:
        raise errors.token_from_another_app()
    if not info.is_valid or is_expired(info, now=now):
        raise errors.token_expired() if is_expired(info, now=now) else errors.token_invalid()
    kind = token_type(info)
    if expected == "USER" and kind not in USER_TYPES:
        raise errors.wrong_token_type(got=kind, want="USER")
    if expected == "PAGE" and kind != "PAGE":
        raise errors.wrong_token_type(got=kind, want="PAGE")


def granted_scopes(info: TokenInfo, *, page_id: str | None = None, instagram_id: str | None = None) -> list[str]:
    """Scopes that really apply to this Page and its Instagram account.

    With Facebook Login for Business people pick Pages and Instagram accounts per permission; Meta then
    lists the chosen ids in ``granular_scopes``. A scope limited to other objects does not count here. (An
    instagram_* scope cannot be judged for a Page without an Instagram account; that Page has a bigger problem.)
    """
    objects = {i for i in (page_id, instagram_id) if i}
    granted: list[str] = []
    for scope in info.scopes:
        targets = set(info.targets_of(scope))
        unjudgeable = scope.startswith("instagram_") and instagram_id is None
        if targets and objects and not unjudgeable and not targets & objects:
            continue
        granted.append(scope)
    return granted
