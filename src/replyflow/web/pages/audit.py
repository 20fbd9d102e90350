"""``/app/audit``: the audit log, newest first — who changed which account, rule, member or key, and when."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from replyflow.audit import service
from replyflow.web.rendering import CurrentUser, PageDb, PageRoute, render

router = APIRouter(route_class=PageRoute)

PATH = "/app/audit"


@router.get(PATH)
def audit_page(request: Request, db: PageDb, signed_in: CurrentUser, cursor: str | None = None) -> Response:
    events, next_cursor = service.list_events(session=db, workspace_id=signed_in.workspace.id, cursor=cursor)
    entries = [(event, service.describe(event)) for event in events]
    values = {"entries": entries, "next_cursor": next_cursor, "first_page": cursor is None}
    return render(request, "audit.html", values, signed_in=signed_in)
