"""The ``replyflow`` command line: serve, worker, migrate, workspaces and keys, plus each domain's commands."""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import click

from replyflow.config import Settings, get_settings
from replyflow.errors import ConfigurationError, ReplyflowError
from replyflow.logging import configure_logging, register_secrets

# Domains add their own sub-commands through ``register(group)``.
COMMAND_MODULES = (
    "replyflow.accounts.cli",
    "replyflow.webhooks.cli",
    "replyflow.automation.cli",
    "replyflow.sandbox.cli",
    "replyflow.web.cli",
    "replyflow.analytics.cli",
)


def load_settings_or_exit() -> Settings:
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        click.echo(f"replyflow: configuration error: {exc.message}", err=True)
        sys.exit(1)
    configure_logging(level=settings.log_level, json=settings.log_json)
    try:
        register_secrets([*settings.webhook_secrets, settings.verify_token, *settings.secret_keys])
    except ConfigurationError as exc:
        click.echo(f"replyflow: configuration error: {exc.message}", err=True)
        sys.exit(1)
    return settings


def emit_json(payload: dict[str, Any]) -> None:
    """Machine-readable output is always the last line of stdout."""
    click.echo(json.dumps(payload, default=str))


class ReplyflowGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ReplyflowError as exc:
            click.echo(f"replyflow: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"  hint: {exc.hint}", err=True)
            sys.exit(1)


@click.group(cls=ReplyflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="replyflow")
def main() -> None:
    """replyflow: Instagram Comment → DM automation through Meta's official Graph API."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--no-worker", is_flag=True, help="Serve HTTP only; run 'replyflow worker' processes separately.")
def serve(host: str, port: int, no_worker: bool) -> None:
    """Run the web server (and, by default, the worker in the same process)."""
    settings = load_settings_or_exit()
    from replyflow.runtime import Runtime
    from replyflow.server import serve as run_server

    # The app checks the key at start-up too; checking here first turns a wrong key into one clear line.
    check_runtime = Runtime(settings)
    try:
        _verify_keys_or_exit(check_runtime)
    finally:
        check_runtime.close()
    run_server(settings, host=host, port=port, run_worker=not no_worker)


@main.command()
@click.option("--concurrency", default=None, type=click.IntRange(1, 64), help="Worker threads (default from config).")
@click.option(
    "--metrics-port",
    default=None,
    type=click.IntRange(1, 65535),
    help="Expose this worker's own counters (Graph calls, webhook events) on http://127.0.0.1:PORT/metrics.",
)
def worker(concurrency: int | None, metrics_port: int | None) -> None:
    """Run a worker process only (for scale-out); stops cleanly on SIGTERM."""
    settings = load_settings_or_exit()
    from replyflow.db import migrate as run_migrations
    from replyflow.monitoring import metrics
    from replyflow.runtime import Runtime
    from replyflow.worker import run_forever

    if settings.is_sqlite:
        run_migrations(settings.database_url)
    runtime = Runtime(settings)
    _verify_keys_or_exit(runtime)
    metrics.install_graph_observer()
    if metrics_port is not None:
        try:
            metrics.serve_worker_metrics(port=metrics_port)
        except OSError as exc:
            runtime.close()
            click.echo(f"replyflow: cannot serve worker metrics on port {metrics_port}: {exc.strerror}", err=True)
            sys.exit(1)
    try:
        run_forever(runtime, concurrency=concurrency or settings.worker_concurrency)
    finally:
        runtime.close()


@main.command()
def migrate() -> None:
    """Apply database migrations."""
    settings = load_settings_or_exit()
    from replyflow.db import migrate as run_migrations

    run_migrations(settings.database_url)
    click.echo("Database is up to date.")


@main.group()
def workspace() -> None:
    """Workspaces (tenants) and their API keys."""


@workspace.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on the last line.")
def workspace_create(name: str, as_json: bool) -> None:
    """Create a workspace and its first API key (shown once)."""
    from replyflow.workspaces import service

    runtime = _runtime()
    with runtime.session() as session:
        ws, issued = service.create_workspace(session=session, name=name)
        result = {"workspace_id": ws.id, "api_key": issued.secret}
    if as_json:
        emit_json(result)
    else:
        click.echo(f"Workspace {name!r} created: {result['workspace_id']}")
        click.echo(f"API key (shown once, store it now): {result['api_key']}")


@workspace.command("list")
@click.option("--json", "as_json", is_flag=True)
def workspace_list(as_json: bool) -> None:
    """List workspaces."""
    from sqlalchemy import select

    from replyflow.workspaces.models import Workspace

    with _runtime().session() as session:
        rows = [
            {"workspace_id": w.id, "name": w.name, "created_at": w.created_at.isoformat()}
            for w in session.scalars(select(Workspace).order_by(Workspace.created_at))
        ]
    if as_json:
        emit_json({"items": rows})
    else:
        for row in rows:
            click.echo(f"{row['workspace_id']}  {row['name']}")


@workspace.group("keys")
def keys_group() -> None:
    """API keys of a workspace: list, revoke, rotate."""


@keys_group.command("list")
@click.argument("workspace_ref")
@click.option("--json", "as_json", is_flag=True)
def keys_list(workspace_ref: str, as_json: bool) -> None:
    """List a workspace's keys by prefix (the keys themselves are never stored)."""
    from replyflow.workspaces import service

    with _runtime().session() as session:
        ws = service.get_workspace(session=session, ref=workspace_ref)
        rows = [
            {
                "prefix": k.prefix,
                "label": k.label,
                "created_at": k.created_at.isoformat(),
                "revoked": k.revoked_at is not None,
            }
            for k in service.list_keys(session=session, workspace=ws)
        ]
    if as_json:
        emit_json({"items": rows})
    else:
        for row in rows:
            state = "revoked" if row["revoked"] else "active"
            click.echo(f"{row['prefix']}…  {state:8} {row['created_at']}  {row['label'] or ''}")


@keys_group.command("create")
@click.argument("workspace_ref")
@click.option("--label", default=None)
@click.option("--json", "as_json", is_flag=True)
def keys_create(workspace_ref: str, label: str | None, as_json: bool) -> None:
    """Issue another key for a workspace (shown once)."""
    from replyflow.workspaces import service

    with _runtime().session() as session:
        ws = service.get_workspace(session=session, ref=workspace_ref)
        issued = service.issue_key(session=session, workspace=ws, label=label)
        result = {"workspace_id": ws.id, "api_key": issued.secret}
    emit_json(result) if as_json else click.echo(f"New API key (shown once): {result['api_key']}")


@keys_group.command("revoke")
@click.argument("workspace_ref")
@click.argument("prefix")
def keys_revoke(workspace_ref: str, prefix: str) -> None:
    """Revoke the key starting with PREFIX; it stops working at once."""
    from replyflow.workspaces import service

    with _runtime().session() as session:
        ws = service.get_workspace(session=session, ref=workspace_ref)
        key = service.revoke_key(session=session, workspace=ws, prefix=prefix)
        click.echo(f"Revoked {key.prefix}…")


@keys_group.command("rotate")
@click.argument("workspace_ref")
@click.argument("prefix")
@click.option("--json", "as_json", is_flag=True)
def keys_rotate(workspace_ref: str, prefix: str, as_json: bool) -> None:
    """Revoke the key starting with PREFIX and issue its replacement (shown once)."""
    from replyflow.workspaces import service

    with _runtime().session() as session:
        ws = service.get_workspace(session=session, ref=workspace_ref)
        issued = service.rotate_key(session=session, workspace=ws, prefix=prefix)
        result = {"workspace_id": ws.id, "api_key": issued.secret}
    emit_json(result) if as_json else click.echo(f"New API key (shown once): {result['api_key']}")


_RUNTIME: Any = None  # one per CLI invocation


def _runtime() -> Any:
    """A runtime for one CLI command, with the schema migrated on SQLite so a first command just works."""
    global _RUNTIME
    if _RUNTIME is None:
        settings = load_settings_or_exit()
        from replyflow.db import migrate as run_migrations
        from replyflow.runtime import Runtime

        if settings.is_sqlite:
            run_migrations(settings.database_url)
        from replyflow.audit.recorder import COMMAND_LINE, act_as_by_default

        _RUNTIME = Runtime(settings)
        act_as_by_default(_RUNTIME.session_factory, COMMAND_LINE)  # the audit log says "command line"
        _verify_keys_or_exit(_RUNTIME)
    return _RUNTIME


def _verify_keys_or_exit(runtime: Any) -> None:
    """A wrong REPLYFLOW_SECRET_KEY is a clear start-up error, not a crash at the first token used."""
    from replyflow.accounts.crypto import verify_keys

    try:
        verify_keys(runtime)
    except ConfigurationError as exc:
        click.echo(f"replyflow: configuration error: {exc.message}", err=True)
        click.echo(f"  hint: {exc.hint}", err=True)
        sys.exit(1)


def _register_domain_commands() -> None:
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(main)


_register_domain_commands()
