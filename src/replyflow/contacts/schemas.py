"""``GET /api/contacts`` shapes."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from replyflow.contacts.models import Contact


class ContactOut(BaseModel):
    """One person who interacted with a connected account. Never a token."""

    id: str
    account_id: str
    igsid: str
    username: str | None
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime
    rule_ids: list[str]
    follows: bool | None
    tags: list[str]
    email: str | None

    @classmethod
    def of(cls, contact: Contact) -> ContactOut:
        return cls(
            id=contact.id,
            account_id=contact.account_id,
            igsid=contact.igsid,
            username=contact.username,
            first_seen_at=contact.first_seen_at,
            last_seen_at=contact.last_seen_at,
            rule_ids=list(contact.rule_ids or []),
            follows=contact.follows,
            tags=list(contact.tags or []),
            email=contact.email,
        )
