"""POST /api/instagram/save-page-token: validated against the emulator, created or updated, Page subscribed."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from tests.accounts.conftest import account_count, connect, error_of, user_token

from replyflow.accounts.models import Account, TokenConversion
from replyflow.config import Settings
from replyflow.runtime import Runtime
from replyflow.sandbox import SandboxState
from replyflow.sandbox.models import DemoWorld

SAVE = "/api/instagram/save-page-token"
CONTRACT_FIELDS = {
    "id",
    "page_id",
    "instagram_id",
    "username",
    "token_status",
    "scopes",
    "missing_permissions",
    "expires_at",
    "webhooks_subscribed",
}


def _convert(client: TestClient, headers: dict[str, str], token: str) -> dict[str, Any]:
    response = client.post("/api/instagram/convert-token", json={"user_access_token": token}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _account(runtime: Runtime, account_id: str) -> Account:
    with runtime.session() as session:
        found = session.get(Account, account_id)
        assert found is not None
        return found


def test_save_from_conversion_creates_then_updates_the_same_account(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld, runtime: Runtime
) -> None:
    conversion = _convert(client, auth_headers, user_token(sandbox, demo))
    body = {"conversion_id": conversion["conversion_id"], "page_id": demo.page_id}

    created = client.post(SAVE, json=body, headers=auth_headers)

    assert created.status_code == 201, created.text
    account = created.json()["account"]
    assert set(account) >= CONTRACT_FIELDS
    assert account["page_id"] == demo.page_id
    assert account["instagram_id"] == demo.ig_account_id
    assert account["username"] == demo.username
    assert account["token_status"] == "valid"
    assert account["missing_permissions"] == []
    assert account["expires_at"] is None, "a Page token from a long-lived user token does not expire"
    assert account["webhooks_subscribed"] is True
    assert account["reauthorization_required"] is False
    assert account["problems"] == []
    page = sandbox.get_page(demo.page_id)
    assert page is not None and set(page.subscribed_fields or []) == {"feed", "messages", "messaging_postbacks"}
    stored = _account(runtime, account["id"])
    assert stored.health["messaging_task"] is True
    assert stored.subscribed_fields == ["feed", "messages", "messaging_postbacks"]

    # Connecting the same Page again (a fresh token) updates the same row: rules and history stay attached.
    again = connect(client, auth_headers, user_token(sandbox, demo), page_id=demo.page_id)
    assert again.account["id"] == account["id"]
    assert account_count(runtime) == 1
    assert client.get("/api/accounts", headers=auth_headers).json()["items"][0]["id"] == account["id"]


def test_second_save_answers_200(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld
) -> None:
    conversion = _convert(client, auth_headers, user_token(sandbox, demo))
    body = {"conversion_id": conversion["conversion_id"], "page_id": demo.page_id}
    assert client.post(SAVE, json=body, headers=auth_headers).status_code == 201
    second = client.post(SAVE, json=body, headers=auth_headers)
    assert second.status_code == 200
    assert second.json()["created"] is False


def test_same_page_in_two_workspaces_is_two_accounts(
    client: TestClient,
    auth_headers: dict[str, str],
    other_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
    runtime: Runtime,
) -> None:
    first = connect(client, auth_headers, user_token(sandbox, demo), page_id=demo.page_id)
    second = connect(client, other_headers, user_token(sandbox, demo), page_id=demo.page_id)
    assert first.account["id"] != second.account["id"]
    assert account_count(runtime) == 2


def test_pasted_page_token_is_saved(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld, runtime: Runtime
) -> None:
    page_token = sandbox.page_token(user_token=user_token(sandbox, demo, long_lived=True), page_id=demo.page_id)
    response = client.post(SAVE, json={"page_access_token": f"  {page_token}\n"}, headers=auth_headers)
    assert response.status_code == 201, response.text
    account = response.json()["account"]
    assert account["page_id"] == demo.page_id and account["username"] == demo.username
    assert page_token not in response.text
    # A Page token does not say which tasks its user has; the account says so instead of guessing.
    assert _account(runtime, account["id"]).health.get("messaging_task") is None


def test_user_token_pasted_as_page_token_is_refused(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld, runtime: Runtime
) -> None:
    token = user_token(sandbox, demo)
    response = client.post(SAVE, json={"page_access_token": token}, headers=auth_headers)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "wrong_token_type"
    assert "convert-token" in error["hint"]
    assert token not in response.text
    assert account_count(runtime) == 0


def test_page_without_instagram_is_refused_and_nothing_stored(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld, runtime: Runtime
) -> None:
    conversion = _convert(client, auth_headers, user_token(sandbox, demo))
    response = client.post(
        SAVE,
        json={"conversion_id": conversion["conversion_id"], "page_id": demo.page_without_instagram_id},
        headers=auth_headers,
    )
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "page_without_instagram"
    assert "Sunday Bakes Club" in error["message"]
    assert account_count(runtime) == 0


def test_missing_pages_manage_metadata_saves_but_says_so(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld
) -> None:
    scopes = ["pages_show_list", "pages_read_engagement", "instagram_basic", "instagram_manage_comments",
              "instagram_manage_messages"]  # fmt: skip
    conversion = _convert(client, auth_headers, user_token(sandbox, demo, scopes=scopes))
    response = client.post(
        SAVE, json={"conversion_id": conversion["conversion_id"], "page_id": demo.page_id}, headers=auth_headers
    )
    assert response.status_code == 201
    account = response.json()["account"]
    assert account["token_status"] == "missing_permissions"
    assert account["missing_permissions"] == ["pages_manage_metadata"]
    assert account["reauthorization_required"] is True, "automation pauses until it is fixed"
    assert account["webhooks_subscribed"] is False
    codes = {p["code"] for p in account["problems"]}
    assert codes == {"missing_permission", "page_not_subscribed"}


def test_unknown_and_foreign_conversions_are_404(
    client: TestClient,
    auth_headers: dict[str, str],
    other_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
) -> None:
    unknown = client.post(SAVE, json={"conversion_id": "conv_nope", "page_id": demo.page_id}, headers=auth_headers)
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "conversion_not_found"
    assert "convert" in unknown.json()["error"]["hint"].lower()

    conversion = _convert(client, auth_headers, user_token(sandbox, demo))
    foreign = client.post(
        SAVE, json={"conversion_id": conversion["conversion_id"], "page_id": demo.page_id}, headers=other_headers
    )
    assert foreign.status_code == 404 and error_of(foreign)["code"] == "conversion_not_found"

    wrong_page = client.post(
        SAVE, json={"conversion_id": conversion["conversion_id"], "page_id": "999999"}, headers=auth_headers
    )
    assert wrong_page.status_code == 404 and error_of(wrong_page)["code"] == "page_not_in_conversion"


def test_expired_conversion_is_410(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld, runtime: Runtime
) -> None:
    conversion = _convert(client, auth_headers, user_token(sandbox, demo))
    with runtime.session() as session:
        session.execute(
            update(TokenConversion)
            .where(TokenConversion.id == conversion["conversion_id"])
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    response = client.post(
        SAVE, json={"conversion_id": conversion["conversion_id"], "page_id": demo.page_id}, headers=auth_headers
    )
    assert response.status_code == 410
    error = error_of(response)
    assert error["code"] == "conversion_expired"
    assert "convert" in error["hint"].lower()
    assert account_count(runtime) == 0


def test_expired_conversions_are_purged_with_their_tokens(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld, runtime: Runtime
) -> None:
    old = _convert(client, auth_headers, user_token(sandbox, demo))
    with runtime.session() as session:
        session.execute(
            update(TokenConversion)
            .where(TokenConversion.id == old["conversion_id"])
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
        )
    _convert(client, auth_headers, user_token(sandbox, demo))
    with runtime.session() as session:
        ids = list(session.scalars(select(TokenConversion.id)))
    assert old["conversion_id"] not in ids and len(ids) == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"conversion_id": "conv_x"},
        {"page_id": "1"},
        {"conversion_id": "conv_x", "page_id": "1", "page_access_token": "EAAB" + "x" * 60},
        {"page_access_token": None},
        {"page_access_token": 42},
    ],
)
def test_body_must_name_exactly_one_source(client: TestClient, auth_headers: dict[str, str], body: Any) -> None:
    response = client.post(SAVE, json=body, headers=auth_headers)
    assert response.status_code == 422
    assert error_of(response)["code"] == "validation_failed"
    assert "x" * 60 not in response.text


@pytest.mark.parametrize(
    ("pattern", "kind"),
    [
        ("/debug_token", "transient"),
        ("GET /{page-id}", "transient"),
        ("GET /{ig-id}", "transient"),
        ("POST /{page-id}/subscribed_apps", "transient"),
        ("POST /{page-id}/subscribed_apps", "timeout"),
    ],
)
def test_meta_failure_while_saving_leaves_the_stored_account_unchanged(
    client: TestClient,
    auth_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
    runtime: Runtime,
    pattern: str,
    kind: Any,
) -> None:
    first = connect(client, auth_headers, user_token(sandbox, demo), page_id=demo.page_id)
    before = _account(runtime, first.account["id"])
    conversion = _convert(client, auth_headers, user_token(sandbox, demo))
    sandbox.inject_failure(pattern, kind=kind, times=2)

    response = client.post(
        SAVE, json={"conversion_id": conversion["conversion_id"], "page_id": demo.page_id}, headers=auth_headers
    )

    assert response.status_code == 502, response.text
    assert error_of(response)["code"] == "meta_unavailable"
    after = _account(runtime, first.account["id"])
    assert after.token_ciphertext == before.token_ciphertext
    assert after.updated_at == before.updated_at


def test_page_token_of_a_removed_role_is_invalid(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld, runtime: Runtime
) -> None:
    conversion = _convert(client, auth_headers, user_token(sandbox, demo))
    sandbox.invalidate_user_sessions(demo.user_id, reason="password_changed")
    response = client.post(
        SAVE, json={"conversion_id": conversion["conversion_id"], "page_id": demo.page_id}, headers=auth_headers
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "token_invalid"
    assert account_count(runtime) == 0


@pytest.mark.anyio
async def test_connect_with_user_token_for_scripts_and_demo_seeding(
    settings: Settings, runtime: Runtime, graph_transport: Any, sandbox: SandboxState, demo: DemoWorld
) -> None:
    from replyflow.accounts.crypto import cipher_for
    from replyflow.accounts.service import connect_with_user_token
    from replyflow.graph_access import open_graph
    from replyflow.workspaces import service as workspaces

    with runtime.session() as session:
        workspace, _key = workspaces.create_workspace(session=session, name="demo")
        async with open_graph(settings, transport=graph_transport) as graph:
            conversion, saved = await connect_with_user_token(
                session=session,
                graph=graph,
                cipher=cipher_for(settings),
                settings=settings,
                workspace_id=workspace.id,
                user_access_token=user_token(sandbox, demo, long_lived=True),
            )
    assert [s.account.page_id for s in saved] == [demo.page_id], "only the ready Page"
    assert saved[0].created and conversion.source == "cli"
    assert account_count(runtime) == 1


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
