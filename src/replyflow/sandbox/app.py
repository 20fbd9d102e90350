"""The emulator as an ASGI app: Graph API under ``/graph/{version}``, login dialog, images, simulation controls."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl

import httpx
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from replyflow.sandbox import assets, ids, oauth_dialog
from replyflow.sandbox.errors import GraphError, missing_parameter
from replyflow.sandbox.failures import FailureKind, InjectedFailure
from replyflow.sandbox.graph_api import GraphCall, handle, resolve_route, route_uses
from replyflow.sandbox.models import OutboxEntry
from replyflow.sandbox.state import SandboxState, WebhookDelivery
from replyflow.sandbox.webhooks import WebhookSender

log = logging.getLogger("replyflow.sandbox")

MAX_BODY_BYTES = 1024 * 1024
_VERSIONISH = re.compile(r"^v\d")
_BASE_HEADERS = {
    "access-control-allow-origin": "*",
    "cache-control": "private, no-cache, no-store, must-revalidate",
    "pragma": "no-cache",
    "expires": "Sat, 01 Jan 2000 00:00:00 GMT",
    "x-content-type-options": "nosniff",
}


def create_sandbox_app(
    state: SandboxState,
    *,
    webhook_sender: WebhookSender | None = None,
    deliver_in_background: bool = True,
) -> Starlette:
    """The emulator's ASGI app. Mount it anywhere; links it returns follow the mount path.

    With a ``webhook_sender``, updates caused by Graph calls (our own reply's ``comments`` event, message
    echoes) are delivered after the response; control endpoints deliver before answering and report how it went.
    """
    sandbox = _Sandbox(state, webhook_sender, deliver_in_background=deliver_in_background)
    routes = [
        Route("/graph/{path:path}", sandbox.graph, methods=["GET", "POST", "DELETE"]),
        # graph.instagram.com (Instagram Login) and Instagram's consent page and code exchange.
        Route("/instagram/{path:path}", sandbox.instagram_graph, methods=["GET", "POST", "DELETE"]),
        Route("/instagram-login/oauth/authorize", sandbox.instagram_dialog, methods=["GET", "POST"]),
        Route("/instagram-login/oauth/access_token", sandbox.instagram_code_exchange, methods=["POST"]),
        Route("/dialog/oauth", sandbox.dialog, methods=["GET", "POST"]),
        Route("/{version}/dialog/oauth", sandbox.dialog, methods=["GET", "POST"]),
        Route("/assets/{kind}/{name}", sandbox.asset, methods=["GET"]),
        Route("/control/state", sandbox.control_state, methods=["GET"]),
        Route("/control/comments", sandbox.control_comment, methods=["POST"]),
        Route("/control/messages", sandbox.control_message, methods=["POST"]),
        Route("/control/postbacks", sandbox.control_postback, methods=["POST"]),
        Route("/control/seen", sandbox.control_seen, methods=["POST"]),
        Route("/control/media", sandbox.control_media, methods=["POST"]),
        Route("/control/outbox", sandbox.control_outbox, methods=["GET"]),
        Route("/control/failures", sandbox.control_failures, methods=["POST", "DELETE"]),
        Route("/control/clock", sandbox.control_clock, methods=["POST"]),
        Route("/control/tokens", sandbox.control_token, methods=["POST"]),
        Route("/control/tokens/invalidate", sandbox.control_invalidate, methods=["POST"]),
        Route("/control/instagram-tokens", sandbox.control_instagram_token, methods=["POST"]),
        Route("/control/webhooks", sandbox.control_webhooks, methods=["GET"]),
        Route("/control/webhooks/flush", sandbox.control_flush, methods=["POST"]),
        Route("/control/webhooks/{webhook_id}/redeliver", sandbox.control_redeliver, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox_state = state
    app.state.webhook_sender = webhook_sender
    return app


@dataclass
class _Outcome:
    version: str
    call: GraphCall | None = None
    failure: InjectedFailure | None = None
    result: Any = None
    error: GraphError | None = None


class _Sandbox:
    def __init__(self, state: SandboxState, sender: WebhookSender | None, *, deliver_in_background: bool) -> None:
        self.state = state
        self.sender = sender
        self.deliver_in_background = deliver_in_background

    # -- the Graph API --------------------------------------------------------------------------------------

    async def graph(self, request: Request) -> Response:
        return await self._graph(request, host="facebook")

    async def instagram_graph(self, request: Request) -> Response:
        return await self._graph(request, host="instagram")

    async def _graph(self, request: Request, *, host: str) -> Response:
        trace = ids.fbtrace_id()
        outcome = await self._run(request, host=host)
        with self.state.transaction():
            headers = self.state.usage_headers(
                uses=outcome.call.uses if outcome.call is not None else [],
                app_throttled=outcome.error is not None and outcome.error.code == 4,
                regain_minutes=outcome.error.regain_minutes if outcome.error is not None else None,
            )
        headers.update(_BASE_HEADERS)
        headers["facebook-api-version"] = outcome.version
        headers["x-fb-trace-id"] = trace
        background = self._background_flush()
        failure = outcome.failure
        if failure is not None and failure.kind in ("timeout", "timeout_after_send"):
            if background is not None:  # what was done still notifies, even if the caller never hears back
                await background()
                background = None
            await _time_out(failure)
            if failure.kind == "timeout":
                # Only reached after a hang: the caller has given up; nothing was done.
                outcome.error = GraphError("An unexpected error has occurred. Please retry your request later.",
                                           code=2, status=503, is_transient=True)  # fmt: skip
        if outcome.error is not None:
            error = outcome.error
            if error.code in (190, 104):
                reason = _header_safe(error.message)
                headers["www-authenticate"] = f'OAuth "Facebook Platform" "invalid_token" "{reason}"'
            return GraphJSONResponse(
                error.body(fbtrace_id=trace), status_code=error.status, headers=headers, background=_task(background)
            )
        return GraphJSONResponse(outcome.result, headers=headers, background=_task(background))

    async def _run(self, request: Request, *, host: str) -> _Outcome:
        """Parse the call, apply an injected failure if one matches, and handle it under the state's lock."""
        state = self.state
        segments = [part for part in request.path_params["path"].split("/") if part]
        version_segment = segments[0] if segments and _VERSIONISH.match(segments[0]) else None
        rest = segments[1:] if version_segment is not None else segments
        outcome = _Outcome(version=state.world.default_version)
        try:
            params, query = await _read_params(request)
            method = _effective_method(request.method, params)
            token, token_in_query = _token_of(request, params, query)
            await self._verify_subscription_callback(method, rest, params, token)
            with state.transaction():
                outcome.version = state.resolve_version(version_segment)
                call = outcome.call = GraphCall(
                    method=method,
                    version=outcome.version,
                    segments=rest,
                    params=params,
                    token=token,
                    token_in_query=token_in_query,
                    root_url=_root_url(request),
                    request_path=("/instagram/" if host == "instagram" else "/graph/") + "/".join(segments),
                    query=query,
                    state=state,
                    host=host,
                )
                route = resolve_route(call)
                failure = outcome.failure = state.take_failure(
                    method=method, path="/" + "/".join(rest), template=route.template
                )
                if failure is not None and failure.kind in ("transient", "rate_limit", "error"):
                    call.uses = route_uses(state, route)
                    raise failure.to_error()
                if failure is None or failure.kind != "timeout":
                    outcome.result = handle(call, route)
        except GraphError as exc:
            outcome.error = exc
        return outcome

    async def _verify_subscription_callback(
        self, method: str, rest: list[str], params: dict[str, Any], token: str | None
    ) -> None:
        """Meta checks a new callback URL with a ``hub.challenge`` GET before it saves the subscription."""
        if method != "POST" or len(rest) != 2 or rest[0] != self.state.app.id or rest[1] != "subscriptions":
            return
        callback = params.get("callback_url")
        if not callback or token is None:
            return
        if self.state.authenticate(token).kind != "APP":
            return  # the handler refuses it with the proper error
        verify_token = params.get("verify_token")
        if not verify_token:
            raise missing_parameter("verify_token")
        if self.sender is not None and not await self.sender.verify_callback(
            callback_url=str(callback), verify_token=str(verify_token)
        ):
            raise GraphError(
                f"(#2200) callback verification failed: The URL couldn't be validated. Response does not match "
                f"challenge. Callback URL provided: {callback}",
                code=2200,
            )

    def _background_flush(self) -> Callable[[], Awaitable[None]] | None:
        sender = self.sender
        if sender is None or not self.deliver_in_background or not self.state.peek_pending_webhooks():
            return None

        async def flush() -> None:
            try:
                await sender.flush(self.state)
            except Exception:  # delivery trouble must never break the Graph response
                log.exception("sandbox webhook delivery failed")

        return flush

    # -- the login dialog -----------------------------------------------------------------------------------

    async def dialog(self, request: Request) -> Response:
        state = self.state
        if request.method == "POST":
            form = await request.form()
            fields = {key: str(value) for key, value in form.items()}
            granted = [str(v) for v in form.getlist("granted")]
            page_ids = [str(v) for v in form.getlist("pages")]
        else:
            fields, granted, page_ids = dict(request.query_params), [], []
        try:
            dialog_request = oauth_dialog.parse_request(state, fields)
        except oauth_dialog.DialogError as exc:
            return HTMLResponse(oauth_dialog.render_error(exc), status_code=400, headers=oauth_dialog.HTML_HEADERS)
        users = list(state.world.users.values())
        if request.method == "GET":
            pages = {u.id: state.pages_of_user(u.id) for u in users}
            page = oauth_dialog.render_consent(
                state=state, request=dialog_request, users=users, pages_by_user=pages, action=request.url.path
            )
            return HTMLResponse(page, headers=oauth_dialog.HTML_HEADERS)
        if fields.get("decision") != "continue":
            target = oauth_dialog.redirect_with(
                dialog_request.redirect_uri,
                {
                    "error_reason": "user_denied",
                    "error": "access_denied",
                    "error_description": "Permissions error.",
                    "state": dialog_request.state,
                },
            )
            return RedirectResponse(target, status_code=303)
        user_id = fields.get("user_id", "")
        if user_id not in state.world.users:
            unknown = oauth_dialog.DialogError("Unknown user", "Pick one of the sandbox users.")
            return HTMLResponse(oauth_dialog.render_error(unknown), status_code=400, headers=oauth_dialog.HTML_HEADERS)
        scopes = [s for s in dialog_request.scopes if s in granted or s == "public_profile"]
        own_pages = {p.id for p in state.pages_of_user(user_id)}
        chosen = [p for p in page_ids if p in own_pages]
        code = state.issue_oauth_code(
            user_id=user_id,
            client_id=dialog_request.client_id,
            redirect_uri=dialog_request.redirect_uri,
            scopes=scopes,
            page_ids=chosen,
        )
        target = oauth_dialog.redirect_with(dialog_request.redirect_uri, {"code": code, "state": dialog_request.state})
        return RedirectResponse(target, status_code=303)

    # -- Instagram Login: the consent page and the code exchange ------------------------------------------------

    async def instagram_dialog(self, request: Request) -> Response:
        state = self.state
        if request.method == "POST":
            form = await request.form()
            fields = {key: str(value) for key, value in form.items()}
            granted = [str(v) for v in form.getlist("granted")]
        else:
            fields, granted = dict(request.query_params), []
        try:
            dialog_request = oauth_dialog.parse_instagram_request(state, fields)
        except oauth_dialog.DialogError as exc:
            return HTMLResponse(oauth_dialog.render_error(exc), status_code=400, headers=oauth_dialog.HTML_HEADERS)
        accounts = sorted(state.world.ig_accounts.values(), key=lambda a: (a.page_id is not None, a.username))
        if request.method == "GET":
            page = oauth_dialog.render_instagram_consent(
                state=state, request=dialog_request, accounts=accounts, action=request.url.path
            )
            return HTMLResponse(page, headers=oauth_dialog.HTML_HEADERS)
        if fields.get("decision") != "allow":
            target = oauth_dialog.redirect_with(
                dialog_request.redirect_uri,
                {
                    "error": "access_denied",
                    "error_reason": "user_denied",
                    "error_description": "The user denied your request.",
                    "state": dialog_request.state,
                },
                fragment="_",
            )
            return RedirectResponse(target, status_code=303)
        account_id = fields.get("ig_account_id", "")
        if account_id not in state.world.ig_accounts:
            unknown = oauth_dialog.DialogError("Unknown account", "Pick one of the sandbox Instagram accounts.")
            return HTMLResponse(oauth_dialog.render_error(unknown), status_code=400, headers=oauth_dialog.HTML_HEADERS)
        code = state.issue_instagram_code(
            ig_account_id=account_id,
            client_id=dialog_request.client_id,
            redirect_uri=dialog_request.redirect_uri,
            scopes=[s for s in dialog_request.scopes if s in granted],
        )
        target = oauth_dialog.redirect_with(
            dialog_request.redirect_uri, {"code": code, "state": dialog_request.state}, fragment="_"
        )
        return RedirectResponse(target, status_code=303)

    async def instagram_code_exchange(self, request: Request) -> Response:
        """api.instagram.com/oauth/access_token: form body in, ``{"data": [{access_token, user_id, permissions}]}``."""
        try:
            params, _ = await _read_params(request)
            if params.get("grant_type") != "authorization_code":
                raise GraphError("Invalid grant_type", code=400, type="OAuthException")
            for name in ("client_id", "client_secret", "redirect_uri", "code"):
                if not params.get(name):
                    raise missing_parameter(name)
            token = self.state.redeem_instagram_code(
                code=str(params["code"]),
                client_id=str(params["client_id"]),
                client_secret=str(params["client_secret"]),
                redirect_uri=str(params["redirect_uri"]),
            )
        except GraphError as exc:
            status = 400 if exc.status < 400 or exc.status >= 500 else exc.status
            return GraphJSONResponse(exc.body(fbtrace_id=ids.fbtrace_id()), status_code=status)
        return GraphJSONResponse(
            {
                "data": [
                    {
                        "access_token": token.value,
                        "user_id": token.ig_account_id,
                        "permissions": ",".join(token.scopes),
                    }
                ]
            }
        )

    # -- images -----------------------------------------------------------------------------------------------

    async def asset(self, request: Request) -> Response:
        kind, name = request.path_params["kind"], request.path_params["name"]
        object_id = name.removesuffix(".svg")
        body: str | None = None
        with self.state.transaction():
            if kind == "media" and (media := self.state.get_media(object_id)) is not None:
                body = assets.media_svg(media)
            elif kind == "avatars" and (account := self.state.get_ig_account(object_id)) is not None:
                body = assets.avatar_svg(account)
            elif kind == "pages" and (page := self.state.get_page(object_id)) is not None:
                body = assets.page_svg(page)
        if body is None:
            return Response("Not Found", status_code=404, media_type="text/plain")
        return Response(body, headers=assets.SVG_HEADERS)

    # -- simulation controls ------------------------------------------------------------------------------------

    async def control_state(self, request: Request) -> Response:
        return JSONResponse(self.state.summary())

    async def control_comment(self, request: Request) -> Response:
        async def run(body: _CommentIn) -> dict[str, Any]:
            comment = self.state.add_comment(
                body.media_id, text=body.text, username=body.username, from_id=body.from_id, parent_id=body.parent_id
            )
            deliveries = await self._deliver_now() if body.deliver else []
            return {"comment_id": comment.id, "from_id": comment.from_id, "webhooks": _deliveries(deliveries)}

        return await _control(request, _CommentIn, run, status=202)

    async def control_message(self, request: Request) -> Response:
        async def run(body: _MessageIn) -> dict[str, Any]:
            item = self.state.user_message(
                body.ig_account_id,
                text=body.text,
                username=body.username,
                from_id=body.from_id,
                quick_reply_payload=body.quick_reply_payload,
            )
            deliveries = await self._deliver_now()
            return {"mid": item["message"]["mid"], "from_id": item["sender"]["id"], "webhooks": _deliveries(deliveries)}

        return await _control(request, _MessageIn, run, status=202)

    async def control_postback(self, request: Request) -> Response:
        async def run(body: _PostbackIn) -> dict[str, Any]:
            item = self.state.user_postback(
                body.ig_account_id, payload=body.payload, title=body.title, username=body.username, from_id=body.from_id
            )
            deliveries = await self._deliver_now()
            return {
                "mid": item["postback"]["mid"],
                "from_id": item["sender"]["id"],
                "webhooks": _deliveries(deliveries),
            }

        return await _control(request, _PostbackIn, run, status=202)

    async def control_seen(self, request: Request) -> Response:
        async def run(body: _SeenIn) -> dict[str, Any]:
            item = self.state.user_seen(body.ig_account_id, mid=body.mid, username=body.username, from_id=body.from_id)
            deliveries = await self._deliver_now()
            return {"from_id": item["sender"]["id"], "webhooks": _deliveries(deliveries)}

        return await _control(request, _SeenIn, run, status=202)

    async def control_media(self, request: Request) -> Response:
        async def run(body: _MediaIn) -> dict[str, Any]:
            media = self.state.add_media(
                body.ig_account_id,
                caption=body.caption,
                media_product_type=body.media_product_type,
                live=body.live,
                emoji=body.emoji,
            )
            return {"media_id": media.id, "media_product_type": media.media_product_type}

        return await _control(request, _MediaIn, run, status=201)

    async def control_outbox(self, request: Request) -> Response:
        kind = request.query_params.get("kind")
        if kind not in (None, "public_reply", "private_reply", "message"):
            return _control_error("kind must be public_reply, private_reply or message", status=400)
        try:
            limit = int(request.query_params.get("limit", "100"))
        except ValueError:
            return _control_error("limit must be a number", status=400)
        entries = self.state.outbox(
            ig_account_id=request.query_params.get("ig_account_id"),
            kind=kind,  # type: ignore[arg-type]  # checked just above
            limit=max(1, min(limit, 1000)),
        )
        return JSONResponse({"data": [outbox_json(e) for e in entries]})

    async def control_failures(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.clear_failures()
            return JSONResponse({"success": True})

        async def run(body: _FailureIn) -> dict[str, Any]:
            failure = self.state.inject_failure(
                body.pattern,
                kind=body.kind,
                times=body.times,
                code=body.code,
                subcode=body.subcode,
                message=body.message,
                regain_minutes=body.regain_minutes,
                # Over real HTTP an exception is not a timeout; hang instead (longer than our client waits).
                hang_seconds=body.hang_seconds,
            )
            return {"pattern": failure.pattern, "kind": failure.kind, "times": failure.remaining}

        return await _control(request, _FailureIn, run, status=201)

    async def control_clock(self, request: Request) -> Response:
        async def run(body: _ClockIn) -> dict[str, Any]:
            now = self.state.clock.advance(days=body.days, hours=body.hours, minutes=body.minutes, seconds=body.seconds)
            return {"now": now.isoformat()}

        return await _control(request, _ClockIn, run, status=200)

    async def control_token(self, request: Request) -> Response:
        async def run(body: _TokenIn) -> dict[str, Any]:
            user_id = body.user_id or (self.state.demo.user_id if self.state.demo else None)
            if user_id is None:
                raise ValueError("give a user_id (there is no demo user)")
            value = self.state.issue_user_token(
                user_id, scopes=body.scopes, long_lived=body.long_lived, page_ids=body.page_ids
            )
            token = self.state.token_info(value)
            assert token is not None
            return {
                "access_token": value,
                "token_type": "bearer",
                "expires_at": token.expires_at.isoformat() if token.expires_at else None,
                "scopes": token.scopes,
            }

        return await _control(request, _TokenIn, run, status=201)

    async def control_instagram_token(self, request: Request) -> Response:
        async def run(body: _InstagramTokenIn) -> dict[str, Any]:
            account_id = body.ig_account_id or (self.state.demo.instagram_login_account_id if self.state.demo else None)
            if account_id is None:
                raise ValueError("give an ig_account_id (there is no demo Instagram Login account)")
            value = self.state.issue_instagram_token(account_id, scopes=body.scopes, long_lived=body.long_lived)
            token = self.state.token_info(value)
            assert token is not None and token.expires_at is not None
            return {
                "access_token": value,
                "token_type": "bearer",
                "expires_at": token.expires_at.isoformat(),
                "scopes": token.scopes,
            }

        return await _control(request, _InstagramTokenIn, run, status=201)

    async def control_invalidate(self, request: Request) -> Response:
        async def run(body: _InvalidateIn) -> dict[str, Any]:
            self.state.invalidate_token(body.access_token, reason=body.reason)
            return {"success": True}

        return await _control(request, _InvalidateIn, run, status=200)

    async def control_webhooks(self, request: Request) -> Response:
        return JSONResponse({"data": [d.to_dict() for d in self.state.webhook_deliveries(limit=100)],
                             "pending": len(self.state.peek_pending_webhooks())})  # fmt: skip

    async def control_flush(self, request: Request) -> Response:
        if self.sender is None:
            return _control_error("this sandbox has no webhook sender", status=409)
        return JSONResponse({"webhooks": _deliveries(await self.sender.flush(self.state))})

    async def control_redeliver(self, request: Request) -> Response:
        if self.sender is None:
            return _control_error("this sandbox has no webhook sender", status=409)
        try:
            delivery = await self.sender.redeliver(self.state, request.path_params["webhook_id"])
        except KeyError:
            return _control_error("no delivered webhook with that id", status=404)
        return JSONResponse({"webhooks": _deliveries([delivery])})

    async def _deliver_now(self) -> list[WebhookDelivery]:
        if self.sender is None:
            return []
        return await self.sender.flush(self.state)


# -- control request bodies ----------------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = {"extra": "forbid"}


class _PersonIn(_In):
    username: str | None = Field(default=None, min_length=1, max_length=30)
    from_id: str | None = None


class _CommentIn(_In):
    media_id: str
    text: str = Field(min_length=1, max_length=2200)
    username: str = Field(min_length=1, max_length=30)
    from_id: str | None = None
    parent_id: str | None = None
    deliver: bool = True


class _MessageIn(_PersonIn):
    ig_account_id: str
    text: str = Field(min_length=1, max_length=1000)
    quick_reply_payload: str | None = None


class _PostbackIn(_PersonIn):
    ig_account_id: str
    payload: str = Field(min_length=1)
    title: str = Field(min_length=1, max_length=20)


class _SeenIn(_PersonIn):
    ig_account_id: str
    mid: str


class _MediaIn(_In):
    ig_account_id: str
    caption: str = ""
    media_product_type: Literal["FEED", "REELS"] = "FEED"
    live: bool = False
    emoji: str = Field(default="☕", max_length=8)


class _FailureIn(_In):
    pattern: str = Field(min_length=1)
    kind: FailureKind = "transient"
    times: int | None = Field(default=1, ge=1)
    code: int | None = None
    subcode: int | None = None
    message: str | None = None
    regain_minutes: int = Field(default=5, ge=0)
    hang_seconds: float | None = Field(default=30.0, ge=0)


class _ClockIn(_In):
    days: float = Field(default=0, ge=0)
    hours: float = Field(default=0, ge=0)
    minutes: float = Field(default=0, ge=0)
    seconds: float = Field(default=0, ge=0)


class _TokenIn(_In):
    user_id: str | None = None
    scopes: list[str] | None = None
    long_lived: bool = False
    page_ids: list[str] | None = None


class _InstagramTokenIn(_In):
    ig_account_id: str | None = None
    scopes: list[str] | None = None
    long_lived: bool = False


class _InvalidateIn(_In):
    access_token: str
    reason: Literal["expired", "password_changed", "logged_out", "app_deauthorized"] = "password_changed"


_M = TypeVar("_M", bound=BaseModel)


async def _control(
    request: Request, model: type[_M], run: Callable[[_M], Awaitable[dict[str, Any]]], *, status: int
) -> Response:
    try:
        raw = await request.body()
        body = model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        return _control_error(f"{where}: {first.get('msg', 'is not valid')}", status=422)
    try:
        result = await run(body)
    except KeyError as exc:
        return _control_error(str(exc.args[0]) if exc.args else "not found", status=404)
    except ValueError as exc:
        return _control_error(str(exc), status=400)
    except GraphError as exc:
        return JSONResponse(exc.body(fbtrace_id=ids.fbtrace_id()), status_code=exc.status)
    return JSONResponse(result, status_code=status)


def _control_error(message: str, *, status: int) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "SandboxControlError", "code": status}},
                        status_code=status)  # fmt: skip


