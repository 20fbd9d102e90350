"""Meta's webhook endpoint: the verification handshake, and deliveries verified, stored and acknowledged.

The POST path is deliberately plain Starlette (no dependency injection, no JSON parsing, no ORM): read the raw
body once under a cap, check the signature over those exact bytes, have the writer commit one row (group-committed
with concurrent deliveries), answer 200, and wake the processor. Everything else happens in the worker. Not under
/api, so no API key: the signature is the auth.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from replyflow import wakeup
from replyflow.errors import Forbidden, NotAuthenticated, PayloadTooLarge, ReplyflowError, ValidationFailed
from replyflow.logging import get_logger
from replyflow.monitoring.metrics import observe_webhook_delivery
from replyflow.webhooks.signature import SIGNATURE_HEADER, safe_challenge, verify_signature, verify_token_matches
from replyflow.webhooks.waker import Waker
from replyflow.webhooks.writer import DeliveryWriter

log = get_logger("replyflow.webhooks")
_SIGNATURE_HEADER = SIGNATURE_HEADER.encode()

PATH = "/webhooks/instagram"
router = APIRouter(tags=["webhooks"])


class _Inbox:
    """Per-app state of the endpoint, built on first use from the app's settings and runtime."""

    def __init__(self, app: Any) -> None:
        settings = app.state.settings
        runtime = app.state.runtime
        self.secrets = [secret.encode() for secret in settings.webhook_secrets]
        self.verify_token: str = settings.verify_token
        self.max_body: int = settings.webhook_max_body_bytes
        self.runtime = runtime
        # A web-only process announces deliveries on the job queue, through a coalescing waker thread.
        self.waker = Waker(lambda: runtime.queue.enqueue("webhooks.process_delivery"))
        runtime.on_close(self.waker.stop)
        self.writer = DeliveryWriter(runtime.engine)
        runtime.on_close(self.writer.stop)  # closers run in reverse: the writer drains before the waker stops

    def notify(self) -> None:
        """A delivery is stored: wake this process's processor directly, or announce it on the queue."""
        if not wakeup.notify(self.runtime, wakeup.DELIVERIES):
            self.waker.notify()


def _inbox_of(app: Any) -> _Inbox:
    state = app.state
    inbox: _Inbox | None = getattr(state, "webhook_inbox", None)
    if inbox is None:  # no await between the check and the set: safe on the event loop
        inbox = state.webhook_inbox = _Inbox(app)
    return inbox


def _inbox(request: Request) -> _Inbox:
    return _inbox_of(request.app)


def _error(error: ReplyflowError) -> JSONResponse:
    return JSONResponse(error.to_dict(), status_code=error.http_status)


async def verify_subscription(request: Request) -> Response:
    """Meta's handshake: ``hub.mode=subscribe`` with our verify token → the challenge as plain text."""
    inbox = _inbox(request)
    params = request.query_params
    if params.get("hub.mode") != "subscribe" or not verify_token_matches(
        params.get("hub.verify_token"), inbox.verify_token
    ):
        log.warning("webhook_verification_refused", mode=params.get("hub.mode"))
        return _error(
            Forbidden(
                "The verify token does not match.",
                code="verify_token_mismatch",
                hint="Use the value of REPLYFLOW_WEBHOOK_VERIFY_TOKEN as the Verify Token in the App Dashboard.",
            )
        )
    challenge = safe_challenge(params.get("hub.challenge"))
    if challenge is None:
        # The token was right, so this is a malformed request rather than a stranger: 400, not 403.
        return _error(
            ValidationFailed(
                "hub.challenge is missing or not a short alphanumeric value.",
                code="invalid_challenge",
                status=400,
                field="hub.challenge",
                hint="Meta sends a number; send it unchanged.",
            )
        )
    return PlainTextResponse(challenge, headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})


_JSON = (b"content-type", b"application/json")


def _body_of(error: ReplyflowError) -> tuple[int, bytes]:
    return error.http_status, json.dumps(error.to_dict()).encode()


