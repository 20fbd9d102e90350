"""Typed results of the Graph API calls replyflow makes; tokens inside them are always ``SecretStr``.

Models ignore fields they do not know (Meta adds fields without notice) and accept missing optional ones.
Meta's timestamps (``2024-05-01T12:34:56+0000``) and epoch seconds become timezone-aware UTC datetimes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from replyflow.logging import redact_text

T = TypeVar("T")

_OFFSET_WITHOUT_COLON = re.compile(r"([+-]\d{2})(\d{2})$")


def _meta_datetime(value: Any) -> Any:
    """``+0000`` offsets gain their colon, epoch numbers become datetimes, and 0 means "never"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return None if value <= 0 else datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return _meta_datetime(int(text))
        return _OFFSET_WITHOUT_COLON.sub(r"\1:\2", text)
    return value


def _as_utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


MetaDateTime = Annotated[datetime | None, BeforeValidator(_meta_datetime), AfterValidator(_as_utc)]


def _id(value: Any) -> Any:
    # Graph ids are strings, but a few fields (app_id in some payloads) arrive as numbers.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


GraphId = Annotated[str, BeforeValidator(_id)]


class GraphModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


# -- tokens ----------------------------------------------------------------------------------------------


class GranularScope(GraphModel):
    scope: str
    target_ids: list[GraphId] = Field(default_factory=list)


class TokenInfoError(GraphModel):
    """Why ``debug_token`` says a token is not valid (e.g. code 190, subcode 463 for "expired")."""

    code: int | None = None
    subcode: int | None = None
    message: Annotated[str | None, BeforeValidator(lambda v: redact_text(v) if isinstance(v, str) else v)] = None


class TokenInfo(GraphModel):
    """The ``data`` object of ``GET /debug_token``: what a token is, whose, until when, with which scopes."""

    app_id: GraphId | None = None
    type: str | None = None  # USER, PAGE, APP, SYSTEM_USER
    application: str | None = None
    is_valid: bool = False
    issued_at: MetaDateTime = None
    expires_at: MetaDateTime = None  # None: Meta said 0, the token does not expire
    data_access_expires_at: MetaDateTime = None
    scopes: list[str] = Field(default_factory=list)
    granular_scopes: list[GranularScope] = Field(default_factory=list)
    user_id: GraphId | None = None
    profile_id: GraphId | None = None  # the Page, on PAGE tokens
    error: TokenInfoError | None = None

    @property
    def is_page_token(self) -> bool:
        return (self.type or "").upper() == "PAGE"

    @property
    def is_user_token(self) -> bool:
        return (self.type or "").upper() == "USER"

    def targets_of(self, scope: str) -> list[str]:
        """Object ids a granular scope is limited to; empty when the scope is absent or unrestricted."""
        return next((g.target_ids for g in self.granular_scopes if g.scope == scope), [])


class AccessToken(GraphModel):
    """A token from ``/oauth/access_token`` (code exchange or long-lived exchange)."""

    access_token: SecretStr
    token_type: str | None = None
    expires_in: int | None = None  # seconds; absent for tokens that do not expire


def _scope_list(value: Any) -> Any:
    # The Instagram code exchange lists permissions as one comma-separated string, or as a list.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class InstagramCodeToken(GraphModel):
    """What ``api.instagram.com/oauth/access_token`` returns for a code: a short-lived Instagram User token.

    Meta answers either the object itself or ``{"data": [object]}``; the client unwraps the second form.
    """

    access_token: SecretStr
    user_id: GraphId | None = None
    permissions: Annotated[list[str], BeforeValidator(_scope_list)] = Field(default_factory=list)


class InstagramLoginUser(GraphModel):
    """``GET /me`` on graph.instagram.com with an Instagram User token.

    ``user_id`` is the Instagram professional account id (what webhooks name in ``entry[].id``, and the id the
    Facebook Login path sees as ``instagram_business_account``); ``id`` is the app-scoped id of the same account.
    """

    id: GraphId
    user_id: GraphId | None = None
    username: str | None = None
    account_type: str | None = None  # BUSINESS or MEDIA_CREATOR; PERSONAL accounts cannot use the API
    name: str | None = None
    profile_picture_url: str | None = None
    followers_count: int | None = None
    media_count: int | None = None

    @property
    def instagram_id(self) -> str:
        return self.user_id or self.id


class InstagramSubscription(GraphModel):
    """One row of ``GET /me/subscribed_apps`` on graph.instagram.com: the fields our app hears about."""

    id: GraphId | None = None
    subscribed_fields: list[str] = Field(default_factory=list)


# -- pages and Instagram accounts ------------------------------------------------------------------------


class InstagramAccountRef(GraphModel):
    id: GraphId
    username: str | None = None


class Page(GraphModel):
    """A Facebook Page; ``access_token`` is present only in ``/me/accounts`` rows."""

    id: GraphId
    name: str | None = None
    category: str | None = None
    tasks: list[str] = Field(default_factory=list)
    access_token: SecretStr | None = None
    instagram_business_account: InstagramAccountRef | None = None


class InstagramAccount(GraphModel):
    id: GraphId
    username: str | None = None
    name: str | None = None
    profile_picture_url: str | None = None
    followers_count: int | None = None
    media_count: int | None = None


# -- media and comments ----------------------------------------------------------------------------------


class Media(GraphModel):
    id: GraphId
    caption: str | None = None
    media_type: str | None = None  # IMAGE, VIDEO, CAROUSEL_ALBUM
    media_product_type: str | None = None  # FEED, REELS, STORY, AD
    permalink: str | None = None
    timestamp: MetaDateTime = None
    thumbnail_url: str | None = None  # videos and reels only
    media_url: str | None = None
    comments_count: int | None = None


class CommentAuthor(GraphModel):
    id: GraphId
    username: str | None = None


class Comment(GraphModel):
    id: GraphId
    text: str = ""
    timestamp: MetaDateTime = None
    author: CommentAuthor | None = Field(default=None, alias="from")
    parent_id: GraphId | None = None
    hidden: bool | None = None


class Paginated(GraphModel, Generic[T]):
    """One page of a Graph list; pass ``next_cursor`` back as ``after`` for the next one (None: last page)."""

    items: list[T]
    next_cursor: str | None = None


# -- sending ---------------------------------------------------------------------------------------------


class SendResult(GraphModel):
    """Meta's answer to ``POST /{page-id}/messages``."""

    recipient_id: GraphId | None = None
    message_id: str


# -- webhook subscriptions -------------------------------------------------------------------------------


class SubscribedApp(GraphModel):
    """One app subscribed to a Page's webhooks (``GET /{page-id}/subscribed_apps``)."""

    id: GraphId
    name: str | None = None
    category: str | None = None
    link: str | None = None
    subscribed_fields: list[str] = Field(default_factory=list)


class AppSubscriptionField(GraphModel):
    name: str
    version: str | None = None


class AppSubscription(GraphModel):
    """One object type the app receives webhooks for (``GET /{app-id}/subscriptions``)."""

    object_type: str = Field(alias="object")
    callback_url: str | None = None
    active: bool = False
    fields: list[AppSubscriptionField] = Field(default_factory=list)

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]
