"""evaluate() and choose_rule(): every skip reason, the order of the checks, and first-match-wins."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from replyflow.automation.matching import (
    MATCHING_CHAIN,
    CommentContext,
    MatchResult,
    RuleDecision,
    choose_rule,
    dry_run,
    evaluate,
    reply_variables,
)
from replyflow.automation.reasons import SkipReason
from replyflow.automation.templates import render_template
from replyflow.automation.window import PRIVATE_REPLY_WINDOW, WINDOW_SAFETY_MARGIN

from .factories import ACCOUNT_IG_ID, MEDIA_ID, NOW, comment, rule


def run(spec_comment: CommentContext, **rule_overrides: object) -> MatchResult:
    return evaluate(rule(**rule_overrides), spec_comment, now=NOW, account_ig_id=ACCOUNT_IG_ID)


def test_a_matching_comment_matches_with_its_keyword() -> None:
    result = run(comment("Can I get the LINK?"))
    assert result == MatchResult(match=True, reason=None, detail="Matched keyword 'link'.", keyword="link")


def test_any_comment_match_has_no_keyword() -> None:
    result = run(comment("love this"), match="any_comment", keywords=[])
    assert result.match and result.keyword is None


@pytest.mark.parametrize(
    ("context", "overrides", "reason"),
    [
        (comment("link"), {"enabled": False}, SkipReason.RULE_DISABLED),
        (comment("link", account_needs_reauth=True), {}, SkipReason.ACCOUNT_NEEDS_REAUTH),
        (comment("link", from_id=ACCOUNT_IG_ID), {}, SkipReason.OWN_COMMENT),
        (comment("link", media_id="17900000000000777"), {}, SkipReason.POST_NOT_TARGETED),
        (comment("link", parent_id="17800000000000001"), {}, SkipReason.REPLY_TO_REPLY),
        (comment("link", created_at=NOW - timedelta(days=8)), {}, SkipReason.OUTSIDE_WINDOW),
        (comment("no link"), {"exclude_keywords": ["no"]}, SkipReason.EXCLUDED_KEYWORD),
        (comment("hello"), {}, SkipReason.NO_KEYWORD),
        (comment("link", taken_by="rule_01"), {}, SkipReason.ALREADY_TAKEN),
        (comment("link", already_handled_user=True), {}, SkipReason.ALREADY_HANDLED_USER),
    ],
)
def test_each_skip_reason(context: CommentContext, overrides: dict[str, object], reason: SkipReason) -> None:
    result = run(context, **overrides)
    assert not result.match
    assert result.reason is reason
    assert result.detail
    assert result.keyword is None


def test_the_first_failing_check_is_reported() -> None:
    # Disabled, own comment, other post and no keyword at once: the chain stops at the first.
    context = comment("hello", from_id=ACCOUNT_IG_ID, media_id="other")
    assert run(context, enabled=False).reason is SkipReason.RULE_DISABLED
    assert run(context).reason is SkipReason.OWN_COMMENT
    assert len(MATCHING_CHAIN) == 10


def test_replies_match_when_the_rule_opts_in() -> None:
    assert run(comment("link", parent_id="17800000000000001"), include_replies=True).match


def test_own_comment_needs_a_known_author() -> None:
    assert run(comment("link", from_id=None)).match


def test_any_post_is_targeted() -> None:
    assert run(comment("link", media_id="whatever"), posts={"mode": "any"}).match


def test_next_post_waits_until_the_engine_binds_it() -> None:
    unbound = {"posts": {"mode": "next"}}
    waiting = run(comment("link"), **unbound)
    assert waiting.reason is SkipReason.POST_NOT_TARGETED
    assert "next new post" in waiting.detail
    assert run(comment("link", binds_next_post=True), **unbound).match
    bound = {"posts": {"mode": "next", "media_ids": [MEDIA_ID]}}
    assert run(comment("link"), **bound).match
    assert run(comment("link", media_id="later", binds_next_post=True), **bound).reason is (
        SkipReason.POST_NOT_TARGETED
    )


def test_window_edges() -> None:
    deadline_age = PRIVATE_REPLY_WINDOW - WINDOW_SAFETY_MARGIN
    assert run(comment("link", created_at=NOW - deadline_age)).match
    late = run(comment("link", created_at=NOW - deadline_age - timedelta(seconds=1)))
    assert late.reason is SkipReason.OUTSIDE_WINDOW
    assert run(comment("link", created_at=None)).match  # a dry run has no comment time


def test_once_per_user_lookup_is_lazy() -> None:
    calls: list[str] = []

    def handled() -> bool:
        calls.append("looked up")
        return True

    # Not looked up when a cheaper check already fails...
    assert run(comment("hello", already_handled_user=handled)).reason is SkipReason.NO_KEYWORD
    assert run(comment("link", already_handled_user=handled, taken_by="rule_x")).reason is (SkipReason.ALREADY_TAKEN)
    # ...nor when the rule allows several answers per person.
    assert run(comment("link", already_handled_user=handled), once_per_user=False).match
    assert calls == []
    assert run(comment("link", already_handled_user=handled)).reason is SkipReason.ALREADY_HANDLED_USER
    assert calls == ["looked up"]


def test_live_comments_still_match() -> None:
    # The engine leaves out the public reply for live comments; the rule itself still matches.
    assert run(comment("link", is_live=True)).match


def test_choose_rule_first_match_wins_and_later_matches_are_taken() -> None:
    price = rule(keywords=["price"])
    link = rule(keywords=["link"])
    link_too = rule(keywords=["link", "price"])
    context = comment("link please")
    decision = choose_rule(
        [
            ("r_price", price, context),
            ("r_link", link, context),
            ("r_both", link_too, context),
            ("r_off", rule(enabled=False), context),
        ],
        now=NOW,
        account_ig_id=ACCOUNT_IG_ID,
    )
    assert decision.winner == "r_link"
    assert decision.result.match and decision.result.keyword == "link"
    reasons = {key: result.reason for key, result in decision.results}
    assert reasons == {
        "r_price": SkipReason.NO_KEYWORD,
        "r_link": None,
        "r_both": SkipReason.ALREADY_TAKEN,
        "r_off": SkipReason.RULE_DISABLED,
    }
    assert "r_link" in dict(decision.results)["r_both"].detail


def test_choose_rule_reports_the_most_telling_skip() -> None:
    other_post = rule(posts={"mode": "specific", "media_ids": ["elsewhere"]})
    wrong_word = rule(keywords=["price"])
    decision = choose_rule(
        [("a", other_post, comment("hello")), ("b", wrong_word, comment("hello"))],
        now=NOW,
        account_ig_id=ACCOUNT_IG_ID,
    )
    assert decision.winner is None
    assert decision.result.reason is SkipReason.NO_KEYWORD


def test_choose_rule_without_rules() -> None:
    decision: RuleDecision[str] = choose_rule([], now=NOW, account_ig_id=ACCOUNT_IG_ID)
    assert decision.winner is None
    assert decision.result.reason is SkipReason.NO_RULE
    assert decision.results == ()


def test_choose_rule_uses_each_rules_own_context() -> None:
    # Once-per-user is per rule: the first rule already answered this person, the second has not.
    first, second = rule(keywords=["link"]), rule(keywords=["link"])
    decision = choose_rule(
        [("first", first, comment("link", already_handled_user=True)), ("second", second, comment("link"))],
        now=NOW,
        account_ig_id=ACCOUNT_IG_ID,
    )
    assert decision.winner == "second"
    assert dict(decision.results)["first"].reason is SkipReason.ALREADY_HANDLED_USER


def test_reply_variables() -> None:
    result = run(comment("the LINK", username="ana.cafe"), keywords=["Link"])
    variables = reply_variables(comment("x", username="ana.cafe"), result)
    # Meta gives no name with a comment: {first_name} stands in with the username, or a written fallback.
    assert variables == {"username": "ana.cafe", "first_name": "", "keyword": "Link"}
    assert render_template("Hi {first_name}, {keyword}", variables) == "Hi ana.cafe, Link"
    assert render_template("Hi {first_name|there}", variables) == "Hi there"
    assert reply_variables(comment("x"), result, first_name="Ana")["first_name"] == "Ana"


def test_reasons_have_descriptions_and_increasing_stages() -> None:
    stages = [reason.stage for reason in SkipReason]
    assert stages == sorted(stages)
    assert all(reason.description.endswith(".") for reason in SkipReason)
    assert SkipReason.NO_KEYWORD.stage > SkipReason.POST_NOT_TARGETED.stage
    assert SkipReason("no_keyword") is SkipReason.NO_KEYWORD


def test_dry_run_renders_what_would_be_sent() -> None:
    spec = rule(
        keywords=["Link"],
        public_reply={"texts": ["Sent you a DM, @{username}!"]},
        private_reply={"text": "Here is the {keyword}, {first_name}"},
    )
    answer = dry_run(spec, comment("link pls"), now=NOW, account_ig_id=ACCOUNT_IG_ID, rng=random.Random(0))
    assert answer.match and answer.reason is None
    assert answer.public_reply == "Sent you a DM, @ana.cafe!"
    assert answer.private_reply == "Here is the Link, ana.cafe"
    skipped = dry_run(spec, comment("hello"), now=NOW, account_ig_id=ACCOUNT_IG_ID, rng=random.Random(0))
    assert (skipped.match, skipped.reason, skipped.public_reply, skipped.private_reply) == (
        False,
        SkipReason.NO_KEYWORD,
        None,
        None,
    )
    dm_only = dry_run(
        rule(), comment("link"), now=NOW, account_ig_id=ACCOUNT_IG_ID, rng=random.Random(0), first_name="Ana"
    )
    assert dm_only.public_reply is None and dm_only.private_reply == "Here you go, Ana"
