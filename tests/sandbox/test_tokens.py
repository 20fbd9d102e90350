"""Tokens as Meta treats them: debug_token, exchanges, appsecret_proof, invalidation, versions and usage headers."""

from __future__ import annotations

import json

import httpx
import pytest

from replyflow.sandbox import SandboxState
from replyflow.sandbox.models import DemoWorld
from tests.sandbox.conftest import APP_ID, APP_SECRET, START, Graph, proof

pytestmark = pytest.mark.anyio

APP_TOKEN = f"{APP_ID}|{APP_SECRET}"


def error_of(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, object] = body["error"]
    assert error["type"] in ("OAuthException", "GraphMethodException")
    assert isinstance(error["fbtrace_id"], str) and len(error["fbtrace_id"]) == 11
    assert isinstance(error["is_transient"], bool)
    return error


async def test_tokens_look_like_facebook_login_tokens(demo: DemoWorld, page_token: str) -> None:
    for token in (demo.user_token, page_token):
        assert token.startswith("EAAB") and len(token) > 150 and token.isalnum()
    assert demo.user_token != page_token


async def test_debug_token_describes_a_long_lived_user_token(graph: Graph, demo: DemoWorld) -> None:
    response = await graph.get("debug_token", token=APP_TOKEN, input_token=demo.user_token)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["app_id"] == APP_ID and data["type"] == "USER" and data["is_valid"] is True
    assert data["user_id"] == demo.user_id
    assert data["issued_at"] == int(START.timestamp())
    assert data["expires_at"] == int(START.timestamp()) + 60 * 86400
    assert {"pages_show_list", "pages_messaging", "instagram_manage_comments", "public_profile"} <= set(data["scopes"])
    granular = {g["scope"]: g.get("target_ids") for g in data["granular_scopes"]}
    assert granular["pages_show_list"] == [demo.page_id, demo.page_without_instagram_id]
    assert granular["instagram_manage_comments"] == [demo.ig_account_id]
    assert "profile_id" not in data and "error" not in data


async def test_debug_token_of_page_token_never_expires(graph: Graph, demo: DemoWorld, page_token: str) -> None:
    data = (await graph.get("debug_token", token=APP_TOKEN, input_token=page_token)).json()["data"]
    assert data["type"] == "PAGE"
    assert data["profile_id"] == demo.page_id
    assert data["expires_at"] == 0
    assert data["data_access_expires_at"] > data["issued_at"]


async def test_debug_token_needs_the_app_token(graph: Graph, demo: DemoWorld) -> None:
    missing = await graph.get("debug_token", input_token=demo.user_token)
    assert missing.status_code == 400 and error_of(missing)["code"] == 104
    wrong = await graph.get("debug_token", token=f"{APP_ID}|not-the-secret", input_token=demo.user_token)
    assert error_of(wrong)["code"] == 190
    no_input = await graph.get("debug_token", token=APP_TOKEN)
    assert error_of(no_input)["code"] == 100


async def test_debug_token_reports_invalid_tokens_inside_data(
    graph: Graph, state: SandboxState, demo: DemoWorld
) -> None:
    unknown = (await graph.get("debug_token", token=APP_TOKEN, input_token="EAABnot-a-token")).json()["data"]
    assert unknown["is_valid"] is False and unknown["error"]["code"] == 190
    state.invalidate_token(demo.user_token, reason="password_changed")
    data = (await graph.get("debug_token", token=APP_TOKEN, input_token=demo.user_token)).json()["data"]
    assert data["is_valid"] is False
    assert data["error"] == {"code": 190, "message": data["error"]["message"], "subcode": 460}


async def test_method_get_override_on_post_form(graph: Graph, demo: DemoWorld) -> None:
    """Our client sends secret-bearing reads as POST with ``method=GET`` so no URL holds a token."""
    response = await graph.http.post(
        graph.url("debug_token"),
        data={"method": "GET", "input_token": demo.user_token},
        headers={"Authorization": f"Bearer {APP_TOKEN}"},
    )
    assert response.status_code == 200 and response.json()["data"]["is_valid"] is True


async def test_expired_token_is_190_463_with_www_authenticate(
    graph: Graph, state: SandboxState, demo: DemoWorld
) -> None:
    short = state.issue_user_token(demo.user_id)
    assert (await graph.get("me", token=short)).status_code == 200
    state.clock.advance(hours=3)
    response = await graph.get("me/accounts", token=short)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["error_subcode"]) == (190, 463)
    assert "Session has expired on" in str(error["message"])
    assert response.headers["www-authenticate"].startswith('OAuth "Facebook Platform" "invalid_token"')


async def test_password_change_kills_user_and_derived_page_tokens(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str
) -> None:
    state.invalidate_user_sessions(demo.user_id, reason="password_changed")
    for token in (demo.user_token, page_token):
        error = error_of(await graph.get("me", token=token))
        assert (error["code"], error["error_subcode"]) == (190, 460)


async def test_page_token_from_short_lived_user_token_expires_with_it(
    graph: Graph, state: SandboxState, demo: DemoWorld
) -> None:
    short = state.issue_user_token(demo.user_id)
    token = state.page_token(user_token=short, page_id=demo.page_id)
    state.clock.advance(hours=2, seconds=1)
    error = error_of(await graph.get(demo.page_id, token=token))
    assert (error["code"], error["error_subcode"]) == (190, 463)


