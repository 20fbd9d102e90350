"""No token in plain text anywhere: database file, logs (at DEBUG) and every response of a full connect cycle."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from tests.accounts.conftest import APP_SECRET, SECRET_KEY, all_tokens_of, user_token
from tests.accounts.test_oauth import _callback_path, _consent

from replyflow.config import Settings
from replyflow.sandbox import SandboxState
from replyflow.sandbox.models import DemoWorld


def test_full_connect_cycle_leaves_no_token_in_plain_text(
    captured_logs: io.StringIO,
    client: TestClient,
    auth_headers: dict[str, str],
    sandbox: SandboxState,
    sandbox_app: Any,
    demo: DemoWorld,
    settings: Settings,
) -> None:
    responses: list[str] = []

    def record(response: Any) -> Any:
        responses.append(response.text)
        responses.append(str(dict(response.headers)))
        return response

    pasted = user_token(sandbox, demo)
    conversion = record(
        client.post("/api/instagram/convert-token", json={"user_access_token": pasted}, headers=auth_headers)
    ).json()
    saved = record(client.post(
        "/api/instagram/save-page-token",
        json={"conversion_id": conversion["conversion_id"], "page_id": demo.page_id},
        headers=auth_headers,
    )).json()  # fmt: skip
    account_id = saved["account"]["id"]
    page_token = sandbox.page_token(user_token=user_token(sandbox, demo, long_lived=True), page_id=demo.page_id)
    record(client.post("/api/instagram/save-page-token", json={"page_access_token": page_token}, headers=auth_headers))
    record(client.post(f"/api/accounts/{account_id}/check", headers=auth_headers))
    record(client.get(f"/api/accounts/{account_id}/media", headers=auth_headers))
    record(client.get("/api/accounts", headers=auth_headers))
    record(client.get("/api/doctor", headers=auth_headers))
    # Connect with Facebook too: the code and the tokens it yields.
    start = record(client.post("/api/instagram/oauth/start", headers=auth_headers)).json()
    location = _consent(sandbox_app, start["authorize_url"])
    record(client.get(_callback_path(location), follow_redirects=False))
    # And the failures: a dead token pasted, and a dead stored token found by a check.
    sandbox.invalidate_token(pasted, reason="expired")
    record(client.post("/api/instagram/convert-token", json={"user_access_token": pasted}, headers=auth_headers))
    sandbox.invalidate_user_sessions(demo.user_id, reason="password_changed")
    record(client.post(f"/api/accounts/{account_id}/check", headers=auth_headers))
    record(client.get(f"/api/accounts/{account_id}/media", headers=auth_headers))

    secrets = [*all_tokens_of(sandbox), APP_SECRET, SECRET_KEY]
    assert len(secrets) > 6
    db = Path(settings.database_url.removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    logs = captured_logs.getvalue()
    assert "token_converted" in logs and "account_saved" in logs, "the logs were captured"
    everything = "\n".join(responses)
    for secret in secrets:
        assert secret.encode() not in stored, "a token is stored in plain text"
        assert secret not in logs, "a token was logged"
        assert secret not in everything, "a token was sent back"
    code = location.split("code=")[1].split("&")[0]
    assert code not in logs and code.encode() not in stored
