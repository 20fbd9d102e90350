"""HTTP routes for connecting and checking Instagram accounts (thin: the rules live in the services)."""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from replyflow.accounts import errors, instagram_oauth, oauth, repository, service
from replyflow.accounts.crypto import TokenCipher, cipher_for
from replyflow.accounts.doctor import run_doctor
from replyflow.accounts.health import check_account, mark_token_invalid, record_check_failure
from replyflow.accounts.instagram_login import save_instagram_token
from replyflow.accounts.models import Account
from replyflow.accounts.schemas import (
    AccountOut,
    ConversionOut,
    ConvertTokenIn,
    DoctorCheckOut,
    DoctorOut,
    MediaOut,
    MediaPage,
    OAuthStartOut,
    SavedAccountOut,
    SaveInstagramTokenIn,
    SavePageTokenIn,
)
from replyflow.db import SessionDep, utcnow
from replyflow.errors import PayloadTooLarge, ReplyflowError, ValidationFailed
from replyflow.graph.errors import GraphError, TokenInvalid
from replyflow.graph_access import GraphDep
from replyflow.monitoring.alerts import account_alerts
from replyflow.monitoring.schemas import AlertOut
from replyflow.pagination import ListPage, paginate
from replyflow.workspaces.auth import CurrentWorkspace, allowed
from replyflow.workspaces.roles import Permission

router = APIRouter(tags=["accounts"])

M = TypeVar("M", bound=BaseModel)
# Token requests are tiny; anything bigger is refused before it is read into memory.
MAX_BODY_BYTES = 16 * 1024


def get_cipher(request: Request) -> TokenCipher:
    return cipher_for(request.app.state.settings)


CipherDep = Annotated[TokenCipher, Depends(get_cipher)]


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


async def read_body(request: Request, model: type[M]) -> M:
    """The JSON body as ``model``, refusing oversized, malformed and invalid bodies without echoing them."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The request body is larger than {MAX_BODY_BYTES // 1024} KiB.")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"The request body is larger than {MAX_BODY_BYTES // 1024} KiB.")
    try:
        data: Any = json.loads(bytes(raw))
    except ValueError:  # also empty and undecodable bodies
        data = None
    if not isinstance(data, dict):
        raise ValidationFailed(
            "The request body is not a valid JSON object.",
            code="invalid_json",
            hint="Send a JSON object with Content-Type: application/json.",
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "body"
        message = str(first.get("msg", "is not valid")).removeprefix("Value error, ")
        raise ValidationFailed(f"{field}: {message}", field=field) from None


# -- accounts ----------------------------------------------------------------------------------------------


def _with_alerts(session: Session, account: Account, request: Request) -> AccountOut:
    """The account with its open alerts (a few small queries: token, webhooks, one or two per enabled rule, quota)."""
    out = AccountOut.of(account)
    found = account_alerts(session=session, account=account, quota=request.app.state.settings.private_reply_quota)
    out.alerts = [AlertOut.of(alert) for alert in found]
    return out


@router.get("/api/accounts", response_model=ListPage[AccountOut])
def list_accounts(
    request: Request,
    session: SessionDep,
    workspace: CurrentWorkspace,
    cursor: str | None = None,
    limit: int = Query(default=50, ge=1, le=200),
) -> ListPage[AccountOut]:
    query = repository.connected_accounts_query(workspace_id=workspace.id)
    rows, next_cursor = paginate(session, query, id_column=Account.id, cursor=cursor, limit=limit, descending=False)
    return ListPage[AccountOut](items=[_with_alerts(session, a, request) for a in rows], next_cursor=next_cursor)


@router.get("/api/accounts/{account_id}", response_model=AccountOut)
def get_account(account_id: str, request: Request, session: SessionDep, workspace: CurrentWorkspace) -> AccountOut:
    account = repository.get_account(session=session, workspace_id=workspace.id, account_id=account_id)
    return _with_alerts(session, account, request)


@router.delete("/api/accounts/{account_id}", status_code=204, dependencies=allowed(Permission.MANAGE_ACCOUNTS))
def disconnect_account(account_id: str, session: SessionDep, workspace: CurrentWorkspace) -> Response:
    """Disconnect: the token is deleted and automation stops; connecting the same Page again restores its rules."""
    account = repository.get_account(session=session, workspace_id=workspace.id, account_id=account_id)
    service.disconnect_account(session=session, account=account)
    return Response(status_code=204)


@router.post("/api/accounts/{account_id}/check", response_model=AccountOut)
async def check_account_now(
    account_id: str,
    request: Request,
    session: SessionDep,
    workspace: CurrentWorkspace,
    graph: GraphDep,
    cipher: CipherDep,
) -> AccountOut:
    """Re-validate the account's token with Meta now (and re-subscribe its Page if Meta dropped it)."""
    account = repository.get_account(session=session, workspace_id=workspace.id, account_id=account_id)
    try:
        await check_account(
            session=session, account=account, graph=graph, cipher=cipher, app_id=request.app.state.settings.app_id
        )
    except GraphError as exc:
        record_check_failure(account, exc, now=utcnow())
        session.commit()  # keep the note about the failed check; the error still goes to the caller
        raise errors.translate_graph_error(exc, during="checking the token") from None
    return AccountOut.of(account)


