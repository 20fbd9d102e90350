"""From stored delivery to dispatched event, on SQLite and PostgreSQL: dedupe, fan-out, retries, replay, retention."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from replyflow.accounts.models import Account
from replyflow.runtime import Runtime
from replyflow.webhooks import service
from replyflow.webhooks.events import CommentEvent
from replyflow.webhooks.models import WebhookDelivery
from tests.webhooks.conftest import IG_ID, Consumers, comment_change, comments_delivery, encode, signed_headers
from tests.webhooks.helpers import deliveries, events

URL = "/webhooks/instagram"


def _post(client: TestClient, body: bytes) -> int:
    resp = client.post(URL, content=body, headers=signed_headers(body))
    assert resp.status_code == 200, resp.text
    return int(resp.json()["delivery_id"])


def test_stored_then_processed_and_dispatched_once(
    db_client: TestClient, db_runtime: Runtime, connect: Any, consumers: Consumers
) -> None:
    account = connect(db_runtime)
    delivery_id = _post(db_client, comments_delivery("17866000000000701"))
    [pending] = deliveries(db_runtime)
    assert (pending.id, pending.status) == (delivery_id, "pending")
    assert service.drain(runtime=db_runtime) == 1
    [done] = deliveries(db_runtime)
    assert (done.status, done.object, done.entry_count, done.change_count) == ("processed", "instagram", 1, 1)
    assert (done.event_count, done.duplicate_count) == (1, 0)
    [event] = events(db_runtime)
    assert (event.status, event.account_id, event.delivery_id) == ("dispatched", account.id, delivery_id)
    assert event.dispatched_at is not None and event.attempts == 1
    assert [(k, a) for k, a, _ in consumers.calls] == [("comment", account.id)]
    assert service.drain(runtime=db_runtime) == 0, "nothing is processed twice"
    assert len(consumers.calls) == 1


def test_redelivery_is_acknowledged_recorded_and_dropped(
    db_client: TestClient, db_runtime: Runtime, connect: Any, consumers: Consumers
) -> None:
    connect(db_runtime)
    body = comments_delivery("17866000000000801", "17866000000000802")
    _post(db_client, body)
    service.drain(runtime=db_runtime)
    _post(db_client, body)  # Meta retries the same batch
    _post(db_client, comments_delivery("17866000000000802", "17866000000000803"))  # overlapping batch
    service.drain(runtime=db_runtime)
    assert sorted(e.comment_id for e in consumers.of_kind("comment")) == [
        "17866000000000801",
        "17866000000000802",
        "17866000000000803",
    ]
    stored = deliveries(db_runtime)
    assert [(d.event_count, d.duplicate_count) for d in stored] == [(2, 0), (0, 2), (1, 1)]
    duplicates = events(db_runtime, status="duplicate")
    assert len(duplicates) == 3
    assert all(
        d.dedupe_key is None and (d.reason or "").startswith("redelivery: already recorded as evt_") for d in duplicates
    )


def test_duplicate_inside_one_delivery(
    db_client: TestClient, db_runtime: Runtime, connect: Any, consumers: Consumers
) -> None:
    connect(db_runtime)
    _post(db_client, comments_delivery("17866000000000901", "17866000000000901"))
    service.drain(runtime=db_runtime)
    assert len(consumers.calls) == 1
    assert sorted(e.status for e in events(db_runtime)) == ["dispatched", "duplicate"]


def test_same_account_in_two_workspaces_gets_one_event_each(
    db_client: TestClient, db_runtime: Runtime, connect: Any, consumers: Consumers
) -> None:
    first, second = connect(db_runtime), connect(db_runtime)
    _post(db_client, comments_delivery("17866000000001001"))
    _post(db_client, comments_delivery("17866000000001001"))
    service.drain(runtime=db_runtime)
    assert sorted(a for _, a, _ in consumers.calls) == sorted([first.id, second.id])
    assert sorted(e.status for e in events(db_runtime)) == ["dispatched", "dispatched", "duplicate", "duplicate"]


def test_unknown_account_is_recorded_not_dispatched(
    db_client: TestClient, db_runtime: Runtime, consumers: Consumers
) -> None:
    _post(db_client, comments_delivery("17866000000001101", entry_id="17841499999999999"))
    _post(db_client, comments_delivery("17866000000001101", entry_id="17841499999999999"))
    service.drain(runtime=db_runtime)
    assert consumers.calls == []
    assert sorted((e.status, e.account_id) for e in events(db_runtime)) == [("duplicate", None), ("no_account", None)]
    no_account = events(db_runtime, status="no_account")[0]
    assert no_account.reason == "no_account: no connected account has Instagram account id 17841499999999999"


def test_big_batch_across_many_accounts(
    db_client: TestClient, db_runtime: Runtime, connect: Any, consumers: Consumers
) -> None:
    ig_ids = [f"178414000000{e:05d}" for e in range(50)]
    connected = {
        ig: connect(db_runtime, instagram_id=ig, page_id=f"10900000{e:05d}") for e, ig in enumerate(ig_ids[:5])
    }
    entries = [
        {"id": ig, "time": 1764400000, "changes": [comment_change(f"1786{e:03d}{c:05d}") for c in range(20)]}
        for e, ig in enumerate(ig_ids)
    ]
    _post(db_client, encode({"object": "instagram", "entry": entries}))
    service.drain(runtime=db_runtime)
    [delivery] = deliveries(db_runtime)
    assert (delivery.entry_count, delivery.change_count, delivery.event_count) == (50, 1000, 1000)
    statuses = [e.status for e in events(db_runtime)]
    assert statuses.count("dispatched") == 100 and statuses.count("no_account") == 900
    assert len(consumers.calls) == 100
    assert {a for _, a, _ in consumers.calls} == {acc.id for acc in connected.values()}
    with db_runtime.session() as session:
        touched = [session.get(Account, acc.id) for acc in connected.values()]
        assert all(acc is not None and acc.last_webhook_at is not None for acc in touched)


def test_failing_consumer_rolls_back_its_writes_and_is_retried_then_given_up(
    db_client: TestClient, db_runtime: Runtime, connect: Any, consumers: Consumers
) -> None:
    account = connect(db_runtime)

    def scribble(*, session: Any, account: Account, **_: Any) -> None:
        session.execute(update(Account).where(Account.id == account.id).values(name="written by the consumer"))

    consumers.on_call = scribble
    consumers.fail_with = RuntimeError("boom with token EAABwzLixnjYBAO0123456789abcdef")
    _post(db_client, comments_delivery("17866000000001301"))
    service.drain(runtime=db_runtime)
    [event] = events(db_runtime)
    assert (event.status, event.attempts) == ("pending", 1)
    assert event.reason is not None and event.reason.startswith("consumer_error: RuntimeError")
    assert "EAABwzLixnjYBAO0123456789abcdef" not in event.reason
    with db_runtime.session() as session:
        refreshed = session.get(Account, account.id)
        assert refreshed is not None and refreshed.name is None, "the consumer's write was rolled back"
    for _ in range(service.MAX_DISPATCH_ATTEMPTS):
        service.sweep(runtime=db_runtime)
    [event] = events(db_runtime)
    assert (event.status, event.attempts) == ("failed", service.MAX_DISPATCH_ATTEMPTS)
    consumers.fail_with = None
    service.sweep(runtime=db_runtime)
    assert consumers.calls == [], "failed events are not retried for ever"


def test_delivery_left_pending_by_a_crash_is_picked_up_by_the_sweep(
    db_client: TestClient, db_runtime: Runtime, connect: Any, consumers: Consumers
) -> None:
    connect(db_runtime)
    _post(db_client, comments_delivery("17866000000001401"))  # acknowledged; the process "dies" before processing
    service.sweep(runtime=db_runtime)
    assert [d.status for d in deliveries(db_runtime)] == ["processed"]
    assert len(consumers.calls) == 1


def test_processing_bug_is_recorded_and_bounded(
    db_client: TestClient, db_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_body: bytes) -> Any:
        raise KeyError("parser bug")

    monkeypatch.setattr(service, "parse_delivery", broken)
    _post(db_client, comments_delivery("17866000000001501"))
    for _ in range(service.MAX_PROCESS_ATTEMPTS):
        service.sweep(runtime=db_runtime)
    [delivery] = deliveries(db_runtime)
    assert (delivery.status, delivery.attempts) == ("rejected", service.MAX_PROCESS_ATTEMPTS)
    assert delivery.reason == "processing_error: KeyError"


def test_concurrent_processors_dispatch_each_event_once(
    db_client: TestClient, db_runtime: Runtime, connect: Any, consumers: Consumers
) -> None:
    connect(db_runtime)
    ids = [_post(db_client, comments_delivery(f"1786600000000{i:04d}", f"1786600000001{i:04d}")) for i in range(20)]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for delivery_id in ids:
                service.process_and_dispatch(runtime=db_runtime, delivery_id=delivery_id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(consumers.calls) == 40
    assert len({e.comment_id for e in consumers.of_kind("comment")}) == 40
    assert {d.status for d in deliveries(db_runtime)} == {"processed"}
    assert {e.status for e in events(db_runtime)} == {"dispatched"}


def test_replay_dedupes_unless_forced(
    db_client: TestClient, db_runtime: Runtime, connect: Any, consumers: Consumers
) -> None:
    connect(db_runtime)
    delivery_id = _post(db_client, comments_delivery("17866000000001601"))
    service.drain(runtime=db_runtime)
    result = service.replay_delivery(runtime=db_runtime, delivery_id=delivery_id)
    assert (result.event_count, result.duplicate_count, result.redispatch_ids) == (0, 1, [])
    assert len(consumers.calls) == 1
    assert events(db_runtime, status="duplicate")[0].reason.startswith("replay: already recorded")  # type: ignore[union-attr]
    forced = service.replay_delivery(runtime=db_runtime, delivery_id=delivery_id, force=True)
    assert len(forced.redispatch_ids) == 1
    assert len(consumers.calls) == 2
    assert consumers.calls[0][2] == consumers.calls[1][2]


def test_retention_drops_old_raw_bodies_and_keeps_events(
    db_client: TestClient, db_runtime: Runtime, connect: Any
) -> None:
    connect(db_runtime)
    old = _post(db_client, comments_delivery("17866000000001701"))
    recent = _post(db_client, comments_delivery("17866000000001702"))
    service.drain(runtime=db_runtime)
    pending_old = _post(db_client, comments_delivery("17866000000001703"))
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=db_runtime.settings.inbox_retention_days + 1)
    with db_runtime.session() as session:
        session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id.in_([old, pending_old])).values(received_at=long_ago)
        )
    assert service.prune(runtime=db_runtime) == 1
    by_id = {d.id: d for d in deliveries(db_runtime)}
    assert by_id[old].body is None and by_id[old].pruned_at is not None and by_id[old].body_size > 0
    assert by_id[recent].body is not None
    assert by_id[pending_old].body is not None, "a delivery not yet processed is never pruned"
    assert len(events(db_runtime)) == 2
    with pytest.raises(Exception, match="pruned"):
        service.replay_delivery(runtime=db_runtime, delivery_id=old)


def test_synthetic_comment_shares_the_inbox_and_its_dedupe(
    db_client: TestClient, db_runtime: Runtime, connect: Any, consumers: Consumers
) -> None:
    account = connect(db_runtime)
    comment = CommentEvent(
        entry_id=IG_ID,
        comment_id="17866000000001801",
        media_id="17900000000000001",
        text="link?",
        from_id="17841455500000001",
        from_username="ana.cafe",
    )
    with db_runtime.session() as session:
        stored = session.get(Account, account.id)
        assert stored is not None
        assert not service.comment_seen(session=session, account=stored, comment_id=comment.comment_id)
        assert service.ingest_synthetic_comment(session=session, account=stored, comment=comment, runtime=db_runtime)
        assert not service.ingest_synthetic_comment(
            session=session, account=stored, comment=comment, runtime=db_runtime
        )
        assert service.comment_seen(session=session, account=stored, comment_id=comment.comment_id)
    assert [e.comment_id for e in consumers.of_kind("comment")] == ["17866000000001801"]
    [event] = events(db_runtime)
    assert (event.source, event.status, event.delivery_id) == ("reconciler", "dispatched", None)
    _post(db_client, comments_delivery("17866000000001801"))  # the late webhook for the same comment
    service.drain(runtime=db_runtime)
    assert len(consumers.calls) == 1
    assert sorted(e.status for e in events(db_runtime)) == ["dispatched", "duplicate"]


def test_last_webhook_at_moves_but_updated_at_does_not(
    db_client: TestClient, db_runtime: Runtime, connect: Any
) -> None:
    account = connect(db_runtime)
    _post(db_client, comments_delivery("17866000000001901"))
    service.drain(runtime=db_runtime)
    with db_runtime.session() as session:
        refreshed = session.get(Account, account.id)
        assert refreshed is not None
        assert refreshed.last_webhook_at is not None
        assert refreshed.updated_at == account.updated_at
