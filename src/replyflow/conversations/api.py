"""``GET /api/conversations`` (+ ``/{id}``): DM threads started by rules; ``GET /r/{code}``: tracked link redirects."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from replyflow.automation import clock
from replyflow.conversations import links, service
from replyflow.conversations.schemas import ConversationOut
from replyflow.db import SessionDep
from replyflow.monitoring import metrics
from replyflow.pagination import ListPage
from replyflow.workspaces.auth import CurrentWorkspace

router = APIRouter(tags=["conversations"])

IdFilter = Annotated[str | None, Query(max_length=128)]


@router.get("/api/conversations", response_model=ListPage[ConversationOut])
def list_conversations(
    session: SessionDep,
    workspace: CurrentWorkspace,
    account_id: IdFilter = None,
    rule_id: IdFilter = None,
    media_id: IdFilter = None,
    replied: Annotated[bool | None, Query(description="Only threads the person answered (or not).")] = None,
    window_open: Annotated[bool | None, Query(description="Only threads whose 24-hour window is open.")] = None,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ListPage[ConversationOut]:
    """Newest first: originating post and comment, rule, our public reply and DM, replies, taps, read state."""
    views, next_cursor = service.list_threads(
        session=session,
        workspace_id=workspace.id,
        account_id=account_id,
        rule_id=rule_id,
        media_id=media_id,
        replied=replied,
        window_open=window_open,
        cursor=cursor,
        limit=limit,
    )
    now = clock.now()
    return ListPage[ConversationOut](items=[ConversationOut.of(v, now=now) for v in views], next_cursor=next_cursor)


@router.get("/api/conversations/{thread_id}", response_model=ConversationOut)
def get_conversation(thread_id: str, session: SessionDep, workspace: CurrentWorkspace) -> ConversationOut:
    view = service.get_thread(session=session, workspace_id=workspace.id, thread_id=thread_id)
    return ConversationOut.of(view, now=clock.now())


_NOT_FOUND_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Link not found</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; padding: 0 1rem">
<h1>This link does not work</h1>
<p>It may be mistyped or no longer active. Ask the account that sent it for a new one.</p>
</body></html>
"""
_NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}


@router.get(links.REDIRECT_PREFIX + "{code}", include_in_schema=False)
def follow_link(code: str, request: Request, session: SessionDep) -> Response:
    """Count the click and send the visitor on with a 302; the target comes only from our records."""
    target = links.follow(session=session, code=code, user_agent=request.headers.get("user-agent"))
    if target is None:
        metrics.observe_link_click(kind="not_found")
        return HTMLResponse(_NOT_FOUND_PAGE, status_code=404, headers=_NO_STORE)
    metrics.observe_link_click(kind="preview" if links.is_preview(request.headers.get("user-agent")) else "click")
    return RedirectResponse(target, status_code=302, headers=_NO_STORE)