@router.get("/api/accounts/{account_id}/media", response_model=MediaPage)
async def list_account_media(
    account_id: str,
    session: SessionDep,
    workspace: CurrentWorkspace,
    graph: GraphDep,
    cipher: CipherDep,
    cursor: str | None = Query(default=None, max_length=512),
    limit: int = Query(default=25, ge=1, le=100),
) -> MediaPage:
    """The account's posts and reels, newest first, read from Meta (``cursor`` is the previous ``next_cursor``)."""
    account = repository.get_account(session=session, workspace_id=workspace.id, account_id=account_id)
    try:
        found = await service.list_media(
            session=session, account=account, graph=graph, cipher=cipher, cursor=cursor, limit=limit
        )
    except TokenInvalid as exc:
        mark_token_invalid(session=session, account=account, reason=exc.reason)
        session.commit()  # the verdict must survive the error answer
        raise errors.translate_graph_error(exc, during="reading the posts", subject="Page token") from None
    except GraphError as exc:
        raise errors.translate_graph_error(exc, during="reading the posts", subject="Page token") from None
    return MediaPage(items=[_media_out(m) for m in found.items], next_cursor=found.next_cursor)


def _media_out(media: Any) -> MediaOut:
    # Videos and reels carry a thumbnail; for photos the image itself is the thumbnail.
    thumbnail = media.thumbnail_url or (media.media_url if media.media_type in ("IMAGE", "CAROUSEL_ALBUM") else None)
    return MediaOut(
        id=media.id,
        caption=media.caption,
        media_type=media.media_type,
        media_product_type=media.media_product_type,
        permalink=media.permalink,
        timestamp=media.timestamp,
        thumbnail_url=thumbnail,
        comments_count=media.comments_count,
    )


# -- connecting: token conversion and saving ------------------------------------------------------------------


@router.post(
    "/api/instagram/convert-token",
    response_model=ConversionOut,
    dependencies=allowed(Permission.MANAGE_ACCOUNTS),
    openapi_extra=_body_doc(ConvertTokenIn),
    responses={422: {"description": "token_format_invalid / wrong_token_type"}, 502: {"description": "Meta failed"}},
)
async def convert_token(
    request: Request, session: SessionDep, workspace: CurrentWorkspace, graph: GraphDep, cipher: CipherDep
) -> ConversionOut:
    """Turn a User token into the list of Pages it manages; their Page tokens stay on the server, encrypted."""
    body = await read_body(request, ConvertTokenIn)
    conversion = await service.convert_user_token(
        session=session,
        graph=graph,
        cipher=cipher,
        settings=request.app.state.settings,
        workspace_id=workspace.id,
        user_access_token=body.user_access_token,
    )
    return ConversionOut.of(conversion)


@router.get("/api/instagram/conversions/{conversion_id}", response_model=ConversionOut)
def get_conversion(conversion_id: str, session: SessionDep, workspace: CurrentWorkspace) -> ConversionOut:
    """A pending conversion again (the dashboard's page picker reads it after Connect with Facebook)."""
    return ConversionOut.of(
        service.get_conversion(session=session, workspace_id=workspace.id, conversion_id=conversion_id)
    )


