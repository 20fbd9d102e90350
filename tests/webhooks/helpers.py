"""Reading the inbox back in tests (through our own models: no mocks of storage)."""

from __future__ import annotations

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
