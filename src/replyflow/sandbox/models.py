"""The emulator's world as plain pydantic records: what Meta would hold about our app, its users and their accounts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

# INSTAGRAM: an Instagram User token from Instagram Login, usable only on the graph.instagram.com stand-in.
TokenKind = Literal["USER", "PAGE", "INSTAGRAM"]
InvalidReason = Literal["password_changed", "logged_out", "app_deauthorized", "role_removed"]
MediaType = Literal["IMAGE", "VIDEO", "CAROUSEL_ALBUM", "BROADCAST"]
ProductType = Literal["FEED", "REELS", "STORY", "AD", "LIVE"]
LiveStatus = Literal["live", "ended"]
OutboxKind = Literal["public_reply", "private_reply", "message"]

ALL_TASKS = ["ADVERTISE", "ANALYZE", "CREATE_CONTENT", "MESSAGING", "MODERATE", "MANAGE"]
PAGE_WEBHOOK_FIELDS = frozenset(
    {
        "feed", "messages", "messaging_postbacks", "messaging_optins", "message_deliveries", "message_reads",
        "message_echoes", "message_reactions", "messaging_referrals", "messaging_handovers", "mention",
        "name", "picture", "ratings", "standby", "inbox_labels",
    }
)  # fmt: skip
INSTAGRAM_WEBHOOK_FIELDS = frozenset(
    {
        "comments", "live_comments", "mentions", "messages", "messaging_postbacks", "messaging_seen",
        "messaging_referral", "messaging_optins", "messaging_handover", "message_reactions",
        "story_insights", "standby",
    }
)  # fmt: skip
# Every permission the login dialog accepts; others are refused like Meta's "Invalid Scopes".
KNOWN_SCOPES = frozenset(
    {
        "public_profile", "email", "pages_show_list", "pages_read_engagement", "pages_manage_metadata",
        "pages_messaging", "pages_manage_posts", "pages_manage_engagement", "pages_read_user_content",
        "instagram_basic", "instagram_manage_comments", "instagram_manage_messages", "instagram_content_publish",
        "instagram_manage_insights", "business_management", "ads_management", "ads_read", "read_insights",
    }
)  # fmt: skip
# Instagram Login's permissions (the consent page at instagram.com/oauth/authorize).
INSTAGRAM_LOGIN_SCOPES = frozenset(
    {
        "instagram_business_basic", "instagram_business_manage_comments", "instagram_business_manage_messages",
        "instagram_business_content_publish", "instagram_business_manage_insights",
    }
)  # fmt: skip


class App(BaseModel):
    id: str
    secret: str
    name: str = "replyflow (sandbox)"
    namespace: str = "replyflow-sandbox"
    # Mirrors the App Dashboard switch "Require App Secret": calls without appsecret_proof are refused.
    require_appsecret_proof: bool = False
    # Valid OAuth redirect URIs; empty accepts any http(s) URL (a convenience of the sandbox).
    redirect_uris: list[str] = Field(default_factory=list)


class User(BaseModel):
    id: str
    name: str
    # Scopes the user grants when the sandbox issues a token without naming scopes.
    default_scopes: list[str] = Field(default_factory=list)


class Token(BaseModel):
    value: str
    kind: TokenKind
    user_id: str
    page_id: str | None = None
    scopes: list[str]
    # Pages the user picked in the login dialog; None means all of them.
    page_ids: list[str] | None = None
    issued_at: datetime
    expires_at: datetime | None = None
    data_access_expires_at: datetime
    long_lived: bool = False
    parent: str | None = None
    # The Instagram account an INSTAGRAM token belongs to.
    ig_account_id: str | None = None
    invalid_reason: InvalidReason | None = None
    invalidated_at: datetime | None = None


class Page(BaseModel):
    id: str
    name: str
    category: str = "Brand"
    # user id -> the tasks that user performs on the Page (Meta's replacement for Page roles).
    roles: dict[str, list[str]] = Field(default_factory=dict)
    ig_account_id: str | None = None
    # Fields of our app's Page subscription; None means the app is not subscribed to this Page.
    subscribed_fields: list[str] | None = None
    # Permissions of the token that subscribed: comment webhooks need instagram_manage_comments among them.
    subscription_scopes: list[str] = Field(default_factory=list)


class IGAccount(BaseModel):
    id: str
    username: str
    name: str
    # The linked Facebook Page; None for an account that only uses Instagram Login.
    page_id: str | None
    # Instagram Login's app-scoped id (``id`` of /me on graph.instagram.com; ``user_id`` there is ``id`` here).
    app_scoped_id: str = ""
    account_type: Literal["BUSINESS", "MEDIA_CREATOR"] = "BUSINESS"
    # Fields of our app's Instagram Login subscription (POST /me/subscribed_apps); None: not subscribed.
    login_subscribed_fields: list[str] | None = None
    biography: str = ""
    website: str | None = None
    followers_count: int = 0
    follows_count: int = 0
    color: str = "#8a5a44"


class Person(BaseModel):
    """Someone on Instagram who comments or messages: an Instagram-scoped id and a username."""

    igsid: str
    username: str
    # Instagram accounts (ids) this person follows: what ``GET /{igsid}?fields=is_user_follow_business`` reads.
    follows: list[str] = Field(default_factory=list)
    # Accounts for which Meta answers the follow question without the field (its answer is not known).
    follow_unknown_for: list[str] = Field(default_factory=list)


class Media(BaseModel):
    id: str
    ig_account_id: str
    caption: str
    media_type: MediaType
    media_product_type: ProductType
    shortcode: str
    timestamp: datetime
    like_count: int = 0
    is_comment_enabled: bool = True
    live_status: LiveStatus | None = None
    emoji: str = "☕"
    color: str = "#8a5a44"


class Comment(BaseModel):
    id: str
    media_id: str
    ig_account_id: str
    text: str
    from_id: str
    from_username: str
    parent_id: str | None = None
    timestamp: datetime
    hidden: bool = False
    deleted: bool = False
    like_count: int = 0
    # The message id of the one private reply this comment allows, once used.
    private_reply_message_id: str | None = None


class Thread(BaseModel):
    """A DM conversation between an IG account and a person; the window opens on the person's messages."""

    ig_account_id: str
    igsid: str
    last_user_activity_at: datetime | None = None


