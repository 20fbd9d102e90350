"""Request and response shapes of the accounts API."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict


class AccountOut(BaseModel):
    """An account as the API shows it; the token itself is never part of it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    page_id: str
    page_name: str
    instagram_id: str
    username: str
    name: str | None = None
    profile_picture_url: str | None = None
    token_status: str
    token_status_reason: str | None = None
    token_checked_at: dt.datetime | None = None
    scopes: list[str]
    missing_permissions: list[str]
    expires_at: dt.datetime | None = None
    reauthorization_required: bool
    webhooks_subscribed: bool
    last_webhook_at: dt.datetime | None = None
    health: dict[str, Any] = {}
    created_at: dt.datetime

    @classmethod
    def of(cls, account: Any) -> AccountOut:
        out = cls.model_validate(account)
        out.expires_at = account.token_expires_at
        return out
