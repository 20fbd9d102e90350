"""Writes the audit log from the unit of work itself, so no code path that changes a member, key, account or rule
can forget to.

Who is acting rides on the database session (``session.info``): the API's and the dashboard's auth dependencies
put the signed-in person or API key there, the command line puts itself there for every session it opens, and a
change with nobody behind it (a background job) is recorded as replyflow's own. After each flush, the changed
rows of the audited models are turned into events (``rule.created``, ``member.role_changed``, ...) and inserted in
the same transaction: a change and its audit row commit or roll back together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, insert, inspect
from sqlalchemy.orm import Session, sessionmaker

from replyflow.accounts.models import Account
from replyflow.audit.models import AuditEvent
from replyflow.automation.models import Rule
from replyflow.db import utcnow
from replyflow.ids import new_id
from replyflow.workspaces.models import ApiKey, Invitation, User, Workspace

ACTOR_KEY = "replyflow.audit.actor"


@dataclass(frozen=True)
class Actor:
    """Who is behind a change: a dashboard user, an API key, the command line or replyflow itself."""

    kind: str
    label: str
    id: str | None = None

    @classmethod
    def user(cls, user: User) -> Actor:
        return cls(kind="user", label=user.email, id=user.id)

    @classmethod
    def api_key(cls, key: ApiKey) -> Actor:
        label = f"API key {key.prefix}…" + (f" ({key.label})" if key.label else "")
        return cls(kind="api_key", label=label, id=key.id)


COMMAND_LINE = Actor(kind="cli", label="command line")
SYSTEM = Actor(kind="system", label="replyflow")


def act_as(session: Session, actor: Actor) -> None:
    """Attribute this session's changes to ``actor`` from now on."""
    session.info[ACTOR_KEY] = actor


def act_as_by_default(factory: sessionmaker[Session], actor: Actor) -> None:
    """Every session ``factory`` makes acts as ``actor`` (the command line)."""
    factory.configure(info={ACTOR_KEY: actor})


def current_actor(session: Session) -> Actor | None:
    found = session.info.get(ACTOR_KEY)
    return found if isinstance(found, Actor) else None


@dataclass(frozen=True)
class Change:
    action: str
    details: dict[str, Any]


def _history(obj: Any, name: str) -> tuple[bool, Any, Any]:
    """(changed, old, new) of one attribute in this flush."""
    hist = inspect(obj).attrs[name].history
    if not hist.has_changes():
        return False, None, None
    old = hist.deleted[0] if hist.deleted else None
    new = hist.added[0] if hist.added else None
    return True, old, new


def _set(obj: Any, name: str) -> bool:
    changed, old, new = _history(obj, name)
    return changed and old is None and new is not None


def _cleared(obj: Any, name: str) -> bool:
    changed, old, new = _history(obj, name)
    return changed and old is not None and new is None


def _changed_fields(obj: Any, names: Iterable[str]) -> list[str]:
    return [name for name in names if _history(obj, name)[0]]


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime) else None


# -- what each audited model's changes mean ------------------------------------------------------------------


def _user_changes(user: User, actor: Actor | None) -> list[Change]:
    changes: list[Change] = []
    changed, old, new = _history(user, "role")
    if changed and old is not None:
        changes.append(Change("member.role_changed", {"from": old, "to": new}))
    # A password re-hashed at sign-in (argon2 parameters changed) has nobody behind it and is no news.
    if actor is not None and _history(user, "password_hash")[0]:
        changes.append(Change("member.password_changed", {}))
    return changes


def _invitation_changes(invitation: Invitation, _actor: Actor | None) -> list[Change]:
    changes = []
    if _set(invitation, "accepted_at"):
        changes.append(Change("invitation.accepted", {"role": invitation.role}))
    if _set(invitation, "revoked_at"):
        changes.append(Change("invitation.revoked", {"role": invitation.role}))
    return changes


def _key_changes(key: ApiKey, _actor: Actor | None) -> list[Change]:
    return [Change("api_key.revoked", {})] if _set(key, "revoked_at") else []


def _account_changes(account: Account, _actor: Actor | None) -> list[Change]:
    # Token health, webhook times and profile refreshes are bookkeeping; a person's change is one of these.
    if _set(account, "disconnected_at"):
        return [Change("account.disconnected", {})]
    if _cleared(account, "disconnected_at"):
        return [Change("account.reconnected", {})]
    changed, _old, new = _history(account, "token_ciphertext")
    if changed and new is not None:
        return [Change("account.token_replaced", {})]
    return []


