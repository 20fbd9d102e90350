"""Keeping contacts up to date (called inside the transactions that record what happened) and reading them.

Writers: intake (a comment, a DM or a tap: ``touch``), the DM's record (``note_answered``: the rule and its
tags), the follow gate (``set_follows``) and conversations (``capture_email`` for a rule that asks for one).
Every read is scoped to one workspace; nothing here ever holds or returns a token.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Select, or_, select, update
from sqlalchemy.orm import Session

from replyflow.automation.models import Rule
from replyflow.automation.sql import insert_ignore
from replyflow.contacts.models import Contact
from replyflow.ids import new_id
from replyflow.logging import get_logger
from replyflow.pagination import paginate

log = get_logger("replyflow.contacts")

# A pragmatic check (RFC 5321 sizes, one @, a dotted domain of letters, digits and hyphens); not a full RFC 5322
# parser, which would also accept addresses no mail form does.
_EMAIL = re.compile(
    r"(?<![\w.+-])([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})(?![\w-])"
)
MAX_EMAIL_CHARS = 254


def find_email(text: str | None) -> str | None:
    """The first valid email address in ``text`` (lower-cased domain), or None."""
    for match in _EMAIL.finditer(text or ""):
        address = match.group(1)
        local, _, domain = address.rpartition("@")
        if len(address) <= MAX_EMAIL_CHARS and len(local) <= 64 and ".." not in address:
            return f"{local}@{domain.lower()}"
    return None


def _get(session: Session, account_id: str, igsid: str) -> Contact | None:
    return session.scalar(
        select(Contact).where(Contact.account_id == account_id, Contact.igsid == igsid).with_for_update()
    )


def touch(
    *, session: Session, workspace_id: str, account_id: str, igsid: str, username: str | None, at: dt.datetime
) -> Contact:
    """The person interacted at ``at``: create their contact or move its last-seen time (and username) forward."""
    insert_ignore(
        session,
        Contact,
        {
            "id": new_id("ct"),
            "workspace_id": workspace_id,
            "account_id": account_id,
            "igsid": igsid,
            "username": username,
            "first_seen_at": at,
            "last_seen_at": at,
            "rule_ids": [],
            "tags": [],
            "created_at": at,
            "updated_at": at,
        },
    )
    contact = _get(session, account_id, igsid)
    assert contact is not None
    if at > contact.last_seen_at:
        contact.last_seen_at = at
    if at < contact.first_seen_at:
        contact.first_seen_at = at
    if username and contact.username != username:
        contact.username = username
    return contact


def _merged(current: Iterable[str], new: Iterable[str]) -> list[str]:
    return list(dict.fromkeys([*current, *new]))


def note_answered(
    *,
    session: Session,
    workspace_id: str,
    account_id: str,
    igsid: str,
    username: str | None,
    rule_id: str | None,
    at: dt.datetime,
) -> None:
    """A rule sent this person a DM: remember the rule and add its tags."""
    contact = touch(
        session=session, workspace_id=workspace_id, account_id=account_id, igsid=igsid, username=username, at=at
    )
    if rule_id is None:
        return
    rule = session.get(Rule, rule_id)
    if rule_id not in (contact.rule_ids or []):
        contact.rule_ids = _merged(contact.rule_ids or [], [rule_id])
    tags = list(rule.tags or []) if rule is not None else []
    if tags and not set(tags) <= set(contact.tags or []):
        contact.tags = _merged(contact.tags or [], tags)


def set_follows(*, session: Session, account_id: str, igsid: str, follows: bool | None, at: dt.datetime) -> None:
    """What Meta said about following (an unknown answer leaves what we knew)."""
    if follows is None:
        return
    session.execute(
        update(Contact)
        .where(Contact.account_id == account_id, Contact.igsid == igsid)
        .values(follows=follows, follows_checked_at=at, updated_at=at)
        .execution_options(synchronize_session=False)
    )


def capture_email(
    *, session: Session, account_id: str, igsid: str, rule_id: str | None, text: str | None, at: dt.datetime
) -> str | None:
    """Store the email address the person typed in reply to a rule that asked for one; returns it (or None)."""
    if rule_id is None:
        return None
    rule = session.get(Rule, rule_id)
    if rule is None or not rule.collect_email:
        return None
    email = find_email(text)
    if email is None:
        log.info("contact_email_not_found", rule_id=rule_id)
        return None
    session.execute(
        update(Contact)
        .where(Contact.account_id == account_id, Contact.igsid == igsid)
        .values(email=email, email_at=at, email_rule_id=rule_id, updated_at=at)
        .execution_options(synchronize_session=False)
    )
    log.info("contact_email_captured", rule_id=rule_id)
    return email


# -- reading ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactFilter:
    account_id: str | None = None
    rule_id: str | None = None
    tag: str | None = None
    q: str | None = None
    follows: bool | None = None
    has_email: bool | None = None


def _query(workspace_id: str, where: ContactFilter) -> Select[Contact]:
    query = select(Contact).where(Contact.workspace_id == workspace_id)
    if where.account_id:
        query = query.where(Contact.account_id == where.account_id)
    if where.follows is not None:
        query = query.where(Contact.follows.is_(where.follows))
    if where.has_email is not None:
        query = query.where(Contact.email.is_not(None) if where.has_email else Contact.email.is_(None))
    if where.q:
        needle = f"%{where.q.strip().lstrip('@').lower()}%"
        query = query.where(
            or_(Contact.username.ilike(needle), Contact.email.ilike(needle), Contact.igsid.ilike(needle))
        )
    return query


def _json_filters(contacts: Sequence[Contact], where: ContactFilter) -> list[Contact]:
    # Rule ids and tags live in JSON lists: filtered here, portably (SQLite and PostgreSQL alike).
    found = list(contacts)
    if where.rule_id:
        found = [c for c in found if where.rule_id in (c.rule_ids or [])]
    if where.tag:
        found = [c for c in found if where.tag in (c.tags or [])]
    return found


def list_contacts(
    *, session: Session, workspace_id: str, where: ContactFilter, cursor: str | None, limit: int
) -> tuple[list[Contact], str | None]:
    """One page, newest contact first."""
    if not where.rule_id and not where.tag:
        query = _query(workspace_id, where)
        rows, next_cursor = paginate(session, query, id_column=Contact.id, cursor=cursor, limit=limit)
        return list(rows), next_cursor
    # With a JSON filter, page over the filtered rows (contacts are a creator's audience: thousands, not billions).
    everything = _json_filters(all_contacts(session=session, workspace_id=workspace_id, where=where), where)
    from replyflow.pagination import decode_cursor, encode_cursor

    if cursor:
        after = decode_cursor(cursor)
        everything = [c for c in everything if c.id < after]
    page = everything[:limit]
    more = len(everything) > limit
    return page, encode_cursor(page[-1].id) if more and page else None


def all_contacts(*, session: Session, workspace_id: str, where: ContactFilter) -> list[Contact]:
    rows = session.scalars(_query(workspace_id, where).order_by(Contact.id.desc())).all()
    return _json_filters(rows, where)


CSV_COLUMNS = ("igsid", "username", "email", "follows", "tags", "rules", "first_seen_at", "last_seen_at", "account_id")


def to_csv(contacts: Sequence[Contact], rule_names: dict[str, str]) -> str:
    """The export: one line per contact; rules by name; cells that a spreadsheet would run as formulas are quoted."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for c in contacts:
        writer.writerow(
            [
                _cell(c.igsid),
                _cell(c.username or ""),
                _cell(c.email or ""),
                "" if c.follows is None else ("yes" if c.follows else "no"),
                _cell("; ".join(c.tags or [])),
                _cell("; ".join(rule_names.get(r, r) for r in c.rule_ids or [])),
                c.first_seen_at.isoformat(),
                c.last_seen_at.isoformat(),
                c.account_id,
            ]
        )
    return out.getvalue()


def _cell(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
