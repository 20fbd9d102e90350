"""Fixtures for the dashboard: a workspace with a user, and a TestClient signed in as that user."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from replyflow.runtime import Runtime
from replyflow.workspaces import service, users

PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class WebUser:
    workspace_id: str
    email: str
    password: str


@pytest.fixture
def web_user(runtime: Runtime) -> WebUser:
    with runtime.session() as session:
        workspace, _ = service.create_workspace(session=session, name=f"ws-{uuid.uuid4().hex[:8]}")
        email = f"creator-{uuid.uuid4().hex[:6]}@example.com"
        users.create_user(session=session, workspace=workspace, email=email, password=PASSWORD)
        return WebUser(workspace_id=workspace.id, email=email, password=PASSWORD)


def form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def sign_in(client: TestClient, email: str, password: str, **extra: str) -> Any:
    token = form_token(client.get("/login").text)
    return client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token, **extra}, follow_redirects=False
    )


@pytest.fixture
def signed_in(client: TestClient, web_user: WebUser) -> Iterator[TestClient]:
    response = sign_in(client, web_user.email, web_user.password)
    assert response.status_code == 303, response.text
    yield client


def csrf_of(client: TestClient, page: str = "/app") -> str:
    return form_token(client.get(page).text)


# -- the Graph API emulator behind the app ------------------------------------------------------------------
# Settings are "live" (a Meta app is configured) and the emulator stands in for graph.facebook.com through
# httpx.ASGITransport, so these tests control the emulator's state directly. The sandbox-mode product (its
# own mounted emulator and /app/sandbox) is exercised by the browser tests against a real server.

APP_ID = "123456789012345"
APP_SECRET = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
SECRET_KEY = "test-secret-key-for-replyflow-dashboard-01"
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
def live_settings(make_settings: Any) -> Any:
    return make_settings(
        meta_app_id=APP_ID,
        meta_app_secret=APP_SECRET,
        secret_key=SECRET_KEY,
        webhook_verify_token="verify-token-for-dashboard-tests",
        graph_api_url=f"{SANDBOX_HOST}/graph",
        oauth_dialog_url=SANDBOX_HOST,
    )


@pytest.fixture
def emulator(live_settings: Any) -> Any:
    from replyflow.sandbox import SandboxState, seed_demo_world

    state = SandboxState(app_id=live_settings.app_id, app_secret=live_settings.app_secret)
    seed_demo_world(state)
    return state


@pytest.fixture
def live_runtime(live_settings: Any) -> Iterator[Runtime]:
    from replyflow.db import Base

    rt = Runtime(live_settings)
    Base.metadata.create_all(rt.engine)
    yield rt
    rt.close()


@pytest.fixture
def live_app(live_settings: Any, live_runtime: Runtime, emulator: Any) -> Any:
    import httpx

    from replyflow.app import create_app
    from replyflow.sandbox import create_sandbox_app

    application = create_app(live_settings, runtime=live_runtime)
    application.state.graph_transport = httpx.ASGITransport(app=create_sandbox_app(emulator))
    return application


@pytest.fixture
def live_user(live_runtime: Runtime) -> WebUser:
    with live_runtime.session() as session:
        workspace, _ = service.create_workspace(session=session, name=f"ws-{uuid.uuid4().hex[:8]}")
        email = f"creator-{uuid.uuid4().hex[:6]}@example.com"
        users.create_user(session=session, workspace=workspace, email=email, password=PASSWORD)
        return WebUser(workspace_id=workspace.id, email=email, password=PASSWORD)


@pytest.fixture
def live(live_app: Any, live_user: WebUser) -> Iterator[TestClient]:
    """A signed-in browser on an app whose Graph API is the emulator."""
    with TestClient(live_app, raise_server_exceptions=False) as c:
        assert sign_in(c, live_user.email, live_user.password).status_code == 303
        yield c


def user_token(emulator: Any, *, scopes: list[str] | None = None, **kwargs: Any) -> str:
    demo = emulator.demo
    token: str = emulator.issue_user_token(demo.user_id, scopes=FULL_SCOPES if scopes is None else scopes, **kwargs)
    return token


def connect_demo(client: TestClient, emulator: Any) -> str:
    """Connect the demo Page through the dashboard's converter; returns the account id."""
    token = csrf_of(client, "/app/integrations")
    converted = client.post(
        "/app/integrations/convert",
        data={"csrf_token": token, "user_access_token": user_token(emulator)},
        follow_redirects=False,
    )
    assert converted.status_code == 303, converted.text
    conversion_id = converted.headers["location"].split("conversion_id=")[1].split("#")[0]
    saved = client.post(
        "/app/integrations/save",
        data={"csrf_token": token, "conversion_id": conversion_id, "page_id": emulator.demo.page_id},
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    return saved.headers["location"].split("account_id=")[1].split("#")[0]
