"""``/app/integrations``: Instagram Token Management, the step-by-step TokenConverter and the setup doctor.

Two paths: Connect with Instagram (Instagram Login, no Facebook Page: one sign-in, or a pasted Instagram token),
and Facebook Login in steps: what you need → connect (Facebook Login, or a pasted User token) → pick a Page →
done. Every call goes to the accounts services; tokens travel only in POST bodies and are never written back
into a page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from replyflow.accounts import instagram_oauth, oauth, repository, service
from replyflow.accounts.crypto import cipher_for
from replyflow.accounts.doctor import run_doctor
from replyflow.accounts.instagram_login import save_instagram_token
from replyflow.accounts.models import Account, TokenConversion
from replyflow.accounts.permissions import (
    GRAPH_API_EXPLORER_URL,
    LINK_INSTAGRAM_URL,
    MESSAGING_TASK_WHY,
    PAGE_TASKS_URL,
    PERMISSIONS,
    permission,
)
from replyflow.automation.intake import resume_paused_runs
from replyflow.errors import NotFound, ReplyflowError
from replyflow.web.rendering import (
    CurrentUser,
    PageDb,
    PageRoute,
    SubmittedForm,
    graph_for,
    is_htmx,
    page_allowed,
    redirect,
    render,
    settings_of,
)
from replyflow.web.sessions import SignedIn
from replyflow.workspaces.roles import Permission

router = APIRouter(route_class=PageRoute)

PATH = "/app/integrations"
MAX_TOKEN_FIELD = 4096
APP_REVIEW_HELP_URL = "https://developers.facebook.com/docs/development/build-and-test/app-modes"


@dataclass(frozen=True)
class FieldError:
    message: str
    hint: str


def _dashboard_error(exc: ReplyflowError) -> FieldError:
    """The service's message, with hints that point at this page rather than at API routes."""
    hint = exc.hint
    if exc.error_code in ("conversion_not_found", "conversion_expired"):
        hint = "Start again: connect with Facebook, or paste your User token once more."
    elif exc.error_code == "wrong_token_type" and "Page token" in exc.message and "needs a User token" in exc.message:
        hint = "Paste it under 'I have a Page token instead' below, or paste a User token here."
    elif exc.error_code == "wrong_token_type" and "needs a Page token" in exc.message:
        hint = "Paste it in the User token box above: replyflow will list your Pages."
    return FieldError(exc.message, hint)


def _conversion_view(conversion: TokenConversion) -> dict[str, Any]:
    missing = []
    for name in conversion.missing_permissions:
        known = permission(name)
        missing.append({"name": name, "why": known.why if known else ""})
    pages = []
    for row in conversion.pages:
        details = row.get("problem_details") or [{"message": m, "hint": ""} for m in row.get("problems", [])]
        if missing:
            # The token's missing permissions are explained once, above the Pages, not again under each one.
            kept = [d for d in details if d.get("code") != "missing_permission"]
            if len(kept) < len(details):
                kept.append({"message": "Needs the permissions listed above.", "hint": ""})
            details = kept
        pages.append({**row, "problem_details": details})
    pages.sort(key=lambda p: (not p.get("ready"), str(p.get("name") or "")))
    return {
        "id": conversion.id,
        "token_type": conversion.token_type,
        "expires_at": conversion.token_expires_at,
        "long_lived": conversion.long_lived,
        "scopes": list(conversion.scopes),
        "missing": missing,
        "pages": pages,
        "ready_count": sum(1 for p in pages if p.get("ready")),
        "warnings": list(conversion.warnings or []),
        "list_expires_at": conversion.expires_at,
    }


def _sandbox_scopes(sandbox: bool) -> list[str]:
    if not sandbox:
        return []
    from replyflow.sandbox.seed import DEMO_SCOPES

    return list(DEMO_SCOPES)


