"""Dashboard sessions: signed HttpOnly cookies backed by a database row, CSRF tokens and the sign-in rate limit.

The cookie holds a random secret signed with a key derived from ``settings.secret_keys`` (itsdangerous, with
a purpose string as salt, so it can never be confused with any other signed value); the database keeps only
the secret's SHA-256, so log-out and expiry end a session everywhere at once and a database copy cannot be
replayed as a cookie.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from replyflow.config import Settings
from replyflow.db import utcnow
from replyflow.errors import Forbidden, RateLimitedByUs
from replyflow.web.models import DashboardSession, LoginFailure
from replyflow.workspaces.models import User, Workspace

SESSION_COOKIE = "rf_session"
LOGIN_COOKIE = "rf_login"  # anonymous double-submit CSRF nonce for the sign-in form
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

IDLE_TIMEOUT = dt.timedelta(days=7)
ABSOLUTE_LIFETIME = dt.timedelta(days=30)
_TOUCH_EVERY = dt.timedelta(minutes=5)  # how stale last_seen_at may get before a request writes it

LOGIN_WINDOW = dt.timedelta(minutes=15)
MAX_FAILURES_PER_EMAIL_AND_ADDRESS = 5
MAX_FAILURES_PER_ADDRESS = 50

_SESSION_PURPOSE = "replyflow.web.session"
_LOGIN_PURPOSE = "replyflow.web.login-csrf"
_FLASH_PURPOSE = "replyflow.web.flash"


def _serializer(settings: Settings, purpose: str) -> URLSafeTimedSerializer:
    # itsdangerous signs with the last key and accepts any: keys rotate like the token-encryption keys do.
    return URLSafeTimedSerializer(list(reversed(settings.secret_keys)), salt=purpose)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def secure_cookies(settings: Settings) -> bool:
    return settings.public_url.startswith("https://")


@dataclass(frozen=True)
class SignedIn:
    """Who is behind a request: the session row, its user and workspace."""

    session: DashboardSession
    user: User
    workspace: Workspace

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token


@dataclass(frozen=True)
class NewSession:
    session: DashboardSession
    cookie_value: str


# -- sessions ------------------------------------------------------------------------------------------------


def start_session(*, session: Session, settings: Settings, user: User, now: dt.datetime | None = None) -> NewSession:
    now = now or utcnow()
    secret = secrets.token_urlsafe(32)
    row = DashboardSession(
        secret_hash=_sha256(secret),
        user_id=user.id,
        workspace_id=user.workspace_id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + IDLE_TIMEOUT,
    )
    session.add(row)
    session.flush()
    return NewSession(session=row, cookie_value=_serializer(settings, _SESSION_PURPOSE).dumps(secret))


def resolve_session(
    *, session: Session, settings: Settings, cookie_value: str | None, now: dt.datetime | None = None
) -> SignedIn | None:
    """The signed-in user behind a cookie, or ``None`` when it is missing, forged, expired or logged out."""
    if not cookie_value or len(cookie_value) > 512:
        return None
    try:
        secret = _serializer(settings, _SESSION_PURPOSE).loads(
            cookie_value, max_age=int(ABSOLUTE_LIFETIME.total_seconds())
        )
    except BadSignature:
        return None
    if not isinstance(secret, str):
        return None
    row = session.scalar(select(DashboardSession).where(DashboardSession.secret_hash == _sha256(secret)))
    if row is None:
        return None
    now = now or utcnow()
    if now >= row.expires_at or now >= row.created_at + ABSOLUTE_LIFETIME:
        session.delete(row)
        return None
    user = session.get(User, row.user_id)
    workspace = session.get(Workspace, row.workspace_id)
    if user is None or workspace is None or user.workspace_id != workspace.id:
        session.delete(row)
        return None
    if now - row.last_seen_at >= _TOUCH_EVERY:
        row.last_seen_at = now
        row.expires_at = min(now + IDLE_TIMEOUT, row.created_at + ABSOLUTE_LIFETIME)
    return SignedIn(session=row, user=user, workspace=workspace)


def end_session(*, session: Session, settings: Settings, cookie_value: str | None) -> None:
    signed_in = resolve_session(session=session, settings=settings, cookie_value=cookie_value)
    if signed_in is not None:
        session.delete(signed_in.session)


def end_all_sessions(*, session: Session, user_id: str) -> int:
    """Sign a user out everywhere (after a password change)."""
    result = session.execute(delete(DashboardSession).where(DashboardSession.user_id == user_id))
    return int(getattr(result, "rowcount", 0) or 0)


def purge_expired_sessions(*, session: Session, now: dt.datetime | None = None) -> None:
    session.execute(delete(DashboardSession).where(DashboardSession.expires_at < (now or utcnow())))


def set_session_cookie(response: Response, *, settings: Settings, cookie_value: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        cookie_value,
        max_age=int(ABSOLUTE_LIFETIME.total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure_cookies(settings),
    )


def clear_session_cookie(response: Response, *, settings: Settings) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=secure_cookies(settings))


# -- CSRF ----------------------------------------------------------------------------------------------------


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def check_csrf(*, signed_in: SignedIn, given: str | None) -> None:
    if not csrf_matches(signed_in.csrf_token, given):
        raise Forbidden(
            "This request could not be verified, so nothing was changed.",
            code="csrf_failed",
            hint="Reload the page and try again. If you opened replyflow in several tabs, use the newest one.",
        )


def new_login_nonce(settings: Settings) -> tuple[str, str]:
    """(cookie value, form value) for the sign-in form's double-submit check."""
    nonce = secrets.token_urlsafe(24)
    return _serializer(settings, _LOGIN_PURPOSE).dumps(nonce), nonce


