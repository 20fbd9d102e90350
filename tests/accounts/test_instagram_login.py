"""Instagram Login (no Facebook Page) against the emulator's graph.instagram.com: save, Connect with Instagram,
re-connecting through the other login, refresh (due, not due, failing) and no token in plain text anywhere."""

from __future__ import annotations

import datetime as dt
import html
import io
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.accounts.conftest import (
    APP_SECRET,
    SECRET_KEY,
    RecordingTransport,
    all_tokens_of,
    connect,
    error_of,
    hidden_inputs,
    user_token,
)

from replyflow.accounts.models import Account
from replyflow.accounts.refresh import refresh_account, refresh_due_tokens
from replyflow.config import Settings
from replyflow.db import utcnow
from replyflow.graph.runner import GraphRunner
from replyflow.monitoring.alerts import account_alerts
from replyflow.runtime import Runtime
from replyflow.sandbox import SandboxState
from replyflow.sandbox.models import DemoWorld

SAVE = "/api/instagram/save-instagram-token"


def _save(client: TestClient, headers: dict[str, str], token: str) -> Any:
    return client.post(SAVE, json={"instagram_access_token": token}, headers=headers)


def _stored(runtime: Runtime, account_id: str) -> Account:
    with runtime.session() as session:
        account = session.get(Account, account_id)
        assert account is not None
        session.expunge(account)
        return account


def _alerts(runtime: Runtime, settings: Settings, account_id: str) -> list[Any]:
    with runtime.session() as session:
        account = session.get(Account, account_id)
        assert account is not None
        return account_alerts(session=session, account=account, quota=settings.private_reply_quota)


def test_a_short_lived_instagram_token_connects_an_account_without_a_page(
    client: TestClient,
    auth_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
    runtime: Runtime,
    graph_transport: RecordingTransport,
) -> None:
    assert demo.instagram_login_account_id is not None
    short = sandbox.issue_instagram_token(demo.instagram_login_account_id)

    response = _save(client, auth_headers, short)

    assert response.status_code == 201, response.text
    account = response.json()["account"]
    assert account["login"] == "instagram" and account["page_id"] is None
    assert account["instagram_id"] == demo.instagram_login_account_id
    assert account["username"] == demo.instagram_login_username
    assert account["token_status"] == "valid" and account["webhooks_subscribed"] is True
    expires = dt.datetime.fromisoformat(account["expires_at"])
    assert dt.timedelta(days=59) < expires - utcnow() <= dt.timedelta(days=60, minutes=1)
    assert short not in response.text
    # Validated and exchanged on the Instagram host, webhooks subscribed with /me/subscribed_apps; no Facebook call.
    assert graph_transport.paths == [
        "GET /instagram/v25.0/me",
        "GET /instagram/access_token",
        "POST /instagram/v25.0/me/subscribed_apps",
    ]
    ig = sandbox.get_ig_account(demo.instagram_login_account_id)
    assert ig is not None and {"comments", "messages"} <= set(ig.login_subscribed_fields or [])
    # The stored token is the long-lived one, encrypted.
    stored = _stored(runtime, account["id"])
    assert stored.token_type == "INSTAGRAM" and stored.instagram_user_id == ig.app_scoped_id
    long_lived = [t for t in sandbox.world.tokens.values() if t.kind == "INSTAGRAM" and t.long_lived]
    assert len(long_lived) == 1 and long_lived[0].value.encode() not in (stored.token_ciphertext or b"")

    again = _save(client, auth_headers, sandbox.issue_instagram_token(demo.instagram_login_account_id))
    assert again.status_code == 200 and again.json()["account"]["id"] == account["id"]


