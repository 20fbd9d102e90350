"""The engine's private reply and conversations: tracked links in the DM, a thread as soon as it is sent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from replyflow.automation.models import Rule, SendState
from replyflow.automation.schemas import RuleSpec
from replyflow.config import Settings
from replyflow.conversations.links import CODE_PATTERN
from replyflow.conversations.models import Thread, TrackedLink
from replyflow.db import Base
from replyflow.runtime import Runtime

from .world import ConversationWorld, build_world

GUIDE = "https://roastery.example/brew-guide?ref=ig"
MESSAGES = "POST /{page-id}/messages"
BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Instagram 329.0.0.0.58"


@pytest.fixture
def world(settings: Settings) -> Iterator[ConversationWorld]:
    runtime = Runtime(settings)
    Base.metadata.create_all(runtime.engine)
    # Real time, so the analytics report's default range (the last days up to today) covers what happens here.
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    try:
        yield from build_world(settings, runtime, start=start)
    finally:
        runtime.close()


def _private_reply(url: str = GUIDE) -> dict[str, Any]:
    return {"text": "Here is the guide, {username}!", "buttons": [{"title": "Open the guide", "url": url}]}


def _button_url(message: dict[str, Any]) -> str:
    url: str = message["attachment"]["payload"]["buttons"][0]["url"]
    return url


def _count(world: ConversationWorld, model: type[Base]) -> int:
    with world.runtime.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _retry_now(world: ConversationWorld, comment_id: str) -> None:
    """Move the clock to the run's next attempt and let the engine work."""
    due = world.run_for(comment_id).next_attempt_at
    assert due is not None
    world.advance(seconds=max(0.0, (due - world.now()).total_seconds()) + 1)
    world.drive()


def test_the_dm_button_is_a_tracked_link_that_redirects_and_counts_the_click(world: ConversationWorld) -> None:
    world.add_rule(private_reply=_private_reply(), follow_up=None)
    comment_id = world.comment("link please")

    (dm,) = world.outbox("private_reply")
    url = _button_url(dm.body["message"])
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == world.runtime.settings.public_url
    assert parts.path.startswith("/r/") and CODE_PATTERN.fullmatch(parts.path.removeprefix("/r/"))
    assert GUIDE not in str(dm.body)
    # The run keeps what Meta actually received.
    run = world.run_for(comment_id)
    assert run.dm_message == dm.body["message"]
    assert run.dm_text == dm.text == "Here is the guide, ana.cafe!"

    response = world.client.get(parts.path, headers={"User-Agent": BROWSER}, follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == GUIDE

    totals = world.get("/api/analytics").json()["totals"]
    assert (totals["dms_sent"], totals["dms_with_links"], totals["link_clicks"], totals["unique_link_clicks"]) == (
        1,
        1,
        1,
        1,
    )
    (item,) = world.get("/api/conversations").json()["items"]
    assert item["clicks"] == 1
    assert [(link["url"], link["clicks"], link["run_id"]) for link in item["links"]] == [(GUIDE, 1, run.id)]


def test_the_thread_exists_as_soon_as_the_dm_is_sent_before_the_echo(world: ConversationWorld) -> None:
    rule_id = world.add_rule(private_reply=_private_reply(), follow_up=None)
    comment = world.state.add_comment(world.media_ids[0], text="link", username="ana.cafe")
    world.deliver()
    world.drive()  # the DM is sent; Meta's echo of it is still queued in the sandbox

    (dm,) = world.outbox("private_reply")
    (item,) = world.get("/api/conversations").json()["items"]
    assert item["person"] == {"id": world.person("ana.cafe"), "username": "ana.cafe"}
    assert item["rule"]["id"] == rule_id
    assert item["origin"]["comment_id"] == comment.id
    assert item["public_reply"]["text"] == "Sent you a DM, @ana.cafe!"
    assert (item["dm"]["mid"], item["dm"]["text"]) == (dm.result_id, dm.text)
    assert [(m["kind"], m["mid"]) for m in item["messages"]] == [
        ("public_reply", None),
        ("private_reply", dm.result_id),
    ]
    assert item["messages"][1]["payload"] == dm.body["message"]

    world.deliver()  # the echo arrives: it is the same message, in the same thread
    (after,) = world.get("/api/conversations").json()["items"]
    assert after["id"] == item["id"]
    assert [(m["kind"], m["mid"]) for m in after["messages"]] == [
        ("public_reply", None),
        ("private_reply", dm.result_id),
    ]


def test_a_dm_sent_but_unanswered_is_reconciled_without_a_second_link_or_thread(world: ConversationWorld) -> None:
    world.add_rule(private_reply=_private_reply(), follow_up=None)
    world.state.inject_failure(MESSAGES, kind="timeout_after_send")
    comment_id = world.state.add_comment(world.media_ids[0], text="link", username="ana.cafe").id
    world.deliver()
    world.drive()

    first = world.run_for(comment_id)
    assert first.dm_state == SendState.UNKNOWN.value
    assert _count(world, TrackedLink) == 1 and _count(world, Thread) == 0

    _retry_now(world, comment_id)
    world.deliver()

    run = world.run_for(comment_id)
    assert (run.dm_state, run.dm_reconciled, run.dm_attempts) == (SendState.SENT.value, True, 2)
    (dm,) = world.outbox("private_reply")
    assert dm.body["message"] == first.dm_message == run.dm_message
    assert _count(world, TrackedLink) == 1 and _count(world, Thread) == 1
    (item,) = world.get("/api/conversations").json()["items"]
    assert [link["url"] for link in item["links"]] == [GUIDE]
    assert [m["kind"] for m in item["messages"]].count("private_reply") == 1


def test_a_retry_after_an_unknown_outcome_sends_the_identical_message(world: ConversationWorld) -> None:
    rule_id = world.add_rule(private_reply=_private_reply(), follow_up=None)
    world.state.inject_failure(MESSAGES, kind="timeout")  # the answer is lost: Meta may or may not have the DM
    comment_id = world.state.add_comment(world.media_ids[0], text="link", username="ana.cafe").id
    world.deliver()
    world.drive()
    first = world.run_for(comment_id)
    assert first.dm_state == SendState.UNKNOWN.value and world.outbox("private_reply") == []

    # The owner edits the rule meanwhile; what may already be on the person's phone is what goes out again.
    with world.runtime.session() as session:
        rule = session.get(Rule, rule_id)
        assert rule is not None
        spec = rule.spec().model_dump(mode="json")
        spec["private_reply"] = _private_reply("https://roastery.example/other")
        rule.apply_spec(RuleSpec.model_validate(spec))
    _retry_now(world, comment_id)

    (dm,) = world.outbox("private_reply")
    assert dm.body["message"] == first.dm_message == world.run_for(comment_id).dm_message
    with world.runtime.session() as session:
        (link,) = session.scalars(select(TrackedLink)).all()
        assert link.url == GUIDE and _button_url(dm.body["message"]).endswith(f"/r/{link.code}")
    assert _count(world, Thread) == 1
