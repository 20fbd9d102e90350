"""Queries for accounts, always scoped to one workspace."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from replyflow.accounts.models import Account
from replyflow.errors import NotFound


def get_account(*, session: Session, workspace_id: str, account_id: str) -> Account:
    """The account, or 404 — also when it exists in another workspace, which must look the same."""
    account = session.get(Account, account_id)
    if account is None or account.workspace_id != workspace_id:
        raise NotFound("No connected account with this id.", hint="List your accounts with GET /api/accounts.")
    return account


def accounts_by_instagram_id(*, session: Session, instagram_id: str) -> list[Account]:
    return list(session.scalars(select(Account).where(Account.instagram_id == instagram_id)))
