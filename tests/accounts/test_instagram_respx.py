"""save-instagram-token against recorded Instagram Login answers (respx) rather than the emulator."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest
import respx
from fastapi.testclient import TestClient
from tests.accounts.conftest import SANDBOX_HOST, error_of
from tests.graph.fixtures import load_fixture

from replyflow.db import utcnow

IG = f"{SANDBOX_HOST}/instagram"
IG_TOKEN = "IGAAshortLivedTokenForAccountsRespxTests00000000000000000000000000"
SAVE = "/api/instagram/save-instagram-token"


@pytest.fixture
def meta() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
def graph_transport(meta: respx.MockRouter) -> httpx.MockTransport:
    return httpx.MockTransport(meta.async_handler)


def test_recorded_shapes_connect_the_professional_account(
    client: TestClient, auth_headers: dict[str, str], meta: respx.MockRouter
) -> None:
    meta.get(f"{IG}/v25.0/me").mock(return_value=load_fixture("instagram_login__me").response())
    exchange = meta.get(f"{IG}/access_token").mock(return_value=load_fixture("instagram_login__exchange").response())
    meta.post(f"{IG}/v25.0/me/subscribed_apps").mock(
        return_value=load_fixture("instagram_login__subscribed_apps").response()
    )

    response = client.post(SAVE, json={"instagram_access_token": IG_TOKEN}, headers=auth_headers)

    assert response.status_code == 201, response.text
    account = response.json()["account"]
    # user_id is the id webhooks and Facebook Login know; the app-scoped id is not the account id.
    assert (account["instagram_id"], account["username"], account["login"]) == (
        "17841400000000002",
        "lina.ceramics",
        "instagram",
    )
    expires = dt.datetime.fromisoformat(account["expires_at"])
    assert abs((expires - utcnow()) - dt.timedelta(seconds=5183944)) < dt.timedelta(minutes=1)
    assert exchange.calls.last.request.url.params["grant_type"] == "ig_exchange_token"
    long_lived = load_fixture("instagram_login__exchange").body["access_token"]
    assert IG_TOKEN not in response.text and long_lived not in response.text


def test_a_young_long_lived_token_is_kept_when_meta_will_neither_exchange_nor_refresh_it(
    client: TestClient, auth_headers: dict[str, str], meta: respx.MockRouter
) -> None:
    meta.get(f"{IG}/v25.0/me").mock(return_value=load_fixture("instagram_login__me").response())
    refused = load_fixture("instagram_login__refresh_too_new").response()
    meta.get(f"{IG}/access_token").mock(return_value=refused)
    meta.get(f"{IG}/refresh_access_token").mock(
        return_value=load_fixture("instagram_login__refresh_too_new").response()
    )
    meta.post(f"{IG}/v25.0/me/subscribed_apps").mock(
        return_value=load_fixture("instagram_login__subscribed_apps").response()
    )

    response = client.post(SAVE, json={"instagram_access_token": IG_TOKEN}, headers=auth_headers)

    assert response.status_code == 201, response.text
    expires = dt.datetime.fromisoformat(response.json()["account"]["expires_at"])
    assert dt.timedelta(days=58) < expires - utcnow() < dt.timedelta(days=60)


def test_a_token_instagram_refuses_is_a_400_without_the_token(
    client: TestClient, auth_headers: dict[str, str], meta: respx.MockRouter
) -> None:
    meta.get(f"{IG}/v25.0/me").mock(return_value=load_fixture("instagram_login__token_invalid_190").response())

    response = client.post(SAVE, json={"instagram_access_token": IG_TOKEN}, headers=auth_headers)

    assert response.status_code == 400
    assert error_of(response)["code"] == "token_invalid" and IG_TOKEN not in response.text
    assert "Cannot parse" not in response.text, "Meta's raw text is not passed on"
