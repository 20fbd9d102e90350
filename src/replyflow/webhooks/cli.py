"""``replyflow events``: list, show, replay and prune the stored webhook deliveries and their events."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import click

from replyflow.logging import redact_text, redact_value
from replyflow.webhooks.models import DeliveryStatus, EventStatus, WebhookDelivery, WebhookEvent

_STATUSES = sorted({*(s.value for s in EventStatus), *(s.value for s in DeliveryStatus)})


def _clean(text: str) -> str:
    """Control characters shown escaped: a stored body must not drive the operator's terminal."""
    return "".join(
        ch if ch in "\n\t" or unicodedata.category(ch) != "Cc" else f"\\x{ord(ch):02x}" for ch in redact_text(text)
    )


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def describe_delivery(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "received_at": _time(delivery.received_at),
        "status": delivery.status,
        "reason": delivery.reason,
        "problems": delivery.problems or [],
        "object": delivery.object,
        "signed_with": {0: "current", 1: "previous"}.get(delivery.secret_index or 0, "unknown"),
        "body_size": delivery.body_size,
        "entry_count": delivery.entry_count,
        "change_count": delivery.change_count,
        "event_count": delivery.event_count,
        "duplicate_count": delivery.duplicate_count,
        "attempts": delivery.attempts,
        "processed_at": _time(delivery.processed_at),
        "pruned_at": _time(delivery.pruned_at),
    }


def describe_event(event: WebhookEvent, *, with_payload: bool = False) -> dict[str, Any]:
    found: dict[str, Any] = {
        "id": event.id,
        "delivery_id": event.delivery_id,
        "source": event.source,
        "created_at": _time(event.created_at),
        "status": event.status,
        "reason": event.reason,
        "object": event.object,
        "field": event.field,
        "kind": event.kind,
        "entry_id": event.entry_id,
        "account_id": event.account_id,
        "natural_key": event.natural_key,
        "occurred_at": _time(event.occurred_at),
        "attempts": event.attempts,
        "dispatched_at": _time(event.dispatched_at),
    }
    if with_payload:
        found["payload"] = redact_value(event.payload)
    return found


def _body(delivery: WebhookDelivery) -> Any:
    """The raw body as JSON when it is JSON (pretty-printable), else as text; tokens masked either way."""
    if delivery.body is None:
        return None
    try:
        return redact_value(json.loads(delivery.body))
    except (ValueError, RecursionError):
        return redact_text(delivery.body.decode("utf-8", errors="replace"))


def _emit_json(payload: dict[str, Any]) -> None:
    from replyflow.cli import emit_json

    emit_json(payload)


def _runtime() -> Any:
    from replyflow.cli import _runtime as cli_runtime

    return cli_runtime()


def _short(text: str | None, width: int) -> str:
    if not text:
        return "-"
    text = _clean(text).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


@click.group("events")
def events_group() -> None:
    """Webhook deliveries received from Meta and the events they carried."""


@events_group.command("list")
@click.option("--status", type=click.Choice(_STATUSES), help="Only rows with this status.")
@click.option("--field", "field_name", help="Only events of this webhook field (comments, messages, ...).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--deliveries", is_flag=True, help="List raw deliveries instead of events.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on the last line.")
def list_command(status: str | None, field_name: str | None, limit: int, deliveries: bool, as_json: bool) -> None:
    """List the newest events (or, with --deliveries, the newest deliveries)."""
    from replyflow.webhooks import service

    with _runtime().session() as session:
        if deliveries:
            rows = [describe_delivery(d) for d in service.list_deliveries(session=session, status=status, limit=limit)]
        else:
            rows = [
                describe_event(e)
                for e in service.list_events(session=session, status=status, field_name=field_name, limit=limit)
            ]
    if as_json:
        _emit_json({"items": rows})
        return
    if not rows:
        click.echo("Nothing stored yet." if not (status or field_name) else "Nothing matches.")
        return
    for row in rows:
        if deliveries:
            counts = f"{row['event_count'] or 0} events, {row['duplicate_count'] or 0} dup"
            click.echo(
                f"{row['id']:>8}  {row['received_at'][:19]}  {row['status']:10} {row['object'] or '-':10} "
                f"{counts:18} {_short(row['reason'], 60)}"
            )
        else:
            click.echo(
                f"{row['id']}  {row['created_at'][:19]}  {row['status']:10} {row['field']:20} "
                f"{row['account_id'] or '-':28} {_short(row['natural_key'], 40):40} {_short(row['reason'], 50)}"
            )


