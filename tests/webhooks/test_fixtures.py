"""One test per payload in tests/fixtures/meta: posted signed, processed, seen by the right consumer as typed data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from replyflow.accounts.models import Account
from replyflow.runtime import Runtime
from replyflow.webhooks import service
from replyflow.webhooks.events import CommentEvent, MessageEvent, PostbackEvent, SeenEvent, parse_delivery
from replyflow.webhooks.models import WebhookEvent
from tests.webhooks.conftest import FIXTURES, IG_ID, Consumers, fixture_bytes, signed_headers
from tests.webhooks.helpers import deliveries, events

URL = "/webhooks/instagram"
TESTED = {
    "comments__top_level.json",
    "comments__reply.json",
    "comments__ad_post.json",
    "live_comments__broadcast.json",
    "messages__text.json",
    "messages__echo.json",
    "messages__quick_reply.json",
    "messages__attachment.json",
    "messages__deleted.json",
    "messaging_postbacks__button.json",
    "messaging_seen__read.json",
    "page__feed_comment.json",
    "unknown__field.json",
}


@pytest.fixture
def account(runtime: Runtime, connect: Any) -> Account:
    account: Account = connect(runtime)
    return account


def _deliver(client: TestClient, runtime: Runtime, name: str) -> list[WebhookEvent]:
    body = fixture_bytes(name)
    resp = client.post(URL, content=body, headers=signed_headers(body))
    assert resp.status_code == 200
    service.drain(runtime=runtime)
    [delivery] = deliveries(runtime)
    assert delivery.status == "processed", delivery.reason
    assert delivery.problems is None
    return events(runtime)


def test_every_fixture_has_its_test() -> None:
    assert {p.name for p in Path(FIXTURES).glob("*.json")} == TESTED


def test_comments__top_level(client: TestClient, runtime: Runtime, account: Account, consumers: Consumers) -> None:
    [stored] = _deliver(client, runtime, "comments__top_level.json")
    assert (stored.status, stored.field, stored.kind) == ("dispatched", "comments", "comment")
    assert stored.account_id == account.id
    assert stored.natural_key == "comment:17865799348089039"
    [event] = consumers.of_kind("comment")
    assert isinstance(event, CommentEvent)
    assert event.comment_id == "17865799348089039"
    assert event.text == "How much is it? Send me the link please 🙏"
    assert (event.from_id, event.from_username) == ("17841455500000001", "ana.cafe")
    assert (event.media_id, event.media_product_type) == ("17900000000000001", "FEED")
    assert event.entry_time == dt.datetime(2025, 11, 29, 7, 6, 40, tzinfo=dt.UTC)
    assert not event.is_reply and not event.is_live and event.ad_id is None
    with runtime.session() as session:
        refreshed = session.get(Account, account.id)
        assert refreshed is not None and refreshed.last_webhook_at is not None


def test_comments__reply(client: TestClient, runtime: Runtime, account: Account, consumers: Consumers) -> None:
    _deliver(client, runtime, "comments__reply.json")
    [event] = consumers.of_kind("comment")
    assert event.is_reply
    assert event.parent_id == "17865799348089039"
    assert event.media_product_type == "REELS"
    assert event.from_username == "bruno_roasts"


def test_comments__ad_post(client: TestClient, runtime: Runtime, account: Account, consumers: Consumers) -> None:
    _deliver(client, runtime, "comments__ad_post.json")
    [event] = consumers.of_kind("comment")
    assert (event.ad_id, event.ad_title) == ("120210000000000001", "Winter roast giveaway")
    assert event.original_media_id == "17900000000000004"
    assert event.text == "PRICE"
    # Meta duplicates ad-comment webhooks: the second copy is recorded and dropped.
    body = fixture_bytes("comments__ad_post.json")
    assert client.post(URL, content=body, headers=signed_headers(body)).status_code == 200
    service.drain(runtime=runtime)
    assert len(consumers.of_kind("comment")) == 1
    assert sorted(e.status for e in events(runtime)) == ["dispatched", "duplicate"]


def test_live_comments__broadcast(client: TestClient, runtime: Runtime, account: Account, consumers: Consumers) -> None:
    [stored] = _deliver(client, runtime, "live_comments__broadcast.json")
    assert stored.field == "live_comments"
    [event] = consumers.of_kind("comment")
    assert event.is_live and event.field == "live_comments"
    assert event.media_product_type is None
    assert stored.natural_key == "comment:17866000000000004"


def test_messages__text(client: TestClient, runtime: Runtime, account: Account, consumers: Consumers) -> None:
    [stored] = _deliver(client, runtime, "messages__text.json")
    assert (stored.status, stored.field, stored.kind) == ("dispatched", "messages", "message")
    [event] = consumers.of_kind("messaging")
    assert isinstance(event, MessageEvent)
    assert (event.sender_id, event.recipient_id) == ("6154110000000001", IG_ID)
    assert event.text == "Hi! Is the giveaway still open?"
    assert event.mid.startswith("aWdfZAG1faXRlbT")
    assert not event.is_echo
    assert event.timestamp == dt.datetime(2025, 11, 29, 7, 20, tzinfo=dt.UTC)
    assert stored.natural_key == f"message:{event.mid}"


def test_messages__echo(client: TestClient, runtime: Runtime, account: Account, consumers: Consumers) -> None:
    _deliver(client, runtime, "messages__echo.json")
    [event] = consumers.of_kind("messaging")
    assert event.is_echo
    assert event.sender_id == IG_ID and event.recipient_id == "6154110000000001"


def test_messages__quick_reply(client: TestClient, runtime: Runtime, account: Account, consumers: Consumers) -> None:
    _deliver(client, runtime, "messages__quick_reply.json")
    [event] = consumers.of_kind("messaging")
    assert event.quick_reply_payload == "rule:rul_01jexample:yes"
    assert event.text == "Yes please"


def test_messages__attachment(client: TestClient, runtime: Runtime, account: Account, consumers: Consumers) -> None:
    _deliver(client, runtime, "messages__attachment.json")
    [event] = consumers.of_kind("messaging")
    [attachment] = event.attachments
    assert attachment.type == "image"
    assert attachment.url is not None and attachment.url.startswith("https://lookaside.fbsbx.com/")
    assert event.text is None
    assert event.reply_to_mid is not None and event.reply_to_mid.endswith("ODgwMQZDZD")


def test_messages__deleted(client: TestClient, runtime: Runtime, account: Account, consumers: Consumers) -> None:
    """An unsend repeats the message's mid with ``is_deleted``: it is a new update, not a redelivery of the message."""
    [original] = _deliver(client, runtime, "messages__text.json")
    body = fixture_bytes("messages__deleted.json")
    for _ in range(2):  # the second one is Meta redelivering the unsend
        assert client.post(URL, content=body, headers=signed_headers(body)).status_code == 200
        service.drain(runtime=runtime)
    first, unsend, again = events(runtime)
    assert first.id == original.id and first.natural_key == f"message:{original.payload['mid']}"
    assert (unsend.status, unsend.field, unsend.kind) == ("dispatched", "messages", "message")
    assert unsend.natural_key == f"{first.natural_key}:deleted"
    assert again.status == "duplicate" and again.reason is not None and unsend.id in again.reason
    text, deleted = consumers.of_kind("messaging")
    assert isinstance(deleted, MessageEvent)
    assert deleted.is_deleted and not text.is_deleted
    assert deleted.mid == text.mid and deleted.text is None
    assert deleted.timestamp == dt.datetime(2025, 11, 29, 7, 25, tzinfo=dt.UTC)