def test_media_of_an_instagram_login_account_are_read_on_the_instagram_host(
    client: TestClient,
    auth_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
    graph_transport: RecordingTransport,
) -> None:
    assert demo.instagram_login_account_id is not None
    saved = _save(client, auth_headers, sandbox.issue_instagram_token(demo.instagram_login_account_id)).json()
    graph_transport.paths.clear()

    media = client.get(f"/api/accounts/{saved['account']['id']}/media", headers=auth_headers)

    assert media.status_code == 200, media.text
    assert sorted(m["id"] for m in media.json()["items"]) == sorted(demo.instagram_login_media_ids)
    assert graph_transport.paths == [f"GET /instagram/v25.0/{demo.instagram_login_account_id}/media"]
    # A rule on specific posts checks them against the account's media, on the same host.
    rule = client.post(
        "/api/rules",
        json={
            "account_id": saved["account"]["id"],
            "name": "Mugs",
            "posts": {"mode": "specific", "media_ids": demo.instagram_login_media_ids[:1]},
            "keywords": ["mug"],
            "match": "contains_any",
            "public_reply": None,
            "private_reply": {"text": "Pre-order here"},
        },
        headers=auth_headers,
    )
    assert rule.status_code == 201, rule.text
    assert graph_transport.paths[-1] == f"GET /instagram/v25.0/{demo.instagram_login_account_id}/media"


@pytest.mark.parametrize(
    ("value", "status", "code"),
    [
        ("", 422, "token_format_invalid"),
        ("   ", 422, "token_format_invalid"),
        ("EAAB" + "x" * 120, 422, "wrong_token_type"),
        ("IGAA" + "y" * 150, 400, "token_invalid"),
    ],
)
def test_bad_instagram_tokens_get_a_clear_error_without_the_token(
    client: TestClient, auth_headers: dict[str, str], value: str, status: int, code: str
) -> None:
    response = _save(client, auth_headers, value)

    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["code"] == code
    if value.strip():
        assert value.strip() not in response.text


def test_a_missing_field_is_a_422_naming_it(client: TestClient, auth_headers: dict[str, str]) -> None:
    response = client.post(SAVE, json={}, headers=auth_headers)
    assert response.status_code == 422
    assert "instagram_access_token" in error_of(response)["message"]


def test_an_already_long_lived_young_token_is_kept(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld
) -> None:
    assert demo.instagram_login_account_id is not None
    long_lived = sandbox.issue_instagram_token(demo.instagram_login_account_id, long_lived=True)

    response = _save(client, auth_headers, long_lived)

    assert response.status_code == 201, response.text
    expires = dt.datetime.fromisoformat(response.json()["account"]["expires_at"])
    assert dt.timedelta(days=58) < expires - utcnow() < dt.timedelta(days=60)


def test_the_same_instagram_account_keeps_its_record_through_either_login(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld, runtime: Runtime
) -> None:
    """Facebook Login first, then Instagram Login, then Facebook again: one account, its rule still attached."""
    first = connect(client, auth_headers, user_token(sandbox, demo), page_id=demo.page_id).account
    rule = client.post(
        "/api/rules",
        json={
            "account_id": first["id"],
            "name": "Roast",
            "posts": {"mode": "any"},
            "keywords": ["roast"],
            "match": "contains_any",
            "public_reply": {"texts": ["Sent you a DM!"]},
            "private_reply": {"text": "Here you go"},
        },
        headers=auth_headers,
    )
    assert rule.status_code == 201, rule.text

    switched = _save(client, auth_headers, sandbox.issue_instagram_token(demo.ig_account_id))

    assert switched.status_code == 200, switched.text
    account = switched.json()["account"]
    assert account["id"] == first["id"]
    assert (account["login"], account["page_id"], account["instagram_id"]) == ("instagram", None, demo.ig_account_id)
    rules = client.get("/api/rules", params={"account_id": first["id"]}, headers=auth_headers).json()["items"]
    assert [r["id"] for r in rules] == [rule.json()["id"]]

    back = connect(client, auth_headers, user_token(sandbox, demo), page_id=demo.page_id).account
    assert back["id"] == first["id"] and (back["login"], back["page_id"]) == ("facebook", demo.page_id)
    with runtime.session() as session:
        assert len(list(session.scalars(select(Account.id)))) == 1


# -- Connect with Instagram ------------------------------------------------------------------------------------


