"""The engine end to end through the sandbox: a comment webhook in, a public reply and one private reply out.

Every test asserts on what "Meta" (the sandbox) received: the public reply precedes the DM and nothing is
sent twice, whatever fails along the way.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from replyflow.automation.models import RunStatus, SendState
from replyflow.conversations.models import TrackedLink

from .world import World


def test_a_matching_comment_gets_a_public_reply_then_one_dm(world: World) -> None:
    rule_id = world.add_rule()
    comment_id = world.comment("Can I get the LINK please? 🙏", username="ana.cafe")

    world.drive()

    world.assert_reply_then_dm_once(comment_id)
    public, private = world.outbox(comment_id=comment_id)
    assert public.text == "Sent you a DM, @ana.cafe!"
    assert private.body["recipient"] == {"comment_id": comment_id}
    assert private.body["message"] == {"text": "Here is the link, ana.cafe: https://roastery.example/early"}
    run = world.run_for(comment_id)
    assert (run.status, run.rule_id, run.matched_keyword) == (RunStatus.DONE.value, rule_id, "link")
    assert run.public_reply_id == public.result_id
    assert run.dm_message_id == private.result_id
    assert run.dm_recipient_id == run.from_id == private.recipient_id
    steps = [s.step for s in world.steps(run.id)]
    assert steps == [
        "received",
        "rule_checked",
        "matched",
        "public_reply_attempt",
        "public_replied",
        "dm_attempt",
        "dm_sent",
        "done",
    ]


@pytest.mark.parametrize(
    ("match", "keywords", "hit", "miss"),
    [
        ("contains_any", ["link", "price"], "what's the PRICE?", "nice photo"),
        ("contains_all", ["price", "link"], "price + link please", "just the price"),
        ("exact", ["info"], "  INFO!! 🔥 ", "more info please"),
        ("whole_word", ["café"], "Cafe, s'il vous plaît", "cafeteria vibes"),
        ("any_comment", [], "love it", None),
    ],
)
def test_every_matching_mode(world: World, match: str, keywords: list[str], hit: str, miss: str | None) -> None:
    world.add_rule(match=match, keywords=keywords)
    hit_id = world.comment(hit, username="hit.person")
    miss_id = world.comment(miss, username="miss.person") if miss is not None else None

    world.drive()

    world.assert_reply_then_dm_once(hit_id)
    if miss_id is not None:
        assert world.outbox(comment_id=miss_id) == []
        run = world.run_for(miss_id)
        assert (run.status, run.reason) == ("skipped", "no_keyword")


def test_excluded_words_skip_whole_words_only(world: World) -> None:
    world.add_rule(keywords=["link"], exclude_keywords=["no"])
    excluded = world.comment("no link for me", username="a.person")
    kept = world.comment("I know, send the link", username="b.person")

    world.drive()

    assert world.outbox(comment_id=excluded) == []
    assert world.run_for(excluded).reason == "excluded_keyword"
    world.assert_reply_then_dm_once(kept)


def test_dm_only_rule_sends_no_public_reply(world: World) -> None:
    world.add_rule(public_reply=None)
    comment_id = world.comment("link")
    world.drive()
    world.assert_reply_then_dm_once(comment_id, public=False)
    assert world.run_for(comment_id).public_reply_state == SendState.SKIPPED.value


def test_public_reply_only_rule_is_done_after_the_reply(world: World) -> None:
    world.add_rule(private_reply=None)
    comment_id = world.comment("link")
    world.drive()
    assert [e.kind for e in world.outbox(comment_id=comment_id)] == ["public_reply"]
    assert world.run_for(comment_id).status == "done"


# -- post targeting ------------------------------------------------------------------------------------------


def test_specific_posts_only(world: World) -> None:
    world.add_rule(posts={"mode": "specific", "media_ids": [world.media_ids[1]]})
    other = world.comment("link", media=0, username="x.one")
    targeted = world.comment("link", media=1, username="x.two")
    world.drive()
    assert world.outbox(comment_id=other) == []
    assert world.run_for(other).reason == "post_not_targeted"
    world.assert_reply_then_dm_once(targeted)


def test_any_post(world: World) -> None:
    world.add_rule(posts={"mode": "any"})
    ids = [world.comment("link", media=i, username=f"p{i}") for i in range(3)]
    world.drive()
    for comment_id in ids:
        world.assert_reply_then_dm_once(comment_id)


def test_next_binds_to_the_first_post_published_after_the_rule(world: World) -> None:
    rule_id = world.add_rule(posts={"mode": "next"})
    world.advance(minutes=5)
    new_post = world.state.add_media(world.sandbox.ig_id, caption="Fresh reel", media_product_type="REELS").id
    world.advance(minutes=5)
    later_post = world.state.add_media(world.sandbox.ig_id, caption="Another").id

    old = world.comment("link", media=0, username="old.post")
    on_new = world.comment("link", media=new_post, username="new.post")
    world.drive()
    on_later = world.comment("link", media=later_post, username="later.post")
    world.drive()

    assert world.outbox(comment_id=old) == []
    assert world.run_for(old).reason == "post_not_targeted"
    world.assert_reply_then_dm_once(on_new)
    assert world.outbox(comment_id=on_later) == []
    assert world.run_for(on_later).reason == "post_not_targeted"
    with world.runtime.session() as session:
        from replyflow.automation.models import Rule

        rule = session.get(Rule, rule_id)
        assert rule is not None and rule.bound_media_id == new_post


def test_next_ignores_posts_published_before_the_rule(world: World) -> None:
    world.add_rule(posts={"mode": "next"})
    comment_id = world.comment("link", media=2)
    world.drive()
    assert world.outbox(comment_id=comment_id) == []
    assert world.run_for(comment_id).reason == "post_not_targeted"


# -- skip reasons ----------------------------------------------------------------------------------------------


def test_the_accounts_own_comments_are_skipped(world: World) -> None:
    world.add_rule(match="any_comment", keywords=[])
    comment_id = world.comment("link in bio!", username=world.sandbox.username)
    world.drive()
    assert world.outbox(comment_id=comment_id) == []
    assert world.run_for(comment_id).reason == "own_comment"


def test_our_public_reply_coming_back_as_a_webhook_is_not_answered(world: World) -> None:
    world.add_rule(match="any_comment", keywords=[], include_replies=True)
    comment_id = world.comment("hello")
    world.drive()
    world.assert_reply_then_dm_once(comment_id)
    reply_run = world.run_for(world.run_for(comment_id).public_reply_id or "")
    assert (reply_run.status, reply_run.reason) == ("skipped", "own_comment")
    assert len(world.outbox()) == 2


def test_replies_to_comments_are_skipped_unless_the_rule_opts_in(world: World) -> None:
    world.add_rule()
    parent = world.comment("nice", username="first.person")
    reply = world.comment("link?", username="second.person", parent_id=parent)
    world.drive()
    assert world.run_for(reply).reason == "reply_to_reply"
    assert world.outbox() == []


def test_replies_are_answered_when_the_rule_includes_them(world: World) -> None:
    world.add_rule(include_replies=True)
    parent = world.comment("nice", username="first.person")
    reply = world.comment("link?", username="second.person", parent_id=parent)
    world.drive()
    world.assert_reply_then_dm_once(reply)


def test_comments_older_than_the_window_are_skipped(world: World) -> None:
    world.add_rule()
    comment = world.state.add_comment(world.media_ids[0], text="link", username="late.person")
    world.advance(days=8)  # Meta delivered the webhook very late
    world.deliver()
    world.drive()
    assert world.run_for(comment.id).reason == "outside_window"
    assert world.outbox() == []


def test_once_per_user_answers_a_person_once_per_post(world: World) -> None:
    world.add_rule(once_per_user=True)
    first = world.comment("link", username="repeat.person")
    world.drive()
    second = world.comment("link again", username="repeat.person")
    other_post = world.comment("link", username="repeat.person", media=1)
    world.drive()
    world.assert_reply_then_dm_once(first)
    assert world.run_for(second).reason == "already_handled_user"
    assert world.outbox(comment_id=second) == []
    assert world.run_for(other_post).reason == "post_not_targeted"


def test_without_once_per_user_every_comment_is_answered(world: World) -> None:
    world.add_rule(once_per_user=False)
    first = world.comment("link", username="repeat.person")
    second = world.comment("link again", username="repeat.person")
    world.drive()
    world.assert_reply_then_dm_once(first)
    world.assert_reply_then_dm_once(second)


def test_no_rule_means_skipped_with_no_rule(world: World) -> None:
    comment_id = world.comment("link")
    world.drive()
    assert world.run_for(comment_id).reason == "no_rule"


def test_a_rule_turned_off_before_the_engine_ran_sends_nothing(world: World) -> None:
    rule_id = world.add_rule()
    comment_id = world.comment("link")
    with world.runtime.session() as session:
        from replyflow.automation.models import Rule

        rule = session.get(Rule, rule_id)
        assert rule is not None
        rule.enabled = False
    world.drive()
    assert world.outbox() == []
    assert (world.run_for(comment_id).status, world.run_for(comment_id).reason) == ("skipped", "rule_disabled")


def test_two_rules_matching_one_comment_first_by_priority_wins(world: World) -> None:
    low = world.add_rule(name="catch-all", match="any_comment", keywords=[], priority=5)
    high = world.add_rule(name="link", priority=1, public_reply={"texts": ["From the link rule"]})
    comment_id = world.comment("link please")
    world.drive()

    world.assert_reply_then_dm_once(comment_id)
    assert world.outbox(comment_id=comment_id)[0].text == "From the link rule"
    run = world.run_for(comment_id)
    assert run.rule_id == high
    checked = {s.rule_id: s.reason for s in world.steps(run.id) if s.step == "rule_checked"}
    assert checked == {high: None, low: "already_taken"}


def test_equal_priority_oldest_rule_wins(world: World) -> None:
    first = world.add_rule(public_reply={"texts": ["first"]})
    world.advance(seconds=1)
    world.add_rule(public_reply={"texts": ["second"]})
    comment_id = world.comment("link")
    world.drive()
    world.assert_reply_then_dm_once(comment_id)
    assert world.run_for(comment_id).rule_id == first


# -- redelivery ------------------------------------------------------------------------------------------------


def test_redelivered_webhooks_make_one_run_and_send_once(world: World) -> None:
    world.add_rule()
    comment = world.state.add_comment(world.media_ids[0], text="link", username="dup.person")
    pending = world.state.peek_pending_webhooks()
    world.deliver(again=True)  # Meta sends the same update twice
    world.drive()
    for item in pending:  # and once more, long after it was handled
        world.state._volatile.pending.append(item)
    world.deliver()
    world.drive()

    assert len([r for r in world.runs() if r.comment_id == comment.id]) == 1
    world.assert_reply_then_dm_once(comment.id)


def test_calling_intake_twice_for_one_comment_is_harmless(world: World) -> None:
    from replyflow.accounts.models import Account
    from replyflow.automation.intake import accept_comment
    from replyflow.webhooks.events import CommentEvent

    world.add_rule()
    comment = world.state.add_comment(world.media_ids[0], text="link", username="twice")
    world.state.take_pending_webhooks()
    event = CommentEvent(
        entry_id=world.sandbox.ig_id,
        comment_id=comment.id,
        text=comment.text,
        from_id=comment.from_id,
        from_username="twice",
        media_id=comment.media_id,
        entry_time=comment.timestamp,
    )
    for _ in range(2):
        with world.runtime.session() as session:
            account = session.get(Account, world.account_id)
            assert account is not None
            accept_comment(session=session, account=account, event=event, runtime=world.runtime)
    assert len([r for r in world.runs() if r.comment_id == event.comment_id]) == 1
    world.drive()
    world.assert_reply_then_dm_once(event.comment_id)


# -- options of the rule ---------------------------------------------------------------------------------------


def test_dm_delay_waits_after_the_public_reply(world: World) -> None:
    world.add_rule(private_reply={"text": "Here you go", "delay": {"min_seconds": 90}})
    comment_id = world.comment("link")
    world.drive(advance=False)
    assert [e.kind for e in world.outbox(comment_id=comment_id)] == ["public_reply"]
    world.drive()
    public, private = world.outbox(comment_id=comment_id)
    assert private.at - public.at >= dt.timedelta(seconds=90)


def test_dm_delay_never_passes_the_window(world: World) -> None:
    world.add_rule(private_reply={"text": "Here you go", "delay": {"min_seconds": 86400}})
    comment = world.state.add_comment(world.media_ids[0], text="link", username="late.person")
    world.advance(days=6, hours=12)  # half a day of window left, the delay asks for a whole day
    world.deliver()
    world.drive()
    world.assert_reply_then_dm_once(comment.id)
    private = world.outbox("private_reply")[0]
    assert private.at <= comment.timestamp + dt.timedelta(days=7)


def test_hide_comment_after_the_public_reply(world: World) -> None:
    world.add_rule(public_reply={"texts": ["Check your DMs"], "hide_comment": True})
    comment_id = world.comment("link")
    world.drive()
    world.assert_reply_then_dm_once(comment_id)
    sandbox_comment = world.state.get_comment(comment_id)
    assert sandbox_comment is not None and sandbox_comment.hidden
    assert world.run_for(comment_id).hide_state == SendState.SENT.value


def test_buttons_go_out_as_a_button_template(world: World) -> None:
    world.add_rule(
        private_reply={"text": "Tap below", "buttons": [{"title": "Open shop", "url": "https://shop.example/x"}]}
    )
    comment_id = world.comment("link")
    world.drive()
    message = world.outbox("private_reply", comment_id=comment_id)[0].body["message"]
    payload = message["attachment"]["payload"]
    assert payload["template_type"] == "button"
    (button,) = payload["buttons"]
    assert (button["type"], button["title"]) == ("web_url", "Open shop")
    # The link goes through our redirect (which counts the click) and the run keeps what was sent.
    assert button["url"].startswith(f"{world.runtime.settings.public_url}/r/")
    with world.runtime.session() as session:
        link = session.scalar(select(TrackedLink).where(TrackedLink.url == "https://shop.example/x"))
        assert link is not None and button["url"].endswith(f"/r/{link.code}")
    assert world.run_for(comment_id).dm_message == message


def test_quick_replies_carry_a_payload_naming_the_run(world: World) -> None:
    from replyflow.automation.private_reply import parse_quick_reply_payload

    world.add_rule(private_reply={"text": "Which size?", "quick_replies": [{"title": "Small"}, {"title": "Large"}]})
    comment_id = world.comment("link")
    world.drive()
    message = world.outbox("private_reply", comment_id=comment_id)[0].body["message"]
    payloads = [q["payload"] for q in message["quick_replies"]]
    run_id = world.run_for(comment_id).id
    assert [parse_quick_reply_payload(p) for p in payloads] == [(run_id, 0), (run_id, 1)]


def test_live_comments_get_the_dm_without_a_public_reply(world: World) -> None:
    live = world.state.add_media(world.sandbox.ig_id, caption="Live now", live=True).id
    world.add_rule(posts={"mode": "specific", "media_ids": [live]})
    comment_id = world.comment("link", media=live)
    world.drive()
    world.assert_reply_then_dm_once(comment_id, public=False)
    run = world.run_for(comment_id)
    assert run.is_live
    assert any(s.reason == "live_comment_not_supported_for_public_reply" for s in world.steps(run.id))
