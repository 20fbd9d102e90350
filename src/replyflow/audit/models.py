"""One row per change a person (or the command line, or replyflow itself) made to the workspace."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from replyflow.db import Base, UTCDateTime, utcnow
from replyflow.ids import new_id


class AuditEvent(Base):
    """Labels are copied, not joined: the log still reads right after a member left or a rule was deleted."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_workspace_id_id", "workspace_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("aud"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor_kind: Mapped[str] = mapped_column(String(16))  # user | api_key | cli | system
    actor_id: Mapped[str | None] = mapped_column(String(40))
    actor_label: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(40))  # e.g. rule.created, member.role_changed
    target_kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str | None] = mapped_column(String(40))
    target_label: Mapped[str] = mapped_column(String(254), default="")
    # Names and safe values only (a role, a rule's changed fields); never a token, a password or a key.
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