def _instagram_consent(sandbox_app: Any, authorize_url: str, *, ig_account_id: str, decision: str = "allow") -> str:
    """Click through the emulator's Instagram consent page; returns where it sends the browser back to."""
    with TestClient(sandbox_app, base_url="http://sandbox.test") as instagram:
        page = instagram.get(authorize_url)
        assert page.status_code == 200, page.text
        assert "Allow" in page.text and "instagram_business_manage_messages" in page.text
        form: dict[str, Any] = {k: html.unescape(v) for k, v in hidden_inputs(page.text).items()}
        form["granted"] = form["scope"].split(",")
        form["ig_account_id"] = ig_account_id
        form["decision"] = decision
        answer = instagram.post(urlsplit(authorize_url).path, data=form, follow_redirects=False)
        assert answer.status_code == 303, answer.text
        location: str = answer.headers["location"]
        return location


def test_connect_with_instagram_end_to_end(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, sandbox_app: Any, demo: DemoWorld
) -> None:
    assert demo.instagram_login_account_id is not None
    start = client.post("/api/instagram/oauth/instagram/start", headers=auth_headers)
    assert start.status_code == 200, start.text
    authorize_url = start.json()["authorize_url"]
    query = parse_qs(urlsplit(authorize_url).query)
    assert urlsplit(authorize_url).path == "/instagram-login/oauth/authorize"
    assert query["redirect_uri"] == ["http://testserver/oauth/instagram/callback"]
    assert query["scope"][0].split(",") == [
        "instagram_business_basic",
        "instagram_business_manage_comments",
        "instagram_business_manage_messages",
    ]

    location = _instagram_consent(sandbox_app, authorize_url, ig_account_id=demo.instagram_login_account_id)
    back = urlsplit(location)
    assert back.path == "/oauth/instagram/callback"
    callback = client.get(f"{back.path}?{back.query}", follow_redirects=False)

    assert callback.status_code == 302, callback.text
    assert callback.headers["location"].startswith("/app/integrations?account_id=")
    account_id = callback.headers["location"].split("account_id=")[1].split("#")[0]
    account = client.get(f"/api/accounts/{account_id}", headers=auth_headers).json()
    assert account["login"] == "instagram" and account["username"] == demo.instagram_login_username
    assert set(account["scopes"]) == {
        "instagram_business_basic",
        "instagram_business_manage_comments",
        "instagram_business_manage_messages",
    }
    assert account["missing_permissions"] == [] and account["token_status"] == "valid"
    # The state is single-use.
    replay = client.get(f"{back.path}?{back.query}", follow_redirects=False)
    assert "instagram_error=oauth_state_" in replay.headers["location"]


def test_connect_with_instagram_cancelled_or_from_another_browser(
    app: Any, client: TestClient, auth_headers: dict[str, str], sandbox_app: Any, demo: DemoWorld
) -> None:
    assert demo.instagram_login_account_id is not None
    start = client.post("/api/instagram/oauth/instagram/start", headers=auth_headers).json()
    cancelled = _instagram_consent(
        sandbox_app, start["authorize_url"], ig_account_id=demo.instagram_login_account_id, decision="cancel"
    )
    back = urlsplit(cancelled)
    answer = client.get(f"{back.path}?{back.query}", follow_redirects=False)
    assert "instagram_error=oauth_denied" in answer.headers["location"]

    start = client.post("/api/instagram/oauth/instagram/start", headers=auth_headers).json()
    location = urlsplit(
        _instagram_consent(sandbox_app, start["authorize_url"], ig_account_id=demo.instagram_login_account_id)
    )
    with TestClient(app) as other_browser:  # no rf_oauth_ig cookie: someone else's browser
        refused = other_browser.get(f"{location.path}?{location.query}", follow_redirects=False)
    assert "instagram_error=oauth_browser_mismatch" in refused.headers["location"]


# -- refresh ------------------------------------------------------------------------------------------------------


def _connected(client: TestClient, headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld) -> str:
    assert demo.instagram_login_account_id is not None
    saved = _save(client, headers, sandbox.issue_instagram_token(demo.instagram_login_account_id))
    assert saved.status_code == 201, saved.text
    account_id: str = saved.json()["account"]["id"]
    return account_id