def _context(
    request: Request,
    *,
    db: Session,
    signed_in: SignedIn,
    conversion_id: str | None = None,
    account_id: str | None = None,
    oauth_error: str | None = None,
    instagram_error: str | None = None,
) -> dict[str, Any]:
    settings = settings_of(request)
    values: dict[str, Any] = {
        "permissions": PERMISSIONS,
        "messaging_task_why": MESSAGING_TASK_WHY,
        "explorer_url": GRAPH_API_EXPLORER_URL,
        "link_instagram_url": LINK_INSTAGRAM_URL,
        "page_tasks_url": PAGE_TASKS_URL,
        "app_modes_url": APP_REVIEW_HELP_URL,
        "redirect_uri": oauth.redirect_uri(settings),
        "instagram_redirect_uri": instagram_oauth.redirect_uri(settings),
        "instagram_error": None,
        "instagram_token_error": None,
        "webhook_url": f"{settings.public_url}/webhooks/instagram",
        "app_id": settings.app_id,
        "sandbox_scopes": _sandbox_scopes(settings.is_sandbox),
        "conversion": None,
        "conversion_error": None,
        "oauth_error": None,
        "token_error": None,
        "page_token_error": None,
        "save_error": None,
        "result": None,
        "doctor": None,
        "accounts_count": len(repository.list_accounts(session=db, workspace_id=signed_in.workspace.id)),
    }
    explained = oauth.browser_error(oauth_error[:64] if oauth_error else None)
    if explained is not None:  # the code picks one of our own texts; nothing from the URL is shown
        values["oauth_error"] = FieldError(*explained)
    explained = instagram_oauth.browser_error(instagram_error[:64] if instagram_error else None)
    if explained is not None:
        values["instagram_error"] = FieldError(*explained)
    if conversion_id:
        try:
            conversion = service.get_conversion(
                session=db, workspace_id=signed_in.workspace.id, conversion_id=conversion_id[:64]
            )
            values["conversion"] = _conversion_view(conversion)
        except ReplyflowError as exc:
            values["conversion_error"] = _dashboard_error(exc)
    if account_id:
        try:
            values["result"] = repository.get_account(
                session=db, workspace_id=signed_in.workspace.id, account_id=account_id[:64]
            )
        except ReplyflowError:
            values["result"] = None
    return values


def _page(request: Request, signed_in: SignedIn, values: dict[str, Any], *, status: int = 200) -> Response:
    return render(request, "integrations.html", values, signed_in=signed_in, status=status)


@router.get(PATH, dependencies=page_allowed(Permission.MANAGE_ACCOUNTS))
def integrations(
    request: Request,
    db: PageDb,
    signed_in: CurrentUser,
    conversion_id: str | None = None,
    account_id: str | None = None,
    oauth_error: str | None = None,
    instagram_error: str | None = None,
) -> Response:
    values = _context(
        request,
        db=db,
        signed_in=signed_in,
        conversion_id=conversion_id,
        account_id=account_id,
        oauth_error=oauth_error,
        instagram_error=instagram_error,
    )
    return _page(request, signed_in, values)


@router.post(f"{PATH}/connect", dependencies=page_allowed(Permission.MANAGE_ACCOUNTS))
async def connect_with_facebook(request: Request, db: PageDb, signed_in: CurrentUser) -> Response:
    """Start Facebook Login; Facebook sends the browser back to the accounts callback, which lands here."""
    settings = settings_of(request)
    async with graph_for(request) as graph:
        start = oauth.start_oauth(session=db, graph=graph, settings=settings, workspace_id=signed_in.workspace.id)
    response = RedirectResponse(start.authorize_url, status_code=303)
    oauth.set_oauth_cookie(response, start=start, settings=settings)
    return response


@router.post(f"{PATH}/connect-instagram", dependencies=page_allowed(Permission.MANAGE_ACCOUNTS))
async def connect_with_instagram(request: Request, db: PageDb, signed_in: CurrentUser) -> Response:
    """Start Instagram Login; Instagram sends the browser back to the accounts callback, which lands here."""
    settings = settings_of(request)
    async with graph_for(request) as graph:
        start = instagram_oauth.start_instagram_oauth(
            session=db, graph=graph, settings=settings, workspace_id=signed_in.workspace.id
        )
    response = RedirectResponse(start.authorize_url, status_code=303)
    instagram_oauth.set_cookie(response, start=start, settings=settings)
    return response


@router.post(f"{PATH}/save-instagram-token", dependencies=page_allowed(Permission.MANAGE_ACCOUNTS))
async def save_pasted_instagram_token(
    request: Request, db: PageDb, signed_in: CurrentUser, form: SubmittedForm
) -> Response:
    token = _form_text(form, "instagram_access_token", limit=MAX_TOKEN_FIELD)
    try:
        async with graph_for(request) as graph:
            saved = await save_instagram_token(
                session=db,
                graph=graph,
                cipher=cipher_for(settings_of(request)),
                settings=settings_of(request),
                workspace_id=signed_in.workspace.id,
                instagram_access_token=token,
            )
    except ReplyflowError as exc:
        db.rollback()
        values = _context(request, db=db, signed_in=signed_in)
        values["instagram_token_error"] = FieldError(exc.message, exc.hint)
        return _page(request, signed_in, values, status=exc.http_status)
    return redirect(
        request,
        f"{PATH}?account_id={saved.account.id}#step-result",
        flash=("success", f"@{saved.account.username} is connected with Instagram."),
    )


def _form_text(form: FormData, name: str, *, limit: int = 256) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


@router.post(f"{PATH}/sandbox-token", dependencies=page_allowed(Permission.MANAGE_ACCOUNTS))
async def sandbox_user_token(request: Request, db: PageDb, signed_in: CurrentUser, form: SubmittedForm) -> Response:
    """Sandbox only: the paste path with a User token the emulator makes, as Graph API Explorer would for Meta.

    The token never reaches the browser: it is made and converted here, like a pasted one.
    """
    state = getattr(request.app.state, "sandbox_state", None)
    if not settings_of(request).is_sandbox or state is None or state.demo is None:
        raise NotFound("Sandbox User tokens exist only in sandbox mode.", hint="Paste a token from Graph API Explorer.")
    from replyflow.sandbox.seed import DEMO_SCOPES

    left_out = _form_text(form, "without", limit=64)
    scopes = [scope for scope in DEMO_SCOPES if scope != left_out]
    token = state.issue_user_token(state.demo.user_id, scopes=scopes)
    return await _convert(request, db, signed_in, token)


