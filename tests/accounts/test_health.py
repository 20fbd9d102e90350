"""Token health: the verdict rules, marking an account after a 190, and the re-validation jobs against the emulator."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from tests.accounts.conftest import APP_ID, RecordingTransport, connect, user_token

from replyflow.accounts.health import judge_token, mark_token_invalid
from replyflow.accounts.models import Account, TokenStatus
from replyflow.accounts.permissions import REQUIRED_SCOPES
from replyflow.accounts.tasks import (
    CHECK_JOB,
    REVALIDATE_JOB,
    check_account_now,
    request_check,
    revalidate_due_accounts,
)
from replyflow.config import Settings
from replyflow.graph.errors import TokenInvalidReason
from replyflow.graph.runner import GraphRunner, shutdown_runner
from replyflow.graph.types import TokenInfo
from replyflow.graph_access import set_default_transport
from replyflow.runtime import Runtime, set_current
from replyflow.sandbox import SandboxState
from replyflow.sandbox.models import DemoWorld

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
PAGE = "102938475610293"
IG = "17841400000000001"


def _info(**overrides: Any) -> TokenInfo:
    data: dict[str, Any] = {
        "app_id": APP_ID,
        "type": "PAGE",
        "is_valid": True,
        "expires_at": 0,
        "profile_id": PAGE,
        "scopes": list(REQUIRED_SCOPES),
        "granular_scopes": [{"scope": "instagram_manage_messages", "target_ids": [IG]}],
    }
    data.update(overrides)
    return TokenInfo.model_validate(data)


def _judge(info: TokenInfo) -> Any:
    return judge_token(info, app_id=APP_ID, page_id=PAGE, instagram_id=IG, now=NOW)


def test_valid_token_that_never_expires() -> None:
    verdict = _judge(_info())
    assert verdict.status is TokenStatus.VALID and verdict.reason is None and not verdict.reauthorization_required


def test_expiring_within_seven_days_warns_without_pausing() -> None:
    verdict = _judge(_info(expires_at=int((NOW + dt.timedelta(days=3)).timestamp())))
    assert verdict.status is TokenStatus.EXPIRING
    assert "expires on 02 Dec 2026" in (verdict.reason or "")
    assert not verdict.reauthorization_required
    later = _judge(_info(expires_at=int((NOW + dt.timedelta(days=30)).timestamp())))
    assert later.status is TokenStatus.VALID


def test_data_access_ending_soon_warns() -> None:
    verdict = _judge(_info(data_access_expires_at=int((NOW + dt.timedelta(days=2)).timestamp())))
    assert verdict.status is TokenStatus.EXPIRING and "data access" in (verdict.reason or "")


def test_missing_permission_pauses_with_the_reason() -> None:
    scopes = [s for s in REQUIRED_SCOPES if s != "instagram_manage_messages"]
    verdict = _judge(_info(scopes=scopes, granular_scopes=[]))
    assert verdict.status is TokenStatus.MISSING_PERMISSIONS
    assert verdict.missing == ["instagram_manage_messages"]
    assert "private reply" in (verdict.reason or "")
    assert verdict.reauthorization_required


def test_permission_granted_for_another_instagram_account_does_not_count() -> None:
    other = [{"scope": "instagram_manage_messages", "target_ids": ["17841499999999999"]}]
    verdict = _judge(_info(granular_scopes=other))
    assert verdict.missing == ["instagram_manage_messages"]


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"is_valid": False, "error": {"code": 190, "subcode": 460}}, "password was changed"),
        ({"is_valid": False, "error": {"code": 190, "subcode": 458}}, "app was removed"),
        ({"is_valid": False, "expires_at": int((NOW - dt.timedelta(hours=1)).timestamp())}, "expired"),
        ({"app_id": "999999999999999"}, "different Meta app"),
        ({"type": "USER"}, "not a Page token"),
        ({"profile_id": "1234"}, "different Page"),
    ],
)
def test_invalid_tokens_pause_with_a_plain_reason(overrides: dict[str, Any], words: str) -> None:
    verdict = _judge(_info(**overrides))
    assert verdict.status is TokenStatus.INVALID
    assert words in (verdict.reason or "")
    assert verdict.reauthorization_required


def _connected_account(client: TestClient, headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld) -> str:
    account_id: str = connect(client, headers, user_token(sandbox, demo), page_id=demo.page_id).account["id"]
    return account_id


def test_mark_token_invalid_pauses_automation(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld, runtime: Runtime
) -> None:
    account_id = _connected_account(client, auth_headers, sandbox, demo)
    with runtime.session() as session:
        account = session.get(Account, account_id)
        assert account is not None
        mark_token_invalid(session=session, account=account, reason=TokenInvalidReason.PASSWORD_CHANGED)
    shown = client.get(f"/api/accounts/{account_id}", headers=auth_headers).json()
    assert shown["token_status"] == "invalid" and shown["automation_paused"] is True
    assert "password was changed" in shown["token_status_reason"]


def test_a_spurious_190_is_cleared_by_the_immediate_check(
    client: TestClient,
    auth_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
    runtime: Runtime,
    runner: GraphRunner,
) -> None:
    account_id = _connected_account(client, auth_headers, sandbox, demo)
    with runtime.session() as session:
        account = session.get(Account, account_id)
        assert account is not None
        mark_token_invalid(session=session, account=account, reason="Meta answered 190.")

    verdict = check_account_now(runtime=runtime, account_id=account_id, run=runner.run_sync)

    assert verdict is not None and verdict.status is TokenStatus.VALID
    assert client.get(f"/api/accounts/{account_id}", headers=auth_headers).json()["automation_paused"] is False


def test_periodic_revalidation_checks_due_accounts_only(
    client: TestClient,
    auth_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
    runtime: Runtime,
    runner: GraphRunner,
    graph_transport: RecordingTransport,
) -> None:
    account_id = _connected_account(client, auth_headers, sandbox, demo)
    sandbox.invalidate_user_sessions(demo.user_id, reason="password_changed")

    graph_transport.paths.clear()
    fresh = revalidate_due_accounts(runtime=runtime, run=runner.run_sync)
    assert fresh.checked == 0 and graph_transport.paths == [], "checked at connect time, not due yet"

    with runtime.session() as session:
        session.execute(update(Account).values(token_checked_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2)))
    summary = revalidate_due_accounts(runtime=runtime, run=runner.run_sync)

    assert summary.checked == 1 and summary.failed == 0
    shown = client.get(f"/api/accounts/{account_id}", headers=auth_headers).json()
    assert shown["token_status"] == "invalid" and shown["reauthorization_required"] is True


def test_revalidation_survives_meta_being_down(
    client: TestClient,
    auth_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
    runtime: Runtime,
    runner: GraphRunner,
) -> None:
    account_id = _connected_account(client, auth_headers, sandbox, demo)
    with runtime.session() as session:
        session.execute(update(Account).values(token_checked_at=None))
    sandbox.inject_failure("/debug_token", kind="transient", times=None)

    summary = revalidate_due_accounts(runtime=runtime, run=runner.run_sync)

    assert summary.failed == 1
    shown = client.get(f"/api/accounts/{account_id}", headers=auth_headers).json()
    assert shown["token_status"] == "valid", "no verdict without an answer"
    assert shown["health"]["last_check_error"]


def test_jobs_are_registered_and_request_check_runs_the_check(
    client: TestClient,
    auth_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
    runtime: Runtime,
    settings: Settings,
    graph_transport: RecordingTransport,
) -> None:
    from replyflow.queue import build_queue

    account_id = _connected_account(client, auth_headers, sandbox, demo)
    sandbox.invalidate_user_sessions(demo.user_id, reason="logged_out")
    queue = build_queue(settings, immediate=True)
    assert {CHECK_JOB, REVALIDATE_JOB} <= set(queue._tasks)
    set_current(runtime)
    set_default_transport(lambda: graph_transport)
    try:
        request_check(queue=queue, account_id=account_id)
    finally:
        set_default_transport(None)
        shutdown_runner()
        set_current(None)
    assert client.get(f"/api/accounts/{account_id}", headers=auth_headers).json()["token_status"] == "invalid"
