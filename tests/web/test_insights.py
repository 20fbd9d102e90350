"""Analytics (numbers, chart, CSV), Conversations, and the sandbox panel."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from replyflow.automation.models import Rule, Run
from replyflow.conversations.models import Thread, ThreadMessage
from replyflow.conversations.service import record_private_reply
from replyflow.runtime import Runtime
from replyflow.web.charts import DayValues, Series, daily_bars, nice_ceiling
from replyflow.workspaces import service as workspaces_service
from tests.web.conftest import FULL_SCOPES, connect_demo, csrf_of, sign_in


def _seed(runtime: Runtime, workspace_id: str, account_id: str) -> None:
    """Two rules; five follower comments and one of the account's own, over two days."""
    now = dt.datetime.now(dt.UTC)
    yesterday = now - dt.timedelta(days=1)
    with runtime.session() as session:
        for rule_id, name in (("rule_a", "Roast giveaway"), ("rule_b", "=HYPERLINK(evil)")):
            session.add(
                Rule(
                    id=rule_id,
                    workspace_id=workspace_id,
                    account_id=account_id,
                    name=name,
                    posts_mode="any",
                    match="any_comment",
                    private_reply={"text": "Hello"},
                )
            )
        session.flush()
        rows = [
            ("run_1", "rule_a", "done", None, "sent", "sent", yesterday),
            ("run_2", "rule_a", "done", None, "sent", "sent", now),
            ("run_3", "rule_a", "failed", "outside_window", "sent", "none", now),
            ("run_4", "rule_b", "done", None, "none", "sent", now),
            ("run_5", None, "skipped", "no_keyword", "none", "none", now),
            ("run_6", None, "skipped", "own_comment", "none", "none", now),
        ]
        for run_id, rule_id, status, reason, public, dm, at in rows:
            session.add(
                Run(
                    id=run_id,
                    workspace_id=workspace_id,
                    account_id=account_id,
                    comment_id=f"c_{run_id}",
                    media_id="m1",
                    text=f"comment {run_id}",
                    username="sam",
                    rule_id=rule_id,
                    status=status,
                    reason=reason,
                    public_reply_state=public,
                    dm_state=dm,
                    dm_text="Hello sam" if dm == "sent" else None,
                    from_id=f"igsid_{run_id}",
                    dm_recipient_id=f"igsid_{run_id}" if dm == "sent" else None,
                    dm_sent_at=at if dm == "sent" else None,
                    matched_at=at if rule_id else None,
                    public_replied_at=at if public == "sent" else None,
                    created_at=at,
                    updated_at=at,
                )
            )
        session.flush()
        for run in session.scalars(select(Run).where(Run.dm_state == "sent")):
            record_private_reply(session=session, run=run)


def test_analytics_counts_funnels_and_reasons(
    live: TestClient, emulator: Any, live_runtime: Runtime, live_user: Any
) -> None:
    account_id = connect_demo(live, emulator)
    _seed(live_runtime, live_user.workspace_id, account_id)
    page = live.get("/app/analytics?days=7")
    assert page.status_code == 200
    html = page.text
    # The analytics service's numbers: 5 follower comments (the account's own is not one), 4 matched, 3 DMs, 1 failure.
    for value, label in (
        (5, "Comments received"),
        (4, "Matched a rule (80%)"),
        (3, "DMs sent (1 failed)"),
    ):
        assert f'<div class="stat-value">{value}</div><div class="stat-label">{label}</div>' in html, label
    assert "The comment does not contain the rule" in html
    assert "only within 7 days" in html
    assert "written by the account itself" not in html  # not a skipped comment either
    assert '<svg class="chart"' in html and html.count("<rect") == 7 * 3
    assert "Roast giveaway" in html and "Public replies" in html


def test_analytics_csv_is_a_clean_spreadsheet(
    live: TestClient, emulator: Any, live_runtime: Runtime, live_user: Any
) -> None:
    account_id = connect_demo(live, emulator)
    _seed(live_runtime, live_user.workspace_id, account_id)
    response = live.get("/app/analytics/export.csv?days=30&group_by=rule")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = {row["rule_name"]: row for row in csv.DictReader(io.StringIO(response.text))}
    assert rows["Roast giveaway"]["dms_sent"] == "2"
    # A rule name that looks like a formula is defused before it reaches a spreadsheet.
    assert "'=HYPERLINK(evil)" in rows and "=HYPERLINK(evil)" not in rows
    by_day = list(csv.DictReader(io.StringIO(live.get("/app/analytics/export.csv?days=7").text)))
    assert len(by_day) == 7 and sum(int(row["comments_seen"]) for row in by_day) == 5
    other = live.get("/app/analytics/export.csv?days=7&account_id=acc_not_mine")
    assert other.status_code == 200  # an unknown account is ignored, never someone else's numbers


def test_chart_scales_and_labels() -> None:
    assert [nice_ceiling(v) for v in (0, 3, 5, 17, 41, 750)] == [4, 4, 8, 20, 80, 800]
    days = [DayValues(dt.date(2026, 1, d), {"a": d}) for d in range(1, 11)]
    svg = str(daily_bars(days, [Series("a", "Comments <b>", "bar-seen")], title="Per day"))
    assert svg.count("<rect") == 10 and "Comments &lt;b&gt;" in svg and "<b>" not in svg
    assert 'role="img"' in svg and "<title" in svg


