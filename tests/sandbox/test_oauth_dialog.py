"""The sandbox "Facebook Login" page: consent, redirect with code and state, cancel, and the code exchange."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from replyflow.sandbox import SandboxState
from replyflow.sandbox.models import DemoWorld
from tests.sandbox.conftest import APP_ID, APP_SECRET, Graph

pytestmark = pytest.mark.anyio

REDIRECT = "http://127.0.0.1:8000/accounts/oauth/callback"
SCOPES = "pages_show_list,pages_messaging,instagram_basic,instagram_manage_comments"


def dialog_params(**overrides: str) -> dict[str, str]:
    params = {"client_id": APP_ID, "redirect_uri": REDIRECT, "state": "st-123", "response_type": "code",
              "scope": SCOPES}  # fmt: skip
    params.update(overrides)
    return params


def query_of(location: str) -> dict[str, str]:
    parts = urlsplit(location)
    assert parts.fragment == "_=_"
    return {k: v[0] for k, v in parse_qs(parts.query).items()}


async def test_consent_page_lists_permissions_and_pages(http: httpx.AsyncClient, demo: DemoWorld) -> None:
    page = await http.get("/v25.0/dialog/oauth", params=dialog_params())
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["x-frame-options"] == "DENY"
    html = page.text
    assert "Facebook" in html and "Demo Creator" in html
    assert "Manage comments for the Instagram account connected to your Page" in html
    assert "Demo Roastery" in html and "No Instagram account linked" in html
    assert 'value="continue"' in html and 'value="cancel"' in html
    unversioned = await http.get("/dialog/oauth", params=dialog_params())
    assert unversioned.status_code == 200


async def test_continue_redirects_with_a_code_that_exchanges_once(
    http: httpx.AsyncClient, graph: Graph, state: SandboxState, demo: DemoWorld
) -> None:
    form = {**dialog_params(), "user_id": demo.user_id, "decision": "continue",
            "granted": ["pages_show_list", "instagram_basic"], "pages": [demo.page_id]}  # fmt: skip
    response = await http.post("/v25.0/dialog/oauth", data=form)
    assert response.status_code == 303
    query = query_of(response.headers["location"])
    assert response.headers["location"].startswith(REDIRECT + "?")
    assert query["state"] == "st-123" and query["code"].startswith("AQ")

    exchange = {"client_id": APP_ID, "client_secret": APP_SECRET, "redirect_uri": REDIRECT, "code": query["code"]}
    token = (await graph.get("oauth/access_token", **exchange)).json()
    assert token["token_type"] == "bearer" and 0 < token["expires_in"] <= 2 * 3600
    info = state.token_info(token["access_token"])
    assert info is not None and info.scopes == ["pages_show_list", "instagram_basic", "public_profile"]
    assert info.page_ids == [demo.page_id]
    accounts = (await graph.get("me/accounts", token=token["access_token"], fields="id")).json()["data"]
    assert [p["id"] for p in accounts] == [demo.page_id]

    reused = (await graph.get("oauth/access_token", **exchange)).json()["error"]
    assert (reused["code"], reused["error_subcode"]) == (100, 36009)


async def test_code_rules(http: httpx.AsyncClient, graph: Graph, state: SandboxState, demo: DemoWorld) -> None:
    code = state.issue_oauth_code(user_id=demo.user_id, client_id=APP_ID, redirect_uri=REDIRECT,
                                  scopes=["pages_show_list"], page_ids=None)  # fmt: skip
    base = {"client_id": APP_ID, "client_secret": APP_SECRET, "code": code}
    wrong_uri = (await graph.get("oauth/access_token", redirect_uri=REDIRECT + "x", **base)).json()["error"]
    assert wrong_uri["error_subcode"] == 36008
    state.clock.advance(minutes=11)
    expired = (await graph.get("oauth/access_token", redirect_uri=REDIRECT, **base)).json()["error"]
    assert expired["error_subcode"] == 36007


async def test_cancel_redirects_with_access_denied(http: httpx.AsyncClient, demo: DemoWorld) -> None:
    response = await http.post(
        "/v25.0/dialog/oauth", data={**dialog_params(), "user_id": demo.user_id, "decision": "cancel"}
    )
    assert response.status_code == 303
    query = query_of(response.headers["location"])
    assert query == {"error_reason": "user_denied", "error": "access_denied",
                     "error_description": "Permissions error.", "state": "st-123"}  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "title"),
    [
        ({"client_id": "999"}, "Invalid App ID"),
        ({"redirect_uri": "javascript:alert(1)"}, "Can&#x27;t load URL"),
        ({"scope": "pages_show_list,read_everything"}, "Invalid Scopes"),
    ],
)
async def test_bad_requests_show_an_error_page_and_never_redirect(
    http: httpx.AsyncClient, overrides: dict[str, str], title: str
) -> None:
    response = await http.get("/v25.0/dialog/oauth", params=dialog_params(**overrides))
    assert response.status_code == 400 and title in response.text and "location" not in response.headers


async def test_user_input_is_escaped(http: httpx.AsyncClient) -> None:
    response = await http.get("/v25.0/dialog/oauth", params=dialog_params(state='"><script>alert(1)</script>'))
    assert "<script>alert" not in response.text and "&lt;script&gt;" in response.text
