"""Connected Instagram accounts and the short-lived records of connecting one: token conversions, OAuth states and
the encryption key canary.

An account is reached one of two ways (``login``): through its Facebook Page and a Page token on graph.facebook.com
(Facebook Login), or with an Instagram User token on graph.instagram.com and no Page at all (Instagram Login).
Either way it is one row per workspace and Instagram account, so its rules and history survive a change of login.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from replyflow.db import Base, UTCDateTime, utcnow
from replyflow.ids import new_id


class Login(enum.StrEnum):
    """How an account was connected; decides the Graph host and the token its calls use."""

    FACEBOOK = "facebook"  # graph.facebook.com, a Page token, messages sent as /{page-id}/messages
    INSTAGRAM = "instagram"  # graph.instagram.com, an Instagram User token, messages sent as /{ig-id}/messages


class TokenStatus(enum.StrEnum):
    VALID = "valid"
    EXPIRING = "expiring"
    INVALID = "invalid"
    MISSING_PERMISSIONS = "missing_permissions"


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("workspace_id", "page_id"),
        Index("ix_accounts_instagram_id", "instagram_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("acc"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    login: Mapped[str] = mapped_column(String(16), default=Login.FACEBOOK.value, server_default=Login.FACEBOOK.value)
    # The Facebook Page (Facebook Login only; null for Instagram Login accounts).
    page_id: Mapped[str | None] = mapped_column(String(64))
    page_name: Mapped[str] = mapped_column(String(255), default="")
    instagram_id: Mapped[str] = mapped_column(String(64))
    # Instagram Login's app-scoped id of the account (``id`` of /me on graph.instagram.com; ``user_id`` there is
    # ``instagram_id``). Comments the account writes through Instagram Login can name it in ``from.id``.
    instagram_user_id: Mapped[str | None] = mapped_column(String(64))
    username: Mapped[str] = mapped_column(String(255), default="")
    name: Mapped[str | None] = mapped_column(String(255))
    profile_picture_url: Mapped[str | None] = mapped_column(Text)

    # The Page token (Facebook Login) or the Instagram User token (Instagram Login), Fernet-encrypted
    # (replyflow.accounts.crypto); never stored or returned in plain text.
    token_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    token_type: Mapped[str] = mapped_column(String(16), default="PAGE")
    # When Meta issued the stored token (exchange or refresh): an Instagram token may be refreshed once it is
    # 24 hours old.
    token_issued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    missing_permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    token_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    token_status: Mapped[str] = mapped_column(String(32), default=TokenStatus.VALID.value)
    token_status_reason: Mapped[str | None] = mapped_column(Text)
    token_checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    reauthorization_required: Mapped[bool] = mapped_column(Boolean, default=False)

    webhooks_subscribed: Mapped[bool] = mapped_column(Boolean, default=False)
    subscribed_fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    last_webhook_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    health: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    # Set by "disconnect": the row (and the rules and history hanging off it) stays, so connecting the same
    # Page again brings everything back; a disconnected account is hidden and never automated.
    disconnected_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    @property
    def is_instagram_login(self) -> bool:
        return self.login == Login.INSTAGRAM.value

    @property
    def sender_id(self) -> str:
        """The node DMs are sent from: the Page (Facebook Login) or the Instagram account (Instagram Login)."""
        if self.is_instagram_login or self.page_id is None:
            return self.instagram_id
        return self.page_id

    @property
    def own_ids(self) -> frozenset[str]:
        """Every id ``from.id`` can carry on a comment the account wrote itself."""
        return frozenset(i for i in (self.instagram_id, self.instagram_user_id) if i)

    @property
    def automation_paused(self) -> bool:
        return (
            self.reauthorization_required
            or self.token_status == TokenStatus.INVALID
            or self.disconnected_at is not None
            or self.token_ciphertext is None
        )


class TokenConversion(Base):
    """The Pages found for a User token, kept for a few minutes while someone picks which to connect.

    The Page tokens travel only as one encrypted JSON map (``page_id -> token``); the rest is what the API may
    show. Bound to one workspace; expired rows are useless and purged by the token-health job.
    """

    __tablename__ = "token_conversions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("conv"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(16), default="token")  # token | oauth | cli
    token_type: Mapped[str] = mapped_column(String(16))
    meta_user_id: Mapped[str | None] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    missing_permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    token_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    long_lived: Mapped[bool] = mapped_column(Boolean, default=False)
    pages: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    page_tokens_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


class OAuthState(Base):
    """One "Connect with Facebook" attempt: the ``state`` is random, single-use, expiring, and stored hashed.

    ``browser_hash`` binds it to a cookie in the browser that started it, so a callback URL planted in
    someone else's browser (login CSRF) is refused.
    """

    __tablename__ = "oauth_states"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("oas"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    browser_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class KeyCheck(Base):
    """A known value encrypted with the token key, so start-up can tell a wrong REPLYFLOW_SECRET_KEY at once."""

    __tablename__ = "key_checks"

    purpose: Mapped[str] = mapped_column(String(32), primary_key=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    rotated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