def test_refresh_not_due_leaves_the_token_alone(
    client: TestClient,
    auth_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
    runtime: Runtime,
    runner: GraphRunner,
) -> None:
    account_id = _connected(client, auth_headers, sandbox, demo)
    before = _stored(runtime, account_id)

    results = refresh_due_tokens(runtime=runtime, now=utcnow() + dt.timedelta(days=10), run=runner.run_sync)

    assert results == []
    assert refresh_account(runtime=runtime, account_id=account_id, run=runner.run_sync).outcome == "not_due"
    after = _stored(runtime, account_id)
    assert after.token_ciphertext == before.token_ciphertext and after.token_expires_at == before.token_expires_at


def test_refresh_due_records_the_new_expiry(
    client: TestClient,
    auth_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
    runtime: Runtime,
    runner: GraphRunner,
) -> None:
    account_id = _connected(client, auth_headers, sandbox, demo)
    before = _stored(runtime, account_id)
    # 52 days later the token has 8 days left: due (10 days before expiry), and long past Meta's 24 hours.
    sandbox.clock.advance(days=52)
    later = utcnow() + dt.timedelta(days=52)

    (result,) = refresh_due_tokens(runtime=runtime, now=later, run=runner.run_sync)

    assert result.outcome == "refreshed", result
    after = _stored(runtime, account_id)
    assert after.token_ciphertext != before.token_ciphertext
    assert after.token_expires_at is not None and after.token_expires_at - later > dt.timedelta(days=59)
    assert after.token_status == "valid" and after.token_issued_at == later
    # Not due again right after.
    assert refresh_due_tokens(runtime=runtime, now=later + dt.timedelta(hours=1), run=runner.run_sync) == []


def test_a_refused_refresh_pauses_the_account_with_a_plain_reason_and_an_alert(
    client: TestClient,
    auth_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
    runtime: Runtime,
    runner: GraphRunner,
    settings: Settings,
) -> None:
    account_id = _connected(client, auth_headers, sandbox, demo)
    for token in [t for t in sandbox.world.tokens.values() if t.kind == "INSTAGRAM"]:
        sandbox.invalidate_token(token.value, reason="app_deauthorized")
    sandbox.clock.advance(days=52)

    (result,) = refresh_due_tokens(runtime=runtime, now=utcnow() + dt.timedelta(days=52), run=runner.run_sync)

    assert result.outcome == "invalid"
    account = _stored(runtime, account_id)
    assert account.token_status == "invalid" and account.reauthorization_required is True
    assert "Instagram refused to refresh the token" in (account.token_status_reason or "")
    alerts = _alerts(runtime, settings, account_id)
    assert [a.code for a in alerts][:1] == ["token_invalid"]
    assert "Connect with Instagram" in alerts[0].hint
    # A paused account is not retried every hour.
    assert refresh_due_tokens(runtime=runtime, now=utcnow() + dt.timedelta(days=53), run=runner.run_sync) == []


def test_a_refresh_meta_could_not_answer_marks_the_account_expiring_and_is_retried(
    client: TestClient,
    auth_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
    runtime: Runtime,
    runner: GraphRunner,
    settings: Settings,
) -> None:
    account_id = _connected(client, auth_headers, sandbox, demo)
    sandbox.clock.advance(days=52)
    later = utcnow() + dt.timedelta(days=52)
    sandbox.inject_failure("GET /refresh_access_token", kind="transient", times=1)

    (failed,) = refresh_due_tokens(runtime=runtime, now=later, run=runner.run_sync)

    assert failed.outcome == "failed"
    account = _stored(runtime, account_id)
    assert account.token_status == "expiring" and account.reauthorization_required is False
    assert "could not refresh the Instagram token" in (account.token_status_reason or "")
    alerts = _alerts(runtime, settings, account_id)
    assert alerts[0].code == "token_expiring" and "replyflow accounts refresh" in alerts[0].hint

    (retried,) = refresh_due_tokens(runtime=runtime, now=later + dt.timedelta(hours=1), run=runner.run_sync)
    assert retried.outcome == "refreshed"
    account = _stored(runtime, account_id)
    assert account.token_status == "valid" and account.token_status_reason is None


def test_a_token_younger_than_a_day_is_not_sent_for_refresh(
    client: TestClient,
    auth_headers: dict[str, str],
    sandbox: SandboxState,
    demo: DemoWorld,
    runtime: Runtime,
    runner: GraphRunner,
) -> None:
    account_id = _connected(client, auth_headers, sandbox, demo)

    forced = refresh_account(runtime=runtime, account_id=account_id, run=runner.run_sync, force=True)

    assert forced.outcome == "too_new"


