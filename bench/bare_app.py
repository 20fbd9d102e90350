"""The reference for the ingest benchmark: a bare ASGI app that only checks the webhook signature.

Whatever replyflow adds (storage, routing, logging) is measured against this, on the same machine, in the same run.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable
from typing import Any

SECRET = os.environ.get("BENCH_APP_SECRET", "bench-secret").encode()

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    header = dict(scope["headers"]).get(b"x-hub-signature-256", b"").decode()
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    status = 200 if hmac.compare_digest(header, expected) else 401
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})
