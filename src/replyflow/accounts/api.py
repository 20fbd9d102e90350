"""HTTP routes for connected accounts (thin: the rules live in the services)."""

from __future__ import annotations

from fastapi import APIRouter, Query
from sqlalchemy import select

from replyflow.accounts import repository
from replyflow.accounts.models import Account
from replyflow.accounts.schemas import AccountOut
from replyflow.db import SessionDep
from replyflow.pagination import ListPage, paginate
from replyflow.workspaces.auth import CurrentWorkspace

router = APIRouter(prefix="/api", tags=["accounts"])


@router.get("/accounts", response_model=ListPage[AccountOut])
def list_accounts(
    session: SessionDep,
    workspace: CurrentWorkspace,
    cursor: str | None = None,
    limit: int = Query(default=50, ge=1, le=200),
) -> ListPage[AccountOut]:
    query = select(Account).where(Account.workspace_id == workspace.id)
    rows, next_cursor = paginate(session, query, id_column=Account.id, cursor=cursor, limit=limit, descending=False)
    return ListPage[AccountOut](items=[AccountOut.of(a) for a in rows], next_cursor=next_cursor)


@router.get("/accounts/{account_id}", response_model=AccountOut)
def get_account(account_id: str, session: SessionDep, workspace: CurrentWorkspace) -> AccountOut:
    return AccountOut.of(repository.get_account(session=session, workspace_id=workspace.id, account_id=account_id))
