"""``/app/keys``: the workspace's API keys. Everyone sees which keys exist; only owners create and revoke them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from replyflow.errors import NotFound
from replyflow.web.rendering import CurrentUser, PageDb, PageRoute, SubmittedForm, page_allowed, redirect, render
from replyflow.web.sessions import SignedIn
from replyflow.workspaces import service
from replyflow.workspaces.models import ApiKey
from replyflow.workspaces.roles import Permission

router = APIRouter(route_class=PageRoute)

PATH = "/app/keys"
_MANAGE = page_allowed(Permission.MANAGE_KEYS)


def _page(request: Request, db: Session, signed_in: SignedIn, *, status: int = 200, **extra: Any) -> Response:
    keys = service.list_keys(session=db, workspace=signed_in.workspace)
    values = {
        "live_keys": [k for k in keys if k.revoked_at is None],
        "revoked_keys": [k for k in keys if k.revoked_at is not None][-10:],
        "new_key": None,
        **extra,
    }
    return render(request, "keys.html", values, signed_in=signed_in, status=status)


@router.get(PATH)
def keys_page(request: Request, db: PageDb, signed_in: CurrentUser) -> Response:
    return _page(request, db, signed_in)


@router.post(PATH, dependencies=_MANAGE)
def create_key(request: Request, db: PageDb, signed_in: CurrentUser, form: SubmittedForm) -> Response:
    raw = form.get("label")
    label = raw.strip()[:120] if isinstance(raw, str) and raw.strip() else None
    issued = service.issue_key(session=db, workspace=signed_in.workspace, label=label)
    # Shown in this answer only: the key itself is never stored, just its hash.
    return _page(request, db, signed_in, status=201, new_key={"secret": issued.secret, "label": label})


@router.post(PATH + "/{key_id}/revoke", dependencies=_MANAGE)
def revoke_key(request: Request, key_id: str, db: PageDb, signed_in: CurrentUser) -> Response:
    key = db.get(ApiKey, key_id)
    if key is None or key.workspace_id != signed_in.workspace.id or key.revoked_at is not None:
        raise NotFound("There is no active API key with this id.", hint="Reload the page; it may be revoked already.")
    service.revoke_key(session=db, workspace=signed_in.workspace, prefix=key.prefix)
    return redirect(request, PATH, flash=("success", f"The key {key.prefix}… stopped working."))
