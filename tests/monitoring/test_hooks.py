"""Metrics fed by other packages: Graph calls, webhook deliveries and events, on ``/metrics`` after real flows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from replyflow.config import Settings
from replyflow.db import Base
from replyflow.runtime import Runtime
from replyflow.sandbox import SandboxState
from replyflow.webhooks import service as inbox
from replyflow.webhooks.models import WebhookDelivery
from replyflow.webhooks.signature import sign
from replyflow.workspaces import service as workspaces
from tests.monitoring.test_metrics import Samples, scrape

SCOPES = [
    "pages_show_list",
    "pages_read_engagement",
    "pages_manage_metadata",
    "instagram_basic",
    "instagram_manage_comments",
    "instagram_manage_messages",
]
GRAPH_COUNT = "replyflow_graph_request_duration_seconds_count"


def count(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    built: Settings = make_settings()
    assert built.is_sandbox
    return built


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime(settings)
    Base.metadata.create_all(rt.engine)
    yield rt
    rt.close()


@pytest.fixture
def sandbox_app(settings: Settings, runtime: Runtime) -> Iterator[tuple[TestClient, dict[str, str], SandboxState]]:
    """The app in sandbox mode (the emulator mounted in-process) and an API key; no embedded worker."""
    from replyflow.app import create_app

    with runtime.session() as session:
        _ws, issued = workspaces.create_workspace(session=session, name="metrics")
    app = create_app(settings, runtime=runtime)
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {issued.secret}"}, app.state.sandbox_state


def _connect(client: TestClient, headers: dict[str, str], state: SandboxState) -> str:
    assert state.demo is not None
    token = state.issue_user_token(state.demo.user_id, scopes=SCOPES)
    converted = client.post("/api/instagram/convert-token", json={"user_access_token": token}, headers=headers)
    assert converted.status_code == 200, converted.text
    saved = client.post(
        "/api/instagram/save-page-token",
        json={"conversion_id": converted.json()["conversion_id"], "page_id": state.demo.page_id},
        headers=headers,
    )
    assert saved.status_code == 201, saved.text
    account_id: str = saved.json()["account"]["id"]
    return account_id


def test_graph_calls_of_a_sandbox_flow_are_on_metrics(
    sandbox_app: tuple[TestClient, dict[str, str], SandboxState],
) -> None:
    client, headers, state = sandbox_app
    before = scrape(client)
    account_id = _connect(client, headers, state)
    state.inject_failure("GET /*/media", kind="error", code=4)  # Meta's app-level rate limit
    assert client.get(f"/api/accounts/{account_id}/media", headers=headers).status_code >= 400
    assert client.get(f"/api/accounts/{account_id}/media", headers=headers).status_code == 200
    after = scrape(client)

    def delta(endpoint: str, outcome: str) -> float:
        labels = {"endpoint": endpoint, "outcome": outcome}
        return count(after, GRAPH_COUNT, **labels) - count(before, GRAPH_COUNT, **labels)

    # Connecting: the token is inspected, exchanged, its Pages listed, the Page subscribed.
    for endpoint in ("debug_token", "list_pages", "subscribe_page"):
        assert delta(endpoint, "ok") >= 1, endpoint
    assert delta("list_media", "meta_rate_limited") == 1
    assert delta("list_media", "ok") == 1
    bucket = frozenset({("endpoint", "list_media"), ("outcome", "ok"), ("le", "+Inf")})
    assert after[("replyflow_graph_request_duration_seconds_bucket", bucket)] >= 1
    # Labels are method names and error codes: no token or id ever becomes a series.
    graph_labels = {
        value for (name, labels) in after if name.startswith("replyflow_graph_") for key, value in labels if key != "le"
    }
    assert not any(value.startswith(("EAA", "IGAA")) or value.isdigit() for value in graph_labels)


def test_webhook_deliveries_and_events_are_counted(
    sandbox_app: tuple[TestClient, dict[str, str], SandboxState], settings: Settings, runtime: Runtime
) -> None:
    client, headers, state = sandbox_app
    account_id = _connect(client, headers, state)
    assert state.demo is not None
    before = scrape(client)

    # The emulator signs and delivers the comment webhook to /webhooks/instagram, like Meta.
    simulated = client.post(
        "/api/sandbox/comments",
        json={"account_id": account_id, "media_id": state.demo.media_ids[0], "text": "price?", "username": "ana.cafe"},
        headers=headers,
    )
    assert simulated.status_code == 202, simulated.text
    inbox.drain(runtime=runtime)
    with runtime.session() as session:
        [delivery] = session.scalars(select(WebhookDelivery)).all()
        redelivered = delivery.body
    assert redelivered is not None
    signed = {"X-Hub-Signature-256": sign(redelivered, settings.app_secret), "Content-Type": "application/json"}
    assert client.post("/webhooks/instagram", content=redelivered, headers=signed).status_code == 200  # Meta retries
    inbox.drain(runtime=runtime)
    forged = {"X-Hub-Signature-256": sign(redelivered, "not-the-app-secret")}
    assert client.post("/webhooks/instagram", content=redelivered, headers=forged).status_code == 401
    assert client.post("/webhooks/instagram", content=redelivered).status_code == 401
    oversized = b" " * (settings.webhook_max_body_bytes + 1)
    assert client.post("/webhooks/instagram", content=oversized, headers=signed).status_code == 413
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return count(after, name, **labels) - count(before, name, **labels)

    assert delta("replyflow_webhook_deliveries_total", result="stored") == 2
    assert delta("replyflow_webhook_deliveries_total", result="invalid_signature") == 2
    assert delta("replyflow_webhook_deliveries_total", result="too_large") == 1
    assert delta("replyflow_webhook_events_total", field="comments", result="pending") == 1
    assert delta("replyflow_webhook_events_total", field="comments", result="duplicate") == 1