def test_check_and_doctor_judge_an_instagram_login_account_on_its_host(
    client: TestClient, auth_headers: dict[str, str], sandbox: SandboxState, demo: DemoWorld
) -> None:
    account_id = _connected(client, auth_headers, sandbox, demo)
    assert demo.instagram_login_account_id is not None
    sandbox.unsubscribe_instagram(demo.instagram_login_account_id)

    checked = client.post(f"/api/accounts/{account_id}/check", headers=auth_headers)

    assert checked.status_code == 200, checked.text
    assert checked.json()["webhooks_subscribed"] is True  # re-subscribed
    doctor = client.get("/api/doctor", headers=auth_headers).json()
    by_id = {c["id"]: c for c in doctor["checks"]}
    assert by_id["config.instagram_login"]["status"] == "ok"
    assert by_id["account.token"]["status"] == "ok" and "Instagram token works" in by_id["account.token"]["message"]
    assert by_id["account.instagram_subscription"]["status"] == "ok"

    for token in [t for t in sandbox.world.tokens.values() if t.kind == "INSTAGRAM"]:
        sandbox.invalidate_token(token.value, reason="expired")
    dead = client.post(f"/api/accounts/{account_id}/check", headers=auth_headers).json()
    assert dead["token_status"] == "invalid" and dead["reauthorization_required"] is True


# -- no token in plain text ------------------------------------------------------------------------------------


def test_no_instagram_token_in_plain_text_anywhere(
    captured_logs: io.StringIO,
    client: TestClient,
    auth_headers: dict[str, str],
    sandbox: SandboxState,
    sandbox_app: Any,
    demo: DemoWorld,
    settings: Settings,
    runtime: Runtime,
    runner: GraphRunner,
) -> None:
    assert demo.instagram_login_account_id is not None
    texts: list[str] = []

    def record(response: Any) -> Any:
        texts.append(response.text)
        texts.append(str(dict(response.headers)))
        return response

    pasted = sandbox.issue_instagram_token(demo.instagram_login_account_id)
    account_id = record(_save(client, auth_headers, pasted)).json()["account"]["id"]
    record(client.get(f"/api/accounts/{account_id}", headers=auth_headers))
    record(client.get(f"/api/accounts/{account_id}/media", headers=auth_headers))
    record(client.post(f"/api/accounts/{account_id}/check", headers=auth_headers))
    record(client.get("/api/doctor", headers=auth_headers))
    start = record(client.post("/api/instagram/oauth/instagram/start", headers=auth_headers)).json()
    location = urlsplit(_instagram_consent(sandbox_app, start["authorize_url"], ig_account_id=demo.ig_account_id))
    record(client.get(f"{location.path}?{location.query}", follow_redirects=False))
    sandbox.clock.advance(days=52)
    refresh_due_tokens(runtime=runtime, now=utcnow() + dt.timedelta(days=52), run=runner.run_sync)
    # Failures too: a dead token pasted, and a refresh Meta refuses.
    sandbox.invalidate_token(pasted, reason="expired")
    record(_save(client, auth_headers, pasted))
    for token in [t for t in sandbox.world.tokens.values() if t.kind == "INSTAGRAM"]:
        sandbox.invalidate_token(token.value, reason="app_deauthorized")
    refresh_account(
        runtime=runtime, account_id=account_id, now=utcnow() + dt.timedelta(days=53), run=runner.run_sync, force=True
    )

    tokens = [t for t in all_tokens_of(sandbox) if t.startswith("IGAA")]
    assert len(tokens) >= 4
    db = Path(settings.database_url.removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    logs = captured_logs.getvalue()
    assert "instagram_account_saved" in logs and "instagram_token_refreshed" in logs, "the logs were captured"
    everything = "\n".join(texts)
    for secret in [*tokens, APP_SECRET, SECRET_KEY]:
        assert secret.encode() not in stored, "a token is stored in plain text"
        assert secret not in logs, "a token was logged"
        assert secret not in everything, "a token was sent back"