def _resolve(ref: str) -> tuple[int, str | None]:
    """(delivery id, event id or None) for an ``ID`` argument: a delivery number or an ``evt_`` id."""
    from replyflow.webhooks import service

    if ref.isdigit():
        return int(ref), None
    if ref.startswith("evt_"):
        with _runtime().session() as session:
            event = service.get_event(session=session, event_id=ref)
            if event.delivery_id is None:
                return -1, event.id
            return event.delivery_id, event.id
    raise click.BadParameter("use a delivery number or an event id (evt_…)", param_hint="ID")


@events_group.command("show")
@click.argument("ref", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on the last line.")
def show_command(ref: str, as_json: bool) -> None:
    """Show one delivery (by number) or event (evt_…): the raw body pretty-printed, and its events."""
    from replyflow.webhooks import service

    delivery_id, event_id = _resolve(ref)
    with _runtime().session() as session:
        event = service.get_event(session=session, event_id=event_id) if event_id else None
        delivery = service.get_delivery(session=session, delivery_id=delivery_id) if delivery_id >= 0 else None
        result: dict[str, Any] = {
            "event": describe_event(event, with_payload=True) if event is not None else None,
            "delivery": describe_delivery(delivery) if delivery is not None else None,
            "body": _body(delivery) if delivery is not None else None,
            "events": [describe_event(e) for e in service.events_of_delivery(session=session, delivery_id=delivery_id)]
            if delivery is not None
            else [],
        }
    if as_json:
        _emit_json(result)
        return
    if result["event"] is not None:
        click.echo(f"Event {result['event']['id']}")
        for key, value in result["event"].items():
            if key != "payload" and value is not None:
                click.echo(f"  {key}: {_clean(str(value))}")
        click.echo("  payload:")
        click.echo(_clean(json.dumps(result["event"]["payload"], indent=2, ensure_ascii=False)))
    if result["delivery"] is None:
        return
    click.echo(f"Delivery {result['delivery']['id']}")
    for key, value in result["delivery"].items():
        if key != "id" and value not in (None, []):
            click.echo(f"  {key}: {_clean(str(value))}")
    body = result["body"]
    if body is None:
        click.echo("  (raw body pruned by retention)")
    else:
        click.echo("Body:")
        click.echo(_clean(body if isinstance(body, str) else json.dumps(body, indent=2, ensure_ascii=False)))
    if result["events"]:
        click.echo("Events:")
        for row in result["events"]:
            click.echo(f"  {row['id']}  {row['status']:10} {row['field']:20} {_short(row['natural_key'], 60)}")


@events_group.command("replay")
@click.argument("ref", metavar="ID")
@click.option("--force", is_flag=True, help="Dispatch updates again even when they were already handled.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on the last line.")
def replay_command(ref: str, force: bool, as_json: bool) -> None:
    """Run a stored delivery through processing again (known updates are skipped as duplicates)."""
    from replyflow.webhooks import service

    delivery_id, _ = _resolve(ref)
    if delivery_id < 0:
        raise click.BadParameter("this event came from the reconciler, not from a stored delivery", param_hint="ID")
    result = service.replay_delivery(runtime=_runtime(), delivery_id=delivery_id, force=force)
    summary = {
        "delivery_id": result.delivery_id,
        "status": result.status,
        "reason": result.reason,
        "new_events": result.event_count,
        "duplicates": result.duplicate_count,
        "redispatched": len(result.redispatch_ids),
    }
    if as_json:
        _emit_json(summary)
        return
    click.echo(
        f"Delivery {delivery_id} replayed ({result.status}): {result.event_count} new events, "
        f"{result.duplicate_count} duplicates, {len(result.redispatch_ids)} dispatched again."
    )
    if result.reason:
        click.echo(f"  reason: {_clean(result.reason)}")


@events_group.command("prune")
@click.option(
    "--older-than-days",
    type=click.IntRange(min=0),
    default=None,
    help="Age limit in days (default: REPLYFLOW_INBOX_RETENTION_DAYS).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on the last line.")
def prune_command(older_than_days: int | None, as_json: bool) -> None:
    """Drop the raw bodies of processed deliveries older than the retention period (events are kept)."""
    from replyflow.webhooks import service

    runtime = _runtime()
    days = older_than_days if older_than_days is not None else runtime.settings.inbox_retention_days
    count = service.prune(runtime=runtime, retention_days=days)
    if as_json:
        _emit_json({"pruned": count, "older_than_days": days})
    else:
        click.echo(f"Pruned the raw bodies of {count} deliveries older than {days} days.")


def register(group: click.Group) -> None:
    group.add_command(events_group)
