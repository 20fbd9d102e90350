"""A workspace's team: inviting people by a one-time link, changing roles, removing members.

A workspace always keeps at least one owner: the last one can be neither removed nor demoted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from replyflow.db import utcnow
from replyflow.errors import Conflict, NotFound, ReplyflowError
from replyflow.web.sessions import end_all_sessions
from replyflow.workspaces import users
from replyflow.workspaces.models import Invitation, User, Workspace
from replyflow.workspaces.roles import Role, parse_role

INVITATION_LIFETIME = dt.timedelta(days=7)
INVITE_PATH = "/invite/"


class InvitationUnusable(ReplyflowError):
    """The link is unknown, used, withdrawn or expired: the answer says which, and who can send a new one."""

    code = "invitation_invalid"
    status = 410
    default_message = "This invitation link cannot be used."
    default_hint = "Ask an owner of the workspace to invite you again."


class LastOwner(Conflict):
    code = "last_owner"
    default_message = "A workspace needs at least one owner."
    default_hint = "Make someone else an owner first."


@dataclass(frozen=True)
class IssuedInvitation:
    """A fresh invitation: ``secret`` (inside the link) is shown once and only its hash is kept."""

    invitation: Invitation
    secret: str

    def link(self, public_url: str) -> str:
        return f"{public_url}{INVITE_PATH}{self.secret}"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def is_pending(invitation: Invitation, now: dt.datetime) -> bool:
    return invitation.accepted_at is None and invitation.revoked_at is None and now < invitation.expires_at


def invite(
    *,
    session: Session,
    workspace: Workspace,
    email: str,
    role: str,
    invited_by: str | None,
    now: dt.datetime | None = None,
) -> IssuedInvitation:
    """A link for ``email`` to join with ``role``; an earlier pending invitation for the same address is withdrawn."""
    now = now or utcnow()
    email = users.check_email(email)
    parsed = parse_role(role)
    existing = session.scalar(select(User).where(User.email == email))
    if existing is not None:
        where = "this workspace" if existing.workspace_id == workspace.id else "another workspace"
        raise Conflict(
            f"{email} already has a sign-in, in {where}.",
            code="already_a_member",
            field="email",
            hint="Change their role in the list of members instead."
            if existing.workspace_id == workspace.id
            else "One email address signs in to one workspace; ask them for another address.",
        )
    for earlier in pending_invitations(session=session, workspace=workspace, now=now):
        if earlier.email == email:
            earlier.revoked_at = now
    secret = secrets.token_urlsafe(32)
    invitation = Invitation(
        workspace_id=workspace.id,
        email=email,
        role=parsed.value,
        token_hash=_hash(secret),
        invited_by=invited_by,
        created_at=now,
        expires_at=now + INVITATION_LIFETIME,
    )
    session.add(invitation)
    session.flush()
    return IssuedInvitation(invitation=invitation, secret=secret)


def pending_invitations(*, session: Session, workspace: Workspace, now: dt.datetime | None = None) -> list[Invitation]:
    now = now or utcnow()
    query = (
        select(Invitation)
        .where(
            Invitation.workspace_id == workspace.id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > now,
        )
        .order_by(Invitation.created_at)
    )
    return list(session.scalars(query))


def usable_invitation(*, session: Session, secret: str, now: dt.datetime | None = None) -> Invitation:
    """The invitation behind a link, or :class:`InvitationUnusable` saying why not."""
    now = now or utcnow()
    invitation = session.scalar(select(Invitation).where(Invitation.token_hash == _hash(secret))) if secret else None
    if invitation is None:
        raise InvitationUnusable(
            "This invitation link is not valid.",
            status=404,
            hint="Check that the whole link was copied, or ask an owner of the workspace for a new one.",
        )
    if invitation.accepted_at is not None:
        raise InvitationUnusable(
            "This invitation was already used.",
            code="invitation_used",
            hint="Sign in with the email address it was sent to. Forgot the password? Ask an owner to invite you "
            "again after removing you, or the person who runs replyflow to set a new one.",
        )
    if invitation.revoked_at is not None:
        raise InvitationUnusable(
            "This invitation was withdrawn.",
            code="invitation_revoked",
            hint="Ask an owner of the workspace to invite you again.",
        )
    if now >= invitation.expires_at:
        raise InvitationUnusable(
            "This invitation has expired: links work for 7 days.",
            code="invitation_expired",
            hint="Ask an owner of the workspace to invite you again; the new link works for another 7 days.",
        )
    return invitation


def accept(*, session: Session, secret: str, password: str, now: dt.datetime | None = None) -> User:
    """Join: the invited address becomes a user with the invitation's role, and the link stops working."""
    now = now or utcnow()
    invitation = usable_invitation(session=session, secret=secret, now=now)
    workspace = session.get(Workspace, invitation.workspace_id)
    if workspace is None:  # deleted since; its invitations went with it, but be calm about a race
        raise InvitationUnusable("This workspace no longer exists.")
    user = users.create_user(
        session=session, workspace=workspace, email=invitation.email, password=password, role=invitation.role
    )
    invitation.accepted_at = now
    session.flush()
    return user


def revoke_invitation(
    *, session: Session, workspace: Workspace, invitation_id: str, now: dt.datetime | None = None
) -> Invitation:
    invitation = session.get(Invitation, invitation_id)
    if invitation is None or invitation.workspace_id != workspace.id or not is_pending(invitation, now or utcnow()):
        raise NotFound("There is no pending invitation with this id.", hint="It may have been used or withdrawn.")
    invitation.revoked_at = now or utcnow()
    session.flush()
    return invitation


def get_member(*, session: Session, workspace: Workspace, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None or user.workspace_id != workspace.id:
        raise NotFound("This person is not a member of the workspace.", hint="Reload the list of members.")
    return user


def count_owners(*, session: Session, workspace_id: str) -> int:
    query = select(func.count()).select_from(User).where(User.workspace_id == workspace_id, User.role == Role.OWNER)
    return session.scalar(query) or 0


def _guard_last_owner(session: Session, user: User, action: str) -> None:
    if user.role != Role.OWNER:
        return
    # Locking the owners' rows (PostgreSQL; SQLite writers already take turns) makes two owners demoting each
    # other at the same moment wait for one another, so the second sees the first's change and is refused.
    owners = session.scalars(
        select(User.id).where(User.workspace_id == user.workspace_id, User.role == Role.OWNER).with_for_update()
    ).all()
    if len(owners) <= 1:
        raise LastOwner(
            f"{user.email} is the workspace's only owner, so they cannot be {action}.",
            hint="Make another member an owner first; then this change is possible.",
        )


def change_role(*, session: Session, workspace: Workspace, user_id: str, role: str) -> User:
    user = get_member(session=session, workspace=workspace, user_id=user_id)
    parsed = parse_role(role)
    if user.role == parsed.value:
        return user
    if parsed != Role.OWNER:
        _guard_last_owner(session, user, "demoted")
    user.role = parsed.value
    session.flush()
    return user


def remove_member(*, session: Session, workspace: Workspace, user_id: str) -> User:
    """The person can no longer sign in; their open sessions end at once. What they did stays in the audit log."""
    user = get_member(session=session, workspace=workspace, user_id=user_id)
    _guard_last_owner(session, user, "removed")
    end_all_sessions(session=session, user_id=user.id)
    session.delete(user)
    session.flush()
    return user
