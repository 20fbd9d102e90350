"""Queue jobs of analytics: keep the rollup current, and re-check it slice by slice."""

from __future__ import annotations

import time

from replyflow.analytics import rollup
from replyflow.queue import periodic
from replyflow.runtime import current

REFRESH_BUDGET_SECONDS = 40.0


@periodic(name="analytics.refresh", every_minutes=1)
def refresh() -> None:
    """Fold changed runs into the rollup (in batches, so a backlog after an upgrade drains over a few minutes)."""
    runtime = current()
    deadline = time.monotonic() + REFRESH_BUDGET_SECONDS
    while time.monotonic() < deadline:
        with runtime.session() as session:
            result = rollup.refresh(session=session)
        if result.complete:
            return


@periodic(name="analytics.verify", every_minutes=10)
def verify() -> None:
    """Recount one slice of runs; a whole million takes a few hours to go round, at a few seconds a slice."""
    with current().session() as session:
        rollup.verify(session=session)
