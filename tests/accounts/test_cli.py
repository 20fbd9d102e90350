"""The operator commands, run in-process against the emulator: accounts connect/list/check, keys rotate, doctor."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from tests.accounts.conftest import (
    APP_ID,
    APP_SECRET,
    SANDBOX_HOST,
    SECRET_KEY,
    VERIFY_TOKEN,
    RecordingTransport,
    all_tokens_of,
    user_token,
)

import replyflow.cli
from replyflow.config import Settings, get_settings
from replyflow.graph_access import set_default_transport
from replyflow.runtime import Runtime
from replyflow.sandbox import SandboxState
from replyflow.sandbox.models import DemoWorld
from replyflow.workspaces import service as workspaces

Invoke = Callable[..., Result]


@pytest.fixture
def workspace_name(runtime: Runtime) -> str:
    with runtime.session() as session:
        workspaces.create_workspace(session=session, name="Roastery")
    return "Roastery"


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    runtime: Runtime,
    data_dir: Path,
    graph_transport: RecordingTransport,
) -> Iterator[Invoke]:
    env = {
        "REPLYFLOW_DATABASE_URL": settings.database_url,
        "REPLYFLOW_DATA_DIR": str(data_dir),
        "REPLYFLOW_META_APP_ID": APP_ID,
        "REPLYFLOW_META_APP_SECRET": APP_SECRET,
        "REPLYFLOW_SECRET_KEY": SECRET_KEY,
        "REPLYFLOW_WEBHOOK_VERIFY_TOKEN": VERIFY_TOKEN,
        "REPLYFLOW_GRAPH_API_URL": f"{SANDBOX_HOST}/graph",
        "REPLYFLOW_OAUTH_DIALOG_URL": SANDBOX_HOST,
        "REPLYFLOW_INSTAGRAM_API_URL": f"{SANDBOX_HOST}/instagram",
        "REPLYFLOW_PUBLIC_URL": "http://testserver",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The schema comes from create_all (the runtime fixture); logging stays as the test session set it up.
    monkeypatch.setattr("replyflow.db.migrate", lambda _url: None)
    monkeypatch.setattr("replyflow.cli.configure_logging", lambda **_kw: None)
    set_default_transport(lambda: graph_transport)

    def invoke(*args: str, input: str | None = None) -> Result:
        monkeypatch.setattr(replyflow.cli, "_RUNTIME", None)
        get_settings.cache_clear()  # each command reads the environment afresh, like a new process
        result = CliRunner().invoke(replyflow.cli.main, list(args), input=input, catch_exceptions=False)
        if replyflow.cli._RUNTIME is not None:
            replyflow.cli._RUNTIME.close()
        return result

    try:
        yield invoke
    finally:
        set_default_transport(None)
        get_settings.cache_clear()


def _last_json(result: Result) -> Any:
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_connect_from_a_file_with_all_ready(
    cli: Invoke, workspace_name: str, sandbox: SandboxState, demo: DemoWorld, tmp_path: Path
) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text(user_token(sandbox, demo) + "\n")

    result = cli("accounts", "connect", "--workspace", workspace_name, "--user-token-file", str(token_file),
                 "--all-ready", "--json")  # fmt: skip

    assert result.exit_code == 0, result.output
    body = _last_json(result)
    [saved] = body["accounts"]
    assert saved["created"] is True and saved["account"]["username"] == demo.username
    for token in all_tokens_of(sandbox):
        assert token not in result.output

    listed = cli("accounts", "list", "--workspace", workspace_name, "--json")
    assert [a["page_id"] for a in _last_json(listed)["items"]] == [demo.page_id]
    human = cli("accounts", "list")
    assert f"@{demo.username}" in human.output and "valid" in human.output


def test_connect_from_stdin_with_page_id_and_human_output(
    cli: Invoke, workspace_name: str, sandbox: SandboxState, demo: DemoWorld
) -> None:
    result = cli(
        "accounts", "connect", "--workspace", workspace_name, "--user-token-file", "-", "--page-id", demo.page_id,
        input=user_token(sandbox, demo),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Demo Roastery" in result.output and "ready" in result.output
    assert "Sunday Bakes Club" in result.output and "no Instagram professional account linked" in result.output
    assert "Connected: acc_" in result.output


def test_token_on_stdin_needs_a_page_choice(cli: Invoke, workspace_name: str) -> None:
    result = cli("accounts", "connect", "--workspace", workspace_name, "--user-token-file", "-", input="EAAB")
    assert result.exit_code == 2
    assert "--page-id or --all-ready" in result.output


def test_interactive_pick(
    cli: Invoke, workspace_name: str, sandbox: SandboxState, demo: DemoWorld, tmp_path: Path
) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text(user_token(sandbox, demo))
    result = cli(
        "accounts", "connect", "--workspace", workspace_name, "--user-token-file", str(token_file), input="1\n"
    )
    assert result.exit_code == 0, result.output
    assert "Connected:" in result.output


def test_connect_refuses_a_page_the_token_does_not_manage(
    cli: Invoke, workspace_name: str, sandbox: SandboxState, demo: DemoWorld, tmp_path: Path
) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text(user_token(sandbox, demo))
    result = cli("accounts", "connect", "--workspace", workspace_name, "--user-token-file", str(token_file),
                 "--page-id", "424242")  # fmt: skip
    assert result.exit_code == 1
    assert "not among the Pages" in result.output


def test_connect_with_garbage_says_what_is_wrong(cli: Invoke, workspace_name: str, tmp_path: Path) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text("https://developers.facebook.com/tools/explorer/")
    result = cli("accounts", "connect", "--workspace", workspace_name, "--user-token-file", str(token_file),
                 "--all-ready")  # fmt: skip
    assert result.exit_code == 1
    assert "web address" in result.output and "hint:" in result.output


def test_check_reports_a_dead_token_and_exits_1(
    cli: Invoke, workspace_name: str, sandbox: SandboxState, demo: DemoWorld, tmp_path: Path
) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text(user_token(sandbox, demo))
    assert cli("accounts", "connect", "--workspace", workspace_name, "--user-token-file", str(token_file),
               "--all-ready").exit_code == 0  # fmt: skip
    healthy = cli("accounts", "check", "--json")
    assert healthy.exit_code == 0 and _last_json(healthy)["items"][0]["token_status"] == "valid"

    sandbox.invalidate_user_sessions(demo.user_id, reason="password_changed")
    result = cli("accounts", "check")
    assert result.exit_code == 1
    assert "invalid" in result.output and "fix: Reconnect" in result.output


def test_doctor_prints_each_problem_with_its_fix(
    cli: Invoke, workspace_name: str, sandbox: SandboxState, demo: DemoWorld, tmp_path: Path
) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text(user_token(sandbox, demo))
    cli("accounts", "connect", "--workspace", workspace_name, "--user-token-file", str(token_file), "--all-ready")

    result = cli("doctor")
    # http://testserver is not https: Meta would not deliver webhooks there.
    assert result.exit_code == 1
    assert "✗ Public URL" in result.output and "fix: Put replyflow behind HTTPS" in result.output
    assert "✓ App credentials" in result.output
    assert f"✓ @{demo.username}: token" in result.output

    report = _last_json(cli("doctor", "--json"))
    assert report["ok"] is False
    statuses = {c["id"]: c["status"] for c in report["checks"] if c["account_id"] is None}
    assert statuses["app.credentials"] == "ok" and statuses["app.webhooks"] == "ok"


def test_keys_rotate_counts_what_it_re_encrypted(
    cli: Invoke, workspace_name: str, sandbox: SandboxState, demo: DemoWorld, tmp_path: Path, monkeypatch: Any
) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text(user_token(sandbox, demo))
    cli("accounts", "connect", "--workspace", workspace_name, "--user-token-file", str(token_file), "--all-ready")

    new_key = "a-brand-new-key-for-rotation-000000000000"
    monkeypatch.setenv("REPLYFLOW_SECRET_KEY", f"{new_key},{SECRET_KEY}")
    result = cli("keys", "rotate", "--json")
    assert result.exit_code == 0, result.output
    counts = _last_json(result)
    assert counts["accounts"] == 1 and counts["conversions"] == 1 and counts["keys_configured"] == 2

    monkeypatch.setenv("REPLYFLOW_SECRET_KEY", new_key)
    assert cli("accounts", "check").exit_code == 0, "the old key is no longer needed"

    monkeypatch.setenv("REPLYFLOW_SECRET_KEY", SECRET_KEY)
    refused = cli("accounts", "list")
    assert refused.exit_code == 1
    assert "REPLYFLOW_SECRET_KEY does not decrypt the tokens stored in this database" in refused.output
    assert SECRET_KEY not in refused.output and new_key not in refused.output


def test_accounts_refresh_renews_due_instagram_tokens_and_fails_loudly(
    cli: Invoke, runtime: Runtime, settings: Settings, workspace_name: str, sandbox: SandboxState, demo: DemoWorld
) -> None:
    import datetime as dt

    from replyflow.accounts.crypto import cipher_for
    from replyflow.accounts.models import Account
    from replyflow.db import utcnow

    assert demo.instagram_login_account_id is not None
    token = sandbox.issue_instagram_token(demo.instagram_login_account_id, long_lived=True)
    sandbox.clock.advance(days=55)  # Meta's side: the token is 55 days old, refreshable
    now = utcnow()
    with runtime.session() as session:
        ws = workspaces.get_workspace(session=session, ref=workspace_name)
        account = Account(
            workspace_id=ws.id,
            login="instagram",
            page_id=None,
            instagram_id=demo.instagram_login_account_id,
            username="lina.ceramics",
            token_type="INSTAGRAM",
            token_ciphertext=cipher_for(settings).encrypt(token),
            token_issued_at=now - dt.timedelta(days=55),
            token_expires_at=now + dt.timedelta(days=5),
        )
        session.add(account)
        session.flush()
        account_id = account.id

    refreshed = cli("accounts", "refresh", "--json")

    assert refreshed.exit_code == 0, refreshed.output
    [item] = _last_json(refreshed)["items"]
    assert (item["account_id"], item["outcome"]) == (account_id, "refreshed")
    assert token not in refreshed.output
    again = cli("accounts", "refresh")
    assert again.exit_code == 0 and "No Instagram Login token is due" in again.output

    # Forced right after a refresh: Meta only refreshes tokens at least 24 hours old, so nothing is sent.
    young = cli("accounts", "refresh", "--account", account_id)
    assert young.exit_code == 0 and "24 hours old" in young.output

    # A refusal: the account is marked, the command says why and exits 1.
    with runtime.session() as session:
        stored = session.get(Account, account_id)
        assert stored is not None
        stored.token_issued_at = utcnow() - dt.timedelta(days=3)
    for value in [t.value for t in sandbox.world.tokens.values() if t.kind == "INSTAGRAM"]:
        sandbox.invalidate_token(value, reason="app_deauthorized")
    refused = cli("accounts", "refresh", "--account", account_id)
    assert refused.exit_code == 1
    assert "Instagram refused to refresh the token" in refused.output
