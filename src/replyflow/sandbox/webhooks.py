"""Delivers queued updates to our webhook endpoint the way Meta does: signed POSTs of the raw JSON body."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import urlencode

import httpx

from replyflow.sandbox.payloads import encode_body, merge_payloads, signature_256, signature_sha1
from replyflow.sandbox.state import PendingWebhook, SandboxState, WebhookDelivery

USER_AGENT = "facebookexternalua"


class WebhookSender:
    """Posts ``X-Hub-Signature-256``-signed deliveries with httpx; one instance may serve many flushes.

    ``target_url`` is used unless the app's ``instagram`` subscription names a callback URL. Pass
    ``transport`` (e.g. ``httpx.ASGITransport(app)``) to deliver in-process.
    """

    def __init__(
        self,
        *,
        target_url: str,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        attempts: int = 1,
        retry_delay: float = 0.5,
        batch: bool = False,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.target_url = target_url
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.batch = batch
        self._transport = transport
        self._timeout = timeout
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def for_public_url(cls, public_url: str, **kwargs: Any) -> WebhookSender:
        """Deliver to our own ``{public_url}/webhooks/instagram``."""
        return cls(target_url=f"{public_url.rstrip('/')}/webhooks/instagram", **kwargs)

    async def aclose(self) -> None:
        if self._http is not None and self._loop is asyncio.get_running_loop():
            await self._http.aclose()
        self._http = self._loop = None

    def _client(self) -> httpx.AsyncClient:
        """One pooled client per event loop: a sender may outlive the loop it first ran on (test clients)."""
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            self._http = httpx.AsyncClient(transport=self._transport, timeout=self._timeout, follow_redirects=False)
            self._loop = loop
        return self._http

    async def flush(self, state: SandboxState) -> list[WebhookDelivery]:
        """Deliver every queued update (in order); with ``batch`` all of them go in one POST, like Meta may."""
        pending = state.take_pending_webhooks()
        if not pending:
            return []
        if self.batch and len(pending) > 1:
            merged = PendingWebhook(
                id=pending[0].id,
                field=",".join(dict.fromkeys(p.field for p in pending)),
                ig_account_id=pending[0].ig_account_id,
                created_at=pending[0].created_at,
                payload=merge_payloads([p.payload for p in pending]),
            )
            return [await self.deliver(state, merged)]
        return [await self.deliver(state, item) for item in pending]

    async def deliver(self, state: SandboxState, webhook: PendingWebhook) -> WebhookDelivery:
        body = encode_body(webhook.payload)
        return await self.post_raw(state, body=body, webhook_id=webhook.id, field=webhook.field)

    async def post_raw(
        self, state: SandboxState, *, body: bytes, webhook_id: str, field: str, secret: str | None = None
    ) -> WebhookDelivery:
        """POST an exact body signed with the app secret (or ``secret``, to simulate a bad signature)."""
        key = secret if secret is not None else state.app.secret
        target = state.callback_url() or self.target_url
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "x-hub-signature": signature_sha1(body, key),
            "x-hub-signature-256": signature_256(body, key),
        }
        delivery = WebhookDelivery(
            webhook_id=webhook_id, field=field, at=state.now(), target=target, body=body.decode("ascii")
        )
        for attempt in range(self.attempts):
            try:
                response = await self._client().post(target, content=body, headers=headers)
            except httpx.HTTPError as exc:
                delivery.status_code, delivery.ok = None, False
                delivery.error = f"{type(exc).__name__}: {exc}"
            else:
                delivery.status_code, delivery.ok = response.status_code, response.status_code == 200
                delivery.error = None if delivery.ok else f"receiver answered {response.status_code}"
            if delivery.ok:
                break
            if attempt + 1 < self.attempts:
                await asyncio.sleep(self.retry_delay * (2**attempt))
        state.record_delivery(delivery)
        return delivery

    async def redeliver(self, state: SandboxState, webhook_id: str) -> WebhookDelivery:
        """Send an earlier delivery again, byte for byte: Meta's duplicates look exactly like this."""
        for previous in state.webhook_deliveries(limit=500):
            if previous.webhook_id == webhook_id and previous.body is not None:
                return await self.post_raw(
                    state, body=previous.body.encode("ascii"), webhook_id=webhook_id, field=previous.field
                )
        raise KeyError(f"no delivered webhook {webhook_id}")

    async def verify_callback(self, *, callback_url: str, verify_token: str) -> bool:
        """Meta's subscription check: GET with ``hub.challenge``; the receiver must echo the challenge."""
        challenge = str(secrets.randbelow(10**9) + 10**9)
        query = urlencode({"hub.mode": "subscribe", "hub.challenge": challenge, "hub.verify_token": verify_token})
        separator = "&" if "?" in callback_url else "?"
        try:
            response = await self._client().get(f"{callback_url}{separator}{query}", headers={"user-agent": USER_AGENT})
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.text.strip() == challenge
