"""Feeding the inbox through the production path, and reading it back (through our own models: no mocks)."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import strategies as st
from sqlalchemy import func, select

from replyflow.runtime import Runtime
from replyflow.webhooks import service
from replyflow.webhooks.models import WebhookDelivery, WebhookEvent
from replyflow.webhooks.writer import DeliveryWriter


def store(runtime: Runtime, bodies: list[bytes]) -> list[int]:
    """Store verified deliveries the way the webhook endpoint does (the group-committing writer); not processed."""
    writer = DeliveryWriter(runtime.engine)

    async def all_of() -> list[int]:
        return list(await asyncio.gather(*(writer.store(body=body, secret_index=0) for body in bodies)))

    try:
        return asyncio.run(all_of())
    finally:
        writer.stop()


def ingest(runtime: Runtime, bodies: list[bytes]) -> list[int]:
    """Store deliveries as the endpoint does, then process them with the delivery processor's batch step.

    ``process_batch``, not ``drain``: a drain already running in this process (a worker's job) would take the call
    over and return at once, and the caller expects the runs to exist when this returns."""
    ids = store(runtime, bodies)
    service.process_batch(runtime=runtime, delivery_ids=ids)
    return ids


def deliveries(runtime: Runtime) -> list[WebhookDelivery]:
    with runtime.session() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def events(runtime: Runtime, *, status: str | None = None) -> list[WebhookEvent]:
    with runtime.session() as session:
        query = select(WebhookEvent).order_by(WebhookEvent.id)
        if status is not None:
            query = query.where(WebhookEvent.status == status)
        return list(session.scalars(query))


def delivery_count(runtime: Runtime) -> int:
    with runtime.session() as session:
        return int(session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0)


# Keys that occur in Meta's payloads, so generated garbage reaches deep into the parser rather than failing at once.
_META_KEYS = [
    "object", "entry", "id", "time", "changes", "field", "value", "messaging", "message", "sender", "recipient",
    "mid", "text", "media", "from", "postback", "read", "timestamp", "attachments", "payload", "quick_reply",
    "reply_to", "watermark", "is_echo",
]  # fmt: skip


def meta_shaped_json(*, max_leaves: int) -> st.SearchStrategy[Any]:
    """Any JSON value, with dictionaries keyed like Meta's webhook payloads (for never-crash properties)."""
    leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=10)
    return st.recursive(
        leaf,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(_META_KEYS), children, max_size=6)
        ),
        max_leaves=max_leaves,
    )
