"""Simulation controls over HTTP, used by tests and our product's sandbox routes."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from replyflow.sandbox import SandboxState
from replyflow.sandbox.models import DemoWorld
from tests.sandbox.conftest import Graph

pytestmark = pytest.mark.anyio


async def test_state_summary(http: httpx.AsyncClient, demo: DemoWorld) -> None:
    summary = (await http.get("/control/state")).json()
    assert summary["instagram_accounts"][0]["username"] == "demo.roastery"
    assert [m["id"] for m in summary["instagram_accounts"][0]["media"]] == demo.media_ids


async def test_comment_then_outbox(http: httpx.AsyncClient, graph: Graph, demo: DemoWorld, page_token: str) -> None:
    created = await http.post(
        "/control/comments", json={"media_id": demo.media_ids[0], "text": "ROAST!", "username": "coffee.lena"}
    )
    assert created.status_code == 202
    comment_id = created.json()["comment_id"]
    await graph.post(f"{comment_id}/replies", token=page_token, data={"message": "DM'd you"})
    await graph.post(
        f"{demo.page_id}/messages", token=page_token,
        json={"recipient": {"comment_id": comment_id}, "message": {"text": "the link"}},
    )  # fmt: skip
    outbox = (await http.get("/control/outbox")).json()["data"]
    assert [(e["kind"], e["comment_id"], e["text"]) for e in outbox] == [
        ("private_reply", comment_id, "the link"),
        ("public_reply", comment_id, "DM'd you"),
    ]
    assert "EAAB" not in str(outbox)
    only = (await http.get("/control/outbox", params={"kind": "public_reply", "limit": 5})).json()["data"]
    assert len(only) == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"media_id": "17900000000000000", "text": "x", "username": "a"}, 404),
        ({"text": "x", "username": "a"}, 422),
        ({"media_id": "x", "text": "x", "username": "a", "extra": 1}, 422),
    ],
)
async def test_control_errors(http: httpx.AsyncClient, body: dict[str, object], status: int) -> None:
    response = await http.post("/control/comments", json=body)
    assert response.status_code == status and response.json()["error"]["type"] == "SandboxControlError"


async def test_clock_tokens_and_invalidation(
    http: httpx.AsyncClient, graph: Graph, state: SandboxState, demo: DemoWorld
) -> None:
    before = state.now()
    moved = (await http.post("/control/clock", json={"days": 8})).json()
    assert moved["now"] == (before + timedelta(days=8)).isoformat()
    issued = await http.post("/control/tokens", json={"scopes": ["pages_show_list"]})
    assert issued.status_code == 201
    token = issued.json()["access_token"]
    assert (await graph.get("me", token=token)).status_code == 200
    await http.post("/control/tokens/invalidate", json={"access_token": token, "reason": "expired"})
    assert (await graph.get("me", token=token)).json()["error"]["error_subcode"] == 463


async def test_new_media_appears_in_the_list(
    http: httpx.AsyncClient, graph: Graph, demo: DemoWorld, page_token: str
) -> None:
    created = await http.post(
        "/control/media",
        json={"ig_account_id": demo.ig_account_id, "caption": "Fresh drop", "media_product_type": "REELS"},
    )
    media_id = created.json()["media_id"]
    listed = (await graph.get(f"{demo.ig_account_id}/media", token=page_token, fields="id", limit=1)).json()
    assert listed["data"][0]["id"] == media_id


async def test_webhook_log_and_flush(http: httpx.AsyncClient, state: SandboxState, demo: DemoWorld) -> None:
    state.subscribe_page(demo.page_id, fields=["feed"])
    state.add_comment(demo.media_ids[0], text="queued", username="fan")
    assert (await http.get("/control/webhooks")).json()["pending"] == 1
    flushed = (await http.post("/control/webhooks/flush")).json()["webhooks"]
    assert flushed[0]["ok"] is True
    log = (await http.get("/control/webhooks")).json()
    assert log["pending"] == 0 and log["data"][0]["webhook_id"] == flushed[0]["webhook_id"]
    again = await http.post(f"/control/webhooks/{flushed[0]['webhook_id']}/redeliver")
    assert again.json()["webhooks"][0]["ok"] is True
    assert (await http.post("/control/webhooks/wh_nope/redeliver")).status_code == 404


async def test_assets_unknown_is_404(http: httpx.AsyncClient) -> None:
    assert (await http.get("/assets/media/123.svg")).status_code == 404
