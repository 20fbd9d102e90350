"""``GET /metrics``: Prometheus text that prometheus-client parses, with the database's state read at scrape time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from replyflow.accounts.crypto import cipher_for
from replyflow.accounts.models import Account, TokenStatus
from replyflow.analytics import rollup
from replyflow.automation.models import PrivateReplySlot
from replyflow.config import Settings
from replyflow.db import Base, utcnow
from replyflow.monitoring import metrics
from replyflow.runtime import Runtime
from replyflow.webhooks.models import WebhookDelivery
from tests.analytics.seed import Seeded, seed
from tests.conversations.world import RecordingQueue, production_like_settings
from tests.webhooks.helpers import store

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def _runtime(settings: Settings) -> Runtime:
    runtime = Runtime(settings)
    runtime.__dict__["queue"] = RecordingQueue()
    Base.metadata.create_all(runtime.engine)
    return runtime


def _app(settings: Settings, runtime: Runtime) -> FastAPI:
    from replyflow.app import create_app

    app = create_app(settings, runtime=runtime)
    app.state.metrics_registry = metrics.registry_for(runtime, cache_seconds=0)
    return app


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    return production_like_settings(make_settings, private_reply_quota="5/3600")


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = _runtime(settings)
    yield rt
    rt.close()


def _token(settings: Settings) -> bytes:
    return cipher_for(settings).encrypt("EAABwzLixnjYBAFakePageToken0123456789")


@pytest.fixture
def seeded(settings: Settings, runtime: Runtime) -> Seeded:
    with runtime.session() as session:
        data = seed(session, token=_token(settings))
        rollup.refresh(session=session)
        return data


@pytest.fixture
def client(settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(_app(settings, runtime)) as c:
        yield c


def test_every_replyflow_family_parses_and_has_help(client: TestClient, seeded: Seeded) -> None:
    text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    ours = {name for name in families if name.startswith("replyflow_")}
    assert {
        "replyflow_runs",
        "replyflow_inbox_lag_seconds",
        "replyflow_inbox_pending_deliveries",
        "replyflow_webhook_events_last_hour",
        "replyflow_account_token_status",
        "replyflow_private_reply_quota_used",
        "replyflow_alerts",
        "replyflow_graph_request_duration_seconds",
        "replyflow_webhook_events",
        "replyflow_follow_ups",
        "replyflow_link_clicks",
    } <= ours
    assert all(families[name].documentation for name in ours)
    assert families["replyflow_graph_request_duration_seconds"].type == "histogram"


def test_runs_by_status_come_from_the_database(client: TestClient, seeded: Seeded) -> None:
    samples = scrape(client)
    a = seeded.accounts["a"]
    assert value(samples, "replyflow_runs", account_id=a, status="waiting_quota") == 1
    # Finished runs come from the analytics rollup: 4 + 2 done on 1-2 March, 2 on 27 February.
    assert value(samples, "replyflow_runs", account_id=a, status="done") == 8
    # Skipped: the seeded set has 6, one of them the account's own comment, which the rollup leaves out
    # (replies we post come back as comments; they are not audience activity).
    assert value(samples, "replyflow_runs", account_id=a, status="skipped") == 5
    assert value(samples, "replyflow_runs", account_id=a, status="failed") == 2


def test_inbox_lag_is_the_age_of_the_oldest_waiting_delivery(client: TestClient, runtime: Runtime) -> None:
    samples = scrape(client)
    assert value(samples, "replyflow_inbox_pending_deliveries") == 0
    assert value(samples, "replyflow_inbox_lag_seconds") == 0
    (delivery_id,) = store(runtime, [b'{"object":"instagram","entry":[]}'])
    with runtime.session() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery is not None
        delivery.received_at = utcnow() - dt.timedelta(seconds=90)
    samples = scrape(client)
    assert value(samples, "replyflow_inbox_pending_deliveries") == 1
    assert 90 <= value(samples, "replyflow_inbox_lag_seconds") < 120
    assert value(samples, "replyflow_webhook_deliveries_last_hour", status="pending") == 1


def test_token_health_and_quota_per_account(client: TestClient, runtime: Runtime, seeded: Seeded) -> None:
    a, b = seeded.accounts["a"], seeded.accounts["b"]
    now = utcnow()
    with runtime.session() as session:
        bakery = session.get(Account, b)
        assert bakery is not None
        bakery.token_status = TokenStatus.INVALID.value
        bakery.reauthorization_required = True
        bakery.token_status_reason = "The password was changed."
        for i in range(5):
            session.add(PrivateReplySlot(account_id=a, key=f"k{i}", kind="sent", at=now - dt.timedelta(minutes=i)))
        session.add(PrivateReplySlot(account_id=a, key="old", kind="sent", at=now - dt.timedelta(hours=2)))
    samples = scrape(client)
    assert value(samples, "replyflow_account_token_status", account_id=b, username="bakery.b", status="invalid") == 1
    assert value(samples, "replyflow_account_token_status", account_id=b, username="bakery.b", status="valid") == 0
    assert value(samples, "replyflow_account_token_healthy", account_id=b, username="bakery.b") == 0
    assert value(samples, "replyflow_account_token_healthy", account_id=a, username="roastery.a") == 1
    assert value(samples, "replyflow_private_reply_quota_used", account_id=a, username="roastery.a") == 5
    assert value(samples, "replyflow_private_reply_quota_usage_ratio", account_id=a, username="roastery.a") == 1.0
    assert value(samples, "replyflow_private_reply_quota_limit") == 5
    assert value(samples, "replyflow_alerts", account_id=b, code="token_invalid", severity="critical") == 1
    assert value(samples, "replyflow_alerts", account_id=a, code="quota_saturated", severity="warning") == 1
    # Another workspace's account is reported too: /metrics is the operator's view of the whole installation.
    assert (
        value(samples, "replyflow_account_token_healthy", account_id=seeded.accounts["c"], username="elsewhere.c") == 1
    )


def test_process_counters_fed_by_the_observe_calls(client: TestClient) -> None:
    before = scrape(client)
    key = (
        "replyflow_graph_request_duration_seconds_count",
        frozenset({("endpoint", "send_message"), ("outcome", "ok")}),
    )
    start = before.get(key, 0.0)
    metrics.observe_graph_call(endpoint="send_message", outcome="ok", seconds=0.3)
    metrics.observe_graph_call(endpoint="send_message", outcome="ok", seconds=0.03)
    metrics.observe_graph_call(endpoint="send message; DROP", outcome="meta_rate_limited", seconds=1)
    samples = scrape(client)
    assert samples[key] == start + 2
    bucket = frozenset({("endpoint", "send_message"), ("outcome", "ok"), ("le", "0.05")})
    assert samples[("replyflow_graph_request_duration_seconds_bucket", bucket)] >= 1
    # A label value that is not a plain identifier is folded into "other" instead of widening the series.
    assert (
        "replyflow_graph_request_duration_seconds_count",
        frozenset({("endpoint", "other"), ("outcome", "meta_rate_limited")}),
    ) in samples


def test_two_apps_in_one_process_keep_their_own_registries(make_settings: Any, tmp_path: Path) -> None:
    first = production_like_settings(make_settings, database_url=f"sqlite:///{tmp_path / 'one.db'}")
    second = production_like_settings(make_settings, database_url=f"sqlite:///{tmp_path / 'two.db'}")
    runtimes = [_runtime(first), _runtime(second)]
    try:
        with runtimes[0].session() as session:
            seed(session, token=_token(first))
        with TestClient(_app(first, runtimes[0])) as one, TestClient(_app(second, runtimes[1])) as two:
            seen_one = {labels for name, labels in scrape(one) if name == "replyflow_account_token_healthy"}
            seen_two = {labels for name, labels in scrape(two) if name == "replyflow_account_token_healthy"}
        assert len(seen_one) == 3 and seen_two == set()
        assert not any(name.startswith("replyflow_") for name in REGISTRY._names_to_collectors)
    finally:
        for rt in runtimes:
            rt.close()


def test_a_scrape_answers_even_when_the_database_does_not(make_settings: Any, tmp_path: Path) -> None:
    broken_path = tmp_path / "not-a-database"
    broken_path.mkdir()
    settings = production_like_settings(make_settings, database_url=f"sqlite:///{broken_path}")
    runtime = Runtime(settings)
    try:
        registry = metrics.registry_for(runtime, cache_seconds=0)
        text = metrics.render(registry).decode()
        samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
        assert samples["replyflow_database_up"] == 0
        assert "# HELP replyflow_graph_request_duration_seconds " in text  # this process's series still come
    finally:
        runtime.close()