async def test_losing_the_page_role_invalidates_its_page_token(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str
) -> None:
    state.set_page_role(demo.page_id, demo.user_id, tasks=None)
    error = error_of(await graph.get(demo.page_id, token=page_token))
    assert error["code"] == 190


async def test_unknown_and_missing_tokens(graph: Graph, demo: DemoWorld) -> None:
    error = error_of(await graph.get("me", token="EAABdefinitelyNotIssued"))
    assert error["code"] == 190 and "error_subcode" not in error
    error = error_of(await graph.get(demo.page_id))
    assert error["code"] == 104


async def test_token_accepted_as_query_parameter_too(graph: Graph, demo: DemoWorld) -> None:
    response = await graph.get("me", access_token=demo.user_token)
    assert response.json() == {"name": "Demo Creator", "id": demo.user_id}


async def test_appsecret_proof_is_checked_when_given(graph: Graph, demo: DemoWorld) -> None:
    good = await graph.get("me", token=demo.user_token, appsecret_proof=proof(demo.user_token))
    assert good.status_code == 200
    bad = await graph.get("me", token=demo.user_token, appsecret_proof=proof(demo.user_token, "other-secret"))
    error = error_of(bad)
    assert error["code"] == 100 and error["message"] == "Invalid appsecret_proof provided in the API argument"


async def test_require_app_secret_switch(graph: Graph, state: SandboxState, demo: DemoWorld) -> None:
    state.app.require_appsecret_proof = True
    error = error_of(await graph.get("me", token=demo.user_token))
    assert error["code"] == 100 and "appsecret_proof" in str(error["message"])
    ok = await graph.get("me", token=demo.user_token, appsecret_proof=proof(demo.user_token))
    assert ok.status_code == 200


async def test_long_lived_exchange(graph: Graph, state: SandboxState, demo: DemoWorld) -> None:
    short = state.issue_user_token(demo.user_id, scopes=["pages_show_list"])
    response = await graph.get(
        "oauth/access_token",
        grant_type="fb_exchange_token",
        client_id=APP_ID,
        client_secret=APP_SECRET,
        fb_exchange_token=short,
    )
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 60 * 86400
    assert body["access_token"].startswith("EAAB") and body["access_token"] != short
    info = state.token_info(body["access_token"])
    assert info is not None and info.long_lived and info.scopes == ["pages_show_list", "public_profile"]


async def test_exchange_refuses_wrong_app_credentials_and_expired_tokens(
    graph: Graph, state: SandboxState, demo: DemoWorld
) -> None:
    short = state.issue_user_token(demo.user_id)
    params = {"grant_type": "fb_exchange_token", "client_id": APP_ID, "fb_exchange_token": short}
    wrong_secret = await graph.get("oauth/access_token", client_secret="nope", **params)
    assert error_of(wrong_secret)["code"] == 1
    wrong_app = await graph.get("oauth/access_token", **{**params, "client_id": "999", "client_secret": APP_SECRET})
    assert error_of(wrong_app)["code"] == 101
    state.clock.advance(hours=5)
    expired = await graph.get("oauth/access_token", client_secret=APP_SECRET, **params)
    error = error_of(expired)
    assert (error["code"], error["error_subcode"]) == (190, 463)


@pytest.mark.parametrize(
    ("version", "status", "served"),
    [("v25.0", 200, "v25.0"), ("v24.0", 200, "v24.0"), ("v12.0", 200, "v20.0"), ("v99.0", 400, None)],
)
async def test_versions(graph: Graph, demo: DemoWorld, version: str, status: int, served: str | None) -> None:
    graph.version = version
    response = await graph.get("me", token=demo.user_token)
    assert response.status_code == status
    if served is None:
        assert error_of(response)["code"] == 2500
    else:
        assert response.headers["facebook-api-version"] == served


@pytest.mark.parametrize("segment", ["v25", "v25.1", "vX.0"])
async def test_malformed_versions_are_refused(http: httpx.AsyncClient, demo: DemoWorld, segment: str) -> None:
    response = await http.get(f"/graph/{segment}/me", headers={"Authorization": f"Bearer {demo.user_token}"})
    assert response.status_code == 400 and error_of(response)["code"] in (2500, 803)


async def test_every_response_carries_usage_headers(graph: Graph, demo: DemoWorld, page_token: str) -> None:
    for response in (
        await graph.get("me", token=demo.user_token),
        await graph.get("me", token="EAABbogus"),
        await graph.get(demo.ig_account_id, token=page_token, fields="id,username"),
    ):
        usage = json.loads(response.headers["x-app-usage"])
        assert set(usage) == {"call_count", "total_cputime", "total_time"}
        assert response.headers["content-type"] == "application/json; charset=UTF-8"
    buc = json.loads(response.headers["x-business-use-case-usage"])
    (entry,) = buc[demo.ig_account_id]
    assert entry["type"] == "instagram" and entry["estimated_time_to_regain_access"] == 0


async def test_json_is_encoded_like_meta(graph: Graph, demo: DemoWorld, page_token: str) -> None:
    """ASCII-only with escaped slashes: parsers cope, and code that string-matches raw bodies would not."""
    response = await graph.get(f"{demo.ig_account_id}/media", token=page_token, fields="caption,permalink", limit=1)
    raw = response.content.decode("ascii")
    assert "https:\\/\\/www.instagram.com\\/reel\\/" in raw and "\\u" in raw
    assert response.json()["data"][0]["permalink"].startswith("https://www.instagram.com/reel/")
