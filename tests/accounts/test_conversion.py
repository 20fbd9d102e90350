"""POST /api/instagram/convert-token against the emulator: Pages with readiness, and every way a token is refused."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.accounts.conftest import RecordingTransport, error_of, page_tokens_of, user_token

from replyflow.accounts.models import TokenConversion
from replyflow.runtime import Runtime
from replyflow.sandbox import SandboxState
from replyflow.sandbox.models import DemoWorld

URL = "/api/instagram/convert-token"


def _conversions(runtime: Runtime) -> list[TokenConversion]:
    with runtime.session() as session:
        return list(session.scalars(select(TokenConversion)))


def test_short_lived_token_is_made_long_lived_and_pages_are_listed_with_readiness(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld, runtime: Runtime
) -> None:
    token = user_token(sandbox, demo)
    response = client.post(URL, json={"user_access_token": token}, headers=auth_headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "USER"
    assert body["long_lived"] is True
    assert body["missing_permissions"] == []
    expires = dt.datetime.fromisoformat(body["expires_at"])
    assert expires - dt.datetime.now(dt.UTC) > dt.timedelta(days=50), "exchanged for a ~60-day token"
    pages = {p["page_id"]: p for p in body["pages"]}
    roastery = pages[demo.page_id]
    assert roastery["ready"] is True and roastery["problems"] == []
    assert roastery["instagram"] == {"id": demo.ig_account_id, "username": demo.username}
    bakery = pages[demo.page_without_instagram_id]
    assert bakery["ready"] is False
    assert bakery["instagram"] is None
    assert bakery["problems"] == ["This Page has no Instagram professional account linked."]
    assert bakery["problem_details"][0]["hint"]
    # The Page tokens stay on the server: not in the answer, and not in plain text in the database row.
    for page_token in page_tokens_of(sandbox):
        assert page_token not in response.text
    [stored] = _conversions(runtime)
    assert stored.workspace_id and stored.expires_at - stored.created_at == dt.timedelta(minutes=15)
    assert all(t.encode() not in stored.page_tokens_ciphertext for t in page_tokens_of(sandbox))
    # A long-lived token was derived: Page tokens from it never expire.
    page_records = [t for t in sandbox.world.tokens.values() if t.kind == "PAGE"]
    assert page_records and all(t.expires_at is None for t in page_records)


def test_long_lived_token_is_not_exchanged_again(
    client: TestClient,
    auth_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
    graph_transport: RecordingTransport,
) -> None:
    token = user_token(sandbox, demo, long_lived=True)
    response = client.post(URL, json={"user_access_token": token}, headers=auth_headers)
    assert response.status_code == 200
    assert response.json()["long_lived"] is True
    assert not any(path.endswith("/oauth/access_token") for path in graph_transport.paths)
    # Its Page tokens come straight from it, so they do not expire either.
    assert all(t.parent == token for t in sandbox.world.tokens.values() if t.kind == "PAGE")


def test_missing_permission_and_task_are_explained_per_page(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld
) -> None:
    sandbox.set_page_role(demo.page_id, demo.user_id, tasks=["ANALYZE", "CREATE_CONTENT", "MODERATE"])
    scopes = ["pages_show_list", "pages_read_engagement", "pages_manage_metadata", "instagram_basic",
              "instagram_manage_comments"]  # fmt: skip
    token = user_token(sandbox, demo, scopes=scopes)

    body = client.post(URL, json={"user_access_token": token}, headers=auth_headers).json()

    assert body["missing_permissions"] == ["instagram_manage_messages"]
    roastery = next(p for p in body["pages"] if p["page_id"] == demo.page_id)
    assert roastery["ready"] is False
    codes = [d["code"] for d in roastery["problem_details"]]
    assert codes == ["messaging_task_missing", "missing_permission"]
    assert any("MESSAGING task" in p for p in roastery["problems"])
    assert any("lacks instagram_manage_messages" in p for p in roastery["problems"])
    hint = roastery["problem_details"][1]["hint"]
    assert "https://developers.facebook.com/tools/explorer/" in hint
    assert "https://developers.facebook.com/docs/permissions#instagram_manage_messages" in hint


def test_no_pages_warns_about_business_management(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld
) -> None:
    token = user_token(sandbox, demo, scopes=["instagram_basic"])  # no pages_show_list: Meta lists nothing
    body = client.post(URL, json={"user_access_token": token}, headers=auth_headers).json()
    assert body["pages"] == []
    assert "pages_show_list" in body["missing_permissions"]
    assert "business_management" in body["warnings"][0]


GARBAGE = [
    ("", "empty"),
    ("   \n\t ", "empty"),
    ("EAAB" + "x" * 10, "too short"),
    ("EAAB" + "x" * 3000, "too long"),
    ("EAABwzLixnjYBO4ZCZA tokenwithaspace0000000000000000000000", "spaces"),
    ("Bearer EAABwzLixnjYBO4ZCZAtoken00000000000000000000000000000", "without the word"),
    ("https://developers.facebook.com/tools/explorer/?access_token=EAAB", "web address"),
    ('{"access_token": "EAABwzLixnjYBO4ZCZAtoken000000000000000000000"}', "JSON"),
    ("123456789012345|0f1e2d3c4b5a69788796a5b4c3d2e1f0", "app access token"),
    ("EAAB<script>alert(1)</script>000000000000000000000000000", "characters"),
]


@pytest.mark.parametrize(("value", "words"), GARBAGE)
def test_obviously_wrong_input_is_refused_before_meta_without_echo(
    client: TestClient,
    auth_headers: dict[str, str],
    graph_transport: RecordingTransport,
    runtime: Runtime,
    value: str,
    words: str,
) -> None:
    response = client.post(URL, json={"user_access_token": value}, headers=auth_headers)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "token_format_invalid"
    assert words.lower() in error["message"].lower()
    if value.strip():
        assert value.strip() not in response.text
        assert "0f1e2d3c4b5a69788796a5b4c3d2e1f0" not in response.text
    assert _conversions(runtime) == []
    assert graph_transport.paths == [], "nothing was sent to Meta"


def test_instagram_login_token_gets_its_own_explanation(client: TestClient, auth_headers: dict[str, str]) -> None:
    response = client.post(URL, json={"user_access_token": "IGAAJ" + "a1" * 60}, headers=auth_headers)
    assert response.status_code == 422
    assert error_of(response)["code"] == "wrong_token_type"
    assert "Instagram Login" in response.json()["error"]["message"]


def test_page_token_is_refused_with_a_pointer_to_save_page_token(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld
) -> None:
    page_token = sandbox.page_token(user_token=user_token(sandbox, demo, long_lived=True), page_id=demo.page_id)
    response = client.post(URL, json={"user_access_token": page_token}, headers=auth_headers)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "wrong_token_type"
    assert "save-page-token" in error["hint"]
    assert page_token not in response.text


@pytest.mark.parametrize(("reason", "code"), [("expired", "token_expired"), ("password_changed", "token_invalid")])
def test_dead_tokens_are_refused(
    client: TestClient,
    auth_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
    runtime: Runtime,
    reason: Any,
    code: str,
) -> None:
    token = user_token(sandbox, demo)
    sandbox.invalidate_token(token, reason=reason)
    response = client.post(URL, json={"user_access_token": token}, headers=auth_headers)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == code
    assert "https://developers.facebook.com/tools/explorer/" in error["hint"]
    assert token not in response.text
    assert _conversions(runtime) == []


def test_unknown_token_is_invalid(client: TestClient, auth_headers: dict[str, str]) -> None:
    response = client.post(URL, json={"user_access_token": "EAAB" + "Q" * 180}, headers=auth_headers)
    assert response.status_code == 400
    assert error_of(response)["code"] == "token_invalid"


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b'{"user_access_token": ', 422, "invalid_json"),
        (b"[1, 2, 3]", 422, "invalid_json"),
        (b"", 422, "invalid_json"),
        (b'{"user_access_token": 12345}', 422, "validation_failed"),
        (b"{}", 422, "validation_failed"),
        (b'{"user_access_token": "EAAB", "extra": 1}', 422, "validation_failed"),
        (b'{"user_access_token": "' + b"E" * 40_000 + b'"}', 413, "payload_too_large"),
    ],
)
def test_malformed_and_huge_bodies(
    client: TestClient, auth_headers: dict[str, str], runtime: Runtime, content: bytes, status: int, code: str
) -> None:
    response = client.post(URL, content=content, headers={**auth_headers, "Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert error_of(response)["code"] == code
    assert "EEEEEEEE" not in response.text
    assert _conversions(runtime) == []


def test_streamed_huge_body_without_length_is_cut_off(client: TestClient, auth_headers: dict[str, str]) -> None:
    def chunks() -> Any:
        yield b'{"user_access_token": "'
        for _ in range(100):
            yield b"E" * 1024
        yield b'"}'

    response = client.post(URL, content=chunks(), headers={**auth_headers, "Content-Type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("pattern", "kind"),
    [("/debug_token", "transient"), ("GET /me/accounts", "transient"), ("/oauth/access_token", "timeout")],
)
def test_meta_failures_are_502_and_nothing_is_stored(
    client: TestClient,
    auth_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
    runtime: Runtime,
    pattern: str,
    kind: Any,
) -> None:
    token = user_token(sandbox, demo)
    # Reads are retried once when no connection could be made; an answered 5xx is not retried.
    sandbox.inject_failure(pattern, kind=kind, times=2)
    response = client.post(URL, json={"user_access_token": token}, headers=auth_headers)
    assert response.status_code == 502, response.text
    error = error_of(response)
    assert error["code"] == "meta_unavailable"
    assert "Nothing was saved" in error["message"]
    assert token not in response.text
    assert _conversions(runtime) == []


def test_needs_an_api_key(client: TestClient) -> None:
    assert client.post(URL, json={"user_access_token": "EAAB" + "Q" * 100}).status_code == 401


def test_conversion_can_be_read_back_only_by_its_workspace(
    client: TestClient,
    auth_headers: dict[str, str],
    other_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
) -> None:
    body = client.post(URL, json={"user_access_token": user_token(sandbox, demo)}, headers=auth_headers).json()
    again = client.get(f"/api/instagram/conversions/{body['conversion_id']}", headers=auth_headers)
    assert again.status_code == 200 and again.json()["pages"] == body["pages"]
    other = client.get(f"/api/instagram/conversions/{body['conversion_id']}", headers=other_headers)
    assert other.status_code == 404
    assert error_of(other)["code"] == "conversion_not_found"
