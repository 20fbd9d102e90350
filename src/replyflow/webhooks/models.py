"""The inbox: every signed delivery as Meta sent it, and one typed event per update it carried."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, LargeBinary, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from replyflow.db import Base, UTCDateTime, utcnow
from replyflow.ids import new_id

# SQLite only auto-increments an ``INTEGER PRIMARY KEY``; PostgreSQL gets a bigint identity.
_DeliveryId = BigInteger().with_variant(Integer(), "sqlite")


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # stored and acknowledged; not yet turned into events
    PROCESSED = "processed"  # events extracted (some items may have been skipped, see ``reason``)
    REJECTED = "rejected"  # signed but unusable (not JSON, unknown object, no valid item)


class EventStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its consumer (not installed yet, or it failed and will be retried)
    DISPATCHED = "dispatched"  # handed to automation or conversations, in the transaction that set this
    DUPLICATE = "duplicate"  # its natural key was already recorded: Meta redelivered it
    IGNORED = "ignored"  # a field or object replyflow does not act on
    NO_ACCOUNT = "no_account"  # no connected account has the entry's id
    FAILED = "failed"  # the consumer kept raising; given up after several attempts


class EventSource(enum.StrEnum):
    WEBHOOK = "webhook"
    RECONCILER = "reconciler"


class WebhookDelivery(Base):
    """One POST from Meta, kept byte for byte (the signature covers the raw bytes) until retention prunes it."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The processor and the sweep look for the oldest pending deliveries.
        Index("ix_webhook_deliveries_status_id", "status", "id"),
        # Retention prunes bodies of finished deliveries by age.
        Index("ix_webhook_deliveries_status_received_at", "status", "received_at"),
    )

    id: Mapped[int] = mapped_column(_DeliveryId, primary_key=True, autoincrement=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # NULL once retention has pruned it; ``body_size`` and ``body_sha256`` stay for the record.
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    body_size: Mapped[int] = mapped_column(Integer)
    # Which configured app secret verified it: 0 the current one, 1 the previous one (rotation).
    secret_index: Mapped[int | None] = mapped_column(SmallInteger)
    object: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    reason: Mapped[str | None] = mapped_column(Text)
    problems: Mapped[list[str] | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    entry_count: Mapped[int | None] = mapped_column(Integer)
    change_count: Mapped[int | None] = mapped_column(Integer)
    event_count: Mapped[int | None] = mapped_column(Integer)
    duplicate_count: Mapped[int | None] = mapped_column(Integer)
    processed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    pruned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class WebhookEvent(Base):
    """One update (a change or a messaging item) for one account, identified by its natural key."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        # The sweep retries pending events oldest first; ``events list`` filters by status and field.
        Index("ix_webhook_events_status_id", "status", "id"),
        Index("ix_webhook_events_field_id", "field", "id"),
        Index("ix_webhook_events_account_id_natural_key", "account_id", "natural_key"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("evt"))
    delivery_id: Mapped[int | None] = mapped_column(
        _DeliveryId, ForeignKey("webhook_deliveries.id", ondelete="SET NULL"), index=True
    )
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16), default=EventSource.WEBHOOK.value)
    object: Mapped[str] = mapped_column(String(32))
    entry_id: Mapped[str] = mapped_column(String(128))
    field: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    # e.g. ``comment:17890…``, ``message:aWdf…``; the same for a redelivery of the same update.
    natural_key: Mapped[str] = mapped_column(String(255))
    # ``<account or entry scope>|<natural_key>`` on the first copy only; duplicates keep NULL, so the UNIQUE
    # constraint lets exactly one copy per account exist whatever races between processors.
    dedupe_key: Mapped[str | None] = mapped_column(String(320), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    occurred_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default=EventStatus.PENDING.value)
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