def test_conversations_show_the_threads_rules_started(
    live: TestClient, emulator: Any, live_runtime: Runtime, live_user: Any
) -> None:
    account_id = connect_demo(live, emulator)
    assert "No conversations yet" in live.get("/app/conversations").text
    _seed(live_runtime, live_user.workspace_id, account_id)
    html = live.get("/app/conversations").text
    assert html.count('class="card thread"') == 3 and "Hello sam" in html
    one = live.get("/app/conversations?rule_id=rule_b").text
    assert one.count('class="card thread"') == 1 and "=HYPERLINK(evil)" in one
    assert "Nothing matches these filters" in live.get("/app/conversations?replied=yes").text

    # The person answers and taps a button: both show in their thread, on their side.
    with live_runtime.session() as session:
        thread = session.scalars(select(Thread).where(Thread.run_id == "run_4")).one()
        now = dt.datetime.now(dt.UTC)
        for index, (kind, text, payload) in enumerate(
            (("user_text", "Thanks so much!", None), ("postback", "Get the beans", {"title": "Get the beans"}))
        ):
            session.add(
                ThreadMessage(
                    thread_id=thread.id,
                    account_id=account_id,
                    run_id="run_4",
                    direction="in",
                    kind=kind,
                    mid=f"mid_{index}",
                    dedupe_key=f"mid_{index}",
                    text=text,
                    payload=payload,
                    created_at=now + dt.timedelta(seconds=index + 1),
                    recorded_at=now,
                )
            )
        thread.reply_count, thread.tap_count = 1, 1
    answered = live.get("/app/conversations?replied=yes").text
    assert answered.count('class="card thread"') == 1
    assert "Thanks so much!" in answered and "Tapped “Get the beans”" in answered
    assert "1 reply · 1 tap" in answered


def test_sandbox_panel_is_only_there_in_sandbox_mode(live: TestClient) -> None:
    response = live.get("/app/sandbox")
    assert response.status_code == 404
    assert "only available in sandbox mode" in response.text
    assert 'href="/app/sandbox"' not in live.get("/app").text


def test_sandbox_panel_posts_a_comment_through_the_webhook(
    client: TestClient, app: Any, web_user: Any, runtime: Runtime
) -> None:
    assert sign_in(client, web_user.email, web_user.password).status_code == 303
    assert "Connect the demo account first" in client.get("/app/sandbox").text
    state = app.state.sandbox_state
    token = state.issue_user_token(state.demo.user_id, scopes=FULL_SCOPES)
    csrf = csrf_of(client, "/app/integrations")
    converted = client.post(
        "/app/integrations/convert", data={"csrf_token": csrf, "user_access_token": token}, follow_redirects=False
    )
    conversion_id = converted.headers["location"].split("conversion_id=")[1].split("#")[0]
    saved = client.post(
        "/app/integrations/save",
        data={"csrf_token": csrf, "conversion_id": conversion_id, "page_id": state.demo.page_id},
        follow_redirects=False,
    )
    account_id = saved.headers["location"].split("account_id=")[1].split("#")[0]

    panel = client.get("/app/sandbox").text
    media_id = state.demo.media_ids[0]
    assert f'value="{media_id}"' in panel and "Simulate a comment" in panel
    bad = client.post(
        "/app/sandbox/comments",
        data={"csrf_token": csrf, "account_id": account_id, "media_id": media_id, "username": "no spaces!", "text": ""},
    )
    assert bad.status_code == 422
    assert 'id="username-error"' in bad.text and 'id="text-error"' in bad.text
    elsewhere = client.post(
        "/app/sandbox/comments",
        data={"csrf_token": csrf, "account_id": account_id, "media_id": "17800000000", "username": "a", "text": "hi"},
    )
    assert elsewhere.status_code == 422 and "Choose one of this account’s posts." in elsewhere.text
    posted = client.post(
        "/app/sandbox/comments",
        data={
            "csrf_token": csrf,
            "account_id": account_id,
            "media_id": media_id,
            "username": "alex.rivera",
            "text": "ROAST please",
        },
        headers={"HX-Request": "true"},
    )
    assert posted.status_code == 200 and "webhook reached replyflow" in posted.text
    assert "ROAST please" in [c.text for c in state.comments_of(media_id)]
    watch = client.get("/app/sandbox/watch", headers={"HX-Request": "true"})
    assert watch.status_code == 200 and "What “Meta” received" in watch.text

    # The API posts through the same function (sandbox.wiring.post_simulated_comment).
    with runtime.session() as session:
        workspace = workspaces_service.get_workspace(session=session, ref=web_user.workspace_id)
        api_key = workspaces_service.issue_key(session=session, workspace=workspace).secret
    headers = {"Authorization": f"Bearer {api_key}"}
    body = {"account_id": account_id, "media_id": media_id, "username": "bo.b", "text": "link?"}
    api = client.post("/api/sandbox/comments", json=body, headers=headers)
    assert api.status_code == 202, api.text
    assert api.json()["comment_id"] in [c.id for c in state.comments_of(media_id) if c.text == "link?"]
    assert [(d["field"], d["ok"]) for d in api.json()["webhook_deliveries"]] == [("comments", True)]
    refused = client.post("/api/sandbox/comments", json={**body, "media_id": "17800000000"}, headers=headers)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "media_id"
