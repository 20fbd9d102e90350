"""``/app/members``: who is in the workspace and their roles, inviting people, and ``/invite/...`` to join."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from replyflow import mail
from replyflow.audit.recorder import Actor, act_as
from replyflow.errors import ReplyflowError, ValidationFailed
from replyflow.web import sessions
from replyflow.web.rendering import (
    CurrentUser,
    PageDb,
    PageRoute,
    Problem,
    SubmittedForm,
    error_page,
    page_allowed,
    redirect,
    render,
    settings_of,
)
from replyflow.web.sessions import SignedIn
from replyflow.workspaces import members, users
from replyflow.workspaces.members import INVITE_PATH, InvitationUnusable, IssuedInvitation, LastOwner
from replyflow.workspaces.models import Invitation, Workspace
from replyflow.workspaces.roles import ROLE_DESCRIPTIONS, ROLE_LABELS, Permission, Role

router = APIRouter(route_class=PageRoute)

PATH = "/app/members"
_MANAGE = page_allowed(Permission.MANAGE_MEMBERS)


def _field(form: Any, name: str, limit: int = 254) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _values(request: Request, db: Session, signed_in: SignedIn, **extra: Any) -> dict[str, Any]:
    workspace = signed_in.workspace
    return {
        "members": users.list_users(session=db, workspace=workspace),
        "invitations": members.pending_invitations(session=db, workspace=workspace),
        "roles": [(role.value, ROLE_LABELS[role], ROLE_DESCRIPTIONS[role]) for role in Role],
        "role_labels": {role.value: ROLE_LABELS[role] for role in Role},
        "owner_count": members.count_owners(session=db, workspace_id=workspace.id),
        "email_configured": mail.is_configured(settings_of(request)),
        "invite_email": "",
        "invite_role": Role.MEMBER.value,
        "invite_error": None,
        "problem": None,
        "new_invitation": None,
        **extra,
    }


def _page(request: Request, db: Session, signed_in: SignedIn, *, status: int = 200, **extra: Any) -> Response:
    values = _values(request, db, signed_in, **extra)
    return render(request, "members.html", values, signed_in=signed_in, status=status)


@router.get(PATH)
def members_page(request: Request, db: PageDb, signed_in: CurrentUser) -> Response:
    return _page(request, db, signed_in)


def _invitation_email(issued: IssuedInvitation, *, workspace: Workspace, inviter: str, link: str) -> str:
    role = ROLE_LABELS[Role(issued.invitation.role)].lower()
    return (
        f"Hello,\n\n{inviter} invited you to join the workspace “{workspace.name}” on replyflow as {role}.\n\n"
        f"Open this link to choose a password and join (it works once, for 7 days):\n{link}\n\n"
        "If you did not expect this, you can ignore this email.\n"
    )


@router.post(PATH + "/invite", dependencies=_MANAGE)
def invite(request: Request, db: PageDb, signed_in: CurrentUser, form: SubmittedForm) -> Response:
    email, role = _field(form, "email"), _field(form, "role", 16)
    try:
        issued = members.invite(
            session=db, workspace=signed_in.workspace, email=email, role=role, invited_by=signed_in.user.email
        )
    except ReplyflowError as exc:
        error = {"message": exc.message, "hint": exc.hint, "field": exc.field or "email"}
        return _page(
            request, db, signed_in, status=exc.http_status, invite_email=email, invite_role=role, invite_error=error
        )
    # Committed before the email goes out, so the link in it works as soon as it arrives.
    db.commit()
    settings = settings_of(request)
    link = issued.link(settings.public_url)
    outcome = mail.NOT_CONFIGURED
    if mail.is_configured(settings):
        outcome = mail.send(
            settings,
            to=issued.invitation.email,
            subject=f"Join {signed_in.workspace.name} on replyflow",
            body=_invitation_email(issued, workspace=signed_in.workspace, inviter=signed_in.user.email, link=link),
        )
    shown = {"email": issued.invitation.email, "role": issued.invitation.role, "link": link, "outcome": outcome}
    return _page(request, db, signed_in, status=201, new_invitation=shown)


@router.post(PATH + "/invitations/{invitation_id}/revoke", dependencies=_MANAGE)
def revoke(request: Request, invitation_id: str, db: PageDb, signed_in: CurrentUser) -> Response:
    invitation = members.revoke_invitation(session=db, workspace=signed_in.workspace, invitation_id=invitation_id)
    return redirect(request, PATH, flash=("success", f"The invitation for {invitation.email} no longer works."))


@router.post(PATH + "/{user_id}/role", dependencies=_MANAGE)
def change_role(request: Request, user_id: str, db: PageDb, signed_in: CurrentUser, form: SubmittedForm) -> Response:
    try:
        user = members.change_role(
            session=db, workspace=signed_in.workspace, user_id=user_id, role=_field(form, "role", 16)
        )
    except (LastOwner, ValidationFailed) as exc:
        return _page(request, db, signed_in, status=exc.http_status, problem=exc)
    label = ROLE_LABELS[Role(user.role)].lower()
    return redirect(request, PATH, flash=("success", f"{user.email} is now {label}."))


@router.get(PATH + "/{user_id}/remove", dependencies=_MANAGE)
def confirm_remove(request: Request, user_id: str, db: PageDb, signed_in: CurrentUser) -> Response:
    user = members.get_member(session=db, workspace=signed_in.workspace, user_id=user_id)
    values = {"member": user, "is_self": user.id == signed_in.user.id}
    return render(request, "member_remove.html", values, signed_in=signed_in)


@router.post(PATH + "/{user_id}/remove", dependencies=_MANAGE)
def remove(request: Request, user_id: str, db: PageDb, signed_in: CurrentUser) -> Response:
    try:
        user = members.remove_member(session=db, workspace=signed_in.workspace, user_id=user_id)
    except LastOwner as exc:
        return _page(request, db, signed_in, status=exc.http_status, problem=exc)
    if user.id == signed_in.user.id:
        response = redirect(request, "/login", flash=("success", "You left the workspace and were signed out."))
        sessions.clear_session_cookie(response, settings=settings_of(request))
        return response
    return redirect(
        request, PATH, flash=("success", f"{user.email} was removed and can no longer sign in to this workspace.")
    )


# -- joining with an invitation link ---------------------------------------------------------------------------


def _unusable(request: Request, exc: InvitationUnusable) -> Response:
    return error_page(request, Problem(exc.http_status, "This invitation cannot be used", exc.message, exc.hint))


def _accept_page(
    request: Request, db: Session, invitation: Invitation, secret: str, *, error: Any = None, status: int = 200
) -> Response:
    workspace = db.get(Workspace, invitation.workspace_id)
    values = {
        "invitation": invitation,
        "workspace": workspace,
        "role_label": ROLE_LABELS[Role(invitation.role)].lower(),
        "action": INVITE_PATH + secret,
        "error": error,
    }
    return render(request, "invite_accept.html", values, status=status)


@router.get(INVITE_PATH + "{secret}")
def invitation_page(request: Request, secret: str, db: PageDb) -> Response:
    try:
        invitation = members.usable_invitation(session=db, secret=secret)
    except InvitationUnusable as exc:
        return _unusable(request, exc)
    return _accept_page(request, db, invitation, secret)


@router.post(INVITE_PATH + "{secret}")
def accept_invitation(request: Request, secret: str, db: PageDb, form: SubmittedForm) -> Response:
    password = str(form.get("password") or "")
    try:
        invitation = members.usable_invitation(session=db, secret=secret)
    except InvitationUnusable as exc:
        return _unusable(request, exc)
    if password != str(form.get("password_repeat") or ""):
        error = {"message": "The two passwords are not the same.", "hint": "Type the same password twice."}
        return _accept_page(request, db, invitation, secret, error=error, status=422)
    act_as(db, Actor(kind="user", label=invitation.email))
    try:
        user = members.accept(session=db, secret=secret, password=password)
    except ReplyflowError as exc:  # a too-short password; the address taken meanwhile
        error = {"message": exc.message, "hint": exc.hint}
        return _accept_page(request, db, invitation, secret, error=error, status=exc.http_status)
    workspace = db.get(Workspace, user.workspace_id)
    started = sessions.start_session(session=db, settings=settings_of(request), user=user)
    name = workspace.name if workspace else "the workspace"
    response = redirect(
        request, "/app", flash=("success", f"Welcome to {name}! You joined as {ROLE_LABELS[Role(user.role)].lower()}.")
    )
    sessions.set_session_cookie(response, settings=settings_of(request), cookie_value=started.cookie_value)
    return response
