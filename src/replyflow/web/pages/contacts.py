"""``/app/contacts``: everyone who commented, wrote or tapped, with search, filters by rule and tag, and a CSV export.

Reads the contacts service (the same as ``GET /api/contacts``), always for the signed-in workspace only.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from replyflow.accounts import repository as accounts_repository
from replyflow.automation import service as rules_service
from replyflow.contacts import service as contacts
from replyflow.contacts.api import csv_response
from replyflow.web.rendering import CurrentUser, PageDb, PageRoute, render

router = APIRouter(route_class=PageRoute)

PATH = "/app/contacts"
PAGE_SIZE = 50


def _where(account_id: str | None, rule_id: str | None, tag: str | None, q: str | None) -> contacts.ContactFilter:
    return contacts.ContactFilter(
        account_id=(account_id or "")[:64] or None,
        rule_id=(rule_id or "")[:64] or None,
        tag=(tag or "")[:40] or None,
        q=(q or "").strip()[:200] or None,
    )


@router.get(PATH)
def contacts_page(
    request: Request,
    db: PageDb,
    signed_in: CurrentUser,
    account_id: str | None = None,
    rule_id: str | None = None,
    tag: str | None = None,
    q: str | None = None,
    cursor: str | None = None,
) -> Response:
    workspace_id = signed_in.workspace.id
    where = _where(account_id, rule_id, tag, q)
    rows, next_cursor = contacts.list_contacts(
        session=db, workspace_id=workspace_id, where=where, cursor=cursor[:300] if cursor else None, limit=PAGE_SIZE
    )
    rules, _ = rules_service.list_rules(session=db, workspace_id=workspace_id, account_id=None, cursor=None, limit=200)
    everyone = contacts.all_contacts(session=db, workspace_id=workspace_id, where=contacts.ContactFilter())
    tags = sorted({t for c in everyone for t in c.tags or []})
    values = {
        "contacts": rows,
        "next_cursor": next_cursor,
        "accounts": accounts_repository.list_accounts(session=db, workspace_id=workspace_id),
        "rules": rules,
        "rule_names": {r.id: r.name for r in rules},
        "tags": tags,
        "total": len(everyone),
        "filters": {
            "account_id": where.account_id or "",
            "rule_id": where.rule_id or "",
            "tag": where.tag or "",
            "q": where.q or "",
        },
    }
    return render(request, "contacts.html", values, signed_in=signed_in)


@router.get(PATH + ".csv")
def contacts_csv(
    db: PageDb,
    signed_in: CurrentUser,
    account_id: str | None = None,
    rule_id: str | None = None,
    tag: str | None = None,
    q: str | None = None,
) -> Response:
    return csv_response(session=db, workspace_id=signed_in.workspace.id, where=_where(account_id, rule_id, tag, q))
