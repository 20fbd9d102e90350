"""The emulator's graph.instagram.com: Instagram User tokens there and only there, /me, the token endpoints'
rules (short-lived only for ig_exchange_token, 24 hours old for ig_refresh_token), and webhooks for an account
with no Facebook Page once it subscribed itself."""

from __future__ import annotations

import json

import httpx
import pytest

from replyflow.sandbox import SandboxState
from replyflow.sandbox.models import DemoWorld
from tests.sandbox.conftest import APP_SECRET, VERSION, Graph

pytestmark = pytest.mark.anyio


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_instagram_tokens_work_on_the_instagram_host_only(
    http: httpx.AsyncClient, graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str
) -> None:
    assert demo.instagram_login_account_id is not None
    token = state.issue_instagram_token(demo.instagram_login_account_id)

    me = await http.get(f"/instagram/{VERSION}/me", params={"fields": "id,user_id,username,account_type"},
                        headers=_bearer(token))  # fmt: skip
    on_facebook = await graph.get("me", token=token)
    page_token_on_instagram = await http.get(f"/instagram/{VERSION}/me", headers=_bearer(page_token))

    assert me.status_code == 200, me.text
    body = me.json()
    assert body["user_id"] == demo.instagram_login_account_id and body["id"] != body["user_id"]
    assert (body["username"], body["account_type"]) == (demo.instagram_login_username, "BUSINESS")
    assert on_facebook.status_code == 400 and on_facebook.json()["error"]["code"] == 190
    assert page_token_on_instagram.status_code == 400 and page_token_on_instagram.json()["error"]["code"] == 190


async def test_exchange_takes_short_lived_tokens_and_refresh_waits_24_hours(
    http: httpx.AsyncClient, state: SandboxState, demo: DemoWorld
) -> None:
    assert demo.instagram_login_account_id is not None
    short = state.issue_instagram_token(demo.instagram_login_account_id)

    exchanged = await http.get(
        "/instagram/access_token",
        params={"grant_type": "ig_exchange_token", "client_secret": APP_SECRET, "access_token": short},
    )
    assert exchanged.status_code == 200, exchanged.text
    long_lived = exchanged.json()["access_token"]
    assert exchanged.json()["expires_in"] == 60 * 24 * 3600
    again = await http.get(
        "/instagram/access_token",
        params={"grant_type": "ig_exchange_token", "client_secret": APP_SECRET, "access_token": long_lived},
    )
    assert again.status_code == 400

    refresh = {"grant_type": "ig_refresh_token", "access_token": long_lived}
    too_new = await http.get("/instagram/refresh_access_token", params=refresh)
    assert too_new.status_code == 400 and "24 hours" in too_new.json()["error"]["message"]
    state.clock.advance(hours=25)
    refreshed = await http.get("/instagram/refresh_access_token", params=refresh)
    assert refreshed.status_code == 200 and refreshed.json()["access_token"] != long_lived
    state.clock.advance(days=61)
    expired = await http.get("/instagram/refresh_access_token", params=refresh)
    assert expired.status_code == 400 and expired.json()["error"]["code"] == 190


async def test_an_account_without_a_page_gets_webhooks_once_it_subscribed_itself(
    http: httpx.AsyncClient, state: SandboxState, demo: DemoWorld
) -> None:
    assert demo.instagram_login_account_id is not None
    media_id = demo.instagram_login_media_ids[0]
    state.add_comment(media_id, text="before", username="early.bird")
    assert state.peek_pending_webhooks() == []
    skipped = state.webhook_deliveries(limit=1)[0]
    assert skipped.skipped_reason is not None and "/me/subscribed_apps" in skipped.skipped_reason

    token = state.issue_instagram_token(demo.instagram_login_account_id)
    subscribed = await http.post(
        f"/instagram/{VERSION}/me/subscribed_apps", data={"subscribed_fields": "comments,messages"},
        headers=_bearer(token),
    )  # fmt: skip
    assert subscribed.json() == {"success": True}
    listed = await http.get(f"/instagram/{VERSION}/me/subscribed_apps", headers=_bearer(token))
    assert listed.json()["data"][0]["subscribed_fields"] == ["comments", "messages"]

    comment = state.add_comment(media_id, text="MUG please", username="tea.fan")
    (pending,) = state.peek_pending_webhooks()
    assert pending.payload["entry"][0]["id"] == demo.instagram_login_account_id
    assert pending.payload["entry"][0]["changes"][0]["value"]["id"] == comment.id

    sent = await http.post(
        f"/instagram/{VERSION}/{demo.instagram_login_account_id}/messages",
        content=json.dumps({"recipient": {"comment_id": comment.id}, "message": {"text": "Here you go"}}),
        headers={**_bearer(token), "content-type": "application/json"},
    )
    assert sent.status_code == 200, sent.text
    (entry,) = state.outbox(kind="private_reply")
    assert (entry.token_kind, entry.page_id, entry.recipient_id) == ("INSTAGRAM", None, comment.from_id)
