"""The Graph API client: the only code that knows Meta's URLs, how to authenticate and what answers mean.

How requests look on the wire (the sandbox emulates exactly this):

- ``{base_url}/{version}/{path}``; access tokens only in ``Authorization: Bearer <token>``. Every call made
  with a user or Page token carries ``appsecret_proof`` (hex HMAC-SHA256 of the token, keyed by the app
  secret) as a query parameter. App-token calls (``debug_token``, ``/{app-id}/subscriptions``) send the
  token ``{app_id}|{app_secret}`` the same way, without a proof.
- Reads whose parameters are secrets (``debug_token``'s ``input_token``, the OAuth exchanges' ``client_secret``,
  ``code`` and ``fb_exchange_token``) are ``POST`` with a form body and ``method=GET``: Meta's method override
  (Facebook's PHP SDK sent every call that way), so no URL ever holds a credential.
- Writes: form bodies for ``/replies``, hiding and ``/subscribed_apps``; JSON for ``/messages``.

Two hosts (``meta-graph-api-notes.md`` §0). Facebook Login accounts are reached on graph.facebook.com with a
Page token (DMs as ``/{page-id}/messages``); Instagram Login accounts on graph.instagram.com with an Instagram
User token (DMs as ``/{ig-id}/messages``), where ``appsecret_proof`` is not part of the protocol.
``client.for_login(login, sender_id=...)`` is a view of the same client whose account calls (media, comments,
replies, messages) go to that login's host, so callers say which account they act for once and nothing else
branches. App-level calls (``debug_token``, subscriptions, Facebook OAuth) always go to graph.facebook.com; the
Instagram Login token calls (``ig_exchange_token``, ``ig_refresh_token``, ``/me``, ``/me/subscribed_apps``)
always to graph.instagram.com.

Failure handling: see ``replyflow.graph.errors``. Reads retry once when no connection could be made. Sends
(public reply, private reply, DM) are never retried here; a send that may have reached Meta without a usable
answer raises ``OutcomeUnknown`` and the caller reconciles.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from replyflow.errors import ConfigurationError, ReplyflowError
from replyflow.graph.errors import GraphError, OutcomeUnknown, TransientError, classify, sanitize
from replyflow.graph.types import (
    AccessToken,
    AppSubscription,
    Comment,
    InstagramAccount,
    InstagramCodeToken,
    InstagramLoginUser,
    InstagramSubscription,
    Media,
    Page,
    Paginated,
    SendResult,
    SubscribedApp,
    TokenInfo,
)
from replyflow.graph.usage import AuthKind, UsageReport, parse_usage
from replyflow.logging import get_logger

if TYPE_CHECKING:
    from replyflow.config import Settings

log = get_logger("replyflow.graph")

M = TypeVar("M", bound=BaseModel)
Token = str | SecretStr
UsageListener = Callable[[UsageReport], None]

DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=50, max_keepalive_connections=20, keepalive_expiry=30.0)
# Upper bound on pages followed by the calls that return whole lists (pages, replies, subscriptions).
MAX_PAGES = 50
MAX_LIST_LIMIT = 100

PAGE_FIELDS = "id,name,access_token,tasks,category,instagram_business_account{id,username}"
SINGLE_PAGE_FIELDS = "id,name,category,instagram_business_account{id,username}"
INSTAGRAM_ACCOUNT_FIELDS = "id,username,name,profile_picture_url,followers_count,media_count"
MEDIA_FIELDS = "id,caption,media_type,media_product_type,permalink,timestamp,thumbnail_url,media_url,comments_count"
COMMENT_FIELDS = "id,text,timestamp,from{id,username},parent_id,hidden"
MESSAGING_TYPES = frozenset({"RESPONSE", "UPDATE", "MESSAGE_TAG"})
INSTAGRAM_ME_FIELDS = "id,user_id,username,account_type,name,profile_picture_url,followers_count,media_count"
DEFAULT_INSTAGRAM_URL = "https://graph.instagram.com"

#: Which host an account's calls go to; the values are ``replyflow.accounts.models.Login``'s.
Host = Literal["facebook", "instagram"]

_VERSION = re.compile(r"v\d{1,2}\.\d{1,2}")
# Graph ids are digits; message and sandbox ids add letters, '_', '-', ':' and '='. Never '/', never only dots.
_GRAPH_ID = re.compile(r"(?!\.+$)[A-Za-z0-9_.:=\-]{1,256}")
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]{1,4096}")


def appsecret_proof(token: str, app_secret: str) -> str:
    """Hex HMAC-SHA256 of the access token keyed by the app secret, as Meta's "Require App Secret" wants."""
    return hmac.new(app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()


def token_fingerprint(token: Token) -> str:
    """A short, irreversible name for a token, so usage and logs can say whose it was without holding it."""
    raw = token.get_secret_value() if isinstance(token, SecretStr) else token
    return hashlib.sha256(b"replyflow-token:" + raw.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class GraphCallRecord:
    """One finished call as observers see it: what was called and how it ended, never ids or tokens."""

    endpoint: str  # the client method, e.g. ``send_private_reply`` (one per URL template)
    method: Literal["GET", "POST"]
    outcome: str  # ``ok``, or the ``code`` of the error raised (``meta_rate_limited``, ...)
    seconds: float


CallObserver = Callable[[GraphCallRecord], None]
_call_observers: list[CallObserver] = []


def add_call_observer(observer: CallObserver) -> None:
    """Have ``observer`` called after every Graph call of every client in this process (adding twice is a no-op).

    Observers run on the event loop after the call: they must be quick. An observer that raises is logged, never
    propagated to the caller.
    """
    if observer not in _call_observers:
        _call_observers.append(observer)


def remove_call_observer(observer: CallObserver) -> None:
    if observer in _call_observers:
        _call_observers.remove(observer)


def _notify_observers(record: GraphCallRecord) -> None:
    for observer in tuple(_call_observers):
        try:
            observer(record)
        except Exception:  # metrics must never turn a call's result into a different one
            log.exception("graph_call_observer_failed", endpoint=record.endpoint)


@dataclass(frozen=True)
class _Call:
    endpoint: str  # the public method's name, for usage reports, logs and errors
    method: Literal["GET", "POST"]
    path: str
    token: str | None
    auth_kind: AuthKind
    object_id: str | None
    params: Mapping[str, str] = field(default_factory=dict)
    form: Mapping[str, str] | None = None
    json: Mapping[str, Any] | None = None
    retry: bool = False  # safe to send twice: one retry when no connection could be made
    sends: bool = False  # delivers something to a person: an unclear failure is OutcomeUnknown
    # None: an account call, sent to the host the client is bound to (``for_login``); else always this host.
    host: Host | None = None
    url: str | None = None  # an absolute URL instead of ``path`` (unversioned or OAuth endpoints)
    secret_params: tuple[str, ...] = ()  # query or form values to scrub from any error text


class GraphClient:
    """Async Graph API client; one per process is enough (it pools connections). Methods are keyword-only."""

    def __init__(
        self,
        *,
        base_url: str,
        version: str,
        app_id: str | None,
        app_secret: str | SecretStr | None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        limits: httpx.Limits = DEFAULT_LIMITS,
        usage_listener: UsageListener | None = None,
        instagram_base_url: str = DEFAULT_INSTAGRAM_URL,
        instagram_app_id: str | None = None,
        instagram_app_secret: str | SecretStr | None = None,
        instagram_oauth_url: str = "https://api.instagram.com",
    ) -> None:
        if not _VERSION.fullmatch(version):
            raise ConfigurationError(f"REPLYFLOW_GRAPH_API_VERSION: {version!r} does not look like v25.0")
        if not re.match(r"^https?://[^\s/]+", base_url):
            raise ConfigurationError("REPLYFLOW_GRAPH_API_URL: must be an http(s) URL")
        if not re.match(r"^https?://[^\s/]+", instagram_base_url):
            raise ConfigurationError("REPLYFLOW_INSTAGRAM_API_URL: must be an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.instagram_base_url = instagram_base_url.rstrip("/")
        self.instagram_oauth_base = instagram_oauth_url.rstrip("/")
        self.version = version
        self.app_id = app_id or None
        secret = app_secret.get_secret_value() if isinstance(app_secret, SecretStr) else app_secret
        self._app_secret = secret or None
        ig_secret = (
            instagram_app_secret.get_secret_value()
            if isinstance(instagram_app_secret, SecretStr)
            else instagram_app_secret
        )
        self.instagram_app_id = instagram_app_id or self.app_id
        self._instagram_app_secret = ig_secret or self._app_secret
        self._host: Host = "facebook"
        self._sender_id: str | None = None
        self._timeout = (
            timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout, connect=min(5.0, timeout))
        )
        self._usage_listener = usage_listener
        self.last_usage: UsageReport | None = None
        self._http = httpx.AsyncClient(
            base_url=f"{self.base_url}/{version}/",
            transport=transport,
            timeout=self._timeout,
            limits=limits,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "replyflow-graph-client"},
        )
        self._ig_http = httpx.AsyncClient(
            base_url=f"{self.instagram_base_url}/{version}/",
            transport=transport,
            timeout=self._timeout,
            limits=limits,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "replyflow-graph-client"},
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        usage_listener: UsageListener | None = None,
    ) -> GraphClient:
        return cls(
            base_url=settings.graph_base_url,
            version=settings.graph_api_version,
            app_id=settings.app_id,
            app_secret=settings.app_secret,
            transport=transport,
            timeout=httpx.Timeout(settings.graph_timeout_seconds, connect=min(5.0, settings.graph_timeout_seconds)),
            usage_listener=usage_listener,
            instagram_base_url=settings.instagram_base_url,
            instagram_app_id=settings.instagram_client_id,
            instagram_app_secret=settings.instagram_client_secret,
            instagram_oauth_url=settings.instagram_oauth_base_url,
        )

    def for_login(self, login: str, *, sender_id: str | None = None) -> GraphClient:
        """A view of this client acting for one account: its account calls go to ``login``'s host.

        ``login`` is ``facebook`` or ``instagram`` (``Account.login``); ``sender_id`` is the node DMs are sent
        from when no ``page_id`` is given (the Instagram account, for Instagram Login). The view shares this
        client's connections and must not be closed itself; its ``last_usage`` is its own.
        """
        if login not in ("facebook", "instagram"):
            raise ValueError(f"unknown login {login!r}")
        view = copy.copy(self)
        view._host = "instagram" if login == "instagram" else "facebook"
        view._sender_id = sender_id
        view.last_usage = None
        return view

    @property
    def host(self) -> Host:
        return self._host

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._ig_http.aclose()

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    def appsecret_proof(self, token: Token) -> str:
        return appsecret_proof(_reveal(token), self._require_app_secret())

    # -- tokens and OAuth ---------------------------------------------------------------------------------

    async def debug_token(self, *, input_token: Token) -> TokenInfo:
        """What Meta knows about a token: type, owner, scopes, expiry, validity (``is_valid`` False + ``error``)."""
        body = await self._request(
            _Call(
                endpoint="debug_token",
                method="POST",
                path="debug_token",
                token=self._app_token(),
                auth_kind="app",
                object_id=None,
                form={"method": "GET", "input_token": _reveal(input_token)},
                retry=True,
            )
        )
        return self._parse(TokenInfo, body.get("data"), endpoint="debug_token")

    async def exchange_long_lived_user_token(self, *, user_token: Token) -> AccessToken:
        """A ~60-day user token for a short-lived one; Page tokens taken from it do not expire."""
        return await self._oauth_access_token(
            "exchange_long_lived_user_token",
            {"grant_type": "fb_exchange_token", "fb_exchange_token": _reveal(user_token)},
            retry=True,
        )

    def oauth_dialog_url(self, *, dialog_base_url: str, redirect_uri: str, state: str, scopes: Sequence[str]) -> str:
        """Where to send the browser for Facebook Login (``{dialog_base}/{version}/dialog/oauth?...``)."""
        if not state:
            raise ValueError("state is required: it protects the OAuth callback against forgery")
        query = urlencode(
            {
                "client_id": self._require_app_id(),
                "redirect_uri": redirect_uri,
                "state": state,
                "response_type": "code",
                "scope": ",".join(scopes),
            },
            safe=",",
        )
        return f"{dialog_base_url.rstrip('/')}/{self.version}/dialog/oauth?{query}"

    async def exchange_oauth_code(self, *, code: str, redirect_uri: str) -> AccessToken:
        """The user token for the ``code`` Facebook Login returned (codes are single-use: never retried)."""
        return await self._oauth_access_token(
            "exchange_oauth_code", {"code": code, "redirect_uri": redirect_uri}, retry=False
        )

    async def _oauth_access_token(self, endpoint: str, params: Mapping[str, str], *, retry: bool) -> AccessToken:
        form = {
            "method": "GET",
            "client_id": self._require_app_id(),
            "client_secret": self._require_app_secret(),
            **params,
        }
        body = await self._request(
            _Call(
                endpoint=endpoint,
                method="POST",
                path="oauth/access_token",
                token=None,
                auth_kind="app_credentials",
                object_id=None,
                form=form,
                retry=retry,
            )
        )
        return self._parse(AccessToken, body, endpoint=endpoint)

    # -- pages and Instagram accounts ---------------------------------------------------------------------

    async def list_pages(self, *, user_token: Token) -> list[Page]:
        """Every Page the user manages, with its Page token and linked Instagram account (all pages followed)."""
        return await self._collect(
            Page,
            endpoint="list_pages",
            path="me/accounts",
            token=user_token,
            auth_kind="user",
            object_id="me",
            params={"fields": PAGE_FIELDS, "limit": str(MAX_LIST_LIMIT)},
        )

    async def get_page(self, *, page_id: str, token: Token) -> Page:
        body = await self._get(
            "get_page", _node(page_id), token, "user_or_page", page_id, {"fields": SINGLE_PAGE_FIELDS}
        )
        return self._parse(Page, body, endpoint="get_page")

    async def get_instagram_account(self, *, ig_id: str, token: Token) -> InstagramAccount:
        body = await self._get(
            "get_instagram_account", _node(ig_id), token, "page", ig_id, {"fields": INSTAGRAM_ACCOUNT_FIELDS}
        )
        return self._parse(InstagramAccount, body, endpoint="get_instagram_account")

    async def get_follow_status(self, *, igsid: str, token: Token) -> bool | None:
        """Whether the person follows the account: ``GET /{igsid}?fields=is_user_follow_business`` (User Profile
        API, with the Page token; Meta answers only for someone who messaged the account). None when Meta leaves
        the field out, which replyflow reads as "not known"."""
        body = await self._get(
            "get_follow_status", _node(igsid), token, "page", igsid, {"fields": "is_user_follow_business"}
        )
        value = body.get("is_user_follow_business")
        return value if isinstance(value, bool) else None

    # -- media and comments -------------------------------------------------------------------------------

    async def list_media(
        self, *, ig_id: str, token: Token, after: str | None = None, limit: int = 25
    ) -> Paginated[Media]:
        """One page of the account's posts and reels, newest first."""
        params = {"fields": MEDIA_FIELDS, "limit": str(_limit(limit))}
        if after:
            params["after"] = after
        body = await self._get("list_media", f"{_node(ig_id)}/media", token, "page", ig_id, params)
        return self._page_of(Media, body, endpoint="list_media")

    async def list_comments(
        self, *, media_id: str, token: Token, after: str | None = None, limit: int = 50
    ) -> Paginated[Comment]:
        """One page of a post's top-level comments, newest first."""
        params = {"fields": COMMENT_FIELDS, "limit": str(_limit(limit))}
        if after:
            params["after"] = after
        body = await self._get("list_comments", f"{_node(media_id)}/comments", token, "page", media_id, params)
        return self._page_of(Comment, body, endpoint="list_comments")

    async def list_comment_replies(self, *, comment_id: str, token: Token) -> list[Comment]:
        """All replies under a comment (used to find our own public reply before ever posting another)."""
        return await self._collect(
            Comment,
            endpoint="list_comment_replies",
            path=f"{_node(comment_id)}/replies",
            token=token,
            auth_kind="page",
            object_id=comment_id,
            params={"fields": COMMENT_FIELDS, "limit": str(MAX_LIST_LIMIT)},
        )

    async def reply_to_comment(self, *, comment_id: str, message: str, token: Token) -> str:
        """Post a public reply under the comment; returns the new comment's id. Never retried here."""
        if not message.strip():
            raise ValueError("a public reply needs text")
        body = await self._request(
            _Call(
                endpoint="reply_to_comment",
                method="POST",
                path=f"{_node(comment_id)}/replies",
                token=_reveal(token),
                auth_kind="page",
                object_id=comment_id,
                form={"message": message},
                sends=True,
            )
        )
        new_id = body.get("id")
        if not isinstance(new_id, str | int) or isinstance(new_id, bool) or not str(new_id):
            raise OutcomeUnknown(
                "Meta accepted the reply but did not say which comment it created.",
                cause="unreadable_response",
                endpoint="reply_to_comment",
            )
        return str(new_id)

    async def hide_comment(self, *, comment_id: str, token: Token, hide: bool = True) -> bool:
        body = await self._request(
            _Call(
                endpoint="hide_comment",
                method="POST",
                path=_node(comment_id),
                token=_reveal(token),
                auth_kind="page",
                object_id=comment_id,
                form={"hide": "true" if hide else "false"},
                retry=True,  # setting the same flag twice is harmless
            )
        )
        return body.get("success") is True

    # -- messaging ----------------------------------------------------------------------------------------

    async def send_private_reply(
        self, *, page_id: str | None, comment_id: str, message: Mapping[str, Any], token: Token
    ) -> SendResult:
        """The one DM Meta allows per comment (``recipient.comment_id``): via the Page (Facebook Login), or via
        the Instagram account on graph.instagram.com (Instagram Login, a ``for_login("instagram")`` view).

        Never retried here. ``OutcomeUnknown`` means it may have been delivered: re-attempting later is safe
        only because Meta answers a second private reply with ``CommentFinal`` (100/2534025).
        """
        _check_message(message)
        return await self._send_message(
            "send_private_reply",
            page_id,
            token,
            {"recipient": {"comment_id": _node(comment_id)}, "message": dict(message)},
        )

    async def send_message(
        self,
        *,
        page_id: str | None,
        recipient_id: str,
        message: Mapping[str, Any],
        token: Token,
        messaging_type: str = "RESPONSE",
        tag: str | None = None,
    ) -> SendResult:
        """A Send API message to an Instagram-scoped user id (inside the messaging window, or with a tag)."""
        _check_message(message)
        if messaging_type not in MESSAGING_TYPES:
            raise ValueError(f"messaging_type must be one of {sorted(MESSAGING_TYPES)}")
        if (messaging_type == "MESSAGE_TAG") != (tag is not None):
            raise ValueError("a tag goes with messaging_type MESSAGE_TAG, and only with it")
        payload: dict[str, Any] = {
            "recipient": {"id": _node(recipient_id)},
            "messaging_type": messaging_type,
            "message": dict(message),
        }
        if tag is not None:
            payload["tag"] = tag
        return await self._send_message("send_message", page_id, token, payload)

    def _sender(self, page_id: str | None) -> str:
        """The node that sends: the bound Instagram account on Instagram Login, else the Page."""
        node = self._sender_id if self._host == "instagram" and self._sender_id else page_id
        if node is None:
            raise ValueError("a message needs the Page id (Facebook Login) or an Instagram Login view")
        return _node(node)

    async def _send_message(
        self, endpoint: str, page_id: str | None, token: Token, payload: dict[str, Any]
    ) -> SendResult:
        sender = self._sender(page_id)
        body = await self._request(
            _Call(
                endpoint=endpoint,
                method="POST",
                path=f"{sender}/messages",
                token=_reveal(token),
                auth_kind="page",
                object_id=sender,
                json=payload,
                sends=True,
            )
        )
        try:
            return SendResult.model_validate(body)
        except ValidationError:
            # 2xx, so Meta probably delivered it, but without a message id we cannot prove it.
            raise OutcomeUnknown(
                "Meta accepted the message but did not return its id.", cause="unreadable_response", endpoint=endpoint
            ) from None

    # -- Instagram Login (graph.instagram.com, Instagram User tokens) ----------------------------------------

    async def get_instagram_me(self, *, token: Token) -> InstagramLoginUser:
        """Who an Instagram User token belongs to (``/me`` on the Instagram host); a 190 means it is not valid."""
        body = await self._request(
            _Call(
                endpoint="get_instagram_me",
                method="GET",
                path="me",
                token=_reveal(token),
                auth_kind="instagram",
                object_id="me",
                params={"fields": INSTAGRAM_ME_FIELDS},
                retry=True,
                host="instagram",
            )
        )
        return self._parse(InstagramLoginUser, body, endpoint="get_instagram_me")

    async def exchange_instagram_token(self, *, short_lived_token: Token) -> AccessToken:
        """A 60-day Instagram User token for a short-lived one (``grant_type=ig_exchange_token``), server-side.

        Meta documents this endpoint as a GET with the app secret and the token in the query string; that is the
        only form it is known to accept, so both are scrubbed from every error and never logged.
        """
        return await self._instagram_token_call(
            "exchange_instagram_token",
            "access_token",
            {
                "grant_type": "ig_exchange_token",
                "client_secret": self._require_instagram_secret(),
                "access_token": _reveal(short_lived_token),
            },
        )

    async def refresh_instagram_token(self, *, token: Token) -> AccessToken:
        """A fresh 60-day token for a long-lived one at least 24 hours old (``grant_type=ig_refresh_token``)."""
        return await self._instagram_token_call(
            "refresh_instagram_token",
            "refresh_access_token",
            {"grant_type": "ig_refresh_token", "access_token": _reveal(token)},
        )

    async def _instagram_token_call(self, endpoint: str, path: str, params: Mapping[str, str]) -> AccessToken:
        body = await self._request(
            _Call(
                endpoint=endpoint,
                method="GET",
                path=path,
                url=f"{self.instagram_base_url}/{path}",  # unversioned, as Meta documents it
                token=None,
                auth_kind="instagram",
                object_id=None,
                params=params,
                retry=True,  # an exchange or refresh sent twice yields two valid tokens; nothing is lost
                host="instagram",
                secret_params=("client_secret", "access_token"),
            )
        )
        return self._parse(AccessToken, body, endpoint=endpoint)

    def instagram_oauth_url(self, *, dialog_base_url: str, redirect_uri: str, state: str, scopes: Sequence[str]) -> str:
        """Where to send the browser for Instagram Login (``{dialog_base}/oauth/authorize?...``)."""
        if not state:
            raise ValueError("state is required: it protects the OAuth callback against forgery")
        query = urlencode(
            {
                "client_id": self._require_instagram_app_id(),
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": ",".join(scopes),
                "state": state,
            },
            safe=",",
        )
        return f"{dialog_base_url.rstrip('/')}/oauth/authorize?{query}"

    async def exchange_instagram_code(self, *, code: str, redirect_uri: str) -> InstagramCodeToken:
        """The short-lived Instagram User token for the ``code`` Instagram Login returned (single use: no retry)."""
        body = await self._request(
            _Call(
                endpoint="exchange_instagram_code",
                method="POST",
                path="oauth/access_token",
                url=f"{self.instagram_oauth_base}/oauth/access_token",
                token=None,
                auth_kind="app_credentials",
                object_id=None,
                form={
                    "client_id": self._require_instagram_app_id(),
                    "client_secret": self._require_instagram_secret(),
                    "grant_type": "authorization_code",
                    "redirect_uri": redirect_uri,
                    "code": code,
                },
                host="instagram",
                secret_params=("client_secret", "code"),
            )
        )
        data = body.get("data")
        if isinstance(data, list) and data:
            return self._parse(InstagramCodeToken, data[0], endpoint="exchange_instagram_code")
        return self._parse(InstagramCodeToken, body, endpoint="exchange_instagram_code")

    async def subscribe_instagram(self, *, token: Token, fields: Sequence[str]) -> bool:
        """Subscribe the app to the account's webhook ``fields`` (``POST /me/subscribed_apps``, Instagram host)."""
        if not fields:
            raise ValueError("name at least one webhook field")
        body = await self._request(
            _Call(
                endpoint="subscribe_instagram",
                method="POST",
                path="me/subscribed_apps",
                token=_reveal(token),
                auth_kind="instagram",
                object_id="me",
                form={"subscribed_fields": ",".join(fields)},
                retry=True,
                host="instagram",
            )
        )
        return body.get("success") is True

    async def list_instagram_subscriptions(self, *, token: Token) -> list[InstagramSubscription]:
        body = await self._request(
            _Call(
                endpoint="list_instagram_subscriptions",
                method="GET",
                path="me/subscribed_apps",
                token=_reveal(token),
                auth_kind="instagram",
                object_id="me",
                retry=True,
                host="instagram",
            )
        )
        return self._list_of(InstagramSubscription, body.get("data"), endpoint="list_instagram_subscriptions")

    # -- webhook subscriptions ----------------------------------------------------------------------------

    async def subscribe_page(self, *, page_id: str, token: Token, fields: Sequence[str]) -> bool:
        """Subscribe the app to the Page's webhook ``fields`` (needs a Page token with pages_manage_metadata)."""
        if not fields:
            raise ValueError("name at least one webhook field")
        body = await self._request(
            _Call(
                endpoint="subscribe_page",
                method="POST",
                path=f"{_node(page_id)}/subscribed_apps",
                token=_reveal(token),
                auth_kind="page",
                object_id=page_id,
                form={"subscribed_fields": ",".join(fields)},
                retry=True,  # subscribing twice leaves the same subscription
            )
        )
        return body.get("success") is True

    async def list_page_subscriptions(self, *, page_id: str, token: Token) -> list[SubscribedApp]:
        return await self._collect(
            SubscribedApp,
            endpoint="list_page_subscriptions",
            path=f"{_node(page_id)}/subscribed_apps",
            token=token,
            auth_kind="page",
            object_id=page_id,
            params={},
        )

    async def list_app_subscriptions(self) -> list[AppSubscription]:
        """The app-level webhook subscriptions (object, callback URL, fields), read with the app token."""
        app_id = self._require_app_id()
        body = await self._request(
            _Call(
                endpoint="list_app_subscriptions",
                method="GET",
                path=f"{_node(app_id)}/subscriptions",
                token=self._app_token(),
                auth_kind="app",
                object_id=app_id,
                retry=True,
            )
        )
        return self._list_of(AppSubscription, body.get("data"), endpoint="list_app_subscriptions")

    # -- plumbing -----------------------------------------------------------------------------------------

    async def _get(
        self,
        endpoint: str,
        path: str,
        token: Token,
        auth_kind: AuthKind,
        object_id: str,
        params: Mapping[str, str],
    ) -> dict[str, Any]:
        return await self._request(
            _Call(
                endpoint=endpoint,
                method="GET",
                path=path,
                token=_reveal(token),
                auth_kind=auth_kind,
                object_id=object_id,
                params=params,
                retry=True,
            )
        )

    async def _collect(
        self,
        model: type[M],
        *,
        endpoint: str,
        path: str,
        token: Token,
        auth_kind: AuthKind,
        object_id: str,
        params: Mapping[str, str],
    ) -> list[M]:
        """Every item of a list, following ``after`` cursors (never Meta's ``next`` URL) up to MAX_PAGES."""
        items: list[M] = []
        after: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            page_params = dict(params)
            if after:
                page_params["after"] = after
            body = await self._get(endpoint, path, token, auth_kind, object_id, page_params)
            page = self._page_of(model, body, endpoint=endpoint)
            items.extend(page.items)
            if page.next_cursor is None or page.next_cursor in seen:
                return items
            seen.add(page.next_cursor)
            after = page.next_cursor
        log.warning("graph_list_truncated", endpoint=endpoint, pages=MAX_PAGES)
        return items

    def _page_of(self, model: type[M], body: dict[str, Any], *, endpoint: str) -> Paginated[M]:
        items = self._list_of(model, body.get("data"), endpoint=endpoint)
        return Paginated[model](items=items, next_cursor=_next_cursor(body.get("paging")))  # type: ignore[valid-type]

    def _list_of(self, model: type[M], data: Any, *, endpoint: str) -> list[M]:
        if not isinstance(data, list):
            raise _unexpected(endpoint, "a list without 'data'")
        return [self._parse(model, item, endpoint=endpoint) for item in data]

    def _parse(self, model: type[M], data: Any, *, endpoint: str) -> M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            # Field names only: the input may hold a token (Page rows carry access_token).
            fields = sorted({".".join(str(p) for p in err["loc"]) for err in exc.errors()})
            raise _unexpected(endpoint, f"{model.__name__} without valid {', '.join(fields) or 'data'}") from None

    async def _request(self, call: _Call) -> dict[str, Any]:
        """Send one call and return its JSON object, or raise the ``GraphError`` that says what happened."""
        if not _call_observers:
            return await self._exchange(call)
        started = time.monotonic()
        outcome = "error"
        try:
            body = await self._exchange(call)
            outcome = "ok"
            return body
        except ReplyflowError as exc:
            outcome = exc.error_code
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            _notify_observers(
                GraphCallRecord(
                    endpoint=call.endpoint, method=call.method, outcome=outcome, seconds=time.monotonic() - started
                )
            )

    def _host_of(self, call: _Call) -> Host:
        if call.host is not None:
            return call.host
        return self._host if call.auth_kind in ("page", "user_or_page") else "facebook"

    async def _exchange(self, call: _Call) -> dict[str, Any]:
        host = self._host_of(call)
        http = self._ig_http if host == "instagram" else self._http
        auth_kind: AuthKind = "instagram" if host == "instagram" and call.token is not None else call.auth_kind
        secrets = [s for s in (call.token, self._app_secret, self._instagram_app_secret) if s]
        headers: dict[str, str] = {}
        params = dict(call.params)
        if call.token is not None:
            headers["Authorization"] = f"Bearer {call.token}"
            # graph.instagram.com has no appsecret_proof (and the Instagram app's secret may differ from ours).
            if call.auth_kind != "app" and host == "facebook":
                params["appsecret_proof"] = appsecret_proof(call.token, self._require_app_secret())
        if call.form is not None:
            secrets += [v for k, v in call.form.items() if k in ("input_token", "fb_exchange_token", "code")]
        for values in (params, call.form or {}):
            secrets += [v for k, v in values.items() if k in call.secret_params and v]

        attempts = 2 if call.retry else 1
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                response = await http.request(
                    call.method,
                    call.url or call.path,
                    params=params,
                    data=call.form,
                    json=call.json,
                    headers=headers,
                    timeout=self._timeout,
                )
                break
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing reached Meta; reads get one more try.
                if attempt < attempts:
                    log.info("graph_retry", endpoint=call.endpoint, reason=type(exc).__name__)
                    continue
                raise self._transport_error(call, exc, secrets) from exc
            except httpx.HTTPError as exc:
                raise self._transport_error(call, exc, secrets) from exc

        elapsed_ms = round((time.monotonic() - started) * 1000)
        usage = parse_usage(response.headers)
        self._report(
            UsageReport(
                endpoint=call.endpoint,
                method=call.method,
                object_id=call.object_id,
                auth_kind=auth_kind,
                token_fingerprint=token_fingerprint(call.token) if call.token else None,
                http_status=response.status_code,
                usage=usage,
            )
        )
        body = _json_body(response)
        log.debug(
            "graph_call",
            endpoint=call.endpoint,
            status=response.status_code,
            elapsed_ms=elapsed_ms,
            object_id=call.object_id,
            usage_percent=usage.max_percent,
        )
        meta_error = isinstance(body, dict) and "error" in body
        if response.is_success and isinstance(body, dict) and not meta_error:
            return body
        if response.is_success and not meta_error:
            if call.sends:
                raise OutcomeUnknown(
                    "Meta answered but we could not read the answer.",
                    cause="unreadable_response",
                    meta_http_status=response.status_code,
                    endpoint=call.endpoint,
                    usage=usage,
                )
            raise TransientError(
                "Meta answered with something that is not a Graph API response.",
                meta_http_status=response.status_code,
                endpoint=call.endpoint,
                usage=usage,
            )
        error = classify(
            http_status=response.status_code,
            body=body,
            headers=response.headers,
            sends=call.sends,
            secrets=secrets,
            endpoint=call.endpoint,
        )
        log.info(
            "graph_error",
            endpoint=call.endpoint,
            code=error.error_code,
            meta_code=error.meta_code,
            subcode=error.subcode,
            status=response.status_code,
            fbtrace_id=error.fbtrace_id,
        )
        raise error

    def _transport_error(self, call: _Call, exc: httpx.HTTPError, secrets: Sequence[str]) -> GraphError:
        """Map a failure without an HTTP answer: did anything reach Meta, and is it safe to try again?"""
        detail = sanitize(f"{type(exc).__name__}: {exc}", secrets=secrets)
        log.info("graph_transport_error", endpoint=call.endpoint, error=detail)
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.InvalidURL):
            return GraphError(
                f"replyflow could not build a request to the Graph API ({detail}).",
                hint="Check REPLYFLOW_GRAPH_API_URL.",
                endpoint=call.endpoint,
            )
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout | httpx.ProxyError)
        if never_sent:
            return TransientError(f"Meta's Graph API could not be reached ({detail}).", endpoint=call.endpoint)
        if not call.sends:
            return TransientError(f"Meta's Graph API did not answer in time ({detail}).", endpoint=call.endpoint)
        # Read/write timeouts, dropped connections, undecodable bodies: the request may have been processed.
        if isinstance(exc, httpx.TimeoutException):
            cause = "timeout"
        elif isinstance(exc, httpx.DecodingError):
            cause = "unreadable_response"
        else:
            cause = "connection_lost"
        return OutcomeUnknown(
            f"The connection to Meta failed after the request was sent ({detail}).", cause=cause, endpoint=call.endpoint
        )

    def _report(self, report: UsageReport) -> None:
        self.last_usage = report
        if self._usage_listener is None:
            return
        try:
            self._usage_listener(report)
        except Exception:  # a broken listener must not turn a successful call into a failure
            log.exception("graph_usage_listener_failed", endpoint=report.endpoint)

    def _app_token(self) -> str:
        return f"{self._require_app_id()}|{self._require_app_secret()}"

    def _require_app_id(self) -> str:
        if not self.app_id:
            raise ConfigurationError("REPLYFLOW_META_APP_ID is not set; this Graph API call needs the app.")
        return self.app_id

    def _require_instagram_app_id(self) -> str:
        if not self.instagram_app_id:
            raise ConfigurationError("REPLYFLOW_META_APP_ID is not set; Instagram Login needs the app.")
        return self.instagram_app_id

    def _require_instagram_secret(self) -> str:
        if not self._instagram_app_secret:
            raise ConfigurationError("REPLYFLOW_META_APP_SECRET is not set; Instagram Login needs it.")
        return self._instagram_app_secret

    def _require_app_secret(self) -> str:
        if not self._app_secret:
            raise ConfigurationError("REPLYFLOW_META_APP_SECRET is not set; this Graph API call needs it.")
        return self._app_secret


