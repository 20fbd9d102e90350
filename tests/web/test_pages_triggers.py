"""The dashboard's new ways in: the rule builder saves triggers, the follow gate, tags and email collection (with
the errors next to their fields); Contacts lists, filters and exports; Analytics shows triggers and gate funnels."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from replyflow.automation.models import FollowGateState, Rule, Run
from replyflow.contacts.models import Contact
from replyflow.runtime import Runtime
from tests.web.conftest import connect_demo, csrf_of
from tests.web.test_pages import _rule_form


def test_the_builder_offers_triggers_and_the_gate_with_a_preview(live: TestClient, emulator: Any) -> None:
    account_id = connect_demo(live, emulator)
    builder = live.get(f"/app/rules/new?account_id={account_id}").text
    for value in ("comment", "live_comment", "story_reply", "dm_keyword", "story_mention"):
        assert f'name="trigger" value="{value}"' in builder
    assert "Follow to unlock" in builder and 'id="dm-preview-gate"' in builder and "Gate message" in builder


def test_a_gated_dm_keyword_rule_is_saved_from_the_form(live: TestClient, emulator: Any, live_runtime: Runtime) -> None:
    account_id = connect_demo(live, emulator)
    csrf = csrf_of(live, "/app/rules")
    form = _rule_form(
        account_id,
        "",
        trigger="dm_keyword",
        public_reply_text=[""],
        keywords="guide",
        gate_on="on",
        gate_text="Follow us, then tap below for the guide",
        gate_button="I follow",
        tags="guide, newsletter",
        collect_email="on",
    )
    saved = live.post("/app/rules/new", data={"csrf_token": csrf, **form})
    assert saved.status_code == 200 and "is saved" in saved.text, saved.text
    with live_runtime.session() as session:
        rule = session.scalars(select(Rule)).one()
        assert (rule.trigger, rule.posts_mode, rule.public_reply) == ("dm_keyword", "any", None)
        assert rule.follow_gate == {"text": "Follow us, then tap below for the guide", "button_title": "I follow"}
        assert rule.tags == ["guide", "newsletter"] and rule.collect_email
        rule_id = rule.id
    edit = live.get(f"/app/rules/{rule_id}").text
    assert 'name="trigger" value="dm_keyword" checked' in edit and "Follow us, then tap below" in edit


def test_a_public_reply_on_a_dm_rule_is_refused_next_to_its_field(live: TestClient, emulator: Any) -> None:
    account_id = connect_demo(live, emulator)
    csrf = csrf_of(live, "/app/rules")
    refused = live.post(
        "/app/rules/new", data={"csrf_token": csrf, **_rule_form(account_id, "", trigger="story_reply")}
    )
    assert refused.status_code == 422
    assert 'id="public_reply_text-error"' in refused.text and "answers by DM only" in refused.text
    gate = _rule_form(account_id, "", posts_mode="any", gate_on="on", gate_text="", dm_text="hi")
    refused = live.post("/app/rules/new", data={"csrf_token": csrf, **gate})
    assert refused.status_code == 422 and 'id="gate_text-error"' in refused.text


def test_contacts_page_search_filters_and_export(
    live: TestClient, emulator: Any, live_runtime: Runtime, live_user: Any
) -> None:
    account_id = connect_demo(live, emulator)
    assert "No contacts yet" in live.get("/app/contacts").text
    with live_runtime.session() as session:
        session.add(Rule(id="rule_vip", workspace_id=live_user.workspace_id, account_id=account_id, name="VIP list",
                         posts_mode="any", match="any_comment", tags=["vip"]))  # fmt: skip
        session.flush()
        session.add_all(
            [
                Contact(workspace_id=live_user.workspace_id, account_id=account_id, igsid="111", username="ana.cafe",
                        rule_ids=["rule_vip"], tags=["vip"], email="ana@example.com", follows=True),
                Contact(workspace_id=live_user.workspace_id, account_id=account_id, igsid="222", username="ben.b",
                        rule_ids=[], tags=[]),
            ]
        )  # fmt: skip
    page = live.get("/app/contacts").text
    assert "@ana.cafe" in page and "@ben.b" in page and "ana@example.com" in page and "VIP list" in page
    assert "2 contacts in all" in page
    by_tag = live.get("/app/contacts?tag=vip").text
    assert "@ana.cafe" in by_tag and "@ben.b" not in by_tag
    by_rule = live.get("/app/contacts?rule_id=rule_vip").text
    assert "@ana.cafe" in by_rule and "@ben.b" not in by_rule
    searched = live.get("/app/contacts?q=ben").text
    assert "@ben.b" in searched and "@ana.cafe" not in searched
    exported = live.get("/app/contacts.csv?tag=vip")
    assert exported.headers["content-type"].startswith("text/csv")
    assert "ana.cafe" in exported.text and "ben.b" not in exported.text and "VIP list" in exported.text


def test_analytics_shows_triggers_and_the_gate_funnel(
    live: TestClient, emulator: Any, live_runtime: Runtime, live_user: Any
) -> None:
    account_id = connect_demo(live, emulator)
    assert "No rule with “Follow to unlock” sent a gate" in live.get("/app/analytics").text
    with live_runtime.session() as session:
        session.add(Rule(id="rule_gate", workspace_id=live_user.workspace_id, account_id=account_id, name="Gated guide",
                         posts_mode="any", match="any_comment", trigger="dm_keyword"))  # fmt: skip
        session.flush()
        session.add(Run(id="run_dm1", workspace_id=live_user.workspace_id, account_id=account_id, trigger="dm_keyword",
                        comment_id="mid.1", media_id="", text="guide", status="done", dm_state="sent",
                        rule_id="rule_gate"))  # fmt: skip
        session.flush()
        session.add(FollowGateState(run_id="run_dm1", workspace_id=live_user.workspace_id, account_id=account_id,
                                    rule_id="rule_gate", igsid="111", gates_sent=2, first_tap_at=session.get(
                                        Run, "run_dm1").created_at))  # fmt: skip
    page = live.get("/app/analytics").text
    assert "By way in" in page and "Story mention" in page and "Gated guide" in page
    assert "Gate sent" in page and "Tapped" in page and "Unlocked" in page
