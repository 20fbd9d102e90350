"""The FastAPI application: routers of every domain, one error handler, health checks and the worker's lifecycle."""

from __future__ import annotations

import importlib
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from replyflow.config import Settings, get_settings
from replyflow.db import ping
from replyflow.errors import NotFound, ReplyflowError, ValidationFailed
from replyflow.logging import get_logger, register_secrets
from replyflow.runtime import Runtime, set_current

log = get_logger("replyflow.app")

# Each domain's ``api.py`` exposes ``router``; listed here so the app's shape is visible in one place.
ROUTER_MODULES = (
    "replyflow.webhooks.api",
    "replyflow.accounts.api",
    "replyflow.automation.api",
    "replyflow.conversations.api",
    "replyflow.contacts.api",
    "replyflow.analytics.api",
    "replyflow.monitoring.api",
    "replyflow.audit.api",
    "replyflow.web.views",
)


def error_response(error: ReplyflowError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.http_status == 401 else None
    return JSONResponse(error.to_dict(), status_code=error.http_status, headers=headers)


async def _replyflow_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ReplyflowError)
    if exc.http_status >= 500:
        log.warning("request_failed", code=exc.error_code, status=exc.http_status, message=exc.message)
    return error_response(exc)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "is not valid", "type": "value_error"}
    field = _field_name(tuple(first.get("loc", ())))
    if first.get("type") == "json_invalid":
        error = ValidationFailed(
            "The request body is not valid JSON.",
            code="invalid_json",
            hint="Send a JSON object with Content-Type: application/json.",
        )
    else:
        # The offending input is never echoed back: it may be a token someone pasted in the wrong box.
        message = str(first.get("msg", "is not valid")).removeprefix("Value error, ")
        details = [
            {
                "field": _field_name(tuple(e.get("loc", ()))),
                "message": str(e.get("msg", "")).removeprefix("Value error, "),
            }
            for e in errors[:20]
        ]
        error = ValidationFailed(f"{field}: {message}", field=field, extra={"details": details})
    return error_response(error)


#: Machine clients live here: they always get the JSON error shape, whatever they accept.
_API_PREFIXES = ("/api/", "/webhooks/")


def _wants_page(request: Request) -> bool:
    """A browser (it asks for HTML) outside the API: it gets a readable page instead of JSON."""
    path = request.url.path
    if path.startswith(_API_PREFIXES) or path.rstrip("/") in ("/api", "/webhooks"):
        return False
    return "text/html" in request.headers.get("accept", "").lower()


def _error_page(request: Request, status: int) -> Response | None:
    """The dashboard's calm error page for a 404 or 405 (None when the dashboard is not installed)."""
    try:
        rendering = importlib.import_module("replyflow.web.rendering")
    except ModuleNotFoundError:
        return None
    if status == 404:
        problem = rendering.not_found_problem()
    else:
        problem = rendering.Problem(
            405,
            "Not possible here",
            "This address cannot be used this way.",
            "Go back and use the buttons and links of the page, or the menu.",
        )
    response: Response = rendering.error_page(request, problem)
    rendering.add_security_headers(response, request.app.state.settings)
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (404, 405) and _wants_page(request):
        page = _error_page(request, exc.status_code)
        if page is not None:
            if exc.status_code == 405 and exc.headers:
                page.headers.update(exc.headers)  # keep Allow
            return page
    if exc.status_code == 404:
        return error_response(NotFound("There is nothing at this address.", hint="Check the URL."))
    if exc.status_code == 405:
        return error_response(
            ReplyflowError(
                "This method is not allowed here.",
                code="method_not_allowed",
                status=405,
                hint="Check the API documentation at /docs.",
            )
        )
    return error_response(
        ReplyflowError(str(exc.detail), code="http_error", status=exc.status_code, hint="Check the request.")
    )


async def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled_error", error=exc, exc_info=exc)
    return error_response(ReplyflowError())


def create_app(
    settings: Settings | None = None, *, runtime: Runtime | None = None, run_worker: bool = False
) -> FastAPI:
    settings = settings or get_settings()
    register_secrets([*settings.webhook_secrets, settings.verify_token, *settings.secret_keys])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from replyflow.worker import EmbeddedWorker

        rt: Runtime = app.state.runtime
        # A wrong REPLYFLOW_SECRET_KEY stops start-up here, not at the first token use.
        importlib.import_module("replyflow.accounts.crypto").verify_keys(rt)
        set_current(rt)
        worker = EmbeddedWorker(rt) if run_worker else None
        if worker is not None:
            worker.start()
        # Dashboard templates compile in the background, so the first visit to a page does not wait for it.
        warm = importlib.import_module("replyflow.web.rendering").warm_templates
        threading.Thread(target=warm, name="replyflow-warm-templates", daemon=True).start()
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
            for hook in reversed(app.state.shutdown_hooks):
                await hook()
            if runtime is None:  # we built it, we close it
                rt.close()

    app = FastAPI(
        title="replyflow",
        version="0.1.0",
        description="Instagram Comment → DM automation through Meta's official Graph API.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.runtime = runtime or Runtime(settings)
    app.state.session_factory = app.state.runtime.session_factory
    app.state.shutdown_hooks = []  # async callables run after the worker stops

    app.add_exception_handler(ReplyflowError, _replyflow_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            ping(app.state.runtime.engine)
            checks["database"] = "ok"
        except Exception:
            checks["database"] = "unavailable"
        if settings.redis_url:
            try:
                import redis

                redis.Redis.from_url(settings.redis_url, socket_timeout=2).ping()
                checks["redis"] = "ok"
            except Exception:
                checks["redis"] = "unavailable"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
        )

    for module_name in ROUTER_MODULES:
        app.include_router(importlib.import_module(module_name).router)

    if settings.is_sandbox:
        # The emulator is wired in here and only here, chosen by configuration.
        importlib.import_module("replyflow.sandbox.integration").install(app)
    return app
