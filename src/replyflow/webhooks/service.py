"""The inbox's business rules: stored deliveries become deduplicated events, and events reach their consumer.

Two kinds of transaction, both short so the request path's INSERT never waits long for the write lock:
1. one per delivery: claim it, parse it, insert one event per update and account (a redelivery is recorded
   as a duplicate), touch ``Account.last_webhook_at``, mark the delivery processed or rejected;
2. one per event: hand it to its consumer and mark it dispatched, atomically.
A crash between the two leaves pending events; a crash inside either rolls it back. The sweep repairs both.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from replyflow.accounts.models import Account
from replyflow.db import utcnow
from replyflow.errors import NotFound, ValidationFailed
from replyflow.ids import new_id
from replyflow.logging import get_logger, redact_text
from replyflow.monitoring.metrics import observe_webhook_event
from replyflow.runtime import Runtime
from replyflow.webhooks import dispatch as consumers
from replyflow.webhooks.events import (
    CommentEvent,
    ParsedDelivery,
    TypedEvent,
    dump_event,
    load_event,
    natural_key,
    parse_delivery,
)
from replyflow.webhooks.models import DeliveryStatus, EventSource, EventStatus, WebhookDelivery, WebhookEvent
from replyflow.webhooks.repository import insert_event, insert_event_if_new

_DELIVERIES = cast(Table, WebhookDelivery.__table__)
_EVENTS = cast(Table, WebhookEvent.__table__)

log = get_logger("replyflow.webhooks")

MAX_PROCESS_ATTEMPTS = 5
MAX_DISPATCH_ATTEMPTS = 5
DRAIN_BATCH = 100
# Deliveries per transaction while draining: enough to share a commit, few enough that the write lock is held
# only a few milliseconds (the request path's INSERT and the engine wait for it meanwhile).
COMMIT_BATCH = 16
DISPATCH_BATCH = 500
PRUNE_BATCH = 1000


@dataclass
class ProcessResult:
    delivery_id: int
    status: str
    reason: str | None = None
    event_count: int = 0
    duplicate_count: int = 0
    skipped_count: int = 0
    new_event_ids: list[str] = field(default_factory=list)  # pending, to dispatch after commit
    redispatch_ids: list[str] = field(default_factory=list)  # originals re-opened by a forced replay
    # (webhook field, row status) of every event row written, counted once the transaction has committed.
    event_results: list[tuple[str, str]] = field(default_factory=list)

    def observe(self) -> None:
        for field_name, status in self.event_results:
            observe_webhook_event(field=field_name, result=status)


@dataclass
class DispatchSummary:
    dispatched: int = 0
    failed: int = 0


# -- processing a delivery --------------------------------------------------------------------------------------


@dataclass
class _Batch:
    """What deliveries processed in one transaction share: accounts looked up once, touched once at the end."""

    accounts: dict[tuple[str | None, str], list[Account]] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)


#: An event to hand to its consumer in the processing transaction: (event row id, event, account).
_Inline = tuple[str, TypedEvent, Account]


def process_delivery(
    *,
    session: Session,
    delivery_id: int,
    replay: bool = False,
    force: bool = False,
    batch: _Batch | None = None,
    inline: list[_Inline] | None = None,
) -> ProcessResult | None:
    """Turn one stored delivery into events inside ``session`` (the caller commits).

    With ``inline``, new events for a connected account are collected there for the caller to dispatch in the same
    transaction (stored as dispatched; see ``process_batch``) instead of listed in ``new_event_ids``.

    Returns None when the delivery is not pending (already processed, or another worker holds it), unless
    ``replay`` asks to process it again; then existing events are deduplicated, or re-opened with ``force``.
    """
    # Core, not the ORM: one SELECT and one UPDATE of the delivery row, no unit of work.
    query = select(_DELIVERIES.c.body, _DELIVERIES.c.attempts).where(_DELIVERIES.c.id == delivery_id)
    if not replay:
        query = query.where(_DELIVERIES.c.status == DeliveryStatus.PENDING.value)
    # PostgreSQL: another worker's claim is skipped, not waited for. SQLite: BEGIN IMMEDIATE already serialises.
    found = session.execute(query.with_for_update(skip_locked=not replay)).first()
    if found is None:
        return None
    body, attempts = found
    if body is None:
        raise ValidationFailed(
            f"Delivery {delivery_id} can no longer be replayed: its raw body was pruned by retention.",
            code="delivery_pruned",
            hint="Raise REPLYFLOW_INBOX_RETENTION_DAYS to keep raw deliveries longer.",
        )
    now = utcnow()
    parsed = parse_delivery(body)
    delivery: dict[str, Any] = {
        "attempts": attempts + 1,
        "object": parsed.object,
        "entry_count": parsed.entry_count,
        "change_count": parsed.change_count,
        "problems": parsed.problems or None,
        "processed_at": now,
    }
    result = ProcessResult(delivery_id=delivery_id, status="", skipped_count=parsed.skipped_count)
    if parsed.rejected_reason is not None:
        result.status = DeliveryStatus.REJECTED.value
        result.reason = parsed.rejected_reason
        delivery.update(status=result.status, reason=result.reason, event_count=0, duplicate_count=0)
        session.execute(update(_DELIVERIES).where(_DELIVERIES.c.id == delivery_id).values(delivery))
        log.warning("webhook_delivery_rejected", delivery_id=delivery_id, reason=parsed.rejected_reason)
        return result

    accounts = _resolve_accounts(session, parsed, batch)
    for item in parsed.items:
        targets: list[Account | None] = list(accounts.get(item.event.entry_id, ())) or [None]
        for account in targets:
            row = _event_row(
                event=item.event,
                account=account,
                delivery_id=delivery_id,
                source=EventSource.WEBHOOK,
                now=now,
            )
            to_dispatch = row["status"] == EventStatus.PENDING.value
            if to_dispatch and inline is not None and account is not None:
                # Handed to its consumer in this transaction (``process_batch``): stored as dispatched, and
                # put back to pending there if the consumer fails.
                row.update(status=EventStatus.DISPATCHED.value, dispatched_at=now, attempts=1)
            if insert_event_if_new(session, row):
                result.event_count += 1
                result.event_results.append((row["field"], EventStatus.PENDING.value if to_dispatch else row["status"]))
                if to_dispatch and inline is not None and account is not None:
                    inline.append((row["id"], item.event, account))
                elif to_dispatch:
                    result.new_event_ids.append(row["id"])
                continue
            row.update(status=EventStatus.PENDING.value, dispatched_at=None, attempts=0)
            result.duplicate_count += 1
            result.event_results.append((row["field"], EventStatus.DUPLICATE.value))
            original = session.scalar(select(WebhookEvent).where(WebhookEvent.dedupe_key == row["dedupe_key"]))
            original_id = original.id if original is not None else "an earlier event"
            insert_event(
                session,
                {
                    **row,
                    "id": new_id("evt"),
                    "dedupe_key": None,
                    "status": EventStatus.DUPLICATE.value,
                    "reason": f"{'replay' if replay else 'redelivery'}: already recorded as {original_id}",
                },
            )
            if (
                force
                and original is not None
                and original.account_id is not None
                and original.object == "instagram"
                and original.kind in consumers.KINDS
            ):
                original.status = EventStatus.PENDING.value
                original.attempts = 0
                original.reason = "re-dispatch requested by a forced replay"
                result.redispatch_ids.append(original.id)

    if batch is None:
        _touch_accounts(session, accounts, now)
    else:
        batch.touched.update(account.id for group in accounts.values() for account in group)
    result.status = DeliveryStatus.PROCESSED.value
    if parsed.problems:
        result.reason = (
            f"partial: {len(parsed.items)} updates extracted, {parsed.skipped_count} skipped; "
            f"first: {parsed.problems[0]}"
        )
    delivery.update(
        status=result.status,
        reason=result.reason,
        event_count=result.event_count,
        duplicate_count=result.duplicate_count,
    )
    session.execute(update(_DELIVERIES).where(_DELIVERIES.c.id == delivery_id).values(delivery))
    log.info(
        "webhook_delivery_processed",
        delivery_id=delivery_id,
        events=result.event_count,
        duplicates=result.duplicate_count,
        skipped=parsed.skipped_count,
    )
    return result


def _resolve_accounts(
    session: Session, parsed: ParsedDelivery, batch: _Batch | None = None
) -> dict[str, list[Account]]:
    """Entry id → every connected account with that id (several workspaces may connect the same account)."""
    entry_ids = sorted({item.event.entry_id for item in parsed.items})
    if not entry_ids:
        return {}
    if batch is not None:
        known = {e: batch.accounts[(parsed.object, e)] for e in entry_ids if (parsed.object, e) in batch.accounts}
        if len(known) == len(entry_ids):
            return {e: accounts for e, accounts in known.items() if accounts}
    column = Account.page_id if parsed.object == "page" else Account.instagram_id
    found: dict[str, list[Account]] = {}
    if batch is not None:
        for entry_id in entry_ids:
            batch.accounts[(parsed.object, entry_id)] = found.setdefault(entry_id, [])
    for start in range(0, len(entry_ids), 500):
        chunk = entry_ids[start : start + 500]
        for account in session.scalars(select(Account).where(column.in_(chunk)).order_by(Account.id)):
            key = (account.page_id or "") if parsed.object == "page" else account.instagram_id
            found.setdefault(key, []).append(account)
    return {e: accounts for e, accounts in found.items() if accounts}


def _touch_accounts(session: Session, accounts: dict[str, list[Account]], now: dt.datetime) -> None:
    _touch_account_ids(session, {account.id for group in accounts.values() for account in group}, now)


def _touch_account_ids(session: Session, account_ids: set[str], now: dt.datetime) -> None:
    ids = sorted(account_ids)
    if ids:
        # A webhook arriving is not an edit of the account: keep ``updated_at`` as it is.
        session.execute(
            update(Account)
            .where(Account.id.in_(ids))
            .values(last_webhook_at=now, updated_at=Account.updated_at)
            .execution_options(synchronize_session=False)
        )


def _event_row(
    *,
    event: TypedEvent,
    account: Account | None,
    delivery_id: int | None,
    source: EventSource,
    now: dt.datetime,
) -> dict[str, Any]:
    key = event.natural_key
    scope = account.id if account is not None else f"entry:{event.object}:{event.entry_id}"
    status, reason = EventStatus.PENDING, None
    if account is None:
        which = "Facebook Page" if event.object == "page" else "Instagram account"
        status, reason = EventStatus.NO_ACCOUNT, f"no_account: no connected account has {which} id {event.entry_id}"
    elif event.object != "instagram":
        status, reason = EventStatus.IGNORED, "facebook_page_update: replyflow acts on Instagram updates only"
    elif event.kind not in consumers.KINDS:
        status, reason = EventStatus.IGNORED, f"field_not_handled: replyflow does not act on {event.field!r}"
    return {
        "id": new_id("evt"),
        "delivery_id": delivery_id,
        "account_id": account.id if account is not None else None,
        "source": source.value,
        "object": event.object,
        "entry_id": event.entry_id,
        "field": event.field,
        "kind": event.kind,
        "natural_key": key,
        "dedupe_key": f"{scope}|{key}",
        "payload": dump_event(event),
        "occurred_at": event.occurred_at,
        "status": status.value,
        "reason": reason,
        "attempts": 0,
        "created_at": now,
        "dispatched_at": None,
    }


# -- dispatching events -------------------------------------------------------------------------------------------


def dispatch_event(*, session: Session, event_id: str, runtime: Runtime) -> str:
    """Hand one pending event to its consumer in ``session`` (the caller commits); returns the outcome."""
    row = session.scalar(
        select(WebhookEvent)
        .where(WebhookEvent.id == event_id, WebhookEvent.status == EventStatus.PENDING.value)
        .with_for_update(skip_locked=True)
    )
    if row is None:
        return "skipped"
    return _dispatch_row(session=session, row=row, runtime=runtime)


def _dispatch_inline(*, session: Session, event_id: str, event: TypedEvent, account: Account, runtime: Runtime) -> None:
    """Hand an event stored as dispatched to its consumer; if the consumer fails, its writes are rolled back and the
    event goes back to pending with the reason, for the sweep to retry (as ``_dispatch_row`` records it)."""
    try:
        with session.begin_nested():
            consumers.dispatch(session=session, account=account, event=event, runtime=runtime)
    except OperationalError:
        raise
    except Exception as exc:
        reason = f"consumer_error: {type(exc).__name__}: {redact_text(str(exc))[:200]}"
        log.error("webhook_event_dispatch_failed", event_id=event_id, kind=event.kind, attempts=1, error=exc)
        _reopen(session, event_id, reason=reason, attempts=1)


def _reopen(session: Session, event_id: str, *, reason: str, attempts: int) -> None:
    session.execute(
        update(_EVENTS)
        .where(_EVENTS.c.id == event_id)
        .values(status=EventStatus.PENDING.value, dispatched_at=None, attempts=attempts, reason=reason)
    )


def _dispatch_row(*, session: Session, row: WebhookEvent, runtime: Runtime) -> str:
    account = session.get(Account, row.account_id) if row.account_id else None
    if account is None:
        row.status = EventStatus.NO_ACCOUNT.value
        row.reason = "no_account: the account was removed before the event was dispatched"
        return "skipped"
    event = load_event(row.payload)
    try:
        with session.begin_nested():
            consumers.dispatch(session=session, account=account, event=event, runtime=runtime)
    except OperationalError:
        raise  # the database itself is unavailable: nothing to record, the sweep retries
    except Exception as exc:
        row.attempts += 1
        row.reason = f"consumer_error: {type(exc).__name__}: {redact_text(str(exc))[:200]}"
        if row.attempts >= MAX_DISPATCH_ATTEMPTS:
            row.status = EventStatus.FAILED.value
        log.error("webhook_event_dispatch_failed", event_id=row.id, kind=row.kind, attempts=row.attempts, error=exc)
        return "failed"
    row.status = EventStatus.DISPATCHED.value
    row.dispatched_at = utcnow()
    row.attempts += 1
    row.reason = None
    return "dispatched"


def dispatch_events(*, runtime: Runtime, event_ids: Iterable[str]) -> DispatchSummary:
    """Dispatch each event in its own short transaction."""
    summary = DispatchSummary()
    for event_id in event_ids:
        try:
            with runtime.session() as session:
                outcome = dispatch_event(session=session, event_id=event_id, runtime=runtime)
        except OperationalError:
            raise
        except Exception as exc:  # e.g. a stored payload that no longer loads: record it, go on with the rest
            outcome = "failed"
            _record_dispatch_error(runtime=runtime, event_id=event_id, error=exc)
        if outcome == "dispatched":
            summary.dispatched += 1
        elif outcome == "failed":
            summary.failed += 1
    return summary


def _record_dispatch_error(*, runtime: Runtime, event_id: str, error: Exception) -> None:
    with runtime.session() as session:
        _note_dispatch_error(session=session, event_id=event_id, error=error)


def _note_dispatch_error(*, session: Session, event_id: str, error: Exception) -> None:
    log.error("webhook_event_dispatch_failed", event_id=event_id, error=error, exc_info=error)
    row = session.get(WebhookEvent, event_id)
    if row is None or row.status != EventStatus.PENDING.value:
        return
    row.attempts += 1
    row.reason = f"dispatch_error: {type(error).__name__}"
    if row.attempts >= MAX_DISPATCH_ATTEMPTS:
        row.status = EventStatus.FAILED.value


# -- the processor loop: woken by the API, and the periodic sweep --------------------------------------------------


class _DrainState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.again = threading.Event()


_drains: weakref.WeakKeyDictionary[Runtime, _DrainState] = weakref.WeakKeyDictionary()
_drains_lock = threading.Lock()


def _drain_state(runtime: Runtime) -> _DrainState:
    with _drains_lock:
        state = _drains.get(runtime)
        if state is None:
            state = _drains[runtime] = _DrainState()
        return state


def process_and_dispatch(*, runtime: Runtime, delivery_id: int) -> ProcessResult | None:
    """Process one delivery in its own transaction, then dispatch its new events. Never raises for bad data."""
    try:
        with runtime.session() as session:
            result = process_delivery(session=session, delivery_id=delivery_id)
    except OperationalError:
        raise
    except Exception as exc:
        _record_processing_error(runtime=runtime, delivery_id=delivery_id, error=exc)
        return None
    if result is not None:
        result.observe()
    if result is not None and result.new_event_ids:
        dispatch_events(runtime=runtime, event_ids=result.new_event_ids)
    return result


def _record_processing_error(*, runtime: Runtime, delivery_id: int, error: Exception) -> None:
    with runtime.session() as session:
        _note_processing_error(session=session, delivery_id=delivery_id, error=error)


def _note_processing_error(*, session: Session, delivery_id: int, error: Exception) -> None:
    log.error("webhook_delivery_processing_failed", delivery_id=delivery_id, error=error, exc_info=error)
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.status != DeliveryStatus.PENDING.value:
        return
    delivery.attempts += 1
    delivery.reason = f"processing_error: {type(error).__name__}"
    if delivery.attempts >= MAX_PROCESS_ATTEMPTS:
        delivery.status = DeliveryStatus.REJECTED.value
        delivery.processed_at = utcnow()


def process_batch(*, runtime: Runtime, delivery_ids: list[int]) -> tuple[list[ProcessResult], set[int]]:
    """Process several deliveries and dispatch their new events in one transaction: one commit (and, on SQLite,
    one turn of the write lock) for the lot instead of one per delivery and one per event.

    Deliveries are nearly always fine, so the batch first runs with no savepoint per delivery (each event's
    consumer still has its own). If one delivery fails, that attempt is rolled back whole and the batch runs again
    with a savepoint per delivery, so the bad one is recorded as such and rolls back nothing else.

    Returns the results and the ids that failed.
    """
    try:
        return _process_chunk(runtime=runtime, delivery_ids=delivery_ids, isolate=False)
    except OperationalError:
        raise
    except Exception:  # one delivery is bad: find it with each in a savepoint of its own
        return _process_chunk(runtime=runtime, delivery_ids=delivery_ids, isolate=True)


def _process_chunk(*, runtime: Runtime, delivery_ids: list[int], isolate: bool) -> tuple[list[ProcessResult], set[int]]:
    results: list[ProcessResult] = []
    failed: set[int] = set()
    batch = _Batch()
    with runtime.session() as session:
        for delivery_id in delivery_ids:
            inline: list[_Inline] = []
            try:
                with session.begin_nested() if isolate else contextlib.nullcontext():
                    result = process_delivery(session=session, delivery_id=delivery_id, batch=batch, inline=inline)
                    # The events just parsed go to their consumer as they are: no reload, no second parse.
                    for event_id, event, account in inline:
                        _dispatch_inline(
                            session=session, event_id=event_id, event=event, account=account, runtime=runtime
                        )
            except OperationalError:
                raise
            except Exception as exc:
                if not isolate:
                    raise
                _note_processing_error(session=session, delivery_id=delivery_id, error=exc)
                failed.add(delivery_id)
                continue
            if result is not None:
                results.append(result)
        _touch_account_ids(session, batch.touched, utcnow())
    for result in results:
        result.observe()
    return results, failed


def drain(*, runtime: Runtime, time_budget: float = 30.0) -> int:
    """Process pending deliveries oldest first. Concurrent calls in one process coalesce into the running one.

    A caller that finds another drain running only flags ``again``; the running drain checks the flag after it
    releases the lock, so a delivery committed before any call is always processed by some drain.
    """
    state = _drain_state(runtime)
    state.again.set()
    count = 0
    while state.again.is_set():
        if not state.lock.acquire(blocking=False):
            return count
        try:
            state.again.clear()
            count += _drain_pending(runtime=runtime, time_budget=time_budget)
        finally:
            state.lock.release()
    return count


def _drain_pending(*, runtime: Runtime, time_budget: float) -> int:
    deadline = time.monotonic() + time_budget
    failed: set[int] = set()
    count = 0
    while time.monotonic() < deadline:
        with runtime.read_session() as session:
            query = (
                select(WebhookDelivery.id)
                .where(WebhookDelivery.status == DeliveryStatus.PENDING.value)
                .order_by(WebhookDelivery.id)
                .limit(DRAIN_BATCH)
            )
            if failed:
                query = query.where(WebhookDelivery.id.not_in(failed))
            ids = list(session.scalars(query))
        if not ids:
            break
        for start in range(0, len(ids), COMMIT_BATCH):
            chunk = ids[start : start + COMMIT_BATCH]
            results, chunk_failed = process_batch(runtime=runtime, delivery_ids=chunk)
            count += len(results)
            failed |= chunk_failed
        if len(ids) < DRAIN_BATCH:
            break
    return count


def sweep(*, runtime: Runtime, time_budget: float = 50.0) -> DispatchSummary:
    """Periodic repair: deliveries left pending (a crash after the 200), then events a consumer failed on."""
    deadline = time.monotonic() + time_budget
    drain(runtime=runtime, time_budget=time_budget / 2)
    summary = DispatchSummary()
    kinds = sorted(consumers.KINDS)
    after = ""
    while kinds and time.monotonic() < deadline:
        with runtime.session() as session:
            ids = list(
                session.scalars(
                    select(WebhookEvent.id)
                    .where(
                        WebhookEvent.status == EventStatus.PENDING.value,
                        WebhookEvent.kind.in_(kinds),
                        WebhookEvent.id > after,
                    )
                    .order_by(WebhookEvent.id)
                    .limit(DISPATCH_BATCH)
                )
            )
        if not ids:
            break
        after = ids[-1]
        part = dispatch_events(runtime=runtime, event_ids=ids)
        summary.dispatched += part.dispatched
        summary.failed += part.failed
    return summary


# -- the reconciler's door into the inbox ------------------------------------------------------------------------


def ingest_synthetic_comment(*, session: Session, account: Account, comment: CommentEvent, runtime: Runtime) -> bool:
    """Record a comment found by polling as if its webhook had arrived; True when it was not seen before.

    Same natural key and dedupe scope as the webhook path, so whichever arrives second is the duplicate. A new
    comment is dispatched in ``session`` (the caller commits), or left pending for the sweep.
    """
    if comment.entry_id != account.instagram_id:
        comment = comment.model_copy(update={"entry_id": account.instagram_id})
    row = _event_row(event=comment, account=account, delivery_id=None, source=EventSource.RECONCILER, now=utcnow())
    if not insert_event_if_new(session, row):
        return False
    stored = session.get(WebhookEvent, row["id"])
    if stored is not None:
        _dispatch_row(session=session, row=stored, runtime=runtime)
    return True


def comment_seen(*, session: Session, account: Account, comment_id: str) -> bool:
    """Whether the inbox already holds this comment for this account (cheap pre-check for the reconciler)."""
    dedupe_key = f"{account.id}|{natural_key('comment', comment_id)}"
    return session.scalar(select(WebhookEvent.id).where(WebhookEvent.dedupe_key == dedupe_key)) is not None


# -- operators: replay, retention, listing ------------------------------------------------------------------------


def replay_delivery(*, runtime: Runtime, delivery_id: int, force: bool = False) -> ProcessResult:
    """Run a stored delivery through processing again; known updates stay duplicates unless ``force``."""
    with runtime.session() as session:
        if session.get(WebhookDelivery, delivery_id) is None:
            raise NotFound(f"No stored delivery {delivery_id}.", hint="List deliveries with 'replyflow events list'.")
        result = process_delivery(session=session, delivery_id=delivery_id, replay=True, force=force)
    assert result is not None
    result.observe()
    dispatch_events(runtime=runtime, event_ids=[*result.new_event_ids, *result.redispatch_ids])
    return result


def prune_deliveries(*, session: Session, older_than: dt.datetime, limit: int = PRUNE_BATCH) -> int:
    """Drop the raw body of up to ``limit`` finished deliveries received before ``older_than``; events stay."""
    ids = list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status.in_([DeliveryStatus.PROCESSED.value, DeliveryStatus.REJECTED.value]),
                WebhookDelivery.received_at < older_than,
                WebhookDelivery.body.is_not(None),
            )
            .order_by(WebhookDelivery.id)
            .limit(limit)
        )
    )
    if ids:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids))
            .values(body=None, pruned_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    return len(ids)


def prune(*, runtime: Runtime, retention_days: int | None = None) -> int:
    """Apply the retention setting in batches (each its own transaction, so ingestion never waits long)."""
    days = retention_days if retention_days is not None else runtime.settings.inbox_retention_days
    cutoff = utcnow() - dt.timedelta(days=days)
    total = 0
    while True:
        with runtime.session() as session:
            count = prune_deliveries(session=session, older_than=cutoff)
        total += count
        if count < PRUNE_BATCH:
            break
    if total:
        log.info("webhook_deliveries_pruned", count=total, retention_days=days)
    return total


def list_events(
    *, session: Session, status: str | None = None, field_name: str | None = None, limit: int = 50
) -> list[WebhookEvent]:
    query = select(WebhookEvent)
    if status:
        query = query.where(WebhookEvent.status == status)
    if field_name:
        query = query.where(WebhookEvent.field == field_name)
    return list(session.scalars(query.order_by(WebhookEvent.id.desc()).limit(limit)))


def list_deliveries(*, session: Session, status: str | None = None, limit: int = 50) -> list[WebhookDelivery]:
    query = select(WebhookDelivery)
    if status:
        query = query.where(WebhookDelivery.status == status)
    return list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))


def get_delivery(*, session: Session, delivery_id: int) -> WebhookDelivery:
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise NotFound(f"No stored delivery {delivery_id}.", hint="List deliveries with 'replyflow events list'.")
    return delivery


def get_event(*, session: Session, event_id: str) -> WebhookEvent:
    event = session.get(WebhookEvent, event_id)
    if event is None:
        raise NotFound(f"No event {event_id}.", hint="List events with 'replyflow events list'.")
    return event


def events_of_delivery(*, session: Session, delivery_id: int) -> list[WebhookEvent]:
    return list(
        session.scalars(select(WebhookEvent).where(WebhookEvent.delivery_id == delivery_id).order_by(WebhookEvent.id))
    )
