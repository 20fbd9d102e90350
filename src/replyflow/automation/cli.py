"""Operator commands: ``runs list|show|retry`` and ``automation sweep|reconcile`` (look at and nudge the engine)."""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy import select

from replyflow.automation import repository
from replyflow.automation.models import ACTIVE_STATUSES, Run, RunStatus
from replyflow.automation.run_schemas import RunOut
from replyflow.errors import NotFound, ValidationFailed
from replyflow.runtime import Runtime


def _runtime() -> Runtime:
    # Imported late: replyflow.cli imports this module while it is still being loaded.
    from replyflow.cli import _runtime as cli_runtime

    runtime: Runtime = cli_runtime()
    return runtime


def _emit_json(payload: dict[str, Any]) -> None:
    from replyflow.cli import emit_json

    emit_json(payload)


def _load(runtime: Runtime, run_id: str) -> RunOut:
    with runtime.session() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise NotFound(f"No run {run_id}.", hint="List runs with 'replyflow runs list'.")
        return RunOut.of(run, repository.steps_of(session=session, run_ids=[run.id])[run.id])


def register(group: click.Group) -> None:
    @group.group("runs")
    def runs() -> None:
        """Runs: one per comment received, with what replyflow did about it."""

    @runs.command("list")
    @click.option("--account", "account_id", default=None, help="Only this account's runs.")
    @click.option("--status", type=click.Choice([s.value for s in RunStatus]), default=None)
    @click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on the last line.")
    def list_runs(account_id: str | None, status: str | None, limit: int, as_json: bool) -> None:
        """The newest runs."""
        runtime = _runtime()
        with runtime.session() as session:
            query = select(Run).order_by(Run.id.desc()).limit(limit)
            if account_id:
                query = query.where(Run.account_id == account_id)
            if status:
                query = query.where(Run.status == status)
            rows = [
                {
                    "id": r.id,
                    "account_id": r.account_id,
                    "comment_id": r.comment_id,
                    "status": r.status,
                    "reason": r.reason,
                    "rule_id": r.rule_id,
                    "created_at": r.created_at.isoformat(),
                }
                for r in session.scalars(query)
            ]
        if as_json:
            _emit_json({"items": rows})
            return
        for row in rows:
            click.echo(f"{row['id']}  {row['status']:<14} {row['reason'] or '':<28} comment {row['comment_id']}")

    @runs.command("show")
    @click.argument("run_id")
    @click.option("--json", "as_json", is_flag=True)
    def show_run(run_id: str, as_json: bool) -> None:
        """A run with its steps."""
        run = _load(_runtime(), run_id)
        if as_json:
            _emit_json(json.loads(run.model_dump_json()))
            return
        click.echo(f"{run.id}  {run.status}  {run.reason or ''}")
        click.echo(f"  comment {run.comment_id} on {run.media_id} by @{run.username or '?'}: {run.text!r}")
        for step in run.steps:
            extra = f" ({step.reason})" if step.reason else ""
            click.echo(f"  {step.at.isoformat()}  {step.step}{extra}  {step.detail or ''}")

    @runs.command("retry")
    @click.argument("run_id")
    def retry_run(run_id: str) -> None:
        """Ask a worker to look at an active run now (it continues where it stopped; nothing is sent twice)."""
        from replyflow.automation.intake import enqueue_run

        runtime = _runtime()
        run = _load(runtime, run_id)
        if RunStatus(run.status) not in ACTIVE_STATUSES:
            raise ValidationFailed(f"Run {run_id} is {run.status}; only active runs can be nudged.")
        enqueue_run(runtime=runtime, run_id=run_id)
        click.echo(f"Queued {run_id}.")

    @group.group("automation")
    def automation() -> None:
        """The engine's housekeeping, on demand."""

    @automation.command("sweep")
    def sweep() -> None:
        """Re-enqueue runs whose worker died or whose job was lost; resume runs of repaired accounts."""
        from replyflow.automation.engine import engine_for

        click.echo(f"{engine_for(_runtime()).sweep()} run(s) handed to the workers.")

    @automation.command("reconcile")
    @click.argument("account_id")
    @click.option("--json", "as_json", is_flag=True)
    def reconcile(account_id: str, as_json: bool) -> None:
        """Poll one account's targeted posts now for comments whose webhook never arrived."""
        from replyflow.automation.engine import engine_for
        from replyflow.automation.reconcile import Reconciler

        runtime = _runtime()
        report = Reconciler(runtime=runtime, graph=engine_for(runtime).graph).reconcile_account(account_id)
        result = {
            "account_id": report.account_id,
            "calls": report.calls,
            "media_checked": report.media_checked,
            "comments_fed": report.comments_fed,
            "rules_bound": report.rules_bound,
            "complete": report.complete,
            "error": report.error,
        }
        if as_json:
            _emit_json(result)
        else:
            click.echo(
                f"Checked {len(report.media_checked)} post(s) with {report.calls} call(s); "
                f"{report.comments_fed} missed comment(s) fed to the inbox."
            )
