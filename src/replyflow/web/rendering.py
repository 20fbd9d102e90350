"""Page plumbing: the Jinja2 environment, the shared page context, sign-in and CSRF dependencies, error pages.

Pages use :class:`PageRoute`, which turns any failure into a calm HTML answer in the dashboard's own words
(a sign-in redirect, a "not found" page, a notice for htmx requests) instead of the API's JSON.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import jinja2
from fastapi import Depends, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from markupsafe import Markup, escape
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response

from replyflow.audit.recorder import Actor, act_as
from replyflow.config import Settings
from replyflow.db import utcnow
from replyflow.errors import ReplyflowError
from replyflow.graph.client import GraphClient
from replyflow.graph_access import APP_STATE_TRANSPORT, open_graph
from replyflow.logging import get_logger
from replyflow.web import sessions
from replyflow.web.sessions import SignedIn
from replyflow.workspaces.roles import Permission, can, check_permission

log = get_logger("replyflow.web")

HERE = Path(__file__).parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

FLASH_COOKIE = "rf_flash"
_FAILED_ATTR = "page_failed"

# (path, label, sandbox only)
NAVIGATION: tuple[tuple[str, str, bool], ...] = (
    ("/app/integrations", "Integrations", False),
    ("/app/accounts", "Accounts", False),
    ("/app/rules", "Rules", False),
    ("/app/activity", "Activity", False),
    ("/app/conversations", "Conversations", False),
    ("/app/contacts", "Contacts", False),
    ("/app/analytics", "Analytics", False),
    ("/app/sandbox", "Sandbox", True),
    ("/app/members", "Members", False),
    ("/app/audit", "Audit log", False),
)
# Links shown only to roles that may use what is behind them (the routes themselves refuse everyone else).
NAVIGATION_PERMISSIONS: dict[str, Permission] = {"/app/integrations": Permission.MANAGE_ACCOUNTS}


class LoginRequired(Exception):
    """No valid session: pages send the browser to the sign-in page."""


# -- templates -----------------------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _static_version(path: str) -> str:
    file = (STATIC_DIR / path).resolve()
    if not file.is_relative_to(STATIC_DIR.resolve()) or not file.is_file():
        return "0"
    return hashlib.sha256(file.read_bytes()).hexdigest()[:10]


def static_url(path: str) -> str:
    """``/static/<path>?v=<content hash>``: browsers may cache it forever, a new file gets a new address."""
    return f"/static/{quote(path)}?v={_static_version(path)}"


def _as_datetime(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str) and value:
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def timeago(value: Any, now: dt.datetime | None = None) -> str:
    moment = _as_datetime(value)
    if moment is None:
        return "never"
    seconds = int(((now or utcnow()) - moment).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 45:
        return "just now" if not future else "in a few seconds"
    for size, unit in ((86400 * 30, "month"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = round(seconds / size)
            text = f"{count} {unit}{'' if count == 1 else 's'}"
            return f"in {text}" if future else f"{text} ago"
    return "just now"


def format_datetime(value: Any) -> str:
    moment = _as_datetime(value)
    return moment.strftime("%d %b %Y, %H:%M UTC") if moment else ""


def iso(value: Any) -> str:
    moment = _as_datetime(value)
    return moment.isoformat() if moment else ""


def _time_tag(value: Any) -> Markup:
    moment = _as_datetime(value)
    if moment is None:
        return Markup("never")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        moment.isoformat(), format_datetime(moment), timeago(moment)
    )


_URL = re.compile(r"https://[^\s()<>\"']+[^\s()<>\"'.,;:!?]")


def linkify(text: Any) -> Markup:
    """Plain text with its https:// addresses as links (hints name Meta's help pages); everything else escaped."""
    value = str(text or "")
    parts: list[Markup] = []
    last = 0
    for found in _URL.finditer(value):
        parts.append(escape(value[last : found.start()]))
        url = found.group(0)
        parts.append(Markup('<a href="{0}" target="_blank" rel="noopener">{0}</a>').format(url))
        last = found.end()
    parts.append(escape(value[last:]))
    return Markup("").join(parts)


