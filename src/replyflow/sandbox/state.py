"""The emulator's world and its rules: tokens, Pages, Instagram accounts, media, comments, the outbox and quotas.

One ``SandboxState`` per emulator. Every public method takes the state's re-entrant lock, so the ASGI app,
tests and our product's sandbox routes can share one instance across threads. With a ``path`` the world is
written to a JSON file after each change (atomically), so ``make run`` keeps it across restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from replyflow.sandbox import ids
from replyflow.sandbox.clock import Clock
from replyflow.sandbox.errors import GraphError, invalid_parameter, unparseable_token
from replyflow.sandbox.failures import FailureKind, InjectedFailure
from replyflow.sandbox.models import (
    ALL_TASKS,
    INSTAGRAM_LOGIN_SCOPES,
    KNOWN_SCOPES,
    App,
    AppSubscription,
    Comment,
    DemoWorld,
    IGAccount,
    InvalidReason,
    Media,
    MediaType,
    OAuthCode,
    OutboxEntry,
    OutboxKind,
    Page,
    Person,
    ProductType,
    Thread,
    Token,
    User,
    World,
)
from replyflow.sandbox.payloads import changes_payload, comment_value, epoch_ms, messaging_payload
from replyflow.sandbox.usage import BusinessUse, UsageMeter

log = logging.getLogger("replyflow.sandbox")

SHORT_LIVED = timedelta(hours=2)
LONG_LIVED = timedelta(days=60)
INSTAGRAM_SHORT_LIVED = timedelta(hours=1)
INSTAGRAM_REFRESHABLE_AFTER = timedelta(hours=24)
DATA_ACCESS = timedelta(days=90)
CODE_LIFETIME = timedelta(minutes=10)
PRIVATE_REPLY_WINDOW = timedelta(days=7)
MESSAGING_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
MAX_COMMENT_CHARS = 2200
MAX_MESSAGE_CHARS = 1000
SUPPORTED_VERSIONS = range(20, 27)  # v20.0 … v26.0; older versions are served as the oldest (Meta upgrades them)

_SUBCODES: dict[InvalidReason, int] = {
    "app_deauthorized": 458,
    "password_changed": 460,
    "logged_out": 467,
    "role_removed": 492,
}
_REASON_MESSAGES: dict[InvalidReason, str] = {
    "app_deauthorized": "Error validating access token: The user has not authorized application {app_id}.",
    "password_changed": (
        "Error validating access token: The session has been invalidated because the user changed their "
        "password or Facebook has changed the session for security reasons."
    ),
    "logged_out": "Error validating access token: The session is invalid because the user logged out.",
    "role_removed": "Error validating access token: The user is not an administrator of the page.",
}


@dataclass(frozen=True)
class Principal:
    """Who a request acts as, resolved from its access token."""

    kind: Literal["USER", "PAGE", "APP", "INSTAGRAM"]
    token: Token | None
    user_id: str | None = None
    page_id: str | None = None
    scopes: frozenset[str] = frozenset()
    ig_account_id: str | None = None  # INSTAGRAM tokens: the account they act as

    @property
    def owner_id(self) -> str:
        return self.page_id or self.ig_account_id or self.user_id or ""


@dataclass
class PendingWebhook:
    """An update Meta would now deliver to the app's callback URL."""

    id: str
    field: str
    ig_account_id: str
    created_at: datetime
    payload: dict[str, Any]


@dataclass
class WebhookDelivery:
    """What happened to one update: delivered (with the receiver's status), failed, or skipped and why."""

    webhook_id: str
    field: str
    at: datetime
    target: str | None = None
    status_code: int | None = None
    ok: bool = False
    error: str | None = None
    skipped_reason: str | None = None
    body: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "field": self.field,
            "at": self.at.isoformat(),
            "target": self.target,
            "status_code": self.status_code,
            "ok": self.ok,
            "error": self.error,
            "skipped_reason": self.skipped_reason,
        }


@dataclass
class _Volatile:
    """Test-time machinery that is never written to the state file."""

    failures: list[InjectedFailure] = field(default_factory=list)
    pending: deque[PendingWebhook] = field(default_factory=lambda: deque(maxlen=1000))
    deliveries: deque[WebhookDelivery] = field(default_factory=lambda: deque(maxlen=500))


