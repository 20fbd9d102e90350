"""The dashboard's routes: sign-in and out, the overview, static files, and every page under ``/app``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from replyflow.errors import RateLimitedByUs
from replyflow.web import sessions
from replyflow.web.pages import PAGE_ROUTERS
from replyflow.web.rendering import (
    STATIC_DIR,
    CurrentUser,
    PageDb,
    PageRoute,
    SubmittedForm,
    error_page,
    not_found_problem,
    redirect,
    render,
    safe_next,
    settings_of,
)
from replyflow.workspaces import users

router = APIRouter(route_class=PageRoute, include_in_schema=False)
_static = StaticFiles(directory=STATIC_DIR)

_WRONG_CREDENTIALS = "The email or password is wrong."
_WRONG_CREDENTIALS_HINT = "Check both and try again. Passwords are case-sensitive."


@router.get("/static/{path:path}")
async def static_file(path: str, request: Request) -> Response:
    response = await _static.get_response(path, request.scope)
    if response.status_code == 200:
        # Pages link static files with a content hash (?v=...), so a changed file always has a new address.
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


@router.get("/")
def home(request: Request, db: PageDb) -> Response:
    signed_in = sessions.resolve_session(
        session=db, settings=settings_of(request), cookie_value=request.cookies.get(sessions.SESSION_COOKIE)
    )
    return RedirectResponse("/app" if signed_in else "/login", status_code=303)


def _login_page(
    request: Request,
    *,
    email: str = "",
    next_url: str = "/app",
    error: str | None = None,
    hint: str | None = None,
    status: int = 200,
) -> Response:
    cookie_value, nonce = sessions.new_login_nonce(settings_of(request))
    response = render(
        request,
        "login.html",
        {"email": email, "next_url": next_url, "error": error, "hint": hint, "login_nonce": nonce},
        status=status,
    )
    response.set_cookie(
        sessions.LOGIN_COOKIE,
        cookie_value,
        max_age=86400,
        path="/login",
        httponly=True,
        samesite="lax",
        secure=sessions.secure_cookies(settings_of(request)),
    )
    return response


@router.get("/login")
def login_form(request: Request, db: PageDb, next: str | None = None) -> Response:
    settings = settings_of(request)
    if sessions.resolve_session(
        session=db, settings=settings, cookie_value=request.cookies.get(sessions.SESSION_COOKIE)
    ):
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, next_url=safe_next(next))


@router.post("/login")
def login_submit(request: Request, db: PageDb, form: SubmittedForm) -> Response:
    settings = settings_of(request)
    email = str(form.get("email") or "").strip()[:254]
    password = str(form.get("password") or "")
    next_url = safe_next(str(form.get("next") or ""))
    if not sessions.login_nonce_matches(
        settings=settings,
        cookie_value=request.cookies.get(sessions.LOGIN_COOKIE),
        given=str(form.get(sessions.CSRF_FIELD) or ""),
    ):
        return _login_page(
            request,
            email=email,
            next_url=next_url,
            error="This sign-in form had expired, so nothing was sent.",
            hint="Please enter your password again. (Cookies must be allowed for this site.)",
            status=403,
        )
    if not email or not password:
        return _login_page(
            request, email=email, next_url=next_url, error="Enter your email and your password.", status=400
        )
    address = request.client.host if request.client else "unknown"
    try:
        sessions.check_login_allowed(session=db, email=email, address=address)
    except RateLimitedByUs as exc:
        return _login_page(request, email=email, next_url=next_url, error=exc.message, hint=exc.hint, status=429)
    user = users.verify_credentials(session=db, email=email, password=password)
    if user is None:
        sessions.record_login_failure(session=db, email=email, address=address)
        return _login_page(
            request, email=email, next_url=next_url, error=_WRONG_CREDENTIALS, hint=_WRONG_CREDENTIALS_HINT, status=400
        )
    sessions.clear_login_failures(session=db, email=email, address=address)
    sessions.purge_expired_sessions(session=db)
    started = sessions.start_session(session=db, settings=settings, user=user)
    response = RedirectResponse(next_url, status_code=303)
    sessions.set_session_cookie(response, settings=settings, cookie_value=started.cookie_value)
    response.delete_cookie(sessions.LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, db: PageDb, signed_in: CurrentUser) -> Response:
    db.delete(signed_in.session)
    response = redirect(request, "/login", flash=("success", "You are signed out."))
    sessions.clear_session_cookie(response, settings=settings_of(request))
    return response


for _page_router in PAGE_ROUTERS:
    router.include_router(_page_router)


@router.api_route("/app/{rest:path}", methods=["GET", "POST"])
def not_found(request: Request, signed_in: CurrentUser, rest: str) -> Response:
    if not rest.strip("/"):
        return RedirectResponse("/app", status_code=308)
    return error_page(request, not_found_problem(), signed_in=signed_in)