def _tojson_attr(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static_url"] = static_url
    env.filters["timeago"] = timeago
    env.filters["datetime"] = format_datetime
    env.filters["iso"] = iso
    env.filters["time_tag"] = _time_tag
    env.filters["json_attr"] = _tojson_attr
    env.filters["linkify"] = linkify
    return env


def warm_templates() -> int:
    """Compile every page template now, so no visitor waits for it (a first render compiles: 50–150 ms each)."""
    env = environment()
    names = [name for name in env.list_templates() if name.endswith(".html")]
    for name in names:
        env.get_template(name)
    return len(names)


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def graph_for(request: Request) -> AbstractAsyncContextManager[GraphClient]:
    """A Graph client for one page request, routed like the API's (``app.state.graph_transport``)."""
    return open_graph(settings_of(request), transport=getattr(request.app.state, APP_STATE_TRANSPORT, None))


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def take_flash(request: Request) -> dict[str, str] | None:
    return sessions.decode_flash(settings_of(request), request.cookies.get(FLASH_COOKIE))


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    signed_in: SignedIn | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    settings = settings_of(request)
    flash = take_flash(request) if not is_htmx(request) else None
    values: dict[str, Any] = {
        "request": request,
        "path": request.url.path,
        "signed_in": signed_in,
        "csrf_token": signed_in.csrf_token if signed_in else "",
        "sandbox": settings.is_sandbox,
        "navigation": [
            (href, label)
            for href, label, sandbox_only in NAVIGATION
            if (settings.is_sandbox or not sandbox_only) and _may_see(signed_in, href)
        ],
        "can": permissions_of(signed_in),
        "flash": flash,
        "now": utcnow(),
    }
    values.update(context or {})
    body = environment().get_template(template).render(values)
    response = HTMLResponse(body, status_code=status, headers=dict(headers or {}))
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def permissions_of(signed_in: SignedIn | None) -> dict[str, bool]:
    """``can.manage_accounts`` and friends, for templates to hide what the server would refuse anyway."""
    return {p.value: signed_in is not None and can(signed_in.user.role, p) for p in Permission}


def _may_see(signed_in: SignedIn | None, href: str) -> bool:
    needed = NAVIGATION_PERMISSIONS.get(href)
    return needed is None or (signed_in is not None and can(signed_in.user.role, needed))


def redirect(request: Request, url: str, *, flash: tuple[str, str] | None = None) -> Response:
    """After a successful form post: go to ``url`` (htmx follows ``HX-Redirect``), optionally with a notice."""
    if is_htmx(request):
        response: Response = Response(status_code=204, headers={"HX-Redirect": url})
    else:
        response = RedirectResponse(url, status_code=303)
    if flash is not None:
        kind, text = flash
        response.set_cookie(
            FLASH_COOKIE,
            sessions.encode_flash(settings_of(request), kind=kind, text=text),
            max_age=300,
            path="/",
            httponly=True,
            samesite="lax",
            secure=sessions.secure_cookies(settings_of(request)),
        )
    return response


def safe_next(value: str | None) -> str:
    """Where to go after signing in: only a path inside the dashboard, never another site."""
    if not value:
        return "/app"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/app") or "\\" in value or value.startswith("//"):
        return "/app"
    return value


# -- dependencies --------------------------------------------------------------------------------------------


def page_db(request: Request) -> Iterator[Session]:
    """A unit of work for one page; rolled back when the page failed, even though PageRoute answered calmly."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    session = factory()
    try:
        yield session
        if getattr(request.state, _FAILED_ATTR, False):
            session.rollback()
        else:
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


PageDb = Annotated[Session, Depends(page_db)]

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def read_form(request: Request) -> FormData:
    """The submitted form (empty for other bodies); read once, Starlette keeps it for later readers."""
    if request.headers.get("content-type", "").split(";")[0].strip() in _FORM_TYPES:
        return await request.form(max_files=0, max_fields=500)
    return FormData()


SubmittedForm = Annotated[FormData, Depends(read_form)]


def signed_in_user(request: Request, db: PageDb, form: SubmittedForm) -> SignedIn:
    settings = settings_of(request)
    found = sessions.resolve_session(
        session=db, settings=settings, cookie_value=request.cookies.get(sessions.SESSION_COOKIE)
    )
    if found is None:
        db.commit()  # keep the clean-up of an expired session although the page itself fails
        raise LoginRequired()
    if request.method not in sessions.SAFE_METHODS:
        given = request.headers.get(sessions.CSRF_HEADER)
        if given is None:
            value = form.get(sessions.CSRF_FIELD)
            given = value if isinstance(value, str) else None
        sessions.check_csrf(signed_in=found, given=given)
    request.state.session_workspace_id = found.workspace.id
    request.state.session_user_id = found.user.id
    act_as(db, Actor.user(found.user))
    request.state.signed_in = found  # error pages keep the signed-in menu
    return found


CurrentUser = Annotated[SignedIn, Depends(signed_in_user)]


def page_requires(permission: Permission) -> Callable[[SignedIn], SignedIn]:
    """A page dependency: the "Not allowed" page (403) unless the signed-in person's role has ``permission``."""

    def dependency(signed_in: CurrentUser) -> SignedIn:
        check_permission(signed_in.user.role, permission)
        return signed_in

    dependency.__name__ = f"page_requires_{permission.value}"
    return dependency


def page_allowed(permission: Permission) -> list[params.Depends]:
    """``dependencies=page_allowed(...)`` on a page route's decorator."""
    return [Depends(page_requires(permission))]


# -- errors --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    status: int
    title: str
    message: str
    hint: str


def _problem_for(exc: Exception) -> Problem:
    if isinstance(exc, ReplyflowError) and exc.http_status == 404:
        # The API's hint ("List your rules with GET /api/rules") means nothing on a page: the app's own 404.
        return Problem(404, "Not found", exc.message, not_found_problem().hint)
    if isinstance(exc, ReplyflowError):
        titles = {
            401: "Please sign in",
            403: "Not allowed",
            404: "Not found",
            409: "Already exists",
            422: "Please check the form",
            429: "Please slow down",
        }
        title = titles.get(
            exc.http_status, "Meta did not answer" if exc.http_status in (502, 503, 504) else "Something went wrong"
        )
        return Problem(exc.http_status, title, exc.message, exc.hint)
    if isinstance(exc, StarletteHTTPException) and exc.status_code == 404:
        return not_found_problem()
    if isinstance(exc, RequestValidationError):
        return Problem(
            422,
            "Please check the form",
            "Some of the values sent are missing or not valid.",
            "Go back, check the form and send it again.",
        )
    return Problem(
        500,
        "Something went wrong",
        "Something went wrong on our side and nothing was changed.",
        "Try again in a minute. If it keeps happening, the server logs say more.",
    )


def not_found_problem() -> Problem:
    return Problem(
        404,
        "Page not found",
        "There is nothing at this address.",
        "It may have been deleted, or the link has a typo. Use the menu to find your way.",
    )


def error_page(request: Request, problem: Problem, *, signed_in: SignedIn | None = None) -> HTMLResponse:
    if is_htmx(request):
        # Shown in the page's notice area rather than replacing the part that asked.
        return render(
            request,
            "partials/notice.html",
            {"problem": problem},
            status=problem.status,
            headers={"HX-Retarget": "#notice", "HX-Reswap": "innerHTML"},
        )
    return render(request, "error.html", {"problem": problem}, signed_in=signed_in, status=problem.status)


def login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = "/login" if request.method != "GET" or target in ("/app", "/") else f"/login?next={quote(target, safe='')}"
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": "/login"})
    return RedirectResponse(url, status_code=303)


class PageRoute(APIRoute):
    """An APIRoute that answers failures with dashboard pages instead of JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await original(request)
            except LoginRequired:
                setattr(request.state, _FAILED_ATTR, True)
                response = login_redirect(request)
            except (ReplyflowError, StarletteHTTPException, RequestValidationError) as exc:
                setattr(request.state, _FAILED_ATTR, True)
                response = error_page(request, _problem_for(exc), signed_in=getattr(request.state, "signed_in", None))
            except Exception as exc:
                setattr(request.state, _FAILED_ATTR, True)
                log.error("page_failed", path=request.url.path, error=exc, exc_info=exc)
                response = error_page(request, _problem_for(exc), signed_in=getattr(request.state, "signed_in", None))
            add_security_headers(response, settings_of(request))
            return response

        return handler


def add_security_headers(response: Response, settings: Settings) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Content-Security-Policy", content_security_policy(settings))


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def content_security_policy(settings: Settings) -> str:
    public = urlsplit(settings.public_url)
    origin = f"{public.scheme}://{public.netloc}"
    return (
        "default-src 'self'; "
        f"img-src 'self' {origin} https: data:; "
        "style-src 'self'; script-src 'self'; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )
