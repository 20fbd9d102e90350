"""Who is calling: the workspace behind an API key (``Authorization: Bearer rf_…``) or a dashboard session."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from replyflow.db import SessionDep
from replyflow.errors import NotAuthenticated
from replyflow.web.sessions import api_workspace_id
from replyflow.workspaces import service
from replyflow.workspaces.models import Workspace

# The dashboard (replyflow.web) sets request.state.session_workspace_id after checking its cookie and CSRF token.
SESSION_WORKSPACE_ATTR = "session_workspace_id"


def current_workspace(request: Request, session: SessionDep) -> Workspace:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        workspace = service.authenticate(session=session, secret=secret.strip())
        if workspace is None:
            raise NotAuthenticated("This API key is not valid or was revoked.")
        return workspace
    workspace_id = getattr(request.state, SESSION_WORKSPACE_ATTR, None)
    if not workspace_id:
        # No API key: a dashboard session cookie, with its CSRF header on unsafe methods.
        workspace_id = api_workspace_id(request=request, session=session, settings=request.app.state.settings)
    if workspace_id:
        found = session.get(Workspace, workspace_id)
        if found is not None:
            return found
    raise NotAuthenticated()


CurrentWorkspace = Annotated[Workspace, Depends(current_workspace)]