# The answers are constants, rendered once: the POST path is the product's hot path.
_BAD_SIGNATURE = _body_of(
    NotAuthenticated(
        "The X-Hub-Signature-256 header is missing or does not match the body.",
        code="invalid_signature",
        hint="Meta signs deliveries with the app secret; check REPLYFLOW_META_APP_SECRET.",
    )
)
_STORAGE_FAILED = _body_of(
    ReplyflowError(
        "The delivery could not be stored.",
        code="storage_unavailable",
        status=503,
        hint="Check that the database is reachable; Meta will retry.",
    )
)


def _too_large_body(limit: int) -> tuple[int, bytes]:
    return _body_of(PayloadTooLarge(f"Webhook deliveries are limited to {limit} bytes."))


async def _answer(send: Any, answer: tuple[int, bytes]) -> None:
    status, body = answer
    await send(
        {"type": "http.response.start", "status": status,
         "headers": [_JSON, (b"content-length", str(len(body)).encode())]}
    )  # fmt: skip
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The raw body, or None as soon as it grows past ``limit`` (a chunked body has no Content-Length).

    Raises ClientDisconnect when the sender goes away mid-body.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def receive_delivery(scope: Any, receive: Any, send: Any) -> None:
    """Verify, store, acknowledge: a raw ASGI endpoint, where a 200 means the delivery is committed.

    Raw ASGI rather than Starlette's Request/Response: on this path those objects cost a measurable share of each
    delivery, and nothing here needs them (headers are read once from the scope, answers are pre-rendered).
    """
    inbox = _inbox_of(scope["app"])
    declared: bytes | None = None
    signature: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            declared = value
        elif name == _SIGNATURE_HEADER:
            signature = value
    if declared is not None and declared.isdigit() and int(declared) > inbox.max_body:
        observe_webhook_delivery(result="too_large")
        return await _answer(send, _too_large_body(inbox.max_body))
    if not signature:
        log.warning("webhook_signature_missing")
        observe_webhook_delivery(result="invalid_signature")
        return await _answer(send, _BAD_SIGNATURE)
    try:
        body = await _read_body(receive, inbox.max_body)
    except ClientDisconnect:
        observe_webhook_delivery(result="client_disconnected")
        return None  # nobody is listening; nothing was stored
    if body is None:
        observe_webhook_delivery(result="too_large")
        return await _answer(send, _too_large_body(inbox.max_body))
    secret_index = verify_signature(body, signature.decode("latin-1"), inbox.secrets)
    if secret_index is None:
        log.warning("webhook_signature_mismatch", body_size=len(body))
        observe_webhook_delivery(result="invalid_signature")
        return await _answer(send, _BAD_SIGNATURE)
    try:
        delivery_id = await inbox.writer.store(body=body, secret_index=secret_index)
    except Exception:  # logged by the writer. Not stored, so not acknowledged: Meta retries for 36 hours.
        observe_webhook_delivery(result="storage_error")
        return await _answer(send, _STORAGE_FAILED)
    observe_webhook_delivery(result="stored")
    inbox.notify()
    return await _answer(send, (200, b'{"status":"received","delivery_id":%d}' % delivery_id))


class _DeliveryEndpoint:
    """The route's endpoint (in-process clients: tests, the sandbox); the same handler as the fast path."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await receive_delivery(scope, receive, send)


class WebhookFastPath:
    """Pure ASGI wrapper around the whole app: deliveries go straight to :func:`receive_delivery`.

    The POST path is the product's hot path (budget: ingest ≥ 0.7× a bare signature-checking ASGI app). Passing it
    through FastAPI's middleware stack and matching it against every route roughly halves the rate for no benefit:
    the handler answers every error itself. ``replyflow serve`` wraps the app with this; everything else (and the
    same route, for in-process clients such as tests and the sandbox) goes through the app as usual.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == PATH:
            scope["app"] = self.app  # what Starlette would set: the handler finds its state through the app
            await receive_delivery(scope, receive, send)
            return
        await self.app(scope, receive, send)


router.add_route(PATH, verify_subscription, methods=["GET"], include_in_schema=False)
# A callable that is not a function is mounted by Starlette as a raw ASGI endpoint.
router.routes.append(Route(PATH, _DeliveryEndpoint(), methods=["POST"], include_in_schema=False))