def _deliveries(items: list[WebhookDelivery]) -> list[dict[str, Any]]:
    return [d.to_dict() for d in items]


def outbox_json(entry: OutboxEntry) -> dict[str, Any]:
    """An outbox entry as the control API (and our product's sandbox routes) show it."""
    data = entry.model_dump(mode="json")
    data["at"] = _iso(entry.at)
    return data


# -- request plumbing -------------------------------------------------------------------------------------------


async def _read_params(request: Request) -> tuple[dict[str, Any], dict[str, str]]:
    """Query parameters, overlaid with a form or JSON body (Meta accepts parameters in any of them)."""
    query = {key: value for key, value in request.query_params.items()}
    params: dict[str, Any] = dict(query)
    if request.method == "GET":
        return params, query
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise GraphError("(#100) The request body is too large", code=100)
    if not body:
        return params, query
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            data = json.loads(body)
        except ValueError:
            raise GraphError("(#100) The request body is not valid JSON", code=100) from None
        if not isinstance(data, dict):
            raise GraphError("(#100) The request body must be a JSON object", code=100)
        params.update(data)
    elif content_type == "multipart/form-data":
        form = await request.form()
        params.update({key: str(value) for key, value in form.items()})
    else:
        params.update(dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)))
    return params, query


class GraphJSONResponse(JSONResponse):
    """JSON encoded the way the Graph API sends it: ASCII only (``\\uXXXX``) and ``/`` escaped as ``\\/``."""

    media_type = "application/json; charset=UTF-8"

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
        return text.replace("/", "\\/").encode("ascii")


