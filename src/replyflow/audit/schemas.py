"""The audit log's API shape."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel

from replyflow.audit.models import AuditEvent
from replyflow.audit.service import describe


class AuditActorOut(BaseModel):
    kind: str  # user | api_key | cli | system
    id: str | None
    label: str


class AuditTargetOut(BaseModel):
    kind: str  # workspace | member | invitation | api_key | account | rule
    id: str | None
    label: str


class AuditEventOut(BaseModel):
    id: str
    created_at: dt.datetime
    action: str
    actor: AuditActorOut
    target: AuditTargetOut
    details: dict[str, Any]
    summary: str

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventOut:
        return cls(
            id=event.id,
            created_at=event.created_at,
            action=event.action,
            actor=AuditActorOut(kind=event.actor_kind, id=event.actor_id, label=event.actor_label),
            target=AuditTargetOut(kind=event.target_kind, id=event.target_id, label=event.target_label),
            details=event.details or {},
            summary=f"{event.actor_label} {describe(event)}",
        )