class OutboxEntry(BaseModel):
    id: str
    kind: OutboxKind
    at: datetime
    ig_account_id: str
    page_id: str | None
    token_kind: TokenKind
    token_owner_id: str
    comment_id: str | None = None
    recipient_id: str | None = None
    text: str | None = None
    body: dict[str, Any]
    result_id: str


class AppSubscription(BaseModel):
    object: str
    fields: list[str]
    callback_url: str | None = None
    active: bool = True


class OAuthCode(BaseModel):
    code: str
    user_id: str
    client_id: str
    redirect_uri: str
    scopes: list[str]
    page_ids: list[str] | None
    issued_at: datetime
    used: bool = False
    # Set for a code from the Instagram consent page: the account the person logged in as.
    ig_account_id: str | None = None


class DemoWorld(BaseModel):
    """Ids of what ``seed_demo_world`` built, so seeding again finds them instead of duplicating."""

    user_id: str
    user_token: str
    page_id: str
    page_without_instagram_id: str
    ig_account_id: str
    username: str
    media_ids: list[str]
    # An Instagram professional account with no Facebook Page: reachable only through Instagram Login.
    instagram_login_account_id: str | None = None
    instagram_login_username: str | None = None
    instagram_login_media_ids: list[str] = Field(default_factory=list)


class World(BaseModel):
    """Everything that survives a restart when the sandbox keeps its state in a file."""

    format: int = 1
    app: App
    default_version: str = "v25.0"
    private_reply_quota_count: int = 750
    private_reply_quota_seconds: int = 3600
    users: dict[str, User] = Field(default_factory=dict)
    tokens: dict[str, Token] = Field(default_factory=dict)
    pages: dict[str, Page] = Field(default_factory=dict)
    ig_accounts: dict[str, IGAccount] = Field(default_factory=dict)
    people: dict[str, Person] = Field(default_factory=dict)
    media: dict[str, Media] = Field(default_factory=dict)
    comments: dict[str, Comment] = Field(default_factory=dict)
    threads: dict[str, Thread] = Field(default_factory=dict)
    outbox: list[OutboxEntry] = Field(default_factory=list)
    app_subscriptions: dict[str, AppSubscription] = Field(default_factory=dict)
    oauth_codes: dict[str, OAuthCode] = Field(default_factory=dict)
    # IG account id -> times of accepted private replies inside the quota window.
    private_reply_log: dict[str, list[datetime]] = Field(default_factory=dict)
    clock: dict[str, Any] = Field(default_factory=dict)
    demo: DemoWorld | None = None
