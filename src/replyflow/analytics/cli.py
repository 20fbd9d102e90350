"""``replyflow analytics …``: bring the analytics rollup up to date, or count everything again from the runs."""

from __future__ import annotations

import click

from replyflow.analytics import rollup


def register(group: click.Group) -> None:
    @group.group("analytics")
    def analytics() -> None:
        """The analytics rollup behind GET /api/analytics."""

    @analytics.command("refresh")
    def refresh() -> None:
        """Fold every run changed since the last refresh into the rollup (the worker does this every minute)."""
        from replyflow.cli import _runtime

        examined = changed = 0
        while True:
            with _runtime().session() as session:
                result = rollup.refresh(session=session)
            examined += result.examined
            changed += result.changed
            if result.complete:
                break
        click.echo(f"Looked at {examined} changed runs; {changed} counted differently.")

    @analytics.command("rebuild")
    @click.option("--account", "account_id", default=None, help="Only this account (its id); default: everything.")
    def rebuild(account_id: str | None) -> None:
        """Count every run again from scratch (after restoring a backup, or if numbers ever look wrong)."""
        from replyflow.cli import _runtime

        with _runtime().session() as session:
            counted = rollup.rebuild(session=session, account_id=account_id)
        click.echo(f"Counted {counted} runs.")
