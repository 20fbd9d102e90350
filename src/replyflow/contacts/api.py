"""``GET /api/contacts`` (filters: account, rule, tag, search, follows, has_email) and its CSV export."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import select

from replyflow.automation.models import Rule
from replyflow.contacts import service
from replyflow.contacts.schemas import ContactOut
from replyflow.db import SessionDep
from replyflow.pagination import ListPage
from replyflow.workspaces.auth import CurrentWorkspace

router = APIRouter(tags=["contacts"])

IdFilter = Annotated[str | None, Query(max_length=128)]
Search = Annotated[str | None, Query(max_length=200, description="Part of a username, an email or an IGSID.")]
TagFilter = Annotated[str | None, Query(max_length=40)]


def _filter(
    account_id: str | None,
    rule_id: str | None,
    tag: str | None,
    q: str | None,
    follows: bool | None,
    has_email: bool | None,
) -> service.ContactFilter:
    return service.ContactFilter(
        account_id=account_id, rule_id=rule_id, tag=tag, q=q or None, follows=follows, has_email=has_email
    )


@router.get("/api/contacts", response_model=ListPage[ContactOut])
def list_contacts(
    session: SessionDep,
    workspace: CurrentWorkspace,
    account_id: IdFilter = None,
    rule_id: IdFilter = None,
    tag: TagFilter = None,
    q: Search = None,
    follows: bool | None = None,
    has_email: bool | None = None,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ListPage[ContactOut]:
    """Everyone who commented, wrote or tapped, newest first, with the rules that answered them."""
    rows, next_cursor = service.list_contacts(
        session=session,
        workspace_id=workspace.id,
        where=_filter(account_id, rule_id, tag, q, follows, has_email),
        cursor=cursor,
        limit=limit,
    )
    return ListPage[ContactOut](items=[ContactOut.of(c) for c in rows], next_cursor=next_cursor)


@router.get("/api/contacts.csv", response_class=Response)
def export_contacts(
    session: SessionDep,
    workspace: CurrentWorkspace,
    account_id: IdFilter = None,
    rule_id: IdFilter = None,
    tag: TagFilter = None,
    q: Search = None,
    follows: bool | None = None,
    has_email: bool | None = None,
) -> Response:
    """The same filters, every matching contact, as CSV (rules by name)."""
    return csv_response(
        session=session,
        workspace_id=workspace.id,
        where=_filter(account_id, rule_id, tag, q, follows, has_email),
    )


def csv_response(*, session: SessionDep, workspace_id: str, where: service.ContactFilter) -> Response:
    rows = service.all_contacts(session=session, workspace_id=workspace_id, where=where)
    rules = session.execute(select(Rule.id, Rule.name).where(Rule.workspace_id == workspace_id))
    names = {rule_id: name for rule_id, name in rules}
    return Response(
        service.to_csv(rows, names),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="contacts.csv"', "Cache-Control": "no-store"},
    )
