"""The whole connect cycle on both storage backends (SQLite and a throwaway PostgreSQL database)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from tests.accounts.conftest import (
    APP_ID,
    APP_SECRET,
    SANDBOX_HOST,
    SECRET_KEY,
    VERIFY_TOKEN,
    RecordingTransport,
    connect,
    user_token,
)

from replyflow.accounts.crypto import cipher_for, rotate_all, verify_keys
from replyflow.db import Base
from replyflow.runtime import Runtime
from replyflow.sandbox import SandboxState, create_sandbox_app, seed_demo_world
from replyflow.workspaces import service as workspaces


def test_connect_check_disconnect_and_rotate(make_settings: Any, database_url: str) -> None:
    from replyflow.app import create_app

    settings = make_settings(
        database_url=database_url,
        meta_app_id=APP_ID,
        meta_app_secret=APP_SECRET,
        secret_key=SECRET_KEY,
        webhook_verify_token=VERIFY_TOKEN,
        graph_api_url=f"{SANDBOX_HOST}/graph",
        oauth_dialog_url=SANDBOX_HOST,
    )
    sandbox = SandboxState(app_id=settings.app_id, app_secret=settings.app_secret)
    demo = seed_demo_world(sandbox)
    runtime = Runtime(settings)
    Base.metadata.create_all(runtime.engine)
    try:
        with runtime.session() as session:
            _ws, issued = workspaces.create_workspace(session=session, name="backends")
        headers = {"Authorization": f"Bearer {issued.secret}"}
        app = create_app(settings, runtime=runtime)
        app.state.graph_transport = RecordingTransport(create_sandbox_app(sandbox))
        with TestClient(app) as client:
            account = connect(client, headers, user_token(sandbox, demo), page_id=demo.page_id).account
            assert account["token_status"] == "valid"
            again = connect(client, headers, user_token(sandbox, demo), page_id=demo.page_id).account
            assert again["id"] == account["id"]
            checked = client.post(f"/api/accounts/{account['id']}/check", headers=headers).json()
            assert checked["token_status"] == "valid" and checked["webhooks_subscribed"] is True
            media = client.get(f"/api/accounts/{account['id']}/media", headers=headers).json()
            assert [m["id"] for m in media["items"]] == demo.media_ids
            with runtime.session() as session:
                report = rotate_all(session=session, cipher=cipher_for(settings))
            assert report.accounts == 1 and report.conversions == 2
            verify_keys(runtime)
            assert client.delete(f"/api/accounts/{account['id']}", headers=headers).status_code == 204
            assert client.get("/api/accounts", headers=headers).json()["items"] == []
    finally:
        runtime.close()
