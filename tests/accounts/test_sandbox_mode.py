"""In sandbox mode (no Meta credentials) the emulator is built in: connecting works with nothing but replyflow."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from tests.accounts.conftest import hidden_inputs
from tests.accounts.test_oauth import parse_pages

from replyflow.db import Base
from replyflow.runtime import Runtime
from replyflow.workspaces import service as workspaces


@pytest.fixture
def sandbox_client(make_settings: Any) -> Iterator[tuple[TestClient, dict[str, str], Any]]:
    from replyflow.app import create_app

    settings = make_settings()
    assert settings.is_sandbox
    runtime = Runtime(settings)
    Base.metadata.create_all(runtime.engine)
    with runtime.session() as session:
        _ws, issued = workspaces.create_workspace(session=session, name="sandbox")
    app = create_app(settings, runtime=runtime)
    try:
        with TestClient(app) as client:
            yield client, {"Authorization": f"Bearer {issued.secret}"}, app.state.sandbox_state
    finally:
        runtime.close()


def test_connect_with_facebook_in_sandbox_mode(sandbox_client: tuple[TestClient, dict[str, str], Any]) -> None:
    client, headers, state = sandbox_client
    authorize_url = client.post("/api/instagram/oauth/start", headers=headers).json()["authorize_url"]
    assert authorize_url.startswith("http://testserver/sandbox/")

    consent = client.get(authorize_url)
    assert consent.status_code == 200
    form: dict[str, Any] = {k: html.unescape(v) for k, v in hidden_inputs(consent.text).items()}
    form["granted"] = [s for s in form["scope"].split(",") if s != "public_profile"]
    form["pages"] = parse_pages(consent.text)
    form["decision"] = "continue"
    back = client.post(urlsplit(authorize_url).path, data=form, follow_redirects=False)
    callback = client.get(back.headers["location"], follow_redirects=False)
    assert callback.status_code == 302, callback.text
    conversion_id = callback.headers["location"].split("conversion_id=")[1]

    saved = client.post(
        "/api/instagram/save-page-token",
        json={"conversion_id": conversion_id, "page_id": state.demo.page_id},
        headers=headers,
    )
    assert saved.status_code == 201, saved.text
    account = saved.json()["account"]
    assert account["username"] == state.demo.username and account["webhooks_subscribed"] is True
    media = client.get(f"/api/accounts/{account['id']}/media", headers=headers).json()
    assert [m["id"] for m in media["items"]] == state.demo.media_ids

    doctor = {c["id"]: c for c in client.get("/api/doctor", headers=headers).json()["checks"]}
    assert doctor["config.mode"]["status"] == "ok" and "Sandbox" in doctor["config.mode"]["message"]
    assert doctor["app.credentials"]["status"] == "ok"
    assert doctor["account.token"]["status"] == "ok"
