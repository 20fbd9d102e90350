"""parse_delivery: every good update extracted, every bad one named with a reason, and never an exception."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from replyflow.webhooks.events import (
    MAX_ITEMS,
    MAX_PROBLEMS,
    CommentEvent,
    MessageEvent,
    SeenEvent,
    UnknownEvent,
    parse_delivery,
)
from tests.webhooks.conftest import comment_change, encode
from tests.webhooks.helpers import meta_shaped_json


def _delivery(*entries: Any, obj: str = "instagram") -> bytes:
    return encode({"object": obj, "entry": list(entries)})


def test_a_batch_of_many_entries_and_changes() -> None:
    entries = [
        {
            "id": f"1784140000000{e:04d}",
            "time": 1764400000,
            "changes": [comment_change(f"1786{e:04d}{c:04d}") for c in range(20)],
        }
        for e in range(50)
    ]
    parsed = parse_delivery(_delivery(*entries))
    assert parsed.rejected_reason is None and parsed.problems == []
    assert (parsed.entry_count, parsed.change_count, len(parsed.items)) == (50, 1000, 1000)
    assert parsed.items[-1].path == "entry[49].changes[19]"
    assert {item.event.entry_id for item in parsed.items} == {e["id"] for e in entries}


def test_more_than_1000_updates_keeps_the_first_1000_and_says_so() -> None:
    changes = [comment_change(f"1786{c:06d}") for c in range(MAX_ITEMS + 5)]
    parsed = parse_delivery(_delivery({"id": "1", "time": 1, "changes": changes}))
    assert len(parsed.items) == MAX_ITEMS
    assert parsed.skipped_count == 5
    assert parsed.problems[0] == f"entry[0].changes[{MAX_ITEMS}]: over the limit of {MAX_ITEMS} updates per delivery"


def test_problem_list_is_capped() -> None:
    parsed = parse_delivery(_delivery(*(["junk"] * 500)))
    assert parsed.skipped_count == 500
    assert len(parsed.problems) == MAX_PROBLEMS + 1
    assert parsed.rejected_reason is not None


def test_wrong_types_and_missing_ids_are_named() -> None:
    good = comment_change("17866000000000001")
    parsed = parse_delivery(
        _delivery(
            {
                "id": "1",
                "changes": [
                    good,
                    {"field": "comments", "value": {"text": "no id", "media": {"id": "1"}}},
                    {"field": "comments", "value": {"id": "2", "text": "no media"}},
                    {"field": "comments", "value": {"id": {"nested": 1}, "media": {"id": "1"}}},
                    {"field": "comments", "value": "a string"},
                    {"field": "comments"},
                    {"value": {}},
                    {"field": "comments", "value": {"id": "3", "media": {"id": "1"}, "from": ["x"]}},
                ],
            },
            {"changes": [good]},
            {"id": True, "changes": [good]},
            {"id": "4", "changes": {"field": "comments"}},
            {"id": "5"},
        )
    )
    assert len(parsed.items) == 1
    assert parsed.problems == [
        "entry[0].changes[1]: missing comment id",
        "entry[0].changes[2]: missing media id",
        "entry[0].changes[3]: comment id is an object, not an id",
        "entry[0].changes[4]: value is a string, not an object",
        "entry[0].changes[5]: comments change has no value",
        "entry[0].changes[6]: change has no field name",
        "entry[0].changes[7]: from is a list, not an object",
        "entry[1]: missing entry id",
        "entry[2]: entry id is a boolean, not an id",
        "entry[3].changes: is an object, not a list",
        "entry[4]: has neither changes nor messaging",
    ]


def test_numeric_ids_are_accepted_as_strings() -> None:
    body = (
        b'{"object":"instagram","entry":[{"id":17841400000000001,"time":1,"changes":[{"field":"comments",'
        b'"value":{"id":17866000000000001,"text":"hi","media":{"id":17900000000000001}}}]}]}'
    )
    [item] = parse_delivery(body).items
    assert isinstance(item.event, CommentEvent)
    assert (item.event.entry_id, item.event.comment_id, item.event.media_id) == (
        "17841400000000001",
        "17866000000000001",
        "17900000000000001",
    )


def test_times_in_seconds_and_milliseconds() -> None:
    messaging = {
        "sender": {"id": "1"},
        "recipient": {"id": "2"},
        "timestamp": 1764400800000,
        "message": {"mid": "m1", "text": "x"},
    }
    parsed = parse_delivery(
        _delivery(
            {"id": "2", "time": 1764400800, "changes": [comment_change("1")]},
            {"id": "2", "time": 1764400800123, "messaging": [messaging]},
            {"id": "2", "time": "yesterday", "changes": [comment_change("2")]},
            {"id": "2", "time": 10**30, "changes": [comment_change("3")]},
        )
    )
    moment = dt.datetime(2025, 11, 29, 7, 20, tzinfo=dt.UTC)
    events = [item.event for item in parsed.items]
    assert isinstance(events[0], CommentEvent) and events[0].entry_time == moment
    assert isinstance(events[1], MessageEvent) and events[1].timestamp == moment
    assert isinstance(events[2], CommentEvent) and events[2].entry_time is None
    assert isinstance(events[3], CommentEvent) and events[3].entry_time is None


def test_dashboard_test_shape_for_messaging_in_changes() -> None:
    item = {"sender": {"id": "1"}, "recipient": {"id": "2"}, "timestamp": 1, "message": {"mid": "m", "text": "t"}}
    parsed = parse_delivery(
        _delivery(
            {"id": "2", "changes": [{"field": "messages", "value": item}, {"field": "messaging_seen", "value": item}]}
        )
    )
    assert isinstance(parsed.items[0].event, MessageEvent)
    assert parsed.problems == ["entry[0].changes[1]: a messaging_seen update carries a message"]


def test_other_messaging_items_are_kept_as_unknown() -> None:
    base = {"sender": {"id": "1"}, "recipient": {"id": "2"}, "timestamp": 1}
    parsed = parse_delivery(
        _delivery(
            {
                "id": "2",
                "messaging": [
                    {**base, "reaction": {"mid": "m", "action": "react", "reaction": "love"}},
                    {**base, "referral": {"ref": "ad"}},
                    {**base, "something_new": {}},
                    {**base, "read": {"watermark": 1764400000000}},
                    base,
                ],
            }
        )
    )
    fields = [item.event.field for item in parsed.items]
    assert fields == ["message_reactions", "messaging_referral", "messaging:something_new", "messaging_seen"]
    assert all(isinstance(item.event, UnknownEvent) for item in parsed.items[:3])
    seen = parsed.items[3].event
    assert isinstance(seen, SeenEvent) and seen.natural_key == "seen:1:1764400000000"
    assert parsed.problems == ["entry[0].messaging[4]: messaging item has no message, postback or read"]


def test_long_keys_are_hashed_to_fit() -> None:
    mid = "m" * 400
    item = {"sender": {"id": "1"}, "recipient": {"id": "2"}, "message": {"mid": mid}}
    [parsed] = parse_delivery(_delivery({"id": "2", "messaging": [item]})).items
    key = parsed.event.natural_key
    assert key.startswith("message:sha256:") and len(key) < 100
    same = parse_delivery(_delivery({"id": "2", "messaging": [item]})).items[0].event.natural_key
    assert same == key
    too_long = {"sender": {"id": "1"}, "recipient": {"id": "2"}, "message": {"mid": "m" * 600}}
    assert parse_delivery(_delivery({"id": "2", "messaging": [too_long]})).problems == [
        "entry[0].messaging[0]: message.mid is not a valid id"
    ]


def test_postback_without_mid_gets_a_stable_key() -> None:
    item = {"sender": {"id": "1"}, "recipient": {"id": "2"}, "timestamp": 5, "postback": {"payload": "p"}}
    first = parse_delivery(_delivery({"id": "2", "messaging": [item]})).items[0].event.natural_key
    again = parse_delivery(_delivery({"id": "2", "messaging": [item]})).items[0].event.natural_key
    other = parse_delivery(_delivery({"id": "2", "messaging": [{**item, "timestamp": 6}]})).items[0].event
    assert first == again != other.natural_key
    assert first.startswith("postback:h:")


def test_reasons_never_echo_long_or_control_text() -> None:
    parsed = parse_delivery(encode({"object": "\x1b[31m" + "x" * 500}))
    assert parsed.rejected_reason is not None
    assert "\x1b" not in parsed.rejected_reason and len(parsed.rejected_reason) < 150


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(body: bytes) -> None:
    parsed = parse_delivery(body)
    assert parsed.rejected_reason is not None or parsed.items or parsed.problems is not None


_json = meta_shaped_json(max_leaves=40)


@settings(max_examples=400, deadline=None)
@given(
    payload=_json,
    obj=st.sampled_from(["instagram", "page"]),
    field=st.sampled_from(["comments", "live_comments", "messages", "messaging_postbacks", "messaging_seen", "x"]),
)
def test_meta_shaped_garbage_never_raises(payload: Any, obj: str, field: str) -> None:
    for shape in (
        payload,
        {"object": obj, "entry": payload},
        {"object": obj, "entry": [{"id": "1", "changes": [{"field": field, "value": payload}]}]},
        {"object": obj, "entry": [{"id": "1", "messaging": [payload]}]},
        {
            "object": obj,
            "entry": [
                {
                    "id": "1",
                    "messaging": [
                        {"sender": {"id": "1"}, "recipient": {"id": "2"}, "message": payload, "postback": payload}
                    ],
                }
            ],
        },
    ):
        parsed = parse_delivery(json.dumps(shape).encode())
        for item in parsed.items:
            assert item.event.natural_key