@router.post(
    "/api/instagram/save-page-token",
    response_model=SavedAccountOut,
    dependencies=allowed(Permission.MANAGE_ACCOUNTS),
    status_code=201,
    openapi_extra=_body_doc(SavePageTokenIn),
    responses={200: {"description": "An existing account was updated", "model": SavedAccountOut}},
)
async def save_page_token(
    request: Request, session: SessionDep, workspace: CurrentWorkspace, graph: GraphDep, cipher: CipherDep
) -> JSONResponse:
    """Validate a Page token with Meta, then create (201) or update (200) the account and subscribe its Page."""
    body = await read_body(request, SavePageTokenIn)
    saved = await service.save_page_token(
        session=session,
        graph=graph,
        cipher=cipher,
        settings=request.app.state.settings,
        workspace_id=workspace.id,
        conversion_id=body.conversion_id,
        page_id=body.page_id,
        page_access_token=body.page_access_token,
    )
    # Re-connected: DMs paused by the old token's problem go out now, not at the next background sweep.
    from replyflow.automation.intake import resume_paused_runs

    resume_paused_runs(session=session, account_id=saved.account.id, runtime=request.app.state.runtime)
    out = SavedAccountOut(account=AccountOut.of(saved.account), created=saved.created)
    return JSONResponse(out.model_dump(mode="json"), status_code=201 if saved.created else 200)


@router.post(
    "/api/instagram/save-instagram-token",
    response_model=SavedAccountOut,
    status_code=201,
    dependencies=allowed(Permission.MANAGE_ACCOUNTS),
    openapi_extra=_body_doc(SaveInstagramTokenIn),
    responses={
        200: {"description": "An existing account was updated (also one connected through Facebook Login before)"},
        400: {"description": "token_invalid: Instagram does not accept the token"},
        422: {"description": "token_format_invalid / wrong_token_type"},
    },
)
async def save_instagram_token_route(
    request: Request, session: SessionDep, workspace: CurrentWorkspace, graph: GraphDep, cipher: CipherDep
) -> JSONResponse:
    """Instagram Login (no Facebook Page): validate the token on the Instagram host, make it long-lived, subscribe
    the account's webhooks and create (201) or update (200) the account. The token is never returned."""
    body = await read_body(request, SaveInstagramTokenIn)
    saved = await save_instagram_token(
        session=session,
        graph=graph,
        cipher=cipher,
        settings=request.app.state.settings,
        workspace_id=workspace.id,
        instagram_access_token=body.instagram_access_token,
    )
    out = SavedAccountOut(account=AccountOut.of(saved.account), created=saved.created)
    return JSONResponse(out.model_dump(mode="json"), status_code=201 if saved.created else 200)


# -- Connect with Facebook -------------------------------------------------------------------------------------


@router.post(
    "/api/instagram/oauth/start", response_model=OAuthStartOut, dependencies=allowed(Permission.MANAGE_ACCOUNTS)
)
def start_oauth(request: Request, session: SessionDep, workspace: CurrentWorkspace, graph: GraphDep) -> JSONResponse:
    """Begin Connect with Facebook: open ``authorize_url`` in this browser (a cookie binds the flow to it)."""
    settings = request.app.state.settings
    start = oauth.start_oauth(session=session, graph=graph, settings=settings, workspace_id=workspace.id)
    response = JSONResponse(
        OAuthStartOut(authorize_url=start.authorize_url, expires_at=start.expires_at).model_dump(mode="json")
    )
    oauth.set_oauth_cookie(response, start=start, settings=settings)
    return response


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _callback_args(request: Request, *, cookie: str) -> dict[str, Any]:
    """What a login callback hands the accounts service: the query's state, code and errors, and the cookie."""
    params = request.query_params
    return {
        "runtime": request.app.state.runtime,
        "state": params.get("state"),
        "code": params.get("code"),
        "error": params.get("error"),
        "error_reason": params.get("error_reason"),
        "browser_nonce": request.cookies.get(cookie),
    }


def _error_redirect(error: ReplyflowError) -> RedirectResponse:
    """A browser goes back to the Integrations page, which explains the (stable) code in plain words."""
    url = f"{oauth.INTEGRATIONS_PATH}?oauth_error={oauth.browser_error_code(error)}#step-connect"
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})


