"""Accounts tests run against the Graph API emulator (through httpx.ASGITransport) or respx fixtures.

Settings are "live" (a Meta app id and secret are configured, so the product does not install its own
sandbox): the emulator below stands in for graph.facebook.com and facebook.com's login dialog.
"""

from __future__ import annotations

import io
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import structlog
from fastapi.testclient import TestClient

from replyflow.accounts.models import Account
from replyflow.config import Settings
from replyflow.graph.client import GraphClient
from replyflow.graph.runner import GraphRunner
from replyflow.logging import configure_logging
from replyflow.runtime import Runtime
from replyflow.sandbox import SandboxState, create_sandbox_app, seed_demo_world
from replyflow.sandbox.models import DemoWorld

APP_ID = "123456789012345"
APP_SECRET = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
SECRET_KEY = "test-secret-key-for-replyflow-accounts-0001"
VERIFY_TOKEN = "verify-token-for-tests"
SANDBOX_HOST = "http://sandbox.test"
FULL_SCOPES = [
    "pages_show_list",
    "pages_read_engagement",
    "pages_manage_metadata",
    "instagram_basic",
    "instagram_manage_comments",
    "instagram_manage_messages",
]


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    built: Settings = make_settings(
        meta_app_id=APP_ID,
        meta_app_secret=APP_SECRET,
        secret_key=SECRET_KEY,
        webhook_verify_token=VERIFY_TOKEN,
        graph_api_url=f"{SANDBOX_HOST}/graph",
        oauth_dialog_url=SANDBOX_HOST,
        instagram_api_url=f"{SANDBOX_HOST}/instagram",
        instagram_oauth_url=f"{SANDBOX_HOST}/instagram-login",
        instagram_oauth_api_url=f"{SANDBOX_HOST}/instagram-login",
    )
    return built


@pytest.fixture
def sandbox(settings: Settings) -> SandboxState:
    state = SandboxState(app_id=settings.app_id, app_secret=settings.app_secret)
    seed_demo_world(state)
    return state


@pytest.fixture
def demo(sandbox: SandboxState) -> DemoWorld:
    assert sandbox.demo is not None
    return sandbox.demo


@pytest.fixture
def sandbox_app(sandbox: SandboxState) -> Any:
    return create_sandbox_app(sandbox)


class RecordingTransport(httpx.ASGITransport):
    """The emulator, reached in-process; remembers which Graph paths were called."""

    def __init__(self, app: Any) -> None:
        super().__init__(app=app)
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(f"{request.method} {request.url.path}")
        return await super().handle_async_request(request)


@pytest.fixture
def graph_transport(sandbox_app: Any) -> RecordingTransport:
    return RecordingTransport(sandbox_app)


@pytest.fixture
def app(settings: Settings, runtime: Runtime, graph_transport: RecordingTransport) -> Any:
    from replyflow.app import create_app

    application = create_app(settings, runtime=runtime)
    application.state.graph_transport = graph_transport
    return application


@pytest.fixture
def runner(settings: Settings, graph_transport: RecordingTransport) -> Iterator[GraphRunner]:
    """A worker's Graph runner (its own event loop), reaching the emulator through ``graph_transport``."""
    with GraphRunner(lambda: GraphClient.from_settings(settings, transport=graph_transport)) as graph_runner:
        yield graph_runner


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line of the test, at DEBUG and as JSON, to look for secrets in."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging(level="DEBUG", json=True, stream=stream)
    try:
        yield stream
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def user_token(sandbox: SandboxState, demo: DemoWorld, *, scopes: list[str] | None = None, **kwargs: Any) -> str:
    """A fresh (short-lived unless long_lived=True) User token of the demo creator."""
    return sandbox.issue_user_token(demo.user_id, scopes=FULL_SCOPES if scopes is None else scopes, **kwargs)


@dataclass
class Connected:
    conversion: dict[str, Any]
    account: dict[str, Any]
    user_token: str


def connect(client: TestClient, headers: dict[str, str], token: str, *, page_id: str) -> Connected:
    converted = client.post("/api/instagram/convert-token", json={"user_access_token": token}, headers=headers)
    assert converted.status_code == 200, converted.text
    conversion = converted.json()
    saved = client.post(
        "/api/instagram/save-page-token",
        json={"conversion_id": conversion["conversion_id"], "page_id": page_id},
        headers=headers,
    )
    assert saved.status_code in (200, 201), saved.text
    return Connected(conversion=conversion, account=saved.json()["account"], user_token=token)


@pytest.fixture
def other_headers(runtime: Runtime) -> dict[str, str]:
    """An API key of a second workspace."""
    from replyflow.workspaces import service

    with runtime.session() as session:
        _ws, issued = service.create_workspace(session=session, name=f"other-{uuid.uuid4().hex[:8]}")
        return {"Authorization": f"Bearer {issued.secret}"}


def page_tokens_of(sandbox: SandboxState) -> list[str]:
    return [t.value for t in sandbox.world.tokens.values() if t.kind == "PAGE"]


def all_tokens_of(sandbox: SandboxState) -> list[str]:
    return list(sandbox.world.tokens)


def account_count(runtime: Runtime) -> int:
    from sqlalchemy import func, select

    with runtime.session() as session:
        return int(session.scalar(select(func.count()).select_from(Account)) or 0)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert error["code"] and error["message"] and error["hint"], error
    return error


def hidden_inputs(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))
