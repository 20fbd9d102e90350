"""Conversion and saving against recorded Meta answers (tests/fixtures/graph via respx) rather than the emulator."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient
from tests.accounts.conftest import APP_ID, SANDBOX_HOST, account_count, error_of
from tests.graph.fixtures import load_fixture

from replyflow.runtime import Runtime

API = f"{SANDBOX_HOST}/graph/v25.0"
USER_TOKEN = "EAABsbCS1iHgBOuserTokenForAccountsRespxTests0000000000000000000"
PAGE_TOKEN = "EAABsbCS1iHgBOpageTokenForAccountsRespxTests0000000000000000000"
IN_A_MONTH = int((dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).timestamp())


@pytest.fixture
def meta() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=API, assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
def graph_transport(meta: respx.MockRouter) -> httpx.MockTransport:
    return httpx.MockTransport(meta.async_handler)


def ours(name: str, **data: Any) -> httpx.Response:
    """A debug_token fixture as if issued for our app (the recorded ones name app 100000000000001)."""
    fixture = load_fixture(name)
    fixture.body["data"].update({"app_id": APP_ID, **data})
    response: httpx.Response = fixture.response()
    return response


def _convert(client: TestClient, headers: dict[str, str]) -> httpx.Response:
    response: httpx.Response = client.post(
        "/api/instagram/convert-token", json={"user_access_token": USER_TOKEN}, headers=headers
    )
    return response


def test_token_of_another_app(client: TestClient, auth_headers: dict[str, str], meta: respx.MockRouter) -> None:
    meta.post("/debug_token").mock(return_value=load_fixture("debug_token__user_valid").response())
    response = _convert(client, auth_headers)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "token_from_another_app"
    assert "Meta App" in error["hint"]


def test_expired_token(client: TestClient, auth_headers: dict[str, str], meta: respx.MockRouter) -> None:
    meta.post("/debug_token").mock(return_value=ours("debug_token__expired"))
    response = _convert(client, auth_headers)
    assert response.status_code == 400 and error_of(response)["code"] == "token_expired"
    assert "Session has expired" not in response.text, "Meta's raw text is not passed on"


def test_wrong_app_credentials_are_ours_to_fix(
    client: TestClient, auth_headers: dict[str, str], meta: respx.MockRouter
) -> None:
    meta.post("/debug_token").mock(return_value=load_fixture("error__token_invalid_190").response())
    response = _convert(client, auth_headers)
    assert response.status_code == 502
    error = error_of(response)
    assert error["code"] == "app_credentials_invalid" and "REPLYFLOW_META_APP_SECRET" in error["hint"]


def test_granular_scopes_decide_readiness_per_page(
    client: TestClient, auth_headers: dict[str, str], meta: respx.MockRouter
) -> None:
    # The recorded token grants instagram_* only for @roastandtoast, not for @luna.studio.
    meta.post("/debug_token").mock(return_value=ours("debug_token__user_valid", expires_at=IN_A_MONTH))
    meta.get("/me/accounts").mock(return_value=load_fixture("me_accounts__two_pages").response())

    response = _convert(client, auth_headers)

    assert response.status_code == 200, response.text
    pages = {p["name"]: p for p in response.json()["pages"]}
    assert pages["Roast & Toast"]["ready"] is True
    luna = pages["Luna Studio"]
    assert luna["ready"] is False
    assert {d["code"] for d in luna["problem_details"]} == {"missing_permission"}
    assert any("instagram_manage_messages" in p for p in luna["problems"])
    assert "EAABsbCS1iHgBOpageToken" not in response.text


def test_pages_are_followed_across_paging(
    client: TestClient, auth_headers: dict[str, str], meta: respx.MockRouter
) -> None:
    meta.post("/debug_token").mock(return_value=ours("debug_token__user_valid", expires_at=IN_A_MONTH))
    meta.get("/me/accounts").mock(
        side_effect=[
            load_fixture("me_accounts__paged_first").response(),
            load_fixture("me_accounts__paged_last").response(),
        ]
    )
    response = _convert(client, auth_headers)
    assert response.status_code == 200
    assert len(response.json()["pages"]) == 2


@pytest.mark.parametrize("fixture", ["error__server_500_empty", "error__bad_gateway_html", "error__unknown_1"])
def test_meta_5xx_while_listing_pages_is_502(
    client: TestClient, auth_headers: dict[str, str], meta: respx.MockRouter, runtime: Runtime, fixture: str
) -> None:
    meta.post("/debug_token").mock(return_value=ours("debug_token__user_valid", expires_at=IN_A_MONTH))
    meta.get("/me/accounts").mock(return_value=load_fixture(fixture).response())
    response = _convert(client, auth_headers)
    assert response.status_code == 502
    assert error_of(response)["code"] == "meta_unavailable"


def test_rate_limit_while_listing_pages_says_to_wait(
    client: TestClient, auth_headers: dict[str, str], meta: respx.MockRouter
) -> None:
    meta.post("/debug_token").mock(return_value=ours("debug_token__user_valid", expires_at=IN_A_MONTH))
    meta.get("/me/accounts").mock(return_value=load_fixture("error__rate_limit_user_17").response())
    response = _convert(client, auth_headers)
    assert response.status_code == 503
    assert error_of(response)["code"] == "meta_rate_limited"


def test_connect_timeout_is_502(client: TestClient, auth_headers: dict[str, str], meta: respx.MockRouter) -> None:
    meta.post("/debug_token").mock(side_effect=httpx.ConnectTimeout("no route"))
    response = _convert(client, auth_headers)
    assert response.status_code == 502 and error_of(response)["code"] == "meta_unavailable"


def test_pasted_page_token_for_a_page_without_instagram(
    client: TestClient, auth_headers: dict[str, str], meta: respx.MockRouter, runtime: Runtime
) -> None:
    meta.post("/debug_token").mock(return_value=ours("debug_token__page", profile_id="111222333444555"))
    meta.get("/111222333444555").mock(return_value=load_fixture("page__without_instagram").response())
    response = client.post(
        "/api/instagram/save-page-token", json={"page_access_token": PAGE_TOKEN}, headers=auth_headers
    )
    assert response.status_code == 422 and error_of(response)["code"] == "page_without_instagram"
    assert account_count(runtime) == 0


def test_pasted_page_token_saved_when_subscription_is_refused(
    client: TestClient, auth_headers: dict[str, str], meta: respx.MockRouter, runtime: Runtime
) -> None:
    meta.post("/debug_token").mock(return_value=ours("debug_token__page"))
    meta.get("/102938475610293").mock(return_value=load_fixture("page__with_instagram").response())
    meta.get("/17841400000000001").mock(return_value=load_fixture("instagram_account__profile").response())
    meta.post("/102938475610293/subscribed_apps").mock(return_value=load_fixture("error__permission_200").response())

    response = client.post(
        "/api/instagram/save-page-token", json={"page_access_token": PAGE_TOKEN}, headers=auth_headers
    )

    assert response.status_code == 201, response.text
    account = response.json()["account"]
    assert account["username"] == "roastandtoast"
    assert account["webhooks_subscribed"] is False
    assert "page_not_subscribed" in {p["code"] for p in account["problems"]}
    assert PAGE_TOKEN not in response.text
    subscribe = meta.calls.last.request
    assert subscribe.headers["authorization"] == f"Bearer {PAGE_TOKEN}"
    assert b"subscribed_fields=feed%2Cmessages%2Cmessaging_postbacks" in subscribe.content
