"""Operator commands: ``accounts connect|list|check|refresh``, ``keys rotate`` and ``doctor`` (the CLI twin of the
API)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import IO, Any, TypeVar

import click

from replyflow.accounts import repository
from replyflow.accounts.crypto import cipher_for, rotate_all
from replyflow.accounts.doctor import DoctorReport, run_doctor
from replyflow.accounts.health import check_account, record_check_failure
from replyflow.accounts.models import Account
from replyflow.accounts.schemas import AccountOut, ConversionOut
from replyflow.accounts.service import convert_user_token, save_page_token
from replyflow.accounts.tokens import MAX_TOKEN_LENGTH
from replyflow.db import utcnow
from replyflow.errors import ReplyflowError, ValidationFailed
from replyflow.graph.errors import GraphError
from replyflow.graph_access import open_graph
from replyflow.runtime import Runtime

T = TypeVar("T")
_STATUS_MARK = {"ok": "✓", "warning": "!", "error": "✗", "skipped": "-"}


def _runtime() -> Runtime:
    # Imported late: replyflow.cli imports this module while it is still being loaded.
    from replyflow.cli import _runtime as cli_runtime

    runtime: Runtime = cli_runtime()
    return runtime


def _emit_json(payload: dict[str, Any]) -> None:
    from replyflow.cli import emit_json

    emit_json(payload)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _workspace_id(runtime: Runtime, ref: str | None) -> str | None:
    if ref is None:
        return None
    from replyflow.workspaces import service as workspaces

    with runtime.session() as session:
        return workspaces.get_workspace(session=session, ref=ref).id


def _read_token(source: IO[str]) -> str:
    """The token from a file or stdin (never argv, where other users and shell history can see it)."""
    text = source.read(MAX_TOKEN_LENGTH * 2 + 1)
    if len(text) > MAX_TOKEN_LENGTH * 2:
        raise ValidationFailed("The token file is far larger than any access token.", field="user_token_file")
    return text.strip()


def _account_line(account: AccountOut) -> str:
    webhooks = "webhooks on" if account.webhooks_subscribed else "webhooks OFF"
    paused = "  (automation paused)" if account.automation_paused else ""
    return f"{account.id}  @{account.username:<24} {account.token_status:<20} {webhooks}{paused}"


def _print_problems(account: AccountOut) -> None:
    for problem in account.problems:
        click.echo(f"    ✗ {problem.message}")
        click.echo(f"      fix: {problem.hint}")


def register(group: click.Group) -> None:
    group.add_command(accounts)
    group.add_command(keys)
    group.add_command(doctor)


@click.group()
def accounts() -> None:
    """Connected Instagram accounts: connect one from a User token, list them, check and refresh their tokens."""


@accounts.command("connect")
@click.option("--workspace", "workspace_ref", required=True, help="Workspace id or name.")
@click.option(
    "--user-token-file",
    type=click.File("r"),
    required=True,
    help="File holding a Facebook User token, or '-' to read it from stdin (never pass tokens as arguments).",
)
@click.option("--page-id", "page_ids", multiple=True, help="Connect this Page (repeatable).")
@click.option("--all-ready", is_flag=True, help="Connect every Page that is ready (Instagram linked, permissions).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on the last line.")
def connect(
    workspace_ref: str, user_token_file: IO[str], page_ids: tuple[str, ...], all_ready: bool, as_json: bool
) -> None:
    """Convert a User token to its Pages and connect the chosen ones (interactively unless told which)."""
    token = _read_token(user_token_file)
    interactive = not page_ids and not all_ready
    if interactive and getattr(user_token_file, "name", "") in ("<stdin>", "-"):
        raise click.UsageError("with the token on stdin, choose Pages with --page-id or --all-ready")
    runtime = _runtime()
    workspace_id = _workspace_id(runtime, workspace_ref)
    assert workspace_id is not None
    result = _run(_connect(runtime, workspace_id, token, page_ids, all_ready, interactive, as_json))
    if as_json:
        _emit_json(result)


async def _connect(
    runtime: Runtime,
    workspace_id: str,
    token: str,
    page_ids: tuple[str, ...],
    all_ready: bool,
    interactive: bool,
    as_json: bool,
) -> dict[str, Any]:
    settings = runtime.settings
    cipher = cipher_for(settings)
    async with open_graph(settings) as graph:
        with runtime.session() as session:
            conversion = ConversionOut.of(
                await convert_user_token(
                    session=session,
                    graph=graph,
                    cipher=cipher,
                    settings=settings,
                    workspace_id=workspace_id,
                    user_access_token=token,
                    source="cli",
                )
            )
        del token
        if not as_json:
            _show_conversion(conversion)
        known = {p.page_id for p in conversion.pages}
        if interactive:
            chosen = _pick_pages(conversion)
        elif all_ready:
            chosen = [p.page_id for p in conversion.pages if p.ready]
        else:
            unknown = [p for p in page_ids if p not in known]
            if unknown:
                raise ValidationFailed(
                    f"Page {unknown[0]} is not among the Pages this token manages.",
                    field="page_id",
                    hint="Pick one of the page ids listed above.",
                )
            chosen = list(page_ids)
        if not chosen:
            raise ValidationFailed(
                "No Page to connect.", hint="Fix the problems listed for the Pages, then run the command again."
            )
        saved: list[dict[str, Any]] = []
        for page_id in chosen:
            with runtime.session() as session:
                result = await save_page_token(
                    session=session,
                    graph=graph,
                    cipher=cipher,
                    settings=settings,
                    workspace_id=workspace_id,
                    conversion_id=conversion.conversion_id,
                    page_id=page_id,
                )
                from replyflow.automation.intake import resume_paused_runs

                resume_paused_runs(session=session, account_id=result.account.id, runtime=runtime)
                account = AccountOut.of(result.account)
            saved.append({"created": result.created, "account": account.model_dump(mode="json")})
            if not as_json:
                verb = "Connected" if result.created else "Updated"
                click.echo(f"{verb}: {_account_line(account)}")
                _print_problems(account)
    return {"conversion_id": conversion.conversion_id, "accounts": saved}


def _show_conversion(conversion: ConversionOut) -> None:
    expiry = "never expires" if conversion.expires_at is None else f"valid until {conversion.expires_at:%d %b %Y}"
    click.echo(f"{conversion.type} token, {expiry}.")
    if conversion.missing_permissions:
        click.echo(f"Missing permissions: {', '.join(conversion.missing_permissions)}")
    for warning in conversion.warnings:
        click.echo(f"! {warning}")
    for index, page in enumerate(conversion.pages, start=1):
        ig = f"@{page.instagram.username}" if page.instagram and page.instagram.username else "no Instagram"
        state = "ready" if page.ready else "not ready"
        click.echo(f"[{index}] {page.name or page.page_id} ({page.page_id}) · {ig} · {state}")
        for problem in page.problem_details:
            click.echo(f"      ✗ {problem.message}")
            click.echo(f"        fix: {problem.hint}")


def _pick_pages(conversion: ConversionOut) -> list[str]:
    if not conversion.pages:
        return []
    answer = click.prompt("Pages to connect (numbers, comma-separated)", default="1")
    chosen: list[str] = []
    for part in str(answer).split(","):
        part = part.strip()
        if not part.isdigit() or not 1 <= int(part) <= len(conversion.pages):
            raise click.BadParameter(f"{part!r} is not one of the numbers listed")
        chosen.append(conversion.pages[int(part) - 1].page_id)
    return list(dict.fromkeys(chosen))


@accounts.command("list")
@click.option("--workspace", "workspace_ref", default=None, help="Only this workspace (id or name).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on the last line.")
def list_command(workspace_ref: str | None, as_json: bool) -> None:
    """List connected accounts with their token health."""
    runtime = _runtime()
    workspace_id = _workspace_id(runtime, workspace_ref)
    with runtime.session() as session:
        rows = [AccountOut.of(a) for a in repository.list_accounts(session=session, workspace_id=workspace_id)]
    if as_json:
        _emit_json({"items": [r.model_dump(mode="json") for r in rows]})
        return
    if not rows:
        click.echo("No connected accounts.")
    for row in rows:
        click.echo(_account_line(row))
        if row.token_status_reason:
            click.echo(f"    {row.token_status_reason}")


@accounts.command("check")
@click.option("--workspace", "workspace_ref", default=None, help="Only this workspace (id or name).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on the last line.")
def check_command(workspace_ref: str | None, as_json: bool) -> None:
    """Re-validate every account's token with Meta now (re-subscribing Pages Meta dropped).

    Exits 1 when an account needs attention (invalid token, missing permissions, or Meta did not answer).
    """
    runtime = _runtime()
    workspace_id = _workspace_id(runtime, workspace_ref)
    rows, failures = _run(_check_all(runtime, workspace_id))
    if as_json:
        _emit_json({"items": [r.model_dump(mode="json") for r in rows], "failed": failures})
    else:
        if not rows:
            click.echo("No connected accounts.")
        for row in rows:
            click.echo(_account_line(row))
            if row.id in failures:
                click.echo(f"    ✗ not checked: {failures[row.id]}")
            _print_problems(row)
    if failures or any(r.reauthorization_required for r in rows):
        sys.exit(1)


async def _check_all(runtime: Runtime, workspace_id: str | None) -> tuple[list[AccountOut], dict[str, str]]:
    settings = runtime.settings
    cipher = cipher_for(settings)
    rows: list[AccountOut] = []
    failures: dict[str, str] = {}
    with runtime.session() as session:
        account_ids = [a.id for a in repository.list_accounts(session=session, workspace_id=workspace_id)]
    async with open_graph(settings) as graph:
        for account_id in account_ids:
            with runtime.session() as session:
                account = session.get(Account, account_id)
                if account is None:
                    continue
                try:
                    await check_account(
                        session=session, account=account, graph=graph, cipher=cipher, app_id=settings.app_id
                    )
                except (GraphError, ReplyflowError) as exc:
                    record_check_failure(account, exc, now=utcnow())
                    failures[account_id] = exc.message
                rows.append(AccountOut.of(account))
    return rows, failures


@accounts.command("refresh")
@click.option("--workspace", "workspace_ref", default=None, help="Only this workspace (id or name).")
@click.option("--account", "account_id", default=None, help="Only this account (refreshed even if not due).")
@click.option("--all", "refresh_all", is_flag=True, help="Refresh every Instagram Login token, due or not.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on the last line.")
def refresh_command(workspace_ref: str | None, account_id: str | None, refresh_all: bool, as_json: bool) -> None:
    """Refresh Instagram Login tokens now (the hourly job does this by itself for tokens due within 10 days).

    Without options: every due token. Facebook Login accounts are skipped: their Page tokens do not expire.
    Exits 1 when a refresh failed.
    """
    from replyflow.accounts.refresh import (
        due_account_ids,
        instagram_account_ids,
        refresh_account,
    )

    runtime = _runtime()
    workspace_id = _workspace_id(runtime, workspace_ref)
    now = utcnow()
    force = refresh_all or account_id is not None
    if account_id is not None:
        ids = [account_id]
    elif refresh_all:
        ids = instagram_account_ids(runtime=runtime, workspace_id=workspace_id)
    else:
        due = set(due_account_ids(runtime=runtime, now=now))
        ids = [i for i in instagram_account_ids(runtime=runtime, workspace_id=workspace_id) if i in due]
    results = [refresh_account(runtime=runtime, account_id=i, now=now, force=force) for i in ids]
    failed = [r for r in results if r.outcome in ("failed", "invalid")]
    if as_json:
        _emit_json({"items": [r.as_dict() for r in results], "failed": len(failed)})
    else:
        if not results:
            click.echo("No Instagram Login token is due for a refresh.")
        marks = {"refreshed": "✓", "failed": "✗", "invalid": "✗"}
        for result in results:
            click.echo(f"{marks.get(result.outcome, '-')} {result.account_id}  {result.message}")
    if failed:
        sys.exit(1)


@click.group()
def keys() -> None:
    """The keys that encrypt stored tokens (REPLYFLOW_SECRET_KEY)."""


@keys.command("rotate")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON on the last line.")
def rotate_command(as_json: bool) -> None:
    """Re-encrypt every stored token under the first key of REPLYFLOW_SECRET_KEY.

    To change keys: put the new key first and keep the old one after it (comma-separated), restart, run this,
    then remove the old key.
    """
    runtime = _runtime()
    with runtime.session() as session:
        report = rotate_all(session=session, cipher=cipher_for(runtime.settings))
    counts = {
        "accounts": report.accounts,
        "conversions": report.conversions,
        "already_current": report.already_current,
        "keys_configured": cipher_for(runtime.settings).key_count,
    }
    if as_json:
        _emit_json(counts)
    else:
        click.echo(
            f"Re-encrypted {report.accounts} account token(s) and {report.conversions} pending conversion(s) "
            f"under the first key ({report.already_current} were already under it)."
        )
        if counts["keys_configured"] > 1:
            click.echo("Every token now opens with the first key; the older keys can be removed.")


@click.command()
@click.option("--workspace", "workspace_ref", default=None, help="Only this workspace's accounts (id or name).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on the last line.")
def doctor(workspace_ref: str | None, as_json: bool) -> None:
    """Check the whole chain against the Graph API and print each problem with its fix (exit 1 on errors)."""
    runtime = _runtime()
    workspace_id = _workspace_id(runtime, workspace_ref)
    report = _run(_doctor(runtime, workspace_id))
    if as_json:
        _emit_json({"ok": report.ok, "sandbox": report.sandbox, "checks": [c.as_dict() for c in report.checks]})
    else:
        for check in report.checks:
            click.echo(f"{_STATUS_MARK[check.status]} {check.title}: {check.message}")
            if check.hint and check.status in ("warning", "error"):
                click.echo(f"    fix: {check.hint}")
        errors = sum(1 for c in report.checks if c.status == "error")
        warnings = sum(1 for c in report.checks if c.status == "warning")
        click.echo("All good." if report.ok and not warnings else f"{errors} error(s), {warnings} warning(s).")
    if not report.ok:
        sys.exit(1)


async def _doctor(runtime: Runtime, workspace_id: str | None) -> DoctorReport:
    settings = runtime.settings
    async with open_graph(settings) as graph:
        with runtime.session() as session:
            return await run_doctor(
                session=session, graph=graph, cipher=cipher_for(settings), settings=settings, workspace_id=workspace_id
            )
