"""Every trigger through the sandbox and the real ingestion path: live comments, story replies, story mentions and
DM keywords share the run model, the matcher and the exactly-once path of comments; message triggers answer by
``recipient.id`` inside Meta's 24-hour window."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from replyflow.automation.matching import CommentContext, evaluate
from replyflow.automation.models import RunStatus, SendState
from replyflow.automation.reasons import SkipReason
from replyflow.automation.schemas import RuleSpec
from replyflow.automation.triggers import Trigger

from .world import World

MESSAGES = "POST /{page-id}/messages"
DM_RULE: dict[str, Any] = {
    "trigger": "dm_keyword",
    "posts": {"mode": "any"},
    "keywords": ["price"],
    "public_reply": None,
    "private_reply": {"text": "Our prices: https://roastery.example/prices"},
}


def _dm(world: World, text: str, *, username: str = "dm.fan", **kwargs: Any) -> str:
    """The person writes to the account; returns the message's mid (the run's ``comment_id``)."""
    item = world.state.user_message(world.sandbox.ig_id, text=text, username=username, **kwargs)
    world.deliver()
    mid: str = item["message"]["mid"]
    return mid


def _messages_to(world: World, username: str) -> list[dict[str, Any]]:
    person = world.state.add_person(username)
    return [e.body for e in world.outbox("message") if e.recipient_id == person.igsid]


# -- rules: what each trigger allows -------------------------------------------------------------------------------


@pytest.mark.parametrize("trigger", ["dm_keyword", "story_reply", "story_mention", "live_comment"])
def test_public_reply_is_refused_for_triggers_without_a_comment_to_answer(trigger: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RuleSpec.model_validate(
            {
                "name": "x",
                "trigger": trigger,
                "posts": {"mode": "any"},
                "match": "any_comment",
                "public_reply": {"texts": ["hi"]},
                "private_reply": {"text": "hello"},
            }
        )
    [error] = caught.value.errors()
    assert error["loc"] == ("public_reply",) and error["type"] == "public_reply_not_allowed"


def test_message_triggers_need_no_posts_and_comment_rules_still_do() -> None:
    spec = RuleSpec.model_validate({"name": "dm", **{k: v for k, v in DM_RULE.items() if k != "posts"}})
    assert spec.trigger is Trigger.DM_KEYWORD and spec.posts.mode.value == "any" and spec.is_message_trigger
    with pytest.raises(ValidationError) as caught:
        RuleSpec.model_validate({"name": "c", "keywords": ["x"], "private_reply": {"text": "hi"}})
    assert caught.value.errors()[0]["loc"] == ("posts",)
    with pytest.raises(ValidationError) as caught:
        RuleSpec.model_validate({"name": "dm", **DM_RULE, "posts": {"mode": "specific", "media_ids": ["1"]}})
    assert caught.value.errors()[0]["loc"] == ("posts", "mode")


def test_the_matcher_closes_message_triggers_after_24_hours() -> None:
    spec = RuleSpec.model_validate({"name": "dm", **DM_RULE})
    now = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)

    def judge(hours: float) -> SkipReason | None:
        context = CommentContext(
            text="price?", media_id="", from_id="1", created_at=now - dt.timedelta(hours=hours), trigger="dm_keyword"
        )
        return evaluate(spec, context, now=now, account_ig_id="9").reason

    assert judge(1) is None
    assert judge(25) is SkipReason.WINDOW_CLOSED
    # A comment of the same age is still well inside Meta's 7-day private-reply window.
    comment_rule = RuleSpec.model_validate({**DM_RULE, "name": "c", "trigger": "comment", "posts": {"mode": "any"}})
    comment = CommentContext(text="price?", media_id="m", created_at=now - dt.timedelta(hours=25))
    assert evaluate(comment_rule, comment, now=now, account_ig_id="9").match


# -- DM keywords ------------------------------------------------------------------------------------------------------


def test_dm_keyword_answers_once_by_recipient_id_even_when_redelivered(world: World) -> None:
    world.add_rule(**DM_RULE)
    item = world.state.user_message(world.sandbox.ig_id, text="What's the PRICE?", username="dm.fan")
    world.deliver(again=True)
    world.drive()
    world.deliver(again=True)  # Meta's echo of our DM, twice
    world.drive()

    sent = _messages_to(world, "dm.fan")
    assert len(sent) == 1
    assert sent[0]["recipient"] == {"id": item["sender"]["id"]}
    assert sent[0]["message"]["text"] == "Our prices: https://roastery.example/prices"
    assert world.outbox("private_reply") == [] and world.outbox("public_reply") == []
    [run] = world.runs()
    assert (run.trigger, run.status, run.dm_state) == ("dm_keyword", RunStatus.DONE.value, SendState.SENT.value)
    assert run.comment_id == item["message"]["mid"] and run.matched_keyword == "price"
    steps = [s.step for s in world.steps(run.id)]
    assert steps[:3] == ["received", "rule_checked", "matched"] and "public_reply_skipped" in steps


def test_a_dm_without_the_keyword_is_recorded_as_skipped(world: World) -> None:
    world.add_rule(**DM_RULE)
    _dm(world, "hello there")
    world.drive()
    [run] = world.runs()
    assert (run.status, run.reason) == (RunStatus.SKIPPED.value, SkipReason.NO_KEYWORD.value)
    assert world.outbox("message") == []


def test_no_run_for_dms_when_no_rule_listens_to_them(world: World) -> None:
    world.add_rule()  # a comment rule only
    _dm(world, "price?")
    world.drive()
    assert world.runs() == [] and world.outbox() == []


def test_quick_reply_answers_and_echoes_do_not_start_dm_rules(world: World) -> None:
    world.add_rule(**DM_RULE)
    world.state.user_message(world.sandbox.ig_id, text="price", username="dm.fan", quick_reply_payload="rf:x")
    world.deliver()
    world.drive()
    assert world.runs() == []


def test_the_window_closed_before_the_dm_could_go(world: World) -> None:
    world.add_rule(**{**DM_RULE, "private_reply": {**DM_RULE["private_reply"], "delay": {"min_seconds": 0}}})
    mid = _dm(world, "price")
    world.advance(hours=25)  # the worker was down for a day
    world.drive()
    run = world.run_for(mid)
    assert (run.status, run.reason) == (RunStatus.FAILED.value, SkipReason.WINDOW_CLOSED.value)
    assert "24-hour" in (run.detail or "")
    assert world.outbox("message") == []


def test_an_unknown_outcome_is_never_sent_again(world: World) -> None:
    """recipient.id sends have no "already sent" answer, so an uncertain DM is not repeated."""
    world.add_rule(**DM_RULE)
    world.state.inject_failure(MESSAGES, kind="timeout_after_send")
    mid = _dm(world, "price")
    world.drive()
    assert len(_messages_to(world, "dm.fan")) == 1
    run = world.run_for(mid)
    assert (run.status, run.reason, run.dm_state) == (RunStatus.FAILED.value, "dm_outcome_unknown", "unknown")
    assert "does not send it again" in (run.detail or "")


def test_once_per_user_answers_a_person_once_per_dm_rule(world: World) -> None:
    world.add_rule(**DM_RULE)
    _dm(world, "price")
    world.drive()
    _dm(world, "price again?")
    world.drive()
    assert len(_messages_to(world, "dm.fan")) == 1
    second = world.runs()[-1]
    assert second.reason == SkipReason.ALREADY_HANDLED_USER.value


# -- story replies and story mentions ------------------------------------------------------------------------------


def test_story_reply_rule_answers_story_replies_and_dm_rules_do_not(world: World) -> None:
    world.add_rule(**{**DM_RULE, "keywords": ["love"]})  # dm_keyword: not for story replies
    world.add_rule(
        trigger="story_reply",
        match="any_comment",
        keywords=[],
        public_reply=None,
        private_reply={"text": "Thanks for replying to my story, {username}!"},
        posts={"mode": "specific", "media_ids": ["story_1"]},
    )
    story_mid = _dm(world, "love this", username="story.fan", story_id="story_1")
    other_mid = _dm(world, "love this one too", username="story.fan2", story_id="story_2")
    world.drive()

    run = world.run_for(story_mid)
    assert (run.trigger, run.media_id, run.status) == ("story_reply", "story_1", RunStatus.DONE.value)
    assert len(_messages_to(world, "story.fan")) == 1
    other = world.run_for(other_mid)
    assert (other.status, other.reason) == (RunStatus.SKIPPED.value, SkipReason.POST_NOT_TARGETED.value)
    assert _messages_to(world, "story.fan2") == []


def test_story_mention_can_be_thanked_by_dm(world: World) -> None:
    world.add_rule(
        trigger="story_mention",
        posts={"mode": "any"},
        match="any_comment",
        keywords=[],
        public_reply=None,
        private_reply={"text": "Thank you for the shout-out! Here is 10% off: https://roastery.example/thanks"},
    )
    item = world.state.user_message(
        world.sandbox.ig_id, text="", username="mention.fan", story_mention_url="https://cdn.example/story.jpg"
    )
    world.deliver(again=True)
    world.drive()
    [sent] = _messages_to(world, "mention.fan")
    assert sent["message"]["text"].startswith("Thank you for the shout-out!")
    run = world.run_for(item["message"]["mid"])
    assert (run.trigger, run.status) == ("story_mention", RunStatus.DONE.value)


# -- live comments ----------------------------------------------------------------------------------------------------


def test_live_comment_rule_answers_live_comments_only_with_a_private_reply(world: World) -> None:
    live = world.state.add_media(world.sandbox.ig_id, caption="Roasting live", live=True)
    world.add_rule(trigger="live_comment", posts={"mode": "any"}, public_reply=None, keywords=["link"])
    live_comment = world.comment("link please", media=live.id, username="viewer")
    feed_comment = world.comment("link please", media=0, username="viewer2")
    world.drive()

    world.assert_reply_then_dm_once(live_comment, public=False)
    run = world.run_for(live_comment)
    assert (run.trigger, run.is_live, run.status) == ("live_comment", True, RunStatus.DONE.value)
    feed = world.run_for(feed_comment)
    assert (feed.trigger, feed.status, feed.reason) == ("comment", RunStatus.SKIPPED.value, SkipReason.NO_RULE.value)
    assert world.outbox(comment_id=feed_comment) == []
