"""Fixtures for the sandbox tests: a seeded world on a frozen clock and raw httpx clients on the ASGI app."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from replyflow.sandbox import SandboxState, WebhookSender, create_sandbox_app, seed_demo_world
from replyflow.sandbox.models import DemoWorld

APP_ID = "100000000000001"
APP_SECRET = "5a1d0b0c8e7f6a5b4c3d2e1f0a9b8c7d"
VERSION = "v25.0"
BASE = "http://sandbox.test"
START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def state() -> SandboxState:
    sandbox = SandboxState(app_id=APP_ID, app_secret=APP_SECRET)
    sandbox.clock.freeze(START)
    seed_demo_world(sandbox)
    return sandbox


@pytest.fixture
def demo(state: SandboxState) -> DemoWorld:
    assert state.demo is not None
    return state.demo


@pytest.fixture
def page_token(state: SandboxState, demo: DemoWorld) -> str:
    return state.page_token(user_token=demo.user_token, page_id=demo.page_id)


def proof(token: str, secret: str = APP_SECRET) -> str:
    return hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()


@dataclass
class Graph:
    """Raw calls to the emulated Graph API, token in the Authorization header as our client sends it."""

    http: httpx.AsyncClient
    version: str = VERSION

    def url(self, path: str) -> str:
        return f"/graph/{self.version}/{path.lstrip('/')}"

    async def get(self, path: str, *, token: str | None = None, **params: Any) -> httpx.Response:
        return await self.http.get(self.url(path), params=params, headers=_auth(token))

    async def post(
        self, path: str, *, token: str | None = None, json: Any = None, data: Any = None, **params: Any
    ) -> httpx.Response:
        return await self.http.post(self.url(path), params=params, headers=_auth(token), json=json, data=data)

    async def delete(self, path: str, *, token: str | None = None, **params: Any) -> httpx.Response:
        return await self.http.delete(self.url(path), params=params, headers=_auth(token))


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture
def deliveries() -> list[httpx.Request]:
    """Webhook deliveries the sandbox made (to a stand-in receiver answering 200)."""
    return []


@pytest.fixture
async def sender(deliveries: list[httpx.Request]) -> AsyncIterator[WebhookSender]:
    async def receive(request: httpx.Request) -> httpx.Response:
        await request.aread()
        deliveries.append(request)
        return httpx.Response(200, text="EVENT_RECEIVED")

    webhook_sender = WebhookSender(
        target_url="http://replyflow.test/webhooks/instagram", transport=httpx.MockTransport(receive)
    )
    yield webhook_sender
    await webhook_sender.aclose()


@pytest.fixture
def app(state: SandboxState, sender: WebhookSender) -> Starlette:
    return create_sandbox_app(state, webhook_sender=sender)


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        yield client


@pytest.fixture
def graph(http: httpx.AsyncClient) -> Graph:
    return Graph(http)