@router.post(f"{PATH}/convert", dependencies=page_allowed(Permission.MANAGE_ACCOUNTS))
async def convert_token(request: Request, db: PageDb, signed_in: CurrentUser, form: SubmittedForm) -> Response:
    return await _convert(request, db, signed_in, _form_text(form, "user_access_token", limit=MAX_TOKEN_FIELD))


async def _convert(request: Request, db: Session, signed_in: SignedIn, token: str) -> Response:
    try:
        async with graph_for(request) as graph:
            conversion = await service.convert_user_token(
                session=db,
                graph=graph,
                cipher=cipher_for(settings_of(request)),
                settings=settings_of(request),
                workspace_id=signed_in.workspace.id,
                user_access_token=token,
            )
    except ReplyflowError as exc:
        db.rollback()
        values = _context(request, db=db, signed_in=signed_in)
        values["token_error"] = _dashboard_error(exc)
        return _page(request, signed_in, values, status=exc.http_status)
    return redirect(request, f"{PATH}?conversion_id={conversion.id}#step-pages")


async def _save(
    request: Request,
    db: Session,
    signed_in: SignedIn,
    *,
    conversion_id: str | None = None,
    page_id: str | None = None,
    page_access_token: str | None = None,
) -> Account:
    async with graph_for(request) as graph:
        saved = await service.save_page_token(
            session=db,
            graph=graph,
            cipher=cipher_for(settings_of(request)),
            settings=settings_of(request),
            workspace_id=signed_in.workspace.id,
            conversion_id=conversion_id,
            page_id=page_id,
            page_access_token=page_access_token,
        )
    # Re-connected: DMs paused by the old token's problem go out now, not at the next background sweep.
    resume_paused_runs(session=db, account_id=saved.account.id, runtime=request.app.state.runtime)
    return saved.account


@router.post(f"{PATH}/save", dependencies=page_allowed(Permission.MANAGE_ACCOUNTS))
async def save_page(request: Request, db: PageDb, signed_in: CurrentUser, form: SubmittedForm) -> Response:
    conversion_id = _form_text(form, "conversion_id", limit=64)
    page_id = _form_text(form, "page_id", limit=64)
    if not page_id:
        values = _context(request, db=db, signed_in=signed_in, conversion_id=conversion_id)
        values["save_error"] = FieldError(
            "Choose the Page you want to connect.", "Only Pages marked 'Ready' can be chosen."
        )
        return _page(request, signed_in, values, status=422)
    try:
        account = await _save(request, db, signed_in, conversion_id=conversion_id, page_id=page_id)
    except ReplyflowError as exc:
        db.rollback()
        values = _context(request, db=db, signed_in=signed_in, conversion_id=conversion_id)
        values["save_error"] = _dashboard_error(exc)
        return _page(request, signed_in, values, status=exc.http_status)
    return redirect(
        request,
        f"{PATH}?account_id={account.id}#step-result",
        flash=("success", f"@{account.username or account.page_name} is connected."),
    )


@router.post(f"{PATH}/save-page-token", dependencies=page_allowed(Permission.MANAGE_ACCOUNTS))
async def save_pasted_page_token(request: Request, db: PageDb, signed_in: CurrentUser, form: SubmittedForm) -> Response:
    token = _form_text(form, "page_access_token", limit=MAX_TOKEN_FIELD)
    try:
        account = await _save(request, db, signed_in, page_access_token=token)
    except ReplyflowError as exc:
        db.rollback()
        values = _context(request, db=db, signed_in=signed_in)
        values["page_token_error"] = _dashboard_error(exc)
        return _page(request, signed_in, values, status=exc.http_status)
    return redirect(
        request,
        f"{PATH}?account_id={account.id}#step-result",
        flash=("success", f"@{account.username or account.page_name} is connected."),
    )


@router.get(f"{PATH}/doctor")
async def doctor(request: Request, db: PageDb, signed_in: CurrentUser) -> Response:
    """Check the whole setup against Meta (read-only), as ``replyflow doctor`` does."""
    async with graph_for(request) as graph:
        report = await run_doctor(
            session=db,
            graph=graph,
            cipher=cipher_for(settings_of(request)),
            settings=settings_of(request),
            workspace_id=signed_in.workspace.id,
        )
    if is_htmx(request):
        return render(request, "partials/doctor.html", {"doctor": report}, signed_in=signed_in)
    values = _context(request, db=db, signed_in=signed_in)
    values["doctor"] = report
    return _page(request, signed_in, values)
