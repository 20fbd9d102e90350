"""Webhook delivery: Meta's payload shapes, the signature over raw bytes, subscriptions that gate them, echoes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest

from replyflow.sandbox import SandboxState, WebhookSender
from replyflow.sandbox.models import DemoWorld
from tests.sandbox.conftest import APP_ID, APP_SECRET, Graph

pytestmark = pytest.mark.anyio


def verify(request: httpx.Request) -> dict[str, Any]:
    """What our receiver must do: HMAC the raw body with the app secret, compare, then parse."""
    expected = "sha256=" + hmac.new(APP_SECRET.encode(), request.content, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["x-hub-signature-256"], expected)
    assert request.headers["x-hub-signature"].startswith("sha1=")
    assert request.headers["content-type"] == "application/json"
    body: dict[str, Any] = json.loads(request.content)
    return body


@pytest.fixture
def subscribed(state: SandboxState, demo: DemoWorld) -> None:
    state.subscribe_page(demo.page_id, fields=["feed", "messages"])


async def post_comment(http: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await http.post("/control/comments", json=body)


@pytest.mark.usefixtures("subscribed")
async def test_comment_webhook_has_metas_exact_shape(
    http: httpx.AsyncClient, demo: DemoWorld, deliveries: list[httpx.Request]
) -> None:
    response = await post_comment(http, media_id=demo.media_ids[0], text="ROAST ☕ please", username="coffee.lena")
    assert response.status_code == 202
    result = response.json()
    (request,) = deliveries
    assert str(request.url) == "http://replyflow.test/webhooks/instagram"
    payload = verify(request)
    (entry,) = payload["entry"]
    assert payload["object"] == "instagram" and entry["id"] == demo.ig_account_id
    assert isinstance(entry["time"], int)
    (change,) = entry["changes"]
    assert change == {
        "field": "comments",
        "value": {
            "from": {"id": result["from_id"], "username": "coffee.lena"},
            "media": {"id": demo.media_ids[0], "media_product_type": "REELS"},
            "id": result["comment_id"],
            "text": "ROAST ☕ please",
        },
    }
    # Meta escapes non-ASCII and slashes: the signature only matches the raw bytes.
    assert b"\\u2615" in request.content
    assert result["webhooks"][0]["ok"] is True and result["webhooks"][0]["status_code"] == 200


@pytest.mark.usefixtures("subscribed")
async def test_reply_comment_carries_parent_id(
    http: httpx.AsyncClient, demo: DemoWorld, deliveries: list[httpx.Request]
) -> None:
    top = (await post_comment(http, media_id=demo.media_ids[1], text="LINK", username="a.fan")).json()
    await post_comment(http, media_id=demo.media_ids[1], text="LINK too", username="b.fan", parent_id=top["comment_id"])
    value = verify(deliveries[-1])["entry"][0]["changes"][0]["value"]
    assert value["parent_id"] == top["comment_id"] and value["media"]["media_product_type"] == "FEED"


async def test_no_delivery_until_the_page_is_subscribed(
    graph: Graph, http: httpx.AsyncClient, state: SandboxState, demo: DemoWorld, page_token: str,
    deliveries: list[httpx.Request],
) -> None:  # fmt: skip
    skipped = (await post_comment(http, media_id=demo.media_ids[0], text="hi", username="fan")).json()
    assert skipped["webhooks"] == [] and deliveries == []
    assert "subscribed_apps" in (state.webhook_deliveries()[0].skipped_reason or "")
    assert (await graph.get(f"{demo.page_id}/subscribed_apps", token=page_token)).json() == {"data": []}

    subscribe = await graph.post(
        f"{demo.page_id}/subscribed_apps", token=page_token, data={"subscribed_fields": "feed"}
    )
    assert subscribe.json() == {"success": True}
    listed = (await graph.get(f"{demo.page_id}/subscribed_apps", token=page_token)).json()["data"]
    assert listed[0]["id"] == APP_ID and listed[0]["subscribed_fields"] == ["feed"]
    await post_comment(http, media_id=demo.media_ids[0], text="hi again", username="fan")
    assert len(deliveries) == 1


async def test_subscribed_apps_rules(graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str) -> None:
    user_token = await graph.post(f"{demo.page_id}/subscribed_apps", token=demo.user_token, subscribed_fields="feed")
    assert user_token.json()["error"]["code"] == 210
    bad_field = await graph.post(f"{demo.page_id}/subscribed_apps", token=page_token, subscribed_fields="comments")
    assert bad_field.json()["error"]["code"] == 100
    user = state.issue_user_token(demo.user_id, scopes=["pages_show_list", "instagram_basic"])
    weak = state.page_token(user_token=user, page_id=demo.page_id)
    missing = await graph.post(f"{demo.page_id}/subscribed_apps", token=weak, subscribed_fields="feed")
    assert missing.json()["error"]["code"] == 200
    assert "pages_manage_metadata" in missing.json()["error"]["message"]
    await graph.post(f"{demo.page_id}/subscribed_apps", token=page_token, subscribed_fields="feed")
    assert (await graph.delete(f"{demo.page_id}/subscribed_apps", token=page_token)).json() == {"success": True}
    assert state.get_page(demo.page_id).subscribed_fields is None  # type: ignore[union-attr]


@pytest.mark.usefixtures("subscribed")
async def test_app_level_field_gates_delivery(
    http: httpx.AsyncClient, state: SandboxState, demo: DemoWorld, deliveries: list[httpx.Request]
) -> None:
    state.remove_app_subscription(object="instagram", fields=["comments"])
    await post_comment(http, media_id=demo.media_ids[0], text="hi", username="fan")
    assert deliveries == []
    assert "'comments' field" in (state.webhook_deliveries()[0].skipped_reason or "")


async def test_app_subscriptions_listing_and_callback_verification(
    graph: Graph, state: SandboxState, demo: DemoWorld
) -> None:
    app_token = f"{APP_ID}|{APP_SECRET}"
    listed = (await graph.get(f"{APP_ID}/subscriptions", token=app_token)).json()["data"]
    instagram = next(s for s in listed if s["object"] == "instagram")
    assert instagram["active"] is True
    assert {"name": "comments", "version": "v25.0"} in instagram["fields"]
    refused = await graph.get(f"{APP_ID}/subscriptions", token=demo.user_token)
    assert refused.json()["error"]["code"] == 15

    challenges: list[httpx.URL] = []

    async def receiver(request: httpx.Request) -> httpx.Response:
        challenges.append(request.url)
        ok = request.url.params["hub.verify_token"] == "let-me-in"
        return httpx.Response(200 if ok else 403, text=request.url.params["hub.challenge"] if ok else "no")

    from replyflow.sandbox import create_sandbox_app

    sender = WebhookSender(target_url="http://unused.test/", transport=httpx.MockTransport(receiver))
    app = create_sandbox_app(state, webhook_sender=sender)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox.test") as http:
        own = Graph(http)
        params = {"object": "instagram", "callback_url": "https://replyflow.example/webhooks/instagram",
                  "fields": "comments,messages"}  # fmt: skip
        bad = await own.post(f"{APP_ID}/subscriptions", token=app_token, verify_token="wrong", **params)
        assert bad.json()["error"]["code"] == 2200
        good = await own.post(f"{APP_ID}/subscriptions", token=app_token, verify_token="let-me-in", **params)
        assert good.json() == {"success": True}
    await sender.aclose()
    assert challenges[-1].params["hub.mode"] == "subscribe"
    assert state.callback_url() == "https://replyflow.example/webhooks/instagram"


@pytest.mark.usefixtures("subscribed")
async def test_own_public_reply_triggers_a_comment_webhook_from_the_account(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str, deliveries: list[httpx.Request]
) -> None:
    comment = state.add_comment(demo.media_ids[0], text="ROAST", username="fan")
    state.take_pending_webhooks()
    reply = await graph.post(f"{comment.id}/replies", token=page_token, data={"message": "Check your DMs"})
    (request,) = deliveries
    value = verify(request)["entry"][0]["changes"][0]["value"]
    assert value["id"] == reply.json()["id"]
    assert value["from"] == {"id": demo.ig_account_id, "username": demo.username}
    assert value["parent_id"] == comment.id


@pytest.mark.usefixtures("subscribed")
async def test_private_reply_sends_an_echo(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str, deliveries: list[httpx.Request]
) -> None:
    comment = state.add_comment(demo.media_ids[0], text="ROAST", username="fan")
    state.take_pending_webhooks()
    body = {"recipient": {"comment_id": comment.id}, "message": {"text": "Here you go"}}
    sent = (await graph.post(f"{demo.page_id}/messages", token=page_token, json=body)).json()
    (entry,) = verify(deliveries[0])["entry"]
    assert entry["id"] == demo.ig_account_id and entry["time"] > 10**12  # messaging entries use milliseconds
    (item,) = entry["messaging"]
    assert item["sender"] == {"id": demo.ig_account_id} and item["recipient"] == {"id": comment.from_id}
    assert item["message"] == {"mid": sent["message_id"], "is_echo": True, "text": "Here you go"}


@pytest.mark.usefixtures("subscribed")
async def test_user_message_postback_and_seen_shapes(
    http: httpx.AsyncClient, demo: DemoWorld, deliveries: list[httpx.Request]
) -> None:
    message = await http.post(
        "/control/messages",
        json={
            "ig_account_id": demo.ig_account_id,
            "username": "coffee.lena",
            "text": "Price?",
            "quick_reply_payload": "PRICE",
        },
    )
    assert message.status_code == 202
    postback = await http.post(
        "/control/postbacks",
        json={"ig_account_id": demo.ig_account_id, "username": "coffee.lena", "payload": "SEND_LINK", "title": "Send"},
    )
    seen = await http.post(
        "/control/seen",
        json={"ig_account_id": demo.ig_account_id, "username": "coffee.lena", "mid": message.json()["mid"]},
    )
    assert postback.status_code == seen.status_code == 202
    items = [verify(r)["entry"][0]["messaging"][0] for r in deliveries]
    person = message.json()["from_id"]
    assert items[0]["message"] == {"mid": message.json()["mid"], "text": "Price?", "quick_reply": {"payload": "PRICE"}}
    assert items[1]["postback"] == {"mid": postback.json()["mid"], "title": "Send", "payload": "SEND_LINK"}
    assert items[2]["read"] == {"mid": message.json()["mid"]}
    for item in items:
        assert item["sender"] == {"id": person} and item["recipient"] == {"id": demo.ig_account_id}
        assert isinstance(item["timestamp"], int)


@pytest.mark.usefixtures("subscribed")
async def test_batched_delivery_and_redelivery_are_byte_identical(
    state: SandboxState, demo: DemoWorld, deliveries: list[httpx.Request]
) -> None:
    received: list[httpx.Request] = []

    async def receiver(request: httpx.Request) -> httpx.Response:
        await request.aread()
        received.append(request)
        return httpx.Response(200)

    sender = WebhookSender(target_url="http://r.test/hook", transport=httpx.MockTransport(receiver), batch=True)
    state.add_comment(demo.media_ids[0], text="one", username="a")
    state.add_comment(demo.media_ids[0], text="two", username="b")
    (delivery,) = await sender.flush(state)
    assert [e["changes"][0]["value"]["text"] for e in verify(received[0])["entry"]] == ["one", "two"]
    again = await sender.redeliver(state, delivery.webhook_id)
    await sender.aclose()
    assert again.ok and received[1].content == received[0].content


@pytest.mark.usefixtures("subscribed")
async def test_failed_delivery_is_recorded_and_retried(state: SandboxState, demo: DemoWorld) -> None:
    attempts: list[int] = []

    async def flaky(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        return httpx.Response(500 if len(attempts) == 1 else 200)

    sender = WebhookSender(target_url="http://r.test/hook", transport=httpx.MockTransport(flaky), attempts=2,
                           retry_delay=0)  # fmt: skip
    state.add_comment(demo.media_ids[0], text="x", username="a")
    (delivery,) = await sender.flush(state)
    await sender.aclose()
    assert delivery.ok and len(attempts) == 2

    async def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    sender = WebhookSender(target_url="http://r.test/hook", transport=httpx.MockTransport(down))
    state.add_comment(demo.media_ids[0], text="y", username="a")
    (failed,) = await sender.flush(state)
    await sender.aclose()
    assert not failed.ok and failed.error is not None and "ConnectError" in failed.error
    assert state.webhook_deliveries()[0] == failed


async def test_wrong_secret_signature_helper(state: SandboxState, demo: DemoWorld) -> None:
    """``post_raw`` with another secret lets tests check that our receiver refuses bad signatures."""
    seen: list[httpx.Request] = []

    async def receiver(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401)

    sender = WebhookSender(target_url="http://r.test/hook", transport=httpx.MockTransport(receiver))
    delivery = await sender.post_raw(state, body=b'{"object":"instagram","entry":[]}', webhook_id="wh_x",
                                     field="comments", secret="not-the-app-secret")  # fmt: skip
    await sender.aclose()
    assert delivery.status_code == 401 and not delivery.ok
    expected = "sha256=" + hmac.new(APP_SECRET.encode(), seen[0].content, hashlib.sha256).hexdigest()
    assert seen[0].headers["x-hub-signature-256"] != expected


async def test_comment_webhooks_need_a_subscription_made_with_instagram_manage_comments(
    graph: Graph, http: httpx.AsyncClient, state: SandboxState, demo: DemoWorld, deliveries: list[httpx.Request]
) -> None:
    user = state.issue_user_token(demo.user_id, scopes=["pages_show_list", "pages_manage_metadata", "instagram_basic"])
    weak = state.page_token(user_token=user, page_id=demo.page_id)
    subscribed = await graph.post(f"{demo.page_id}/subscribed_apps", token=weak, data={"subscribed_fields": "feed"})
    assert subscribed.json() == {"success": True}
    await post_comment(http, media_id=demo.media_ids[0], text="hi", username="fan")
    assert deliveries == []
    assert "instagram_manage_comments" in (state.webhook_deliveries()[0].skipped_reason or "")
    strong = state.page_token(user_token=demo.user_token, page_id=demo.page_id)
    await graph.post(f"{demo.page_id}/subscribed_apps", token=strong, data={"subscribed_fields": "feed"})
    await post_comment(http, media_id=demo.media_ids[0], text="hi again", username="fan")
    assert len(deliveries) == 1


def test_one_sender_serves_several_event_loops(state: SandboxState, demo: DemoWorld) -> None:
    """Our app's test clients run each in their own loop; the sender must not stay bound to the first."""
    received: list[bytes] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        received.append(request.content)
        return httpx.Response(200)

    sender = WebhookSender(target_url="http://r.test/hook", transport=httpx.MockTransport(receiver))
    state.subscribe_page(demo.page_id, fields=["feed"])
    for text in ("first loop", "second loop"):
        state.add_comment(demo.media_ids[0], text=text, username="fan")
        (delivery,) = asyncio.run(sender.flush(state))
        assert delivery.ok
    assert len(received) == 2
