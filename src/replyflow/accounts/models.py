"""A connected Instagram professional account, reached through its Facebook Page and the Page's token."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from replyflow.db import Base, UTCDateTime, utcnow
from replyflow.ids import new_id


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
    page_id: Mapped[str] = mapped_column(String(64))
    page_name: Mapped[str] = mapped_column(String(255), default="")
    instagram_id: Mapped[str] = mapped_column(String(64))
    username: Mapped[str] = mapped_column(String(255), default="")
    name: Mapped[str | None] = mapped_column(String(255))
    profile_picture_url: Mapped[str | None] = mapped_column(Text)

    # The Page token, Fernet-encrypted (replyflow.accounts.crypto); never stored or returned in plain text.
    token_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    token_type: Mapped[str] = mapped_column(String(16), default="PAGE")
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

    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    @property
    def automation_paused(self) -> bool:
        return self.reauthorization_required or self.token_status == TokenStatus.INVALID
