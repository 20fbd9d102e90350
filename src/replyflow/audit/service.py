"""Reading the audit log, and saying each event in plain words."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from replyflow.audit.models import AuditEvent
from replyflow.pagination import paginate
from replyflow.workspaces.roles import ROLE_LABELS, Role

# ``{target}`` is the thing's name at the time; roles are filled in from the details.
_SENTENCES: dict[str, str] = {
    "workspace.created": "created the workspace {target}",
    "member.added": "added {target} as {role}",
    "member.role_changed": "changed the role of {target} from {from} to {to}",
    "member.password_changed": "set a new password for {target}",
    "member.removed": "removed {target} ({role}) from the workspace",
    "invitation.created": "invited {target} as {role}",
    "invitation.accepted": "accepted the invitation to join as {role}",
    "invitation.revoked": "withdrew the invitation for {target}",
    "invitation.deleted": "deleted the invitation for {target}",
    "api_key.created": "created the API key {target}",
    "api_key.revoked": "revoked the API key {target}",
    "api_key.deleted": "deleted the API key {target}",
    "account.connected": "connected the Instagram account {target}",
    "account.disconnected": "disconnected the Instagram account {target}",
    "account.reconnected": "connected the Instagram account {target} again",
    "account.token_replaced": "renewed the access token of {target}",
    "account.deleted": "deleted the Instagram account {target}",
    "rule.created": "created the rule “{target}”",
    "rule.updated": "changed the rule “{target}” ({fields})",
    "rule.turned_on": "turned the rule “{target}” on",
    "rule.turned_off": "turned the rule “{target}” off",
    "rule.deleted": "deleted the rule “{target}”",
}

_FIELD_WORDS = {
    "name": "name",
    "account_id": "account",
    "priority": "priority",
    "posts_mode": "posts",
    "media_ids": "posts",
    "keywords": "keywords",
    "match": "matching",
    "exclude_keywords": "excluded words",
    "public_reply": "public reply",
    "private_reply": "DM",
    "follow_up": "follow-up",
    "once_per_user": "once per person",
    "include_replies": "replies to comments",
    "enabled": "on/off",
}


def _role_word(value: object) -> str:
    try:
        return ROLE_LABELS[Role(str(value))].lower()
    except ValueError:
        return str(value)


def describe(event: AuditEvent) -> str:
    """What happened, as the end of a sentence whose subject is the actor: "changed the role of …"."""
    details = event.details or {}
    fields = details.get("fields") or []
    words = list(dict.fromkeys(_FIELD_WORDS.get(str(f), str(f)) for f in fields))
    values = {
        "target": event.target_label or event.target_id or "",
        "role": _role_word(details.get("role", "")),
        "from": _role_word(details.get("from", "")),
        "to": _role_word(details.get("to", "")),
        "fields": ", ".join(words) or "settings",
    }
    template = _SENTENCES.get(event.action)
    if event.action == "member.added" and event.actor_label == event.target_label:
        template = "joined the workspace as {role}"  # by an invitation link
    if template is None:
        return f"{event.action.replace('.', ' ').replace('_', ' ')} {values['target']}".strip()
    return template.format(**values)


def list_events(
    *, session: Session, workspace_id: str, cursor: str | None, limit: int = 50
) -> tuple[list[AuditEvent], str | None]:
    """Newest first, one page at a time (ids are time-ordered)."""
    query = select(AuditEvent).where(AuditEvent.workspace_id == workspace_id)
    return paginate(session, query, id_column=AuditEvent.id, cursor=cursor, limit=limit)