class SandboxState:
    """The emulator's world. Create empty, ``seed_demo_world(state)``, or ``SandboxState.open(path)``."""

    def __init__(
        self,
        *,
        app_id: str | None = None,
        app_secret: str | None = None,
        path: str | Path | None = None,
        private_reply_quota: tuple[int, int] = (750, 3600),
        require_appsecret_proof: bool = False,
        default_version: str = "v25.0",
        clock: Clock | None = None,
        world: World | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        self._dirty = False
        self.path = Path(path) if path is not None else None
        if world is None:
            world = World(
                app=App(
                    id=app_id or ids.app_id(),
                    secret=app_secret or ids.app_secret(),
                    require_appsecret_proof=require_appsecret_proof,
                ),
                default_version=default_version,
            )
            world.private_reply_quota_count, world.private_reply_quota_seconds = _check_quota(private_reply_quota)
        self.world = world
        self.clock = clock or Clock.from_dict(world.clock)
        self.usage = UsageMeter()
        self._volatile = _Volatile()

    # -- persistence ----------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        app_id: str | None = None,
        app_secret: str | None = None,
        private_reply_quota: tuple[int, int] | None = None,
        seed: bool = True,
    ) -> SandboxState:
        """Load the world kept at ``path``, or create (and by default seed) a new one there.

        ``app_id``/``app_secret`` override what the file holds, so the emulator always signs with the secret
        our product verifies. An unreadable file is moved aside rather than blocking start-up: a sandbox world
        is disposable.
        """
        path = Path(path)
        state: SandboxState | None = None
        if path.exists():
            try:
                state = cls.from_json(path.read_text(encoding="utf-8"), path=path)
            except (ValueError, ValidationError) as exc:
                aside = path.with_name(f"{path.name}.unreadable-{int(datetime.now(UTC).timestamp())}")
                path.replace(aside)
                # Only the error's type: its text may quote the file, which holds sandbox tokens.
                log.warning(
                    "sandbox state file unreadable (%s); moved to %s and starting fresh", type(exc).__name__, aside
                )
        if state is None:
            state = cls(app_id=app_id, app_secret=app_secret, path=path)
            if seed:
                from replyflow.sandbox.seed import seed_demo_world

                seed_demo_world(state)
        with state.transaction():
            if app_id is not None and state.world.app.id != app_id:
                state.world.app.id = app_id
                state._touch()
            if app_secret is not None and state.world.app.secret != app_secret:
                state.world.app.secret = app_secret
                state._touch()
            if private_reply_quota is not None:
                state.set_private_reply_quota(count=private_reply_quota[0], seconds=private_reply_quota[1])
            state._touch()
        return state

    @classmethod
    def load(cls, path: str | Path) -> SandboxState:
        path = Path(path)
        return cls.from_json(path.read_text(encoding="utf-8"), path=path)

    @classmethod
    def from_json(cls, text: str, *, path: str | Path | None = None) -> SandboxState:
        world = World.model_validate_json(text)
        if world.format != 1:
            raise ValueError(f"unsupported sandbox state format {world.format}")
        return cls(world=world, path=path)

    def to_json(self) -> str:
        with self._lock:
            self.world.clock = self.clock.to_dict()
            return self.world.model_dump_json(indent=1)

    def save(self, path: str | Path | None = None) -> None:
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("this sandbox state has no file; pass a path")
        with self._lock:
            text = self.to_json()
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            # The file holds sandbox tokens and the sandbox app secret: owner-only.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            tmp.replace(target)
            self._dirty = False

    @contextmanager
    def transaction(self) -> Iterator[SandboxState]:
        """Hold the lock for a consistent read-modify-write; the file is written once, at the outermost exit."""
        with self._lock:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
                if self._depth == 0 and self._dirty and self.path is not None:
                    self.save()

    def _touch(self) -> None:
        self._dirty = True

    # -- settings -------------------------------------------------------------------------------------------

    @property
    def app(self) -> App:
        return self.world.app

    @property
    def demo(self) -> DemoWorld | None:
        return self.world.demo

    def remember_demo(self, demo: DemoWorld) -> None:
        with self.transaction():
            self.world.demo = demo.model_copy()
            self._touch()

    def now(self) -> datetime:
        return self.clock.now()

    def set_private_reply_quota(self, *, count: int, seconds: int) -> None:
        with self.transaction():
            self.world.private_reply_quota_count, self.world.private_reply_quota_seconds = _check_quota(
                (count, seconds)
            )
            self._touch()

    @property
    def private_reply_quota(self) -> tuple[int, int]:
        return self.world.private_reply_quota_count, self.world.private_reply_quota_seconds

    def resolve_version(self, segment: str | None) -> str:
        """The version a path asks for, as Meta would serve it; unknown versions are refused."""
        if segment is None:
            return self.world.default_version
        major = _version_major(segment)
        if major is None or major > SUPPORTED_VERSIONS[-1]:
            raise GraphError(
                f"Unknown path components: /{segment} (not a Graph API version; use one like "
                f"v{SUPPORTED_VERSIONS[-2]}.0)",
                code=2500,
            )
        return f"v{max(major, SUPPORTED_VERSIONS[0])}.0"

    # -- users and tokens -----------------------------------------------------------------------------------

    def add_user(self, name: str, *, scopes: list[str] | None = None) -> User:
        with self.transaction():
            user = User(id=self._new_id(ids.user_id), name=name, default_scopes=list(scopes or []))
            self.world.users[user.id] = user
            self._touch()
            return user

    def find_user(self, name: str) -> User | None:
        with self._lock:
            return next((u for u in self.world.users.values() if u.name == name), None)

    def issue_user_token(
        self,
        user_id: str,
        *,
        scopes: list[str] | None = None,
        long_lived: bool = False,
        page_ids: list[str] | None = None,
        lifetime: timedelta | None = None,
    ) -> str:
        """A new user token, as Facebook Login would hand out (short-lived unless ``long_lived``)."""
        with self.transaction():
            user = self._user(user_id)
            now = self.now()
            granted = _with_public_profile(user.default_scopes if scopes is None else scopes)
            token = Token(
                value=ids.access_token(),
                kind="USER",
                user_id=user.id,
                scopes=granted,
                page_ids=list(page_ids) if page_ids is not None else None,
                issued_at=now,
                expires_at=now + (lifetime or (LONG_LIVED if long_lived else SHORT_LIVED)),
                data_access_expires_at=now + DATA_ACCESS,
                long_lived=long_lived,
            )
            self.world.tokens[token.value] = token
            self._touch()
            return token.value

    def exchange_for_long_lived(self, short_lived: str) -> Token:
        """``grant_type=fb_exchange_token``: a fresh 60-day user token with the same grants."""
        with self.transaction():
            source = self.check_token(short_lived)
            if source.kind != "USER":
                raise GraphError("Invalid OAuth access token - Cannot parse access token", code=190)
            value = self.issue_user_token(
                source.user_id, scopes=source.scopes, long_lived=True, page_ids=source.page_ids
            )
            return self.world.tokens[value]

    # -- Instagram Login tokens ----------------------------------------------------------------------------

    def issue_instagram_token(
        self,
        ig_account_id: str,
        *,
        scopes: list[str] | None = None,
        long_lived: bool = False,
        lifetime: timedelta | None = None,
    ) -> str:
        """An Instagram User token, as Instagram Login hands out (1 hour unless ``long_lived``: 60 days)."""
        with self.transaction():
            account = self._ig(ig_account_id)
            now = self.now()
            token = Token(
                value=ids.instagram_token(),
                kind="INSTAGRAM",
                user_id=account.app_scoped_id or account.id,
                ig_account_id=account.id,
                scopes=sorted(INSTAGRAM_LOGIN_SCOPES if scopes is None else scopes),
                issued_at=now,
                expires_at=now + (lifetime or (LONG_LIVED if long_lived else INSTAGRAM_SHORT_LIVED)),
                data_access_expires_at=now + DATA_ACCESS,
                long_lived=long_lived,
            )
            self.world.tokens[token.value] = token
            self._touch()
            return token.value

    def exchange_instagram_token(self, short_lived: str, *, client_secret: str) -> Token:
        """``grant_type=ig_exchange_token``: a 60-day token for a short-lived one (only short-lived ones)."""
        with self.transaction():
            if not hmac.compare_digest(client_secret, self.app.secret):
                raise GraphError("Error validating client secret.", code=1, type="OAuthException")
            source = self.check_token(short_lived)
            if source.kind != "INSTAGRAM":
                raise unparseable_token()
            if source.long_lived:
                raise GraphError(
                    "Invalid parameter: the access token is not a short-lived Instagram User access token.",
                    code=100,
                )
            assert source.ig_account_id is not None
            value = self.issue_instagram_token(source.ig_account_id, scopes=source.scopes, long_lived=True)
            return self.world.tokens[value]

    def refresh_instagram_token(self, value: str) -> Token:
        """``grant_type=ig_refresh_token``: a long-lived token at least 24 hours old and not expired → 60 days more."""
        with self.transaction():
            source = self.check_token(value)
            if source.kind != "INSTAGRAM":
                raise unparseable_token()
            if not source.long_lived:
                raise GraphError(
                    "Invalid parameter: only long-lived Instagram User access tokens can be refreshed.", code=100
                )
            if self.now() - source.issued_at < INSTAGRAM_REFRESHABLE_AFTER:
                raise GraphError(
                    "Invalid parameter: the access token can be refreshed only once it is at least 24 hours old.",
                    code=100,
                )
            if "instagram_business_basic" not in source.scopes:
                raise GraphError("(#10) Application does not have permission for this action", code=10)
            assert source.ig_account_id is not None
            fresh = self.issue_instagram_token(source.ig_account_id, scopes=source.scopes, long_lived=True)
            return self.world.tokens[fresh]

    def page_token(self, *, user_token: str, page_id: str) -> str:
        """The Page token ``/me/accounts`` hands out for ``page_id``; stable per user token and Page."""
        with self.transaction():
            parent = self.check_token(user_token)
            if parent.kind != "USER":
                raise GraphError("A user access token is required to get a Page token.", code=190)
            page = self._page(page_id)
            if parent.user_id not in page.roles:
                raise GraphError("The user has no role on this Page.", code=200)
            for token in self.world.tokens.values():
                if token.kind == "PAGE" and token.parent == parent.value and token.page_id == page.id:
                    return token.value
            token = Token(
                value=ids.access_token(),
                kind="PAGE",
                user_id=parent.user_id,
                page_id=page.id,
                scopes=list(parent.scopes),
                page_ids=parent.page_ids,
                issued_at=self.now(),
                # From a long-lived user token a Page token never expires; otherwise it dies with its parent.
                expires_at=None if parent.long_lived else parent.expires_at,
                data_access_expires_at=parent.data_access_expires_at,
                long_lived=parent.long_lived,
                parent=parent.value,
            )
            self.world.tokens[token.value] = token
            self._touch()
            return token.value

    def token_info(self, value: str) -> Token | None:
        with self._lock:
            token = self.world.tokens.get(value)
            return token.model_copy(deep=True) if token is not None else None

    def invalidate_token(self, value: str, *, reason: Literal["expired"] | InvalidReason = "password_changed") -> None:
        """Make one token fail like Meta does: ``expired`` → 190/463, ``password_changed`` → 190/460, etc."""
        with self.transaction():
            token = self.world.tokens.get(value)
            if token is None:
                raise KeyError("no such token")
            if reason == "expired":
                token.expires_at = self.now() - timedelta(seconds=1)
            else:
                token.invalid_reason = reason
                token.invalidated_at = self.now()
            self._touch()

    def invalidate_user_sessions(self, user_id: str, *, reason: InvalidReason = "password_changed") -> int:
        """A password change (or de-authorising the app) kills every token of the user, Page tokens too."""
        with self.transaction():
            count = 0
            for token in self.world.tokens.values():
                if token.user_id == user_id and token.invalid_reason is None:
                    token.invalid_reason = reason
                    token.invalidated_at = self.now()
                    count += 1
            self._touch()
            return count

    def token_error(self, token: Token) -> GraphError | None:
        """Why ``token`` no longer works, or None while it does."""
        with self._lock:
            chain = [token]
            if token.parent is not None and token.parent in self.world.tokens:
                chain.append(self.world.tokens[token.parent])
            for link in chain:
                if link.invalid_reason is not None:
                    message = _REASON_MESSAGES[link.invalid_reason].format(app_id=self.app.id)
                    return GraphError(message, code=190, subcode=_SUBCODES[link.invalid_reason])
            if token.kind == "PAGE" and token.page_id is not None:
                page = self.world.pages.get(token.page_id)
                if page is None or token.user_id not in page.roles:
                    return GraphError(_REASON_MESSAGES["role_removed"], code=190, subcode=492)
            now = self.now()
            if token.expires_at is not None and token.expires_at <= now:
                return GraphError(
                    f"Error validating access token: Session has expired on {_meta_time(token.expires_at)}. "
                    f"The current time is {_meta_time(now)}.",
                    code=190,
                    subcode=463,
                )
            return None

    def check_token(self, value: str) -> Token:
        """The token record for ``value`` if it is usable, else the 190 error Meta would answer."""
        with self._lock:
            token = self.world.tokens.get(value)
            if token is None:
                raise unparseable_token()
            error = self.token_error(token)
            if error is not None:
                raise error
            return token

    def authenticate(self, value: str, *, appsecret_proof: str | None = None, host: str = "facebook") -> Principal:
        """Resolve an access token (user, Page, or ``app_id|secret``) as the Graph API does.

        On the ``instagram`` host (graph.instagram.com) only Instagram User tokens parse, and on the Facebook host
        they do not: each host answers the other's tokens with 190 "Cannot parse access token".
        """
        with self._lock:
            token = self.world.tokens.get(value)
            if host == "instagram":
                if token is None or token.kind != "INSTAGRAM":
                    raise unparseable_token()
                return self.principal_for(value)
            if token is not None and token.kind == "INSTAGRAM":
                raise unparseable_token()
            if "|" in value:
                app_id, _, secret = value.partition("|")
                if app_id != self.app.id or not hmac.compare_digest(secret, self.app.secret):
                    raise GraphError("Invalid OAuth access token signature.", code=190)
                return Principal(kind="APP", token=None)
            if value not in self.world.tokens:
                raise unparseable_token()
            if appsecret_proof is not None:
                if not hmac.compare_digest(appsecret_proof, self.appsecret_proof(value)):
                    raise GraphError(
                        "Invalid appsecret_proof provided in the API argument", code=100, type="GraphMethodException"
                    )
            elif self.app.require_appsecret_proof:
                raise GraphError(
                    "API calls from the server require an appsecret_proof argument",
                    code=100,
                    type="GraphMethodException",
                )
            return self.principal_for(value)

    def principal_for(self, value: str) -> Principal:
        """Who a user or Page token acts as, for Python callers (no ``appsecret_proof`` involved)."""
        with self._lock:
            token = self.check_token(value)
            return Principal(
                kind=token.kind,
                token=token,
                user_id=token.user_id,
                page_id=token.page_id,
                scopes=frozenset(token.scopes),
                ig_account_id=token.ig_account_id,
            )

    def appsecret_proof(self, token: str) -> str:
        return hmac.new(self.app.secret.encode(), token.encode(), hashlib.sha256).hexdigest()

    # -- OAuth codes ----------------------------------------------------------------------------------------

    def issue_oauth_code(
        self, *, user_id: str, client_id: str, redirect_uri: str, scopes: list[str], page_ids: list[str] | None
    ) -> str:
        with self.transaction():
            self._user(user_id)
            code = OAuthCode(
                code=ids.oauth_code(),
                user_id=user_id,
                client_id=client_id,
                redirect_uri=redirect_uri,
                scopes=_with_public_profile(scopes),
                page_ids=page_ids,
                issued_at=self.now(),
            )
            self.world.oauth_codes[code.code] = code
            self._touch()
            return code.code

    def redeem_oauth_code(self, *, code: str, client_id: str, redirect_uri: str) -> Token:
        """The code exchange of the login flow: single use, ten minutes, same ``redirect_uri``."""
        with self.transaction():
            grant = self.world.oauth_codes.get(code)
            if grant is None or grant.client_id != client_id:
                raise GraphError("Invalid verification code format.", code=100, subcode=36009)
            if grant.used:
                raise GraphError("This authorization code has been used.", code=100, subcode=36009)
            if self.now() - grant.issued_at > CODE_LIFETIME:
                raise GraphError("This authorization code has expired.", code=100, subcode=36007)
            if grant.redirect_uri != redirect_uri:
                raise GraphError(
                    "Error validating verification code. Please make sure your redirect_uri is identical to the "
                    "one you used in the OAuth dialog request",
                    code=100,
                    subcode=36008,
                )
            grant.used = True
            self._touch()
            value = self.issue_user_token(grant.user_id, scopes=grant.scopes, page_ids=grant.page_ids)
            return self.world.tokens[value]

    def issue_instagram_code(self, *, ig_account_id: str, client_id: str, redirect_uri: str, scopes: list[str]) -> str:
        """A code from the Instagram consent page: the person logged in as ``ig_account_id``."""
        with self.transaction():
            account = self._ig(ig_account_id)
            code = OAuthCode(
                code=ids.oauth_code(),
                user_id=account.app_scoped_id or account.id,
                client_id=client_id,
                redirect_uri=redirect_uri,
                scopes=sorted(set(scopes) & INSTAGRAM_LOGIN_SCOPES),
                page_ids=None,
                issued_at=self.now(),
                ig_account_id=account.id,
            )
            self.world.oauth_codes[code.code] = code
            self._touch()
            return code.code

    def redeem_instagram_code(self, *, code: str, client_id: str, client_secret: str, redirect_uri: str) -> Token:
        """api.instagram.com/oauth/access_token: single use, ten minutes, same ``redirect_uri`` → short-lived token."""
        with self.transaction():
            if client_id != self.app.id:
                raise GraphError("Invalid platform app", code=400, type="OAuthException")
            if not hmac.compare_digest(client_secret, self.app.secret):
                raise GraphError("Error validating client secret.", code=400, type="OAuthException")
            grant = self.world.oauth_codes.get(code)
            if grant is None or grant.ig_account_id is None or grant.client_id != client_id:
                raise GraphError("Invalid authorization code", code=400, type="OAuthException")
            if grant.used:
                raise GraphError("This authorization code has been used", code=400, type="OAuthException")
            if self.now() - grant.issued_at > CODE_LIFETIME:
                raise GraphError("This authorization code has expired", code=400, type="OAuthException")
            if grant.redirect_uri != redirect_uri:
                raise GraphError(
                    "Error validating verification code. Please make sure your redirect_uri is identical to the "
                    "one you used in the OAuth dialog request",
                    code=400,
                    type="OAuthException",
                )
            grant.used = True
            self._touch()
            value = self.issue_instagram_token(grant.ig_account_id, scopes=grant.scopes)
            return self.world.tokens[value]

    # -- Pages and Instagram accounts ----------------------------------------------------------------------

    def add_page(
        self,
        name: str,
        *,
        owner_user_id: str,
        tasks: list[str] | None = None,
        category: str = "Brand",
    ) -> Page:
        with self.transaction():
            self._user(owner_user_id)
            page = Page(
                id=self._new_id(ids.page_id),
                name=name,
                category=category,
                roles={owner_user_id: list(tasks if tasks is not None else ALL_TASKS)},
            )
            self.world.pages[page.id] = page
            self._touch()
            return page

    def set_page_role(self, page_id: str, user_id: str, *, tasks: list[str] | None) -> None:
        """Grant tasks on a Page, or remove the user's role (``tasks=None``): their Page tokens then fail."""
        with self.transaction():
            page = self._page(page_id)
            self._user(user_id)
            if tasks is None:
                page.roles.pop(user_id, None)
            else:
                page.roles[user_id] = list(tasks)
            self._touch()

    def add_instagram_account(
        self,
        page_id: str | None,
        *,
        username: str,
        name: str | None = None,
        biography: str = "",
        website: str | None = None,
        followers_count: int = 0,
        follows_count: int = 0,
        color: str = "#8a5a44",
    ) -> IGAccount:
        """A new Instagram professional account, linked to a Page (one per Page, as Meta allows), or to none
        (``page_id=None``: reachable only through Instagram Login)."""
        with self.transaction():
            page = self._page(page_id) if page_id is not None else None
            if page is not None and page.ig_account_id is not None:
                raise ValueError(f"page {page_id} already has an Instagram account")
            if any(a.username == username for a in self.world.ig_accounts.values()):
                raise ValueError(f"username {username!r} is taken")
            account = IGAccount(
                id=self._new_id(ids.ig_account_id),
                username=username,
                name=name or username,
                page_id=page.id if page is not None else None,
                app_scoped_id=ids.ig_app_scoped_id(),
                biography=biography,
                website=website,
                followers_count=followers_count,
                follows_count=follows_count,
                color=color,
            )
            self.world.ig_accounts[account.id] = account
            if page is not None:
                page.ig_account_id = account.id
            self._touch()
            return account

    def unlink_instagram_account(self, page_id: str) -> None:
        with self.transaction():
            page = self._page(page_id)
            page.ig_account_id = None
            self._touch()

    def get_page(self, page_id: str) -> Page | None:
        with self._lock:
            return self.world.pages.get(page_id)

    def get_ig_account(self, ig_account_id: str) -> IGAccount | None:
        with self._lock:
            return self.world.ig_accounts.get(ig_account_id)

    def find_ig_account(self, username: str) -> IGAccount | None:
        with self._lock:
            return next((a for a in self.world.ig_accounts.values() if a.username == username), None)

    def pages_of_user(self, user_id: str, *, only: list[str] | None = None) -> list[Page]:
        with self._lock:
            return [p for p in self.world.pages.values() if user_id in p.roles and (only is None or p.id in only)]

    # -- media and comments ---------------------------------------------------------------------------------

    def add_media(
        self,
        ig_account_id: str,
        *,
        caption: str,
        media_product_type: ProductType = "FEED",
        media_type: MediaType | None = None,
        timestamp: datetime | None = None,
        like_count: int = 0,
        live: bool = False,
        emoji: str = "☕",
        color: str | None = None,
    ) -> Media:
        """A post (FEED), reel (REELS) or, with ``live=True``, an ongoing live broadcast."""
        with self.transaction():
            account = self._ig(ig_account_id)
            if live:
                media_product_type, media_type = "LIVE", "BROADCAST"
            kind: MediaType = media_type or ("VIDEO" if media_product_type == "REELS" else "IMAGE")
            media = Media(
                id=self._new_id(ids.media_id),
                ig_account_id=account.id,
                caption=caption,
                media_type=kind,
                media_product_type=media_product_type,
                shortcode=ids.shortcode(),
                timestamp=timestamp or self.now(),
                like_count=like_count,
                live_status="live" if live else None,
                emoji=emoji,
                color=color or account.color,
            )
            self.world.media[media.id] = media
            self._touch()
            return media

    def end_live(self, media_id: str) -> None:
        with self.transaction():
            media = self._media(media_id)
            if media.live_status is None:
                raise ValueError("not a live broadcast")
            media.live_status = "ended"
            self._touch()

    def set_comments_enabled(self, media_id: str, *, enabled: bool) -> None:
        with self.transaction():
            self._media(media_id).is_comment_enabled = enabled
            self._touch()

    def get_media(self, media_id: str) -> Media | None:
        with self._lock:
            return self.world.media.get(media_id)

    def media_of(self, ig_account_id: str) -> list[Media]:
        """Posts and reels of an account, newest first (live broadcasts are not part of ``/media``)."""
        with self._lock:
            items = [m for m in self.world.media.values() if m.ig_account_id == ig_account_id and m.live_status is None]
            # Equal times (a frozen clock) fall back to creation order, newest first.
            return sorted(reversed(items), key=lambda m: m.timestamp, reverse=True)

    def add_person(self, username: str, *, igsid: str | None = None) -> Person:
        """Someone on Instagram; the same username always gets the same Instagram-scoped id."""
        with self.transaction():
            if igsid is not None and igsid in self.world.people:
                return self.world.people[igsid]
            for person in self.world.people.values():
                if person.username == username:
                    return person
            person = Person(igsid=igsid or self._new_id(ids.igsid), username=username)
            self.world.people[person.igsid] = person
            self._touch()
            return person

    def add_comment(
        self,
        media_id: str,
        *,
        text: str,
        username: str,
        from_id: str | None = None,
        parent_id: str | None = None,
        at: datetime | None = None,
        own_id: str | None = None,
    ) -> Comment:
        """Someone comments (or replies, with ``parent_id``); queues the ``comments`` webhook.

        A comment whose ``username`` is the media owner's is the account's own comment, as Meta reports it.
        """
        with self.transaction():
            media = self._media(media_id)
            account = self._ig(media.ig_account_id)
            text = _check_text(text, limit=MAX_COMMENT_CHARS, what="comment text")
            if username == account.username:
                author_id, author_name = own_id or account.id, account.username
            else:
                person = self.add_person(username, igsid=from_id)
                author_id, author_name = person.igsid, person.username
            top: str | None = None
            if parent_id is not None:
                parent = self._comment(parent_id)
                if parent.media_id != media.id:
                    raise ValueError("the parent comment is on another media")
                top = parent.parent_id or parent.id
            comment = Comment(
                id=self._new_id(ids.comment_id),
                media_id=media.id,
                ig_account_id=account.id,
                text=text,
                from_id=author_id,
                from_username=author_name,
                parent_id=top,
                timestamp=at or self.now(),
            )
            self.world.comments[comment.id] = comment
            self._touch()
            field_name = "live_comments" if media.live_status is not None else "comments"
            self._emit(
                field=field_name,
                ig_account_id=account.id,
                payload=changes_payload(
                    ig_account_id=account.id, at=self.now(), field=field_name, value=comment_value(comment, media)
                ),
            )
            return comment

    def get_comment(self, comment_id: str) -> Comment | None:
        with self._lock:
            comment = self.world.comments.get(comment_id)
            return None if comment is None or comment.deleted else comment

    def comments_of(self, media_id: str) -> list[Comment]:
        """Top-level comments, newest first (Meta's order since v3.2); hidden ones included."""
        with self._lock:
            items = [
                c
                for c in self.world.comments.values()
                if c.media_id == media_id and c.parent_id is None and not c.deleted
            ]
            return sorted(reversed(items), key=lambda c: c.timestamp, reverse=True)

    def replies_of(self, comment_id: str) -> list[Comment]:
        """Replies under a top-level comment, oldest first."""
        with self._lock:
            items = [c for c in self.world.comments.values() if c.parent_id == comment_id and not c.deleted]
            return sorted(items, key=lambda c: c.timestamp)

    def comment_count(self, media_id: str) -> int:
        with self._lock:
            return sum(1 for c in self.world.comments.values() if c.media_id == media_id and not c.deleted)

    def set_comment_hidden(self, comment_id: str, *, hidden: bool) -> Comment:
        with self.transaction():
            comment = self._comment(comment_id)
            comment.hidden = hidden
            self._touch()
            return comment

    def delete_comment(self, comment_id: str) -> None:
        with self.transaction():
            comment = self._comment(comment_id)
            comment.deleted = True
            for reply in self.world.comments.values():
                if reply.parent_id == comment.id:
                    reply.deleted = True
            self._touch()

    def public_reply(self, *, actor: Principal, comment_id: str, message: str) -> Comment:
        """``POST /{comment-id}/replies``: the account answers under the top-level comment."""
        with self.transaction():
            target = self.world.comments.get(comment_id)
            if target is None or target.deleted:
                raise GraphError(f"(#100) Comment with ID '{comment_id}' does not exist", code=100)
            message = _check_param_text(message, name="message", limit=MAX_COMMENT_CHARS)
            media = self._media(target.media_id)
            if media.live_status is not None:
                raise GraphError(
                    "(#100) Replies are not supported for comments on a live video; send a private reply instead",
                    code=100,
                )
            if target.hidden:
                raise GraphError("(#100) You cannot reply to a hidden comment", code=100)
            if not media.is_comment_enabled:
                raise GraphError("(#100) Comments are disabled for this media", code=100)
            account = self._ig(media.ig_account_id)
            reply = self.add_comment(
                media.id,
                text=message,
                username=account.username,
                parent_id=target.id,
                # Through Instagram Login the account's own comments carry its app-scoped id in from.id.
                own_id=account.app_scoped_id if actor.kind == "INSTAGRAM" and account.app_scoped_id else None,
            )
            self._record(
                kind="public_reply",
                actor=actor,
                account=account,
                comment_id=target.id,
                recipient_id=None,
                text=message,
                body={"message": message},
                result_id=reply.id,
            )
            return reply

    # -- private replies and the Send API ------------------------------------------------------------------

    def _sending_account(self, page_id: str | None, ig_account_id: str | None) -> IGAccount | None:
        if ig_account_id is not None:
            return self.world.ig_accounts.get(ig_account_id)
        page = self._page(page_id or "")
        return self.world.ig_accounts.get(page.ig_account_id or "")

    def private_reply(
        self,
        *,
        actor: Principal,
        page_id: str | None = None,
        comment_id: str,
        message: dict[str, Any],
        ig_account_id: str | None = None,
    ) -> dict[str, str]:
        """``POST /{page-id}/messages`` (or ``/{ig-id}/messages`` through Instagram Login) with
        ``recipient.comment_id``: Meta's rules for the one DM a comment allows."""
        with self.transaction():
            account = self._sending_account(page_id, ig_account_id)
            check_message(message)
            comment = self.world.comments.get(comment_id)
            if (
                comment is None
                or comment.deleted
                or account is None
                or comment.ig_account_id != account.id
                or comment.from_id in (account.id, account.app_scoped_id)
                or comment.private_reply_message_id is not None
            ):
                raise _invalid_for_private_reply()
            media = self._media(comment.media_id)
            now = self.now()
            if media.live_status == "ended":
                raise _invalid_for_private_reply()
            if media.live_status is None and now - comment.timestamp > PRIVATE_REPLY_WINDOW:
                raise GraphError(
                    "(#10) This message is sent outside of allowed window.",
                    code=10,
                    subcode=2534022,
                    user_title="Message not sent",
                    user_msg="Private replies can only be sent within 7 days of the comment.",
                )
            used, limit, regain = self.private_reply_quota_status(account.id)
            if used >= limit:
                raise GraphError(
                    "(#613) Calls to this api have exceeded the rate limit.",
                    code=613,
                    is_transient=True,
                    regain_minutes=max(1, -(-int(regain) // 60)),
                )
            mid = ids.message_id(account.id)
            comment.private_reply_message_id = mid
            self.world.private_reply_log.setdefault(account.id, []).append(now)
            self._thread(account.id, comment.from_id)
            self._record(
                kind="private_reply",
                actor=actor,
                account=account,
                comment_id=comment.id,
                recipient_id=comment.from_id,
                text=_message_text(message),
                body={"recipient": {"comment_id": comment.id}, "message": message},
                result_id=mid,
            )
            self._emit_echo(account=account, recipient_id=comment.from_id, mid=mid, message=message)
            return {"recipient_id": comment.from_id, "message_id": mid}

    def send_message(
        self,
        *,
        actor: Principal,
        page_id: str | None = None,
        recipient_id: str,
        message: dict[str, Any],
        tag: str | None = None,
        ig_account_id: str | None = None,
    ) -> dict[str, str]:
        """The Send API with ``recipient.id``: only inside the 24 h window the person's own message opened."""
        with self.transaction():
            account = self._sending_account(page_id, ig_account_id)
            check_message(message)
            if account is None or recipient_id not in self.world.people:
                raise GraphError("(#100) No matching user found", code=100, subcode=2018001)
            thread = self.world.threads.get(_thread_key(account.id, recipient_id))
            last = thread.last_user_activity_at if thread is not None else None
            window = HUMAN_AGENT_WINDOW if tag == "HUMAN_AGENT" else MESSAGING_WINDOW
            if last is None or self.now() - last > window:
                raise GraphError(
                    "(#10) This message is sent outside of allowed window. Learn more about the new policy here: "
                    "https://developers.facebook.com/docs/messenger-platform/policy-overview",
                    code=10,
                    subcode=2018278,
                )
            mid = ids.message_id(account.id)
            body: dict[str, Any] = {"recipient": {"id": recipient_id}, "message": message}
            if tag is not None:
                body["tag"] = tag
            self._record(
                kind="message",
                actor=actor,
                account=account,
                comment_id=None,
                recipient_id=recipient_id,
                text=_message_text(message),
                body=body,
                result_id=mid,
            )
            self._emit_echo(account=account, recipient_id=recipient_id, mid=mid, message=message)
            return {"recipient_id": recipient_id, "message_id": mid}

    def private_reply_quota_status(self, ig_account_id: str) -> tuple[int, int, float]:
        """(used, limit, seconds until one more is allowed) of the sliding private-reply window."""
        with self._lock:
            count, seconds = self.private_reply_quota
            now = self.now()
            horizon = now - timedelta(seconds=seconds)
            log_ = [t for t in self.world.private_reply_log.get(ig_account_id, []) if t > horizon]
            self.world.private_reply_log[ig_account_id] = log_
            if len(log_) < count:
                return len(log_), count, 0.0
            # The oldest send that must age out before another fits.
            release = log_[len(log_) - count] + timedelta(seconds=seconds)
            return len(log_), count, max(0.0, (release - now).total_seconds())

    # -- the person's side of DMs ---------------------------------------------------------------------------

    def user_message(
        self,
        ig_account_id: str,
        *,
        text: str,
        username: str | None = None,
        from_id: str | None = None,
        quick_reply_payload: str | None = None,
        story_id: str | None = None,
        story_mention_url: str | None = None,
    ) -> dict[str, Any]:
        """The person writes to the account (or taps a quick reply): opens the 24 h window, queues ``messages``.

        ``story_id``: the message replies to that story of the account (``message.reply_to.story``);
        ``story_mention_url``: the person mentioned the account in their story (a ``story_mention`` attachment,
        with ``text`` usually empty)."""
        with self.transaction():
            account = self._ig(ig_account_id)
            person = self._person_for(username=username, from_id=from_id)
            now = self.now()
            message: dict[str, Any] = {"mid": ids.message_id(account.id)}
            if text:
                message["text"] = text
            if quick_reply_payload is not None:
                message["quick_reply"] = {"payload": quick_reply_payload}
            if story_id is not None:
                message["reply_to"] = {"story": {"id": story_id, "url": f"https://lookaside.sandbox.test/{story_id}"}}
            if story_mention_url is not None:
                message["attachments"] = [{"type": "story_mention", "payload": {"url": story_mention_url}}]
            item = {
                "sender": {"id": person.igsid},
                "recipient": {"id": account.id},
                "timestamp": epoch_ms(now),
                "message": message,
            }
            self._thread(account.id, person.igsid).last_user_activity_at = now
            self._touch()
            self._emit(
                field="messages",
                ig_account_id=account.id,
                payload=messaging_payload(ig_account_id=account.id, at=now, item=item),
            )
            return item

    def set_follows(
        self,
        ig_account_id: str,
        *,
        follows: bool | None,
        username: str | None = None,
        from_id: str | None = None,
    ) -> Person:
        """The person follows (or unfollows) the account; None makes Meta leave the answer out (not known)."""
        with self.transaction():
            self._ig(ig_account_id)
            person = self._person_for(username=username, from_id=from_id)
            person.follows = [a for a in person.follows if a != ig_account_id] + ([ig_account_id] if follows else [])
            person.follow_unknown_for = [a for a in person.follow_unknown_for if a != ig_account_id]
            if follows is None:
                person.follow_unknown_for.append(ig_account_id)
            self._touch()
            return person

    def follow_status(self, ig_account_id: str, igsid: str) -> bool | None:
        """``is_user_follow_business`` as Meta would answer it (None: left out), or KeyError for no such person.

        Meta answers the user profile only for someone who messaged the account (their consent): otherwise
        ``GraphError`` 230, as Meta's "User consent is required to access user profile"."""
        with self._lock:
            person = self.world.people.get(igsid)
            if person is None:
                raise KeyError(igsid)
            if _thread_key(ig_account_id, igsid) not in self.world.threads:
                raise GraphError("(#230) User consent is required to access user profile", code=230)
            if ig_account_id in person.follow_unknown_for:
                return None
            return ig_account_id in person.follows

    def user_postback(
        self,
        ig_account_id: str,
        *,
        payload: str,
        title: str,
        username: str | None = None,
        from_id: str | None = None,
    ) -> dict[str, Any]:
        """The person taps a postback button: opens the 24 h window, queues ``messaging_postbacks``."""
        with self.transaction():
            account = self._ig(ig_account_id)
            person = self._person_for(username=username, from_id=from_id)
            now = self.now()
            item = {
                "sender": {"id": person.igsid},
                "recipient": {"id": account.id},
                "timestamp": epoch_ms(now),
                "postback": {"mid": ids.message_id(account.id), "title": title, "payload": payload},
            }
            self._thread(account.id, person.igsid).last_user_activity_at = now
            self._touch()
            self._emit(
                field="messaging_postbacks",
                ig_account_id=account.id,
                payload=messaging_payload(ig_account_id=account.id, at=now, item=item),
            )
            return item

    def user_seen(
        self, ig_account_id: str, *, mid: str, username: str | None = None, from_id: str | None = None
    ) -> dict[str, Any]:
        """The person reads a message: queues ``messaging_seen`` (it does not open the window)."""
        with self.transaction():
            account = self._ig(ig_account_id)
            person = self._person_for(username=username, from_id=from_id)
            now = self.now()
            item = {
                "sender": {"id": person.igsid},
                "recipient": {"id": account.id},
                "timestamp": epoch_ms(now),
                "read": {"mid": mid},
            }
            self._emit(
                field="messaging_seen",
                ig_account_id=account.id,
                payload=messaging_payload(ig_account_id=account.id, at=now, item=item),
            )
            return item

    # -- the outbox -----------------------------------------------------------------------------------------

    def outbox(
        self, *, ig_account_id: str | None = None, kind: OutboxKind | None = None, limit: int | None = None
    ) -> list[OutboxEntry]:
        """Everything the emulator accepted from our app, newest first."""
        with self._lock:
            items = [
                e.model_copy(deep=True)
                for e in reversed(self.world.outbox)
                if (ig_account_id is None or e.ig_account_id == ig_account_id) and (kind is None or e.kind == kind)
            ]
            return items[:limit] if limit is not None else items

    # -- webhook subscriptions ------------------------------------------------------------------------------

    def subscribe_page(self, page_id: str, *, fields: list[str], scopes: list[str] | None = None) -> None:
        """Install the app on the Page (``POST /{page-id}/subscribed_apps``); ``scopes`` are the token's.

        Without ``scopes`` the subscription counts as made with every permission (convenient for tests).
        """
        with self.transaction():
            page = self._page(page_id)
            current = page.subscribed_fields or []
            page.subscribed_fields = sorted(set(current) | set(fields))
            page.subscription_scopes = sorted(KNOWN_SCOPES if scopes is None else set(scopes))
            self._touch()

    def subscribe_instagram(self, ig_account_id: str, *, fields: list[str]) -> None:
        """Instagram Login's ``POST /me/subscribed_apps``: the account's own webhook subscription."""
        with self.transaction():
            account = self._ig(ig_account_id)
            account.login_subscribed_fields = sorted(set(account.login_subscribed_fields or []) | set(fields))
            self._touch()

    def unsubscribe_instagram(self, ig_account_id: str) -> None:
        with self.transaction():
            self._ig(ig_account_id).login_subscribed_fields = None
            self._touch()

    def unsubscribe_page(self, page_id: str) -> None:
        with self.transaction():
            self._page(page_id).subscribed_fields = None
            self._touch()

    def set_app_subscription(
        self, *, object: str, fields: list[str], callback_url: str | None = None, replace: bool = False
    ) -> AppSubscription:
        """App-level fields (App Dashboard or ``POST /{app-id}/subscriptions``); merged unless ``replace``."""
        with self.transaction():
            existing = self.world.app_subscriptions.get(object)
            merged = set(fields) if replace or existing is None else set(existing.fields) | set(fields)
            subscription = AppSubscription(
                object=object,
                fields=sorted(merged),
                callback_url=callback_url
                if callback_url is not None
                else (existing.callback_url if existing else None),
            )
            self.world.app_subscriptions[object] = subscription
            self._touch()
            return subscription

    def remove_app_subscription(self, *, object: str, fields: list[str] | None = None) -> None:
        with self.transaction():
            existing = self.world.app_subscriptions.get(object)
            if existing is None:
                return
            if fields is None:
                del self.world.app_subscriptions[object]
            else:
                existing.fields = [f for f in existing.fields if f not in fields]
            self._touch()

    def app_subscriptions(self) -> list[AppSubscription]:
        with self._lock:
            return [s.model_copy() for s in self.world.app_subscriptions.values()]

    # -- webhooks waiting for delivery ----------------------------------------------------------------------

    def take_pending_webhooks(self) -> list[PendingWebhook]:
        """Hand over (and forget) every queued update; a ``WebhookSender`` delivers them."""
        with self._lock:
            items = list(self._volatile.pending)
            self._volatile.pending.clear()
            return items

    def peek_pending_webhooks(self) -> list[PendingWebhook]:
        with self._lock:
            return list(self._volatile.pending)

    def record_delivery(self, delivery: WebhookDelivery) -> None:
        with self._lock:
            self._volatile.deliveries.append(delivery)

    def webhook_deliveries(self, *, limit: int = 50) -> list[WebhookDelivery]:
        """Recent deliveries (and skipped updates), newest first."""
        with self._lock:
            return list(reversed(self._volatile.deliveries))[:limit]

    def callback_url(self) -> str | None:
        with self._lock:
            sub = self.world.app_subscriptions.get("instagram")
            return sub.callback_url if sub is not None else None

    # -- injected failures ----------------------------------------------------------------------------------

    def inject_failure(
        self,
        endpoint_pattern: str,
        *,
        kind: FailureKind = "transient",
        times: int | None = 1,
        code: int | None = None,
        subcode: int | None = None,
        message: str | None = None,
        regain_minutes: int = 5,
        hang_seconds: float | None = None,
    ) -> InjectedFailure:
        """Make the next ``times`` matching calls fail; see ``InjectedFailure`` for patterns and kinds.

        ``inject_failure("POST /{page-id}/messages", kind="timeout_after_send")`` sends the DM and then
        never answers; ``kind="error", code=100, subcode=2534014`` answers any Meta error you name.
        """
        failure = InjectedFailure(
            pattern=endpoint_pattern,
            kind=kind,
            remaining=times,
            code=code,
            subcode=subcode,
            message=message,
            regain_minutes=regain_minutes,
            hang_seconds=hang_seconds,
        )
        with self._lock:
            self._volatile.failures.append(failure)
        return failure

    def clear_failures(self) -> None:
        with self._lock:
            self._volatile.failures.clear()

    def take_failure(self, *, method: str, path: str, template: str) -> InjectedFailure | None:
        """The first injected failure matching this call, consuming one of its uses."""
        with self._lock:
            for failure in self._volatile.failures:
                if failure.matches(method=method, path=path, template=template):
                    if failure.remaining is not None:
                        failure.remaining -= 1
                        if failure.remaining == 0:
                            self._volatile.failures.remove(failure)
                    return failure
            return None

    # -- usage headers --------------------------------------------------------------------------------------

    def usage_headers(
        self, *, uses: list[BusinessUse], regain_minutes: int | None = None, app_throttled: bool = False
    ) -> dict[str, str]:
        """Count one call and return the usage headers its response carries."""
        with self._lock:
            now = self.now()
            self.usage.record(now=now, uses=uses)
            headers = {"x-app-usage": self.usage.app_header(now=now, throttled=app_throttled)}
            business = self.usage.business_header(now=now, uses=uses, regain_minutes=regain_minutes)
            if business is not None:
                headers["x-business-use-case-usage"] = business
            return headers

    # -- a summary for humans and tests ---------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Ids and names of everything (never tokens or the app secret)."""
        with self._lock:
            return {
                "app": {"id": self.app.id, "name": self.app.name},
                "now": self.now().isoformat(),
                "private_reply_quota": {"count": self.private_reply_quota[0], "seconds": self.private_reply_quota[1]},
                "users": [{"id": u.id, "name": u.name} for u in self.world.users.values()],
                "pages": [
                    {
                        "id": p.id,
                        "name": p.name,
                        "instagram_business_account": p.ig_account_id,
                        "subscribed_fields": p.subscribed_fields,
                    }
                    for p in self.world.pages.values()
                ],
                "instagram_accounts": [
                    {
                        "id": a.id,
                        "username": a.username,
                        "page_id": a.page_id,
                        "media": [
                            {"id": m.id, "media_product_type": m.media_product_type, "caption": m.caption}
                            for m in self.media_of(a.id)
                        ],
                    }
                    for a in self.world.ig_accounts.values()
                ],
                "app_subscriptions": [s.model_dump() for s in self.world.app_subscriptions.values()],
            }

    # -- internals ------------------------------------------------------------------------------------------

    def _new_id(self, make: Any) -> str:
        taken = (
            self.world.users.keys() | self.world.pages.keys() | self.world.ig_accounts.keys()
            | self.world.media.keys() | self.world.comments.keys() | self.world.people.keys() | {self.app.id}
        )  # fmt: skip
        while True:
            value: str = make()
            if value not in taken:
                return value

    def _user(self, user_id: str) -> User:
        user = self.world.users.get(user_id)
        if user is None:
            raise KeyError(f"no sandbox user {user_id}")
        return user

    def _page(self, page_id: str) -> Page:
        page = self.world.pages.get(page_id)
        if page is None:
            raise KeyError(f"no sandbox page {page_id}")
        return page

    def _ig(self, ig_account_id: str) -> IGAccount:
        account = self.world.ig_accounts.get(ig_account_id)
        if account is None:
            raise KeyError(f"no sandbox Instagram account {ig_account_id}")
        return account

    def _media(self, media_id: str) -> Media:
        media = self.world.media.get(media_id)
        if media is None:
            raise KeyError(f"no sandbox media {media_id}")
        return media

    def _comment(self, comment_id: str) -> Comment:
        comment = self.world.comments.get(comment_id)
        if comment is None or comment.deleted:
            raise KeyError(f"no sandbox comment {comment_id}")
        return comment

    def _person_for(self, *, username: str | None, from_id: str | None) -> Person:
        if from_id is not None:
            person = self.world.people.get(from_id)
            if person is not None:
                return person
            if username is None:
                raise KeyError(f"no sandbox person {from_id}")
        if username is None:
            raise ValueError("give a username or a from_id")
        return self.add_person(username, igsid=from_id)

    def _thread(self, ig_account_id: str, igsid: str) -> Thread:
        key = _thread_key(ig_account_id, igsid)
        thread = self.world.threads.get(key)
        if thread is None:
            thread = Thread(ig_account_id=ig_account_id, igsid=igsid)
            self.world.threads[key] = thread
            self._touch()
        return thread

    def _record(
        self,
        *,
        kind: OutboxKind,
        actor: Principal,
        account: IGAccount,
        comment_id: str | None,
        recipient_id: str | None,
        text: str | None,
        body: dict[str, Any],
        result_id: str,
    ) -> None:
        entry = OutboxEntry(
            id=f"out_{len(self.world.outbox) + 1:06d}",
            kind=kind,
            at=self.now(),
            ig_account_id=account.id,
            page_id=account.page_id,
            token_kind=actor.kind if actor.kind in ("PAGE", "INSTAGRAM") else "USER",
            token_owner_id=actor.owner_id,
            comment_id=comment_id,
            recipient_id=recipient_id,
            text=text,
            body=json.loads(json.dumps(body)),
            result_id=result_id,
        )
        self.world.outbox.append(entry)
        self._touch()

    def _emit_echo(self, *, account: IGAccount, recipient_id: str, mid: str, message: dict[str, Any]) -> None:
        echo: dict[str, Any] = {"mid": mid, "is_echo": True}
        if "text" in message:
            echo["text"] = message["text"]
        if "attachment" in message:
            echo["attachments"] = [message["attachment"]]
        now = self.now()
        item = {
            "sender": {"id": account.id},
            "recipient": {"id": recipient_id},
            "timestamp": epoch_ms(now),
            "message": echo,
        }
        self._emit(
            field="messages",
            ig_account_id=account.id,
            payload=messaging_payload(ig_account_id=account.id, at=now, item=item),
        )

    def _emit(self, *, field: str, ig_account_id: str, payload: dict[str, Any]) -> None:
        """Queue an update if Meta would deliver it: subscribed at app level and on the linked Page."""
        webhook = PendingWebhook(
            id=f"wh_{ids.digits(12)}", field=field, ig_account_id=ig_account_id, created_at=self.now(), payload=payload
        )
        account = self.world.ig_accounts[ig_account_id]
        page = self.world.pages.get(account.page_id) if account.page_id is not None else None
        subscription = self.world.app_subscriptions.get("instagram")
        reason: str | None = None
        login_fields = account.login_subscribed_fields
        if subscription is None or not subscription.active or field not in subscription.fields:
            reason = f"the app is not subscribed to the instagram '{field}' field (/{{app-id}}/subscriptions)"
        elif login_fields is not None and (field in login_fields or field == "messaging_seen"):
            reason = None  # Instagram Login: the account itself subscribed (POST /me/subscribed_apps)
        elif page is None and login_fields is None:
            reason = "the app is not subscribed to the account (POST /me/subscribed_apps on graph.instagram.com)"
        elif page is None or page.ig_account_id != ig_account_id or page.subscribed_fields is None:
            reason = "the app is not subscribed to the linked Page (POST /{page-id}/subscribed_apps)"
        elif field.endswith("comments") and "instagram_manage_comments" not in page.subscription_scopes:
            reason = "the Page was subscribed with a token lacking instagram_manage_comments"
        if reason is not None:
            self._volatile.deliveries.append(
                WebhookDelivery(webhook_id=webhook.id, field=field, at=webhook.created_at, skipped_reason=reason)
            )
            return
        self._volatile.pending.append(webhook)


def check_message(message: Any) -> None:
    """The Send API's validation of ``message``: text, quick replies and templates, with Meta's limits."""
    if not isinstance(message, dict) or not message:
        raise GraphError("(#100) The parameter message is required", code=100)
    text, attachment = message.get("text"), message.get("attachment")
    if text is None and attachment is None:
        raise invalid_parameter("param message must have text or attachment")
    if text is not None and attachment is not None:
        raise invalid_parameter("param message can have only one of text or attachment")
    if text is not None:
        _check_param_text(text, name="message[text]", limit=MAX_MESSAGE_CHARS)
    if attachment is not None:
        _check_attachment(attachment)
    quick_replies = message.get("quick_replies")
    if quick_replies is not None:
        if not isinstance(quick_replies, list) or not 1 <= len(quick_replies) <= 13:
            raise invalid_parameter("param message[quick_replies] must be an array with 1 to 13 elements")
        for index, reply in enumerate(quick_replies):
            if not isinstance(reply, dict) or reply.get("content_type", "text") != "text":
                raise invalid_parameter(f"param message[quick_replies][{index}][content_type] must be text")
            title, payload = reply.get("title"), reply.get("payload")
            if not isinstance(title, str) or not 1 <= len(title) <= 20:
                raise invalid_parameter(f"param message[quick_replies][{index}][title] must be 1 to 20 characters")
            if not isinstance(payload, str | int) or str(payload) == "":
                raise invalid_parameter(f"param message[quick_replies][{index}][payload] is required")


def _check_attachment(attachment: Any) -> None:
    if not isinstance(attachment, dict):
        raise invalid_parameter("param message[attachment] must be an object")
    kind, payload = attachment.get("type"), attachment.get("payload")
    if kind in ("image", "video", "audio", "file"):
        if not isinstance(payload, dict) or not isinstance(payload.get("url"), str):
            raise invalid_parameter("param message[attachment][payload][url] is required")
        return
    if kind != "template" or not isinstance(payload, dict):
        raise invalid_parameter("param message[attachment][type] must be one of {image, video, audio, file, template}")
    template = payload.get("template_type")
    if template == "button":
        _check_param_text(payload.get("text"), name="message[attachment][payload][text]", limit=640)
        _check_buttons(payload.get("buttons"), where="message[attachment][payload][buttons]", required=True)
    elif template == "generic":
        elements = payload.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
            raise invalid_parameter("param message[attachment][payload][elements] must have 1 to 10 elements")
        for index, element in enumerate(elements):
            where = f"message[attachment][payload][elements][{index}]"
            if not isinstance(element, dict):
                raise invalid_parameter(f"param {where} must be an object")
            _check_param_text(element.get("title"), name=f"{where}[title]", limit=80)
            if "buttons" in element:
                _check_buttons(element["buttons"], where=f"{where}[buttons]", required=False)
    else:
        raise invalid_parameter("param message[attachment][payload][template_type] must be one of {button, generic}")


def _check_buttons(buttons: Any, *, where: str, required: bool) -> None:
    if not isinstance(buttons, list) or len(buttons) > 3 or (required and not buttons):
        raise invalid_parameter(f"param {where} must have 1 to 3 elements")
    for index, button in enumerate(buttons):
        spot = f"{where}[{index}]"
        if not isinstance(button, dict):
            raise invalid_parameter(f"param {spot} must be an object")
        _check_param_text(button.get("title"), name=f"{spot}[title]", limit=20)
        kind = button.get("type")
        if kind == "web_url":
            url = button.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise invalid_parameter(f"param {spot}[url] must be a valid URL")
        elif kind == "postback":
            if not isinstance(button.get("payload"), str) or not button["payload"]:
                raise invalid_parameter(f"param {spot}[payload] is required")
        else:
            raise invalid_parameter(f"param {spot}[type] must be one of {{web_url, postback}}")


def _check_param_text(value: Any, *, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise GraphError(f"(#100) The parameter {name} is required", code=100)
    if len(value) > limit:
        raise invalid_parameter(f"Length of param {name} must be less than or equal to {limit}")
    return value


def _check_text(value: str, *, limit: int, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} must not be empty")
    if len(value) > limit:
        raise ValueError(f"{what} is longer than {limit} characters")
    return value


def _message_text(message: dict[str, Any]) -> str | None:
    text = message.get("text")
    if isinstance(text, str):
        return text
    payload = (message.get("attachment") or {}).get("payload") or {}
    inner = payload.get("text") if isinstance(payload, dict) else None
    return inner if isinstance(inner, str) else None


def _invalid_for_private_reply() -> GraphError:
    return GraphError("The comment is invalid for a private reply", code=100, subcode=2534025)


def _thread_key(ig_account_id: str, igsid: str) -> str:
    return f"{ig_account_id}:{igsid}"


def _with_public_profile(scopes: list[str]) -> list[str]:
    ordered = list(dict.fromkeys(scopes))
    return ordered if "public_profile" in ordered else [*ordered, "public_profile"]


def _check_quota(quota: tuple[int, int]) -> tuple[int, int]:
    count, seconds = int(quota[0]), int(quota[1])
    if count < 1 or seconds < 1:
        raise ValueError("the private-reply quota needs a count and a window of at least 1")
    return count, seconds


def _version_major(segment: str) -> int | None:
    if len(segment) < 4 or segment[0] != "v" or not segment.endswith(".0"):
        return None
    major = segment[1:-2]
    return int(major) if major.isdigit() and len(major) <= 3 else None


def _meta_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%A, %d-%b-%y %H:%M:%S UTC")
