"""GET /api/doctor (the service behind ``replyflow doctor``): each link of the chain, and its fix when broken."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.accounts.conftest import RecordingTransport, connect, user_token

from replyflow.accounts.crypto import cipher_for
from replyflow.accounts.doctor import run_doctor
from replyflow.config import Settings
from replyflow.graph.client import GraphClient
from replyflow.runtime import Runtime
from replyflow.sandbox import SandboxState
from replyflow.sandbox.models import DemoWorld


def _checks(client: TestClient, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    response = client.get("/api/doctor", headers=headers)
    assert response.status_code == 200, response.text
    return {c["id"]: c for c in response.json()["checks"]}


def test_healthy_chain(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld
) -> None:
    connect(client, auth_headers, user_token(sandbox, demo), page_id=demo.page_id)
    checks = _checks(client, auth_headers)
    for check_id in ("app.credentials", "app.webhooks", "account.token", "account.permissions",
                     "account.messaging_task", "account.page_subscription"):  # fmt: skip
        assert checks[check_id]["status"] == "ok", checks[check_id]
    # Live settings with an http:// public URL: Meta would not deliver webhooks.
    assert checks["config.public_url"]["status"] == "error"
    assert "https" in checks["config.public_url"]["hint"].lower()


def test_every_broken_link_says_how_to_fix_it(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld
) -> None:
    connect(client, auth_headers, user_token(sandbox, demo), page_id=demo.page_id)
    sandbox.remove_app_subscription(object="instagram")
    sandbox.unsubscribe_page(demo.page_id)

    checks = _checks(client, auth_headers)

    assert checks["app.webhooks"]["status"] == "error"
    assert "/webhooks/instagram" in checks["app.webhooks"]["hint"]
    assert checks["account.page_subscription"]["status"] == "error"
    assert "replyflow accounts check" in checks["account.page_subscription"]["hint"]
    page = sandbox.get_page(demo.page_id)
    assert page is not None and page.subscribed_fields is None, "the doctor only looks"


def test_dead_token_and_no_accounts(
    client: TestClient,
    auth_headers: dict[str, str],
    other_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
) -> None:
    connect(client, auth_headers, user_token(sandbox, demo), page_id=demo.page_id)
    sandbox.invalidate_user_sessions(demo.user_id, reason="password_changed")
    checks = _checks(client, auth_headers)
    assert checks["account.token"]["status"] == "error"
    assert "password" in checks["account.token"]["message"]
    assert "Reconnect" in checks["account.token"]["hint"]

    other = _checks(client, other_headers)
    assert other["accounts"]["status"] == "warning" and "account.token" not in other


@pytest.mark.anyio
async def test_wrong_app_secret_is_reported(
    make_settings: Any, runtime: Runtime, graph_transport: RecordingTransport, settings: Settings
) -> None:
    wrong = make_settings(
        meta_app_id=settings.app_id,
        meta_app_secret="ffffffffffffffffffffffffffffffff",
        secret_key=settings.secret_keys[0],
        webhook_verify_token="x" * 10,
        graph_api_url=settings.graph_api_url,
    )
    async with GraphClient.from_settings(wrong, transport=graph_transport) as graph:
        with runtime.session() as session:
            report = await run_doctor(session=session, graph=graph, cipher=cipher_for(wrong), settings=wrong)
    checks = {c.id: c for c in report.checks}
    assert checks["app.credentials"].status == "error"
    assert "REPLYFLOW_META_APP_SECRET" in (checks["app.credentials"].hint or "")
    assert checks["app.webhooks"].status == "skipped"
    assert report.ok is False


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