_RULE_FIELDS = (
    "name",
    "account_id",
    "priority",
    "posts_mode",
    "media_ids",
    "keywords",
    "match",
    "exclude_keywords",
    "public_reply",
    "private_reply",
    "follow_up",
    "once_per_user",
    "include_replies",
)


def _rule_changes(rule: Rule, _actor: Actor | None) -> list[Change]:
    if _set(rule, "deleted_at"):
        return [Change("rule.deleted", {})]
    fields = _changed_fields(rule, _RULE_FIELDS)
    enabled, _old, now_on = _history(rule, "enabled")
    if fields:
        return [Change("rule.updated", {"fields": fields + (["enabled"] if enabled else [])})]
    if enabled:
        return [Change("rule.turned_on" if now_on else "rule.turned_off", {})]
    return []  # binding a "next" rule to its post, timestamps: the automation's own bookkeeping


@dataclass(frozen=True)
class _Audited:
    kind: str
    created: Callable[[Any], Change]
    updated: Callable[[Any, Actor | None], list[Change]]
    deleted: Callable[[Any], Change]
    label: Callable[[Any], str]
    workspace_id: Callable[[Any], str]


def _ws(obj: Any) -> str:
    return str(obj.workspace_id)


_AUDITED: dict[type, _Audited] = {
    Workspace: _Audited(
        "workspace",
        lambda w: Change("workspace.created", {}),
        lambda w, a: [],
        lambda w: Change("workspace.deleted", {}),
        lambda w: w.name,
        lambda w: str(w.id),
    ),
    User: _Audited(
        "member",
        lambda u: Change("member.added", {"role": u.role}),
        _user_changes,
        lambda u: Change("member.removed", {"role": u.role}),
        lambda u: u.email,
        _ws,
    ),
    Invitation: _Audited(
        "invitation",
        lambda i: Change("invitation.created", {"role": i.role, "expires_at": _iso(i.expires_at)}),
        _invitation_changes,
        lambda i: Change("invitation.deleted", {}),
        lambda i: i.email,
        _ws,
    ),
    ApiKey: _Audited(
        "api_key",
        lambda k: Change("api_key.created", {"label": k.label}),
        _key_changes,
        lambda k: Change("api_key.deleted", {}),
        lambda k: f"{k.prefix}…",
        _ws,
    ),
    Account: _Audited(
        "account",
        lambda a: Change("account.connected", {}),
        _account_changes,
        lambda a: Change("account.deleted", {}),
        lambda a: f"@{a.username}" if a.username else a.page_name or a.instagram_id,
        _ws,
    ),
    Rule: _Audited(
        "rule",
        lambda r: Change("rule.created", {"enabled": r.enabled}),
        _rule_changes,
        lambda r: Change("rule.deleted", {}),
        lambda r: r.name,
        _ws,
    ),
}


def _row(obj: Any, spec: _Audited, change: Change, actor: Actor, now: dt.datetime) -> dict[str, Any]:
    return {
        "id": new_id("aud"),
        "workspace_id": spec.workspace_id(obj),
        "created_at": now,
        "actor_kind": actor.kind,
        "actor_id": actor.id,
        "actor_label": actor.label[:254],
        "action": change.action,
        "target_kind": spec.kind,
        "target_id": obj.id,
        "target_label": (spec.label(obj) or "")[:254],
        "details": change.details,
    }


def _after_flush(session: Session, _context: Any) -> None:
    # Runs after every flush, the automation's too: a few set lookups when nothing audited changed.
    new, dirty, deleted = session.new, session.dirty, session.deleted
    if not (new or dirty or deleted):
        return
    actor = current_actor(session)
    who = actor or SYSTEM
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for obj in new:
        spec = _AUDITED.get(type(obj))
        if spec is not None:
            rows.append(_row(obj, spec, spec.created(obj), who, now))
    for obj in dirty:
        spec = _AUDITED.get(type(obj))
        if spec is not None and session.is_modified(obj, include_collections=False):
            rows.extend(_row(obj, spec, change, who, now) for change in spec.updated(obj, actor))
    for obj in deleted:
        spec = _AUDITED.get(type(obj))
        if spec is not None and spec.kind != "workspace":  # its log goes with it
            rows.append(_row(obj, spec, spec.deleted(obj), who, now))
    if rows:
        session.connection().execute(insert(AuditEvent), rows)


event.listen(Session, "after_flush", _after_flush)
