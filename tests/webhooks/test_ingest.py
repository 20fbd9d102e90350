"""The POST path: size cap, stored before 200, acknowledged garbage, no 500s, and the processor woken."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from replyflow.app import create_app
from replyflow.db import Base
from replyflow.queue import build_queue
from replyflow.runtime import Runtime
from replyflow.webhooks import service
from tests.webhooks.conftest import META_SETTINGS, Consumers, comments_delivery, encode, signed_headers
from tests.webhooks.helpers import deliveries, delivery_count, events, meta_shaped_json

URL = "/webhooks/instagram"
CAP = 2048


@pytest.fixture
def capped(make_settings: Any) -> Iterator[tuple[TestClient, Runtime]]:
    rt = Runtime(make_settings(webhook_max_body_bytes=CAP, **META_SETTINGS))
    Base.metadata.create_all(rt.engine)
    with TestClient(create_app(rt.settings, runtime=rt), raise_server_exceptions=False) as c:
        yield c, rt
    rt.close()


def _padded(size: int) -> bytes:
    body = comments_delivery("17866000000000201")
    return body[:-1] + b',"pad":"' + b"x" * (size - len(body) - 9) + b'"}'


def test_body_over_the_cap_by_content_length_is_413(capped: tuple[TestClient, Runtime]) -> None:
    client, rt = capped
    body = _padded(CAP + 1)
    assert len(body) == CAP + 1
    resp = client.post(URL, content=body, headers=signed_headers(body))
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"
    assert delivery_count(rt) == 0
    exact = _padded(CAP)
    assert client.post(URL, content=exact, headers=signed_headers(exact)).status_code == 200


def test_chunked_body_over_the_cap_is_413(capped: tuple[TestClient, Runtime]) -> None:
    client, rt = capped
    body = _padded(CAP * 3)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    resp = client.post(URL, content=chunks(), headers=signed_headers(body))
    assert "content-length" not in resp.request.headers
    assert resp.status_code == 413
    assert delivery_count(rt) == 0

    small = _padded(CAP - 100)
    resp = client.post(URL, content=iter([small[:100], small[100:]]), headers=signed_headers(small))
    assert resp.status_code == 200
    assert deliveries(rt)[0].body == small


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json at all", "not_json"),
        (b"\xff\xfe\x00garbage", "not_json"),
        (b"[]", "not_an_object"),
        (b"42", "not_an_object"),
        (b"{}", "unknown_object"),
        (b'{"object":"whatsapp_business_account","entry":[]}', "unknown_object"),
        (b'{"object":"instagram","entry":{"id":"1"}}', "bad_entry"),
        (b'{"object":"instagram","entry":[]}', "no_usable_update"),
        (b'{"object":"instagram","entry":[{"time":1,"changes":[]}]}', "no_usable_update"),
        (
            b'{"object":"instagram","entry":[{"id":"1","changes":[{"field":"comments","value":{"text":"x"}}]}]}',
            "no_usable_update",
        ),
        (b'{"object":"instagram","entry":[{"id":true,"changes":"nope"}]}', "no_usable_update"),
        (b"[" * 50_000, "not_json"),
    ],
)
def test_signed_malformed_delivery_is_acknowledged_and_rejected_with_a_reason(
    client: TestClient, runtime: Runtime, body: bytes, reason: str
) -> None:
    resp = client.post(URL, content=body, headers=signed_headers(body))
    # 200, not 400: Meta would retry a signed body for 36 hours and it will never get better.
    assert resp.status_code == 200
    service.drain(runtime=runtime)
    [stored] = deliveries(runtime)
    assert stored.status == "rejected"
    assert stored.reason is not None and stored.reason.startswith(reason), stored.reason
    assert events(runtime) == []


def test_good_updates_survive_a_bad_neighbour(
    client: TestClient, runtime: Runtime, connect: Any, consumers: Consumers
) -> None:
    connect(runtime)
    good = {
        "field": "comments",
        "value": {"id": "17866000000000301", "text": "link", "from": {"id": "1"}, "media": {"id": "17900000000000001"}},
    }
    bad = {
        "field": "comments",
        "value": {"id": "17866000000000302", "text": ["not", "text"], "media": {"id": "17900000000000001"}},
    }
    body = encode(
        {
            "object": "instagram",
            "entry": [{"id": "17841400000000001", "time": 1764400000, "changes": [bad, good, "junk"]}, 7],
        }
    )
    assert client.post(URL, content=body, headers=signed_headers(body)).status_code == 200
    service.drain(runtime=runtime)
    [stored] = deliveries(runtime)
    assert stored.status == "processed"
    assert stored.reason is not None and stored.reason.startswith("partial: 1 updates extracted, 3 skipped")
    assert stored.problems is not None and len(stored.problems) == 3
    assert "entry[0].changes[0]: text is a list, not a string" in stored.problems
    assert [e.comment_id for e in consumers.of_kind("comment")] == ["17866000000000301"]


_json = meta_shaped_json(max_leaves=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=_json, obj=st.sampled_from(["instagram", "page", None]))
def test_no_signed_body_ever_causes_a_500(client: TestClient, runtime: Runtime, payload: Any, obj: Any) -> None:
    if isinstance(payload, dict) and obj is not None:
        payload = {**payload, "object": obj}
    body = encode(payload)
    assert client.post(URL, content=body, headers=signed_headers(body)).status_code == 200
    service.drain(runtime=runtime)
    assert all(d.status in ("processed", "rejected") for d in deliveries(runtime))


def test_storage_failure_is_503_not_200(client: TestClient, runtime: Runtime) -> None:
    with runtime.engine.begin() as conn:
        conn.execute(text("DROP TABLE webhook_deliveries"))
    body = comments_delivery("17866000000000401")
    resp = client.post(URL, content=body, headers=signed_headers(body))
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "storage_unavailable"
    assert "webhook_deliveries" not in resp.text


class _RecordingQueue:
    def __init__(self) -> None:
        self.enqueued: list[str] = []

    def enqueue(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.enqueued.append(name)


def test_a_burst_of_deliveries_wakes_the_processor_without_one_job_each(client: TestClient, runtime: Runtime) -> None:
    queue = _RecordingQueue()
    runtime.__dict__["queue"] = queue  # the huey handle is a seam; the database stays real
    for i in range(30):
        body = comments_delivery(f"178660000000005{i:02d}")
        assert client.post(URL, content=body, headers=signed_headers(body)).status_code == 200
    deadline = time.monotonic() + 5
    while not queue.enqueued and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert queue.enqueued, "the processor was never woken"
    assert set(queue.enqueued) == {"webhooks.process_delivery"}
    assert len(queue.enqueued) < 30


def test_post_to_dispatch_end_to_end_through_huey(
    client: TestClient, runtime: Runtime, connect: Any, consumers: Consumers
) -> None:
    """The API wakes a real huey job (immediate mode) that processes and dispatches the delivery."""
    connect(runtime)
    runtime.__dict__["queue"] = build_queue(runtime.settings, name="wh-e2e", immediate=True)
    body = comments_delivery("17866000000000601", "17866000000000602")
    assert client.post(URL, content=body, headers=signed_headers(body)).status_code == 200
    deadline = time.monotonic() + 5
    while len(consumers.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(e.comment_id for e in consumers.of_kind("comment")) == ["17866000000000601", "17866000000000602"]
    assert [d.status for d in deliveries(runtime)] == ["processed"]
    assert {e.status for e in events(runtime)} == {"dispatched"}