@router.get(oauth.CALLBACK_PATH, include_in_schema=False)
async def oauth_callback(request: Request, graph: GraphDep, cipher: CipherDep) -> Response:
    """Where Facebook sends the browser back. No API key: the single-use state and the browser cookie bind it."""
    settings = request.app.state.settings
    try:
        conversion = await oauth.complete_oauth(
            graph=graph, cipher=cipher, **_callback_args(request, cookie=oauth.OAUTH_COOKIE)
        )
    except ReplyflowError as exc:
        response: Response = (
            JSONResponse(exc.to_dict(), status_code=exc.http_status) if _wants_json(request) else _error_redirect(exc)
        )
        oauth.clear_oauth_cookie(response, settings=settings)
        return response
    if _wants_json(request):
        response = JSONResponse(ConversionOut.of(conversion).model_dump(mode="json"))
    else:
        response = RedirectResponse(f"{oauth.INTEGRATIONS_PATH}?conversion_id={conversion.id}", status_code=302)
    response.headers["Cache-Control"] = "no-store"
    oauth.clear_oauth_cookie(response, settings=settings)
    return response


# -- Connect with Instagram ------------------------------------------------------------------------------------


@router.post(
    "/api/instagram/oauth/instagram/start",
    response_model=OAuthStartOut,
    dependencies=allowed(Permission.MANAGE_ACCOUNTS),
)
def start_instagram_oauth(
    request: Request, session: SessionDep, workspace: CurrentWorkspace, graph: GraphDep
) -> JSONResponse:
    """Begin Connect with Instagram: open ``authorize_url`` in this browser (a cookie binds the flow to it)."""
    settings = request.app.state.settings
    start = instagram_oauth.start_instagram_oauth(
        session=session, graph=graph, settings=settings, workspace_id=workspace.id
    )
    response = JSONResponse(
        OAuthStartOut(authorize_url=start.authorize_url, expires_at=start.expires_at).model_dump(mode="json")
    )
    instagram_oauth.set_cookie(response, start=start, settings=settings)
    return response


@router.get(instagram_oauth.CALLBACK_PATH, include_in_schema=False)
async def instagram_oauth_callback(request: Request, graph: GraphDep, cipher: CipherDep) -> Response:
    """Where Instagram sends the browser back. No API key: the single-use state and the browser cookie bind it."""
    settings = request.app.state.settings
    try:
        saved = await instagram_oauth.complete_instagram_oauth(
            graph=graph, cipher=cipher, **_callback_args(request, cookie=instagram_oauth.OAUTH_COOKIE)
        )
    except ReplyflowError as exc:
        if _wants_json(request):
            response: Response = JSONResponse(exc.to_dict(), status_code=exc.http_status)
        else:
            code = instagram_oauth.browser_error_code(exc)
            response = RedirectResponse(
                f"{oauth.INTEGRATIONS_PATH}?instagram_error={code}#step-connect",
                status_code=302,
                headers={"Cache-Control": "no-store"},
            )
        instagram_oauth.clear_cookie(response, settings=settings)
        return response
    if _wants_json(request):
        out = SavedAccountOut(account=AccountOut.of(saved.account), created=saved.created)
        response = JSONResponse(out.model_dump(mode="json"), status_code=201 if saved.created else 200)
    else:
        response = RedirectResponse(
            f"{oauth.INTEGRATIONS_PATH}?account_id={saved.account.id}#step-result", status_code=302
        )
    response.headers["Cache-Control"] = "no-store"
    instagram_oauth.clear_cookie(response, settings=settings)
    return response


# -- doctor ----------------------------------------------------------------------------------------------------


@router.get("/api/doctor", response_model=DoctorOut)
async def doctor(
    request: Request, session: SessionDep, workspace: CurrentWorkspace, graph: GraphDep, cipher: CipherDep
) -> DoctorOut:
    """The same checks as ``replyflow doctor``, for this workspace's accounts."""
    report = await run_doctor(
        session=session, graph=graph, cipher=cipher, settings=request.app.state.settings, workspace_id=workspace.id
    )
    return DoctorOut(
        ok=report.ok,
        sandbox=report.sandbox,
        checks=[DoctorCheckOut.model_validate(c.as_dict()) for c in report.checks],
    )