def test_messaging_postbacks__button(
    client: TestClient, runtime: Runtime, account: Account, consumers: Consumers
) -> None:
    [stored] = _deliver(client, runtime, "messaging_postbacks__button.json")
    assert (stored.field, stored.kind) == ("messaging_postbacks", "postback")
    [event] = consumers.of_kind("messaging")
    assert isinstance(event, PostbackEvent)
    assert (event.title, event.payload) == ("Send me the link", "rule:rul_01jexample:button:0")
    assert stored.natural_key == f"postback:{event.mid}"


def test_messaging_seen__read(client: TestClient, runtime: Runtime, account: Account, consumers: Consumers) -> None:
    [stored] = _deliver(client, runtime, "messaging_seen__read.json")
    assert (stored.field, stored.kind) == ("messaging_seen", "seen")
    [event] = consumers.of_kind("messaging")
    assert isinstance(event, SeenEvent)
    assert event.mid is not None and event.watermark is None
    assert stored.natural_key.startswith("seen:6154110000000001:")


def test_page__feed_comment(client: TestClient, runtime: Runtime, account: Account, consumers: Consumers) -> None:
    """A Page-object delivery resolves the account by Page id, is kept, and automates nothing."""
    [stored] = _deliver(client, runtime, "page__feed_comment.json")
    assert stored.object == "page" and stored.field == "feed"
    assert stored.account_id == account.id
    assert stored.status == "ignored"
    assert stored.reason is not None and stored.reason.startswith("facebook_page_update")
    assert consumers.calls == []
    with runtime.session() as session:
        refreshed = session.get(Account, account.id)
        assert refreshed is not None and refreshed.last_webhook_at is not None


def test_unknown__field(client: TestClient, runtime: Runtime, account: Account, consumers: Consumers) -> None:
    [stored] = _deliver(client, runtime, "unknown__field.json")
    assert (stored.field, stored.kind, stored.status) == ("mentions", "unknown", "ignored")
    assert stored.payload["value"] == {"media_id": "17900000000000009", "comment_id": "17866000000000009"}
    assert consumers.calls == []


@pytest.mark.parametrize("name", sorted(TESTED))
def test_fixture_parses_cleanly_and_round_trips(name: str) -> None:
    from replyflow.webhooks.events import dump_event, load_event

    parsed = parse_delivery(fixture_bytes(name))
    assert parsed.rejected_reason is None and parsed.problems == []
    assert len(parsed.items) == 1
    event = parsed.items[0].event
    assert load_event(dump_event(event)) == event