def _reveal(token: Token) -> str:
    raw = token.get_secret_value() if isinstance(token, SecretStr) else token
    if not _TOKEN_CHARS.fullmatch(raw):
        # Also keeps header injection out; the value itself is never echoed.
        raise ValueError("an access token must be non-empty printable ASCII without spaces")
    return raw


def _node(graph_id: str) -> str:
    """A Graph object id as a path segment; anything that could change the path is refused."""
    if not _GRAPH_ID.fullmatch(graph_id):
        raise ValueError(f"{graph_id[:40]!r} is not a Graph object id")
    return graph_id


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}")
    return limit


def _check_message(message: Mapping[str, Any]) -> None:
    if not message or not ({"text", "attachment"} & set(message)):
        raise ValueError("a message needs 'text' or 'attachment' (see replyflow.graph.messages)")


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json() if response.content else None
    except ValueError:
        return None


def _next_cursor(paging: Any) -> str | None:
    """Meta's rule: a list continues only while ``paging.next`` is present; the cursor is ``cursors.after``."""
    if not isinstance(paging, dict) or not paging.get("next"):
        return None
    cursors = paging.get("cursors")
    after = cursors.get("after") if isinstance(cursors, dict) else None
    if isinstance(after, str) and after:
        return after
    next_url = paging.get("next")
    if isinstance(next_url, str):
        found = parse_qs(urlsplit(next_url).query).get("after")
        if found and found[0]:
            return found[0]
    return None


def _unexpected(endpoint: str, what: str) -> GraphError:
    return GraphError(
        f"Meta's answer did not have the expected shape ({what}).",
        hint="This may be a change on Meta's side. Check for a replyflow update if it keeps happening.",
        endpoint=endpoint,
    )


__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "CallObserver",
    "GraphCallRecord",
    "GraphClient",
    "Host",
    "Token",
    "UsageListener",
    "add_call_observer",
    "appsecret_proof",
    "remove_call_observer",
    "token_fingerprint",
]
