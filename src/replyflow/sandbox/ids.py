"""Ids and secrets shaped like Meta's (numeric ids, ``EAAB…`` tokens), so redaction and parsing meet real forms."""

from __future__ import annotations

import base64
import secrets
import string

_ALNUM = string.ascii_letters + string.digits
_SHORTCODE = string.ascii_letters + string.digits + "_-"


def digits(count: int, *, prefix: str = "") -> str:
    """``prefix`` followed by random digits, ``count`` characters in all (no leading zero)."""
    body = "".join(secrets.choice(string.digits) for _ in range(count - len(prefix)))
    if not prefix and body.startswith("0"):
        body = "1" + body[1:]
    return prefix + body


def app_id() -> str:
    return digits(15, prefix="1")


def app_secret() -> str:
    return secrets.token_hex(16)


def user_id() -> str:
    return digits(17, prefix="10")


def page_id() -> str:
    return digits(15, prefix="10")


def ig_account_id() -> str:
    return digits(17, prefix="17841")


def ig_app_scoped_id() -> str:
    """The app-scoped id Instagram Login's ``/me`` gives an account (its ``user_id`` is the account id)."""
    return digits(17, prefix="27")


def media_id() -> str:
    return digits(17, prefix="179")


def comment_id() -> str:
    return digits(17, prefix="178")


def igsid() -> str:
    """An Instagram-scoped user id, as Meta gives commenters and people who message the account."""
    return digits(16, prefix="6")


def access_token() -> str:
    """A user or Page token: ``EAAB`` and ~180 alphanumerics, like Facebook Login's."""
    return "EAAB" + "".join(secrets.choice(_ALNUM) for _ in range(180))


def instagram_token() -> str:
    """An Instagram User token (Instagram Login): ``IGAA`` and ~180 url-safe characters, like Meta's."""
    return "IGAA" + "".join(secrets.choice(_ALNUM) for _ in range(180))


def oauth_code() -> str:
    return "AQ" + secrets.token_urlsafe(220)


def shortcode() -> str:
    return "C" + "".join(secrets.choice(_SHORTCODE) for _ in range(10))


def message_id(ig_account: str) -> str:
    """An Instagram message id (``mid``) in the shape Meta sends: a fixed ``ig_message_item`` prefix, base64 body."""
    raw = f"{ig_account}:{digits(39)}:{digits(38)}"
    return "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOj" + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=") + "ZDZD"


def fbtrace_id() -> str:
    return "A" + "".join(secrets.choice(_ALNUM) for _ in range(10))


def cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def uncursor(value: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
