"""``GET /api/audit-log``: who changed what, and when (every role may read it)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from replyflow.audit import service
from replyflow.audit.schemas import AuditEventOut
from replyflow.db import SessionDep
from replyflow.pagination import ListPage
from replyflow.workspaces.auth import CurrentWorkspace

router = APIRouter(tags=["audit"])


@router.get("/api/audit-log", response_model=ListPage[AuditEventOut])
def list_audit_events(
    session: SessionDep,
    workspace: CurrentWorkspace,
    cursor: str | None = None,
    limit: int = Query(default=50, ge=1, le=200),
) -> ListPage[AuditEventOut]:
    """Changes to accounts, rules, members, invitations and API keys, newest first."""
    rows, next_cursor = service.list_events(session=session, workspace_id=workspace.id, cursor=cursor, limit=limit)
    return ListPage[AuditEventOut](items=[AuditEventOut.of(e) for e in rows], next_cursor=next_cursor)
