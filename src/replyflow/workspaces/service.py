"""Creating workspaces and issuing, listing, revoking and rotating their API keys."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from replyflow.db import utcnow
from replyflow.errors import Conflict, NotFound, ValidationFailed
from replyflow.workspaces.models import ApiKey, Workspace

KEY_PREFIX = "rf_"
_PREFIX_LEN = 11  # "rf_" + 8 characters: enough to tell keys apart, far too little to guess one


@dataclass(frozen=True)
class IssuedKey:
    """A freshly made key: ``secret`` is shown once and never stored."""

    key: ApiKey
    secret: str


def hash_key(secret: str) -> str:
    # The key is 256 random bits, so a fast hash is safe here (no dictionary to attack) and keeps auth cheap.
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_key(*, session: Session, workspace: Workspace, label: str | None = None) -> IssuedKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(workspace_id=workspace.id, prefix=secret[:_PREFIX_LEN], key_hash=hash_key(secret), label=label)
    session.add(key)
    session.flush()
    return IssuedKey(key=key, secret=secret)


def create_workspace(*, session: Session, name: str) -> tuple[Workspace, IssuedKey]:
    name = name.strip()
    if not name or len(name) > 120:
        raise ValidationFailed("A workspace name needs 1 to 120 characters.", field="name")
    if session.scalar(select(Workspace).where(Workspace.name == name)) is not None:
        raise Conflict(f"A workspace called {name!r} already exists.", hint="Pick another name.")
    workspace = Workspace(name=name)
    session.add(workspace)
    session.flush()
    return workspace, issue_key(session=session, workspace=workspace, label="initial")


def get_workspace(*, session: Session, ref: str) -> Workspace:
    """Find a workspace by id or by name (the CLI accepts either)."""
    workspace = session.get(Workspace, ref) or session.scalar(select(Workspace).where(Workspace.name == ref))
    if workspace is None:
        raise NotFound(f"No workspace called {ref!r}.", hint="List them with 'replyflow workspace list'.")
    return workspace


def authenticate_key(*, session: Session, secret: str) -> ApiKey | None:
    """The live key behind ``secret``, or ``None``."""
    if not secret.startswith(KEY_PREFIX):
        return None
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret), ApiKey.revoked_at.is_(None)))


def list_keys(*, session: Session, workspace: Workspace) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).where(ApiKey.workspace_id == workspace.id).order_by(ApiKey.created_at)))


def _find_key(*, session: Session, workspace: Workspace, prefix: str) -> ApiKey:
    keys = [k for k in list_keys(session=session, workspace=workspace) if k.prefix.startswith(prefix[:_PREFIX_LEN])]
    live = [k for k in keys if k.revoked_at is None]
    if not live:
        raise NotFound(f"No active key starting with {prefix[:_PREFIX_LEN]!r} in this workspace.")
    if len(live) > 1:
        raise Conflict("More than one key matches.", hint="Give more characters of the key prefix.")
    return live[0]


def revoke_key(*, session: Session, workspace: Workspace, prefix: str) -> ApiKey:
    key = _find_key(session=session, workspace=workspace, prefix=prefix)
    key.revoked_at = utcnow()
    return key


def rotate_key(*, session: Session, workspace: Workspace, prefix: str) -> IssuedKey:
    """Revoke one key and issue its replacement in the same transaction."""
    old = revoke_key(session=session, workspace=workspace, prefix=prefix)
    return issue_key(session=session, workspace=workspace, label=old.label)
