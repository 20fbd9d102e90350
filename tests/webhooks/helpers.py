"""Reading the inbox back in tests (through our own models: no mocks of storage)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from sqlalchemy import func, select

from replyflow.runtime import Runtime
from replyflow.webhooks.models import WebhookDelivery, WebhookEvent


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
