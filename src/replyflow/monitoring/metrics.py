"""Prometheus metrics: process-local counters fed by small ``observe_*`` calls, plus a registry per app.

Two kinds of series:

* **Events seen by this process** (Graph API calls and their latency, webhook deliveries and events, follow-ups,
  link clicks): counters and histograms in :data:`PROCESS_REGISTRY`, updated by the ``observe_*`` functions
  other packages call. A worker process has its own; expose it with :func:`serve_worker_metrics`.
* **State in the database** (runs by status, inbox lag, quota use, token health, alerts): computed at scrape
  time by :class:`replyflow.monitoring.collector.DatabaseCollector`, so every process reports the same truth.

Each app gets its own ``CollectorRegistry`` (:func:`registry_for`), so several apps in one process (tests)
never collide in prometheus-client's global default registry, which replyflow does not use.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from replyflow.graph.client import GraphCallRecord
    from replyflow.runtime import Runtime

PROCESS_REGISTRY = CollectorRegistry()

# Meta answers most calls in 100-800 ms; sends can take seconds; the client times out at 15 s by default.
_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 15.0, 30.0)

GRAPH_REQUEST_SECONDS = Histogram(
    "replyflow_graph_request_duration_seconds",
    "Graph API calls by client method and outcome ('ok' or the error code), with their latency.",
    ["endpoint", "outcome"],
    buckets=_LATENCY_BUCKETS,
    registry=PROCESS_REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "replyflow_webhook_deliveries",
    "POSTs to /webhooks/instagram by result (stored, invalid_signature, too_large, storage_error).",
    ["result"],
    registry=PROCESS_REGISTRY,
)
WEBHOOK_EVENTS = Counter(
    "replyflow_webhook_events",
    "Updates extracted from deliveries, by webhook field and result (dispatched, duplicate, ignored, ...).",
    ["field", "result"],
    registry=PROCESS_REGISTRY,
)
CONVERSATION_EVENTS = Counter(
    "replyflow_conversation_events",
    "Messaging events tied to rule conversations, by kind (user_text, quick_reply, postback, seen, echo, ...).",
    ["kind"],
    registry=PROCESS_REGISTRY,
)
FOLLOW_UPS = Counter(
    "replyflow_follow_ups",
    "Follow-up messages by outcome (sent, unknown, failed, skipped_<reason>).",
    ["outcome"],
    registry=PROCESS_REGISTRY,
)
LINK_CLICKS = Counter(
    "replyflow_link_clicks",
    "Requests to tracked links (/r/…) by kind: click, preview (a link-preview fetcher) or not_found.",
    ["kind"],
    registry=PROCESS_REGISTRY,
)

_LABEL = re.compile(r"^[a-z0-9_:.\-]{1,64}$")


def _label(value: str | None) -> str:
    """Label values come from our own code, but a typo must not explode cardinality or break the exposition."""
    text = (value or "").strip().lower()
    return text if _LABEL.fullmatch(text) else "other"


def observe_graph_call(*, endpoint: str, outcome: str, seconds: float) -> None:
    """One Graph API call: the client method (``send_private_reply``), ``ok`` or the error code, and its latency."""
    GRAPH_REQUEST_SECONDS.labels(endpoint=_label(endpoint), outcome=_label(outcome)).observe(max(0.0, seconds))


def _observe_graph_record(record: GraphCallRecord) -> None:
    observe_graph_call(endpoint=record.endpoint, outcome=record.outcome, seconds=record.seconds)


def install_graph_observer() -> None:
    """Feed every Graph call of this process into :data:`GRAPH_REQUEST_SECONDS` (idempotent; app and worker start)."""
    from replyflow.graph.client import add_call_observer

    add_call_observer(_observe_graph_record)


# The webhook POST is the hot path: resolve each result's child once (``labels()`` costs several times ``inc()``).
_delivery_counters: dict[str, Counter] = {}


def observe_webhook_delivery(*, result: str) -> None:
    counter = _delivery_counters.get(result)
    if counter is None:
        counter = _delivery_counters.setdefault(result, WEBHOOK_DELIVERIES.labels(result=_label(result)))
    counter.inc()


def observe_webhook_event(*, field: str, result: str) -> None:
    WEBHOOK_EVENTS.labels(field=_label(field), result=_label(result)).inc()


def observe_conversation_event(*, kind: str) -> None:
    CONVERSATION_EVENTS.labels(kind=_label(kind)).inc()


def observe_follow_up(*, outcome: str) -> None:
    FOLLOW_UPS.labels(outcome=_label(outcome)).inc()


def observe_link_click(*, kind: str) -> None:
    LINK_CLICKS.labels(kind=_label(kind)).inc()


class _ProcessMetrics(Collector):
    """Makes the process-wide series part of an app's registry without registering them twice anywhere."""

    def collect(self) -> Iterable[Metric]:
        return PROCESS_REGISTRY.collect()

    def describe(self) -> Iterable[Metric]:
        return []


_registries_lock = threading.Lock()


def registry_for(runtime: Runtime, *, cache_seconds: float = 5.0) -> CollectorRegistry:
    """A new registry for one app: this process's series, the database's state, and process/platform info."""
    from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

    from replyflow.monitoring.collector import DatabaseCollector

    registry = CollectorRegistry()
    with _registries_lock:
        registry.register(_ProcessMetrics())
        registry.register(DatabaseCollector(runtime, cache_seconds=cache_seconds))
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(standard)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def serve_worker_metrics(*, port: int, addr: str = "127.0.0.1") -> None:
    """For ``replyflow worker`` processes: expose this process's series on ``http://addr:port/metrics``."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=addr, registry=PROCESS_REGISTRY)
