"""Who is calling: the workspace behind an API key (``Authorization: Bearer rf_…``) or a dashboard session, and
what their role lets them do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, params

from replyflow.audit.recorder import Actor, act_as
from replyflow.db import SessionDep
from replyflow.errors import NotAuthenticated
from replyflow.web.sessions import api_signed_in
from replyflow.workspaces import service
from replyflow.workspaces.models import User, Workspace
from replyflow.workspaces.roles import Permission, Role, check_permission

# The dashboard (replyflow.web) sets these on request.state after checking its cookie and CSRF token.
SESSION_WORKSPACE_ATTR = "session_workspace_id"
SESSION_USER_ATTR = "session_user_id"


@dataclass(frozen=True)
class Caller:
    """The workspace, the role the request acts with, and who it is for the audit log."""

    workspace: Workspace
    role: str
    actor: Actor


def current_caller(request: Request, session: SessionDep) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        key = service.authenticate_key(session=session, secret=secret.strip())
        workspace = session.get(Workspace, key.workspace_id) if key is not None else None
        if key is None or workspace is None:
            raise NotAuthenticated("This API key is not valid or was revoked.")
        # Keys are made by owners (or the server's operator) and act for the whole workspace.
        caller = Caller(workspace=workspace, role=Role.OWNER.value, actor=Actor.api_key(key))
    else:
        caller = _session_caller(request, session)
    act_as(session, caller.actor)
    return caller


def _session_caller(request: Request, session: SessionDep) -> Caller:
    user_id = getattr(request.state, SESSION_USER_ATTR, None)
    user = session.get(User, user_id) if user_id else None
    if user is None:
        # No API key: a dashboard session cookie, with its CSRF header on unsafe methods.
        signed_in = api_signed_in(request=request, session=session, settings=request.app.state.settings)
        user = signed_in.user if signed_in is not None else None
    workspace = session.get(Workspace, user.workspace_id) if user is not None else None
    if user is None or workspace is None:
        raise NotAuthenticated()
    return Caller(workspace=workspace, role=user.role, actor=Actor.user(user))


def current_workspace(caller: Annotated[Caller, Depends(current_caller)]) -> Workspace:
    return caller.workspace


CurrentCaller = Annotated[Caller, Depends(current_caller)]
CurrentWorkspace = Annotated[Workspace, Depends(current_workspace)]


def requires(permission: Permission) -> Callable[[Caller], Caller]:
    """A route dependency: ``403 insufficient_role`` unless the caller's role has ``permission``."""

    def dependency(caller: CurrentCaller) -> Caller:
        check_permission(caller.role, permission)
        return caller

    dependency.__name__ = f"requires_{permission.value}"
    return dependency


def allowed(permission: Permission) -> list[params.Depends]:
    """``dependencies=allowed(...)`` on a route decorator."""
    return [Depends(requires(permission))]
