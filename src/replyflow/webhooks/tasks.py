"""Queue jobs of the inbox: process stored deliveries when woken, sweep what was left, prune old raw bodies."""

from __future__ import annotations

from replyflow.queue import job, periodic
from replyflow.runtime import current
from replyflow.webhooks import service


@job(name="webhooks.process_delivery")
def process_delivery(delivery_id: int | None = None) -> None:
    """Process one delivery, or (the API's coalesced wake-up) every pending delivery, oldest first."""
    runtime = current()
    if delivery_id is None:
        service.drain(runtime=runtime)
    else:
        service.process_and_dispatch(runtime=runtime, delivery_id=delivery_id)


@periodic(name="webhooks.sweep", every_minutes=1)
def sweep() -> None:
    """Deliveries still pending (the process died after its 200) and events whose consumer now exists."""
    service.sweep(runtime=current())


@periodic(name="webhooks.prune", every_minutes=60)
def prune() -> None:
    """Retention: drop raw bodies of finished deliveries older than REPLYFLOW_INBOX_RETENTION_DAYS."""
    service.prune(runtime=current())