def login_nonce_matches(*, settings: Settings, cookie_value: str | None, given: str | None) -> bool:
    if not cookie_value or not given:
        return False
    try:
        nonce = _serializer(settings, _LOGIN_PURPOSE).loads(cookie_value, max_age=86400)
    except BadSignature:
        return False
    return isinstance(nonce, str) and csrf_matches(nonce, given)


def api_signed_in(*, request: Request, session: Session, settings: Settings) -> SignedIn | None:
    """For ``/api/*`` without an API key: the session's user, with the CSRF header required on writes."""
    signed_in = resolve_session(session=session, settings=settings, cookie_value=request.cookies.get(SESSION_COOKIE))
    if signed_in is None:
        return None
    if request.method not in SAFE_METHODS:
        check_csrf(signed_in=signed_in, given=request.headers.get(CSRF_HEADER))
    return signed_in


def api_workspace_id(*, request: Request, session: Session, settings: Settings) -> str | None:
    """For ``/api/*`` without an API key: the session's workspace, with the CSRF header required on writes."""
    signed_in = api_signed_in(request=request, session=session, settings=settings)
    return signed_in.workspace.id if signed_in is not None else None


# -- flash messages ------------------------------------------------------------------------------------------


def encode_flash(settings: Settings, *, kind: str, text: str) -> str:
    return _serializer(settings, _FLASH_PURPOSE).dumps({"kind": kind, "text": text[:500]})


def decode_flash(settings: Settings, value: str | None) -> dict[str, str] | None:
    if not value:
        return None
    try:
        data = _serializer(settings, _FLASH_PURPOSE).loads(value, max_age=300)
    except BadSignature:
        return None
    if isinstance(data, dict) and isinstance(data.get("kind"), str) and isinstance(data.get("text"), str):
        return {"kind": data["kind"], "text": data["text"]}
    return None


# -- sign-in rate limit --------------------------------------------------------------------------------------


def _throttle_keys(email: str, address: str) -> tuple[str, str]:
    return _sha256(f"email+ip:{email.strip().lower()}|{address}"), _sha256(f"ip:{address}")


def _failures_since(session: Session, key_hash: str, since: dt.datetime) -> int:
    query = (
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.key_hash == key_hash, LoginFailure.created_at >= since)
    )
    return session.scalar(query) or 0


def check_login_allowed(*, session: Session, email: str, address: str, now: dt.datetime | None = None) -> None:
    now = now or utcnow()
    pair, ip = _throttle_keys(email, address)
    since = now - LOGIN_WINDOW
    if (
        _failures_since(session, pair, since) >= MAX_FAILURES_PER_EMAIL_AND_ADDRESS
        or _failures_since(session, ip, since) >= MAX_FAILURES_PER_ADDRESS
    ):
        minutes = int(LOGIN_WINDOW.total_seconds() // 60)
        raise RateLimitedByUs(
            "Too many sign-in attempts. To protect your account, sign-in is paused for a while.",
            hint=f"Wait {minutes} minutes and try again. If you forgot your password, ask the person who runs "
            "replyflow to set a new one with 'replyflow user set-password'.",
        )


def record_login_failure(*, session: Session, email: str, address: str, now: dt.datetime | None = None) -> None:
    now = now or utcnow()
    for key_hash in _throttle_keys(email, address):
        session.add(LoginFailure(key_hash=key_hash, created_at=now))
    # Old rows are useless once outside the window; clearing them here keeps the table small without a job.
    session.execute(delete(LoginFailure).where(LoginFailure.created_at < now - LOGIN_WINDOW * 4))


def clear_login_failures(*, session: Session, email: str, address: str) -> None:
    pair, _ = _throttle_keys(email, address)
    session.execute(delete(LoginFailure).where(LoginFailure.key_hash == pair))
