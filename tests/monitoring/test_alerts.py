"""Alerts an operator acts on: dead or expiring tokens, silent webhooks, rules failing in a row, saturated quota."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from replyflow.accounts.crypto import cipher_for
from replyflow.accounts.models import Account, TokenStatus
from replyflow.automation.models import AccountAutomationState, PrivateReplySlot, Rule, Run, RunStatus
from replyflow.config import Quota, Settings
from replyflow.db import Base
from replyflow.ids import new_id
from replyflow.monitoring.alerts import account_alerts
from replyflow.runtime import Runtime
from replyflow.webhooks.models import WebhookEvent
from tests.analytics.seed import Seeded, add_run, seed
from tests.conversations.world import RecordingQueue, production_like_settings

NOW = dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)
QUOTA = Quota(10, 3600)


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    return production_like_settings(make_settings)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime(settings)
    rt.__dict__["queue"] = RecordingQueue()
    Base.metadata.create_all(rt.engine)
    yield rt
    rt.close()


@pytest.fixture
def seeded(settings: Settings, runtime: Runtime) -> Seeded:
    with runtime.session() as session:
        data = seed(session, token=cipher_for(settings).encrypt("EAABwzLixnjYBAFakePageToken0123456789"))
        for account_id in data.accounts.values():  # healthy: webhooks arrive, the token is fine
            account = session.get(Account, account_id)
            assert account is not None
            account.last_webhook_at = NOW - dt.timedelta(minutes=5)
        waiting = session.get(Run, data.runs["r2_waiting"][0])
        assert waiting is not None
        waiting.status = RunStatus.DONE.value  # nothing queued for the quota either
        return data


def _alerts(session: Session, seeded: Seeded, name: str = "a") -> list[tuple[str, str]]:
    account = session.get(Account, seeded.accounts[name])
    assert account is not None
    return [(a.code, a.severity.value) for a in account_alerts(session=session, account=account, quota=QUOTA, now=NOW)]


def _account(session: Session, seeded: Seeded, name: str = "a") -> Account:
    account = session.get(Account, seeded.accounts[name])
    assert account is not None
    return account


def test_a_healthy_account_has_no_alerts(runtime: Runtime, seeded: Seeded) -> None:
    with runtime.session() as session:
        assert _alerts(session, seeded) == []


def test_token_alerts(runtime: Runtime, seeded: Seeded) -> None:
    with runtime.session() as session:
        account = _account(session, seeded)
        account.token_expires_at = NOW + dt.timedelta(days=3)
        assert _alerts(session, seeded) == [("token_expiring", "warning")]
        account.token_expires_at = NOW - dt.timedelta(hours=1)
        assert _alerts(session, seeded) == [("token_invalid", "critical")]
        account.token_expires_at = None
        account.token_status = TokenStatus.INVALID.value
        account.token_status_reason = "The password of the Facebook account was changed."
        (alert,) = account_alerts(session=session, account=account, quota=QUOTA, now=NOW)
        assert alert.code == "token_invalid" and "password" in alert.message and "Reconnect" in alert.hint
        account.token_status = TokenStatus.MISSING_PERMISSIONS.value
        account.missing_permissions = ["instagram_manage_messages"]
        (alert,) = account_alerts(session=session, account=account, quota=QUOTA, now=NOW)
        assert alert.code == "token_missing_permissions" and "instagram_manage_messages" in alert.message


def test_webhook_alerts(runtime: Runtime, seeded: Seeded) -> None:
    with runtime.session() as session:
        account = _account(session, seeded)
        account.webhooks_subscribed = False
        assert _alerts(session, seeded) == [("webhooks_not_subscribed", "warning")]
        account.webhooks_subscribed = True
        account.last_webhook_at = NOW - dt.timedelta(hours=14)
        (alert,) = account_alerts(session=session, account=account, quota=QUOTA, now=NOW)
        assert (alert.code, alert.severity.value, alert.data["silent_hours"]) == ("webhooks_silent", "warning", 14)
        # The reconciler found a comment no webhook delivered: Meta is not sending them.
        session.add(
            WebhookEvent(
                id=new_id("evt"),
                account_id=account.id,
                source="reconciler",
                object="instagram",
                entry_id=account.instagram_id,
                field="comments",
                kind="comment",
                natural_key="comment:1790001",
                dedupe_key=f"{account.id}|comment:1790001",
                payload={},
                status="dispatched",
            )
        )
        session.flush()
        (alert,) = account_alerts(session=session, account=account, quota=QUOTA, now=dt.datetime.now(dt.UTC))
        assert alert.code == "webhooks_not_arriving" and alert.severity.value == "critical"
        assert alert.data["polled_comments"] == 1


def _fail(session: Session, account: Account, rule: Rule, count: int, *, at: dt.datetime, reason: str) -> None:
    for i in range(count):
        run = add_run(
            session, account, day=at.date(), media_id="m1", status=RunStatus.FAILED, rule=rule, reason=reason, offset=i
        )
        run.finished_at = at + dt.timedelta(seconds=i)


def test_a_rule_failing_repeatedly(runtime: Runtime, seeded: Seeded) -> None:
    with runtime.session() as session:
        account = _account(session, seeded)
        rule = session.get(Rule, seeded.rules["r1"])
        assert rule is not None
        _fail(session, account, rule, 4, at=NOW - dt.timedelta(hours=2), reason="permission_denied")
        session.flush()
        assert _alerts(session, seeded) == []
        _fail(session, account, rule, 1, at=NOW - dt.timedelta(hours=1), reason="permission_denied")
        session.flush()
        (alert,) = account_alerts(session=session, account=account, quota=QUOTA, now=NOW)
        assert (alert.code, alert.severity.value, alert.rule_id) == ("rule_failing", "critical", rule.id)
        assert alert.data == {"failures": 5, "reasons": {"permission_denied": 5}}
        assert "Giveaway" in alert.message
        # A success after the failures ends the streak.
        ok = add_run(session, account, day=NOW.date(), media_id="m1", status=RunStatus.DONE, rule=rule, ttd=2)
        ok.finished_at = NOW - dt.timedelta(minutes=30)
        session.flush()
        assert _alerts(session, seeded) == []


def test_quota_and_meta_throttling(runtime: Runtime, seeded: Seeded) -> None:
    with runtime.session() as session:
        account = _account(session, seeded)
        for i in range(9):
            session.add(
                PrivateReplySlot(account_id=account.id, key=f"k{i}", kind="sent", at=NOW - dt.timedelta(minutes=i))
            )
        session.flush()
        (alert,) = account_alerts(session=session, account=account, quota=QUOTA, now=NOW)
        assert alert.code == "quota_saturated" and alert.data["used"] == 9 and alert.data["waiting"] == 0
        add_run(session, account, day=NOW.date(), media_id="m2", status=RunStatus.WAITING_QUOTA)
        session.add(AccountAutomationState(account_id=account.id, throttled_until=NOW + dt.timedelta(minutes=7)))
        session.flush()
        assert _alerts(session, seeded) == [("meta_rate_limited", "warning"), ("quota_saturated", "warning")]
        assert account_alerts(session=session, account=account, quota=QUOTA, now=NOW)[1].data["waiting"] == 1


def test_the_alerts_api(settings: Settings, runtime: Runtime, seeded: Seeded) -> None:
    from replyflow.app import create_app

    with runtime.session() as session:
        _account(session, seeded, "b").token_status = TokenStatus.INVALID.value
    with TestClient(create_app(settings, runtime=runtime)) as client:
        headers = {"Authorization": f"Bearer {seeded.api_key}"}
        body = client.get("/api/alerts", headers=headers).json()
        codes = {(item["account_id"], item["code"], item["severity"]) for item in body["items"]}
        assert (seeded.accounts["b"], "token_invalid", "critical") in codes
        assert all(item["account_id"] != seeded.accounts["c"] for item in body["items"])
        only_b = client.get("/api/alerts", params={"account_id": seeded.accounts["b"]}, headers=headers).json()
        assert {item["account_id"] for item in only_b["items"]} == {seeded.accounts["b"]}
        other = client.get("/api/alerts", params={"account_id": seeded.accounts["c"]}, headers=headers)
        assert other.status_code == 404
        assert client.get("/api/alerts").status_code == 401
