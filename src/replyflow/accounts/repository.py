"""Queries for accounts, always scoped to one workspace; disconnected accounts are invisible to them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from replyflow.accounts.models import Account
from replyflow.errors import NotFound


def get_account(*, session: Session, workspace_id: str, account_id: str) -> Account:
    """The account, or 404 — also when it exists in another workspace or was disconnected, which look the same."""
    account = session.get(Account, account_id)
    if account is None or account.workspace_id != workspace_id or account.disconnected_at is not None:
        raise NotFound("No connected account with this id.", hint="List your accounts with GET /api/accounts.")
    return account


def connected_accounts_query(*, workspace_id: str | None = None) -> Select[Any]:
    query = select(Account).where(Account.disconnected_at.is_(None))
    if workspace_id is not None:
        query = query.where(Account.workspace_id == workspace_id)
    return query


def list_accounts(*, session: Session, workspace_id: str | None = None) -> list[Account]:
    return list(session.scalars(connected_accounts_query(workspace_id=workspace_id).order_by(Account.id)))


def accounts_by_instagram_id(*, session: Session, instagram_id: str) -> list[Account]:
    """Connected accounts (in any workspace) for an Instagram account id, as webhooks name them."""
    return list(session.scalars(connected_accounts_query().where(Account.instagram_id == instagram_id)))
