"""Meta's webhook endpoint: the verification handshake, and deliveries verified, stored and acknowledged.

The POST path is deliberately plain Starlette (no dependency injection, no JSON parsing, no ORM): read the raw
body once under a cap, check the signature over those exact bytes, have the writer commit one row (group-committed
with concurrent deliveries), answer 200, and wake the processor. Everything else happens in the worker. Not under
/api, so no API key: the signature is the auth.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from replyflow.errors import Forbidden, NotAuthenticated, PayloadTooLarge, ReplyflowError, ValidationFailed
from replyflow.logging import get_logger
from replyflow.monitoring.metrics import observe_webhook_delivery
from replyflow.webhooks.signature import SIGNATURE_HEADER, safe_challenge, verify_signature, verify_token_matches
from replyflow.webhooks.waker import Waker
from replyflow.webhooks.writer import DeliveryWriter

log = get_logger("replyflow.webhooks")

PATH = "/webhooks/instagram"
router = APIRouter(tags=["webhooks"])


class _Inbox:
    """Per-app state of the endpoint, built on first use from the app's settings and runtime."""

    def __init__(self, app: Any) -> None:
        settings = app.state.settings
        runtime = app.state.runtime
        self.secrets = [secret.encode() for secret in settings.app_secrets]
        self.verify_token: str = settings.verify_token
        self.max_body: int = settings.webhook_max_body_bytes
        self.waker = Waker(lambda: runtime.queue.enqueue("webhooks.process_delivery"))
        runtime.on_close(self.waker.stop)
        self.writer = DeliveryWriter(runtime.engine)
        runtime.on_close(self.writer.stop)  # closers run in reverse: the writer drains before the waker stops


def _inbox(request: Request) -> _Inbox:
    state = request.app.state
    inbox: _Inbox | None = getattr(state, "webhook_inbox", None)
    if inbox is None:  # no await between the check and the set: safe on the event loop
        inbox = state.webhook_inbox = _Inbox(request.app)
    return inbox


def _error(error: ReplyflowError) -> JSONResponse:
    return JSONResponse(error.to_dict(), status_code=error.http_status)


def _bad_signature() -> JSONResponse:
    return _error(
        NotAuthenticated(
            "The X-Hub-Signature-256 header is missing or does not match the body.",
            code="invalid_signature",
            hint="Meta signs deliveries with the app secret; check REPLYFLOW_META_APP_SECRET.",
        )
    )


def _too_large(limit: int) -> JSONResponse:
    return _error(PayloadTooLarge(f"Webhook deliveries are limited to {limit} bytes."))


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


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The raw body, or None as soon as it grows past ``limit`` (a chunked body has no Content-Length)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_delivery(request: Request) -> Response:
    """Verify, store, acknowledge. A 200 means the delivery is committed."""
    inbox = _inbox(request)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > inbox.max_body:
        observe_webhook_delivery(result="too_large")
        return _too_large(inbox.max_body)
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        log.warning("webhook_signature_missing")
        observe_webhook_delivery(result="invalid_signature")
        return _bad_signature()
    try:
        body = await _read_body(request, inbox.max_body)
    except ClientDisconnect:
        observe_webhook_delivery(result="client_disconnected")
        return Response(status_code=400)  # nobody is listening; nothing was stored
    if body is None:
        observe_webhook_delivery(result="too_large")
        return _too_large(inbox.max_body)
    secret_index = verify_signature(body, signature, inbox.secrets)
    if secret_index is None:
        log.warning("webhook_signature_mismatch", body_size=len(body))
        observe_webhook_delivery(result="invalid_signature")
        return _bad_signature()
    try:
        delivery_id = await inbox.writer.store(body=body, secret_index=secret_index)
    except Exception:  # logged by the writer. Not stored, so not acknowledged: Meta retries for 36 hours.
        observe_webhook_delivery(result="storage_error")
        return _error(
            ReplyflowError(
                "The delivery could not be stored.",
                code="storage_unavailable",
                status=503,
                hint="Check that the database is reachable; Meta will retry.",
            )
        )
    observe_webhook_delivery(result="stored")
    inbox.waker.notify()
    return Response(
        b'{"status":"received","delivery_id":%d}' % delivery_id,
        media_type="application/json",
    )


router.add_route(PATH, verify_subscription, methods=["GET"], include_in_schema=False)
router.add_route(PATH, receive_delivery, methods=["POST"], include_in_schema=False)


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
            scope["app"] = self.app  # what Starlette would set: the handler finds its state through request.app
            response = await receive_delivery(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
