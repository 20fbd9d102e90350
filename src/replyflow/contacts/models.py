"""The contacts table: who interacted, when, which rules answered them, follow status, tags and an email they gave.

Never a token: only what the person showed us (their Instagram-scoped id and username) and what rules learned.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from replyflow.db import Base, UTCDateTime, utcnow
from replyflow.ids import new_id


class Contact(Base):
    """A person, per connected account (IGSIDs are scoped to the account)."""

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("account_id", "igsid"),
        Index("ix_contacts_workspace_id_last_seen_at", "workspace_id", "last_seen_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ct"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    igsid: Mapped[str] = mapped_column(String(128))
    username: Mapped[str | None] = mapped_column(String(255))
    first_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Rules that sent this person a DM (ids, oldest first).
    rule_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Whether they follow the account, when Meta told us (the follow gate asks); None: not known.
    follows: Mapped[bool | None] = mapped_column(Boolean)
    follows_checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Tags the rules that answered them add.
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # An email address they typed in reply to a rule that asked for one (validated).
    email: Mapped[str | None] = mapped_column(String(254))
    email_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    email_rule_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
