"""The accounts routes: list and get with health, disconnect, check now, and the account's media."""

from __future__ import annotations

from fastapi.testclient import TestClient
from tests.accounts.conftest import account_count, connect, error_of, user_token

from replyflow.runtime import Runtime
from replyflow.sandbox import SandboxState
from replyflow.sandbox.models import DemoWorld


def test_list_and_get_are_scoped_to_the_workspace(
    client: TestClient,
    auth_headers: dict[str, str],
    other_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
) -> None:
    connected = connect(client, auth_headers, user_token(sandbox, demo), page_id=demo.page_id)
    account_id = connected.account["id"]

    listed = client.get("/api/accounts", headers=auth_headers).json()
    assert [a["id"] for a in listed["items"]] == [account_id] and listed["next_cursor"] is None
    one = client.get(f"/api/accounts/{account_id}", headers=auth_headers).json()
    assert one["token_status"] == "valid" and one["username"] == demo.username
    assert "token" not in one and "token_ciphertext" not in one

    assert client.get("/api/accounts", headers=other_headers).json()["items"] == []
    assert client.get(f"/api/accounts/{account_id}", headers=other_headers).status_code == 404
    assert client.delete(f"/api/accounts/{account_id}", headers=other_headers).status_code == 404
    assert client.get("/api/accounts").status_code == 401


def test_disconnect_hides_the_account_and_reconnecting_restores_the_same_row(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld, runtime: Runtime
) -> None:
    account_id = connect(client, auth_headers, user_token(sandbox, demo), page_id=demo.page_id).account["id"]

    assert client.delete(f"/api/accounts/{account_id}", headers=auth_headers).status_code == 204
    assert client.get(f"/api/accounts/{account_id}", headers=auth_headers).status_code == 404
    assert client.get("/api/accounts", headers=auth_headers).json()["items"] == []
    from replyflow.accounts.models import Account

    with runtime.session() as session:
        row = session.get(Account, account_id)
        assert row is not None and row.token_ciphertext is None and row.automation_paused

    again = connect(client, auth_headers, user_token(sandbox, demo), page_id=demo.page_id)
    assert again.account["id"] == account_id
    assert again.account["token_status"] == "valid" and again.account["automation_paused"] is False
    assert account_count(runtime) == 1


def test_check_now_records_an_invalidated_token_in_plain_words(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld
) -> None:
    account_id = connect(client, auth_headers, user_token(sandbox, demo), page_id=demo.page_id).account["id"]
    sandbox.invalidate_user_sessions(demo.user_id, reason="password_changed")

    response = client.post(f"/api/accounts/{account_id}/check", headers=auth_headers)

    assert response.status_code == 200, response.text
    account = response.json()
    assert account["token_status"] == "invalid"
    assert account["reauthorization_required"] is True and account["automation_paused"] is True
    assert "password was changed" in account["token_status_reason"]
    assert account["problems"][0]["code"] == "token_invalid"
    assert "Reconnect" in account["problems"][0]["hint"]


def test_check_now_resubscribes_a_page_meta_dropped(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld
) -> None:
    account_id = connect(client, auth_headers, user_token(sandbox, demo), page_id=demo.page_id).account["id"]
    sandbox.unsubscribe_page(demo.page_id)

    account = client.post(f"/api/accounts/{account_id}/check", headers=auth_headers).json()

    assert account["webhooks_subscribed"] is True
    page = sandbox.get_page(demo.page_id)
    assert page is not None and page.subscribed_fields


def test_check_when_meta_is_down_keeps_the_status_and_answers_502(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld
) -> None:
    account_id = connect(client, auth_headers, user_token(sandbox, demo), page_id=demo.page_id).account["id"]
    sandbox.inject_failure("/debug_token", kind="transient", times=2)

    response = client.post(f"/api/accounts/{account_id}/check", headers=auth_headers)

    assert response.status_code == 502
    assert error_of(response)["code"] == "meta_unavailable"
    account = client.get(f"/api/accounts/{account_id}", headers=auth_headers).json()
    assert account["token_status"] == "valid"
    assert account["health"]["last_check_error"]


def test_media_lists_posts_and_reels_with_paging(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld
) -> None:
    account_id = connect(client, auth_headers, user_token(sandbox, demo), page_id=demo.page_id).account["id"]

    first = client.get(f"/api/accounts/{account_id}/media", params={"limit": 3}, headers=auth_headers)
    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["items"]) == 3 and page["next_cursor"]
    item = page["items"][0]
    assert {"id", "caption", "media_product_type", "permalink", "timestamp", "thumbnail_url"} <= set(item)
    assert item["id"] == demo.media_ids[0], "newest first"
    assert item["media_product_type"] in ("FEED", "REELS")
    assert item["thumbnail_url"]

    rest = client.get(
        f"/api/accounts/{account_id}/media", params={"limit": 3, "cursor": page["next_cursor"]}, headers=auth_headers
    ).json()
    ids = [m["id"] for m in page["items"] + rest["items"]]
    assert ids == demo.media_ids and rest["next_cursor"] is None


def test_media_with_a_dead_token_marks_the_account(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld
) -> None:
    account_id = connect(client, auth_headers, user_token(sandbox, demo), page_id=demo.page_id).account["id"]
    sandbox.invalidate_user_sessions(demo.user_id, reason="app_deauthorized")

    response = client.get(f"/api/accounts/{account_id}/media", headers=auth_headers)

    assert response.status_code == 400
    assert error_of(response)["code"] == "token_invalid"
    account = client.get(f"/api/accounts/{account_id}", headers=auth_headers).json()
    assert account["token_status"] == "invalid" and account["reauthorization_required"] is True


def test_media_of_an_unknown_account_is_404(client: TestClient, auth_headers: dict[str, str]) -> None:
    assert client.get("/api/accounts/acc_missing/media", headers=auth_headers).status_code == 404


def test_list_and_get_carry_the_accounts_alerts(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld, runtime: Runtime
) -> None:
    import datetime as dt

    from replyflow.accounts.models import Account
    from replyflow.db import utcnow

    account_id = connect(client, auth_headers, user_token(sandbox, demo), page_id=demo.page_id).account["id"]
    listed = client.get("/api/accounts", headers=auth_headers).json()["items"]
    assert [a["alerts"] for a in listed] == [[]]  # freshly connected: nothing to act on

    with runtime.session() as session:
        account = session.get(Account, account_id)
        assert account is not None
        account.token_expires_at = utcnow() + dt.timedelta(days=2)
        account.webhooks_subscribed = False
    [listed_account] = client.get("/api/accounts", headers=auth_headers).json()["items"]
    one = client.get(f"/api/accounts/{account_id}", headers=auth_headers).json()
    assert one["alerts"] == listed_account["alerts"]
    assert [(a["code"], a["severity"]) for a in one["alerts"]] == [
        ("token_expiring", "warning"),
        ("webhooks_not_subscribed", "warning"),
    ]
    expiring = one["alerts"][0]
    assert expiring["account_id"] == account_id and expiring["hint"] and demo.username in expiring["message"]