def _effective_method(method: str, params: dict[str, Any]) -> str:
    """Meta's method override: a POST carrying ``method=GET`` (or DELETE) is served as that method."""
    override = params.pop("method", None)
    if method == "POST" and isinstance(override, str) and override.upper() in ("GET", "DELETE", "POST"):
        return override.upper()
    return method


def _token_of(request: Request, params: dict[str, Any], query: dict[str, str]) -> tuple[str | None, bool]:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and value.strip():
        return value.strip(), False
    token = params.get("access_token")
    if isinstance(token, str) and token:
        return token, "access_token" in query
    return None, False


def _root_url(request: Request) -> str:
    root_path = request.scope.get("root_path", "")
    return f"{request.url.scheme}://{request.url.netloc}{root_path}".rstrip("/")


async def _time_out(failure: InjectedFailure) -> None:
    if failure.hang_seconds is not None:
        await asyncio.sleep(failure.hang_seconds)
        return
    # Through httpx.ASGITransport this reaches the caller as the very exception a real timeout raises.
    raise httpx.ReadTimeout("sandbox: injected timeout (no answer from the Graph API)")


def _task(flush: Callable[[], Awaitable[None]] | None) -> BackgroundTask | None:
    return BackgroundTask(flush) if flush is not None else None


def _header_safe(text: str) -> str:
    return text.replace('"', "'").replace("\r", " ").replace("\n", " ")


def _iso(moment: datetime) -> str:
    return moment.isoformat()
