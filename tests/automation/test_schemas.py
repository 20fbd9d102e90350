"""Rule schemas: the contract's rule shape validates, and every invalid rule names the field at fault."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from replyflow.automation.matching import MatchMode, PostsMode
from replyflow.automation.schemas import (
    RuleCreate,
    RuleOut,
    RuleSpec,
    RuleUpdate,
    validation_failed,
)
from replyflow.errors import ValidationFailed

# The rule from CONTRACT.md, "A rule", with ids filled in.
CONTRACT_RULE: dict[str, Any] = {
    "account_id": "acc_01J9Z8Q4N6W2",
    "name": "Roast giveaway",
    "enabled": True,
    "posts": {"mode": "specific", "media_ids": ["17895695668004550"]},
    "keywords": ["link", "price"],
    "match": "contains_any",
    "exclude_keywords": [],
    "public_reply": {"texts": ["Sent you a DM, @{username}!", "Check your inbox 📬"]},
    "private_reply": {"text": "Here you go: ...", "buttons": [{"title": "Open", "url": "https://example.com/a"}]},
    "once_per_user": True,
}


def with_(**changes: Any) -> dict[str, Any]:
    return {**CONTRACT_RULE, **changes}


def field_of(data: dict[str, Any]) -> ValidationFailed:
    with pytest.raises(ValidationError) as caught:
        RuleCreate.model_validate(data)
    return validation_failed(caught.value)


def test_the_contract_rule_validates_with_defaults() -> None:
    rule = RuleCreate.model_validate(CONTRACT_RULE)
    assert rule.match is MatchMode.CONTAINS_ANY
    assert rule.posts.mode is PostsMode.SPECIFIC
    assert rule.priority == 0
    assert rule.include_replies is False
    assert rule.once_per_user is True
    assert rule.public_reply is not None and rule.public_reply.hide_comment is False
    assert rule.private_reply is not None and rule.private_reply.delay is None
    assert rule.follow_up is None
    dumped = rule.model_dump(mode="json")
    assert dumped["match"] == "contains_any"
    assert dumped["posts"] == {"mode": "specific", "media_ids": ["17895695668004550"]}
    assert json.loads(rule.model_dump_json()) == dumped


def test_a_full_rule_with_every_option() -> None:
    rule = RuleCreate.model_validate(
        with_(
            match="whole_word",
            exclude_keywords=["no"],
            public_reply={"texts": ["Done {first_name}!"], "hide_comment": True},
            private_reply={
                "text": "Hi {first_name}, you asked for {keyword}",
                "quick_replies": [{"title": "More info"}, {"title": "Price list"}],
                "delay": {"min_seconds": 5, "max_seconds": 60},
            },
            follow_up={"text": "Here is more", "buttons": [{"title": "Shop", "url": "https://shop.example/x?y=1"}]},
            include_replies=True,
            priority=-5,
            enabled=False,
        )
    )
    assert rule.private_reply is not None and rule.private_reply.delay is not None
    assert rule.private_reply.delay.max_seconds == 60
    assert rule.priority == -5


@pytest.mark.parametrize(
    ("data", "field", "says"),
    [
        (with_(name=""), "name", "at least 1"),
        (with_(name="x" * 121), "name", "at most 120"),
        (with_(posts={"mode": "sometimes"}), "posts.mode", "'specific', 'any' or 'next'"),
        (with_(posts={"mode": "specific"}), "posts.media_ids", "at least one post"),
        (with_(posts={"mode": "specific", "media_ids": []}), "posts.media_ids", "at least one post"),
        (with_(posts={"mode": "any", "media_ids": ["1"]}), "posts.media_ids", "leave media_ids empty"),
        (with_(posts={"mode": "next", "media_ids": ["1", "2"]}), "posts.media_ids", "single new post"),
        (with_(match="fuzzy"), "match", "contains_any"),
        (with_(keywords=[]), "keywords", "at least one keyword"),
        (with_(keywords=["!!!"]), "keywords[0]", "no letters, digits or emoji"),
        (with_(keywords=["link", "  "]), "keywords[1]", "at least 1"),
        (with_(keywords=["link", "\u200b"]), "keywords[1]", "no letters, digits or emoji"),
        (with_(keywords=["x" * 101]), "keywords[0]", "at most 100"),
        (with_(exclude_keywords=["...", "no"]), "exclude_keywords[0]", "no letters, digits or emoji"),
        (with_(exclude_keywords=["no", "LINK!"]), "exclude_keywords[1]", "also a keyword"),
        (with_(public_reply={"texts": []}), "public_reply.texts", "at least 1"),
        (with_(public_reply={"texts": ["a"] * 11}), "public_reply.texts", "at most 10"),
        (with_(public_reply={"texts": ["x" * 2201]}), "public_reply.texts[0]", "at most 2200"),
        (with_(public_reply={"texts": ["ok", "Hi {name}"]}), "public_reply.texts[1]", "{name}"),
        (with_(public_reply=None, private_reply=None), "private_reply", "sends nothing"),
        (with_(private_reply={"text": ""}), "private_reply.text", "at least 1"),
        (with_(private_reply={"text": "x" * 1001}), "private_reply.text", "at most 1000"),
        (with_(private_reply={"text": "Hey {Username}"}), "private_reply.text", "{Username}"),
        (
            with_(private_reply={"text": "x" * 641, "buttons": [{"title": "Go", "url": "https://a.example"}]}),
            "private_reply.text",
            "640",
        ),
        (
            with_(private_reply={"text": "x", "buttons": [{"title": "Go", "url": "https://a.example"}] * 4}),
            "private_reply.buttons",
            "at most 3",
        ),
        (
            with_(private_reply={"text": "x", "buttons": [{"title": "x" * 21, "url": "https://a.example"}]}),
            "private_reply.buttons[0].title",
            "at most 20",
        ),
        (
            with_(private_reply={"text": "x", "buttons": [{"title": "Go", "url": "http://a.example"}]}),
            "private_reply.buttons[0].url",
            "https://",
        ),
        (
            with_(private_reply={"text": "x", "buttons": [{"title": "Go", "url": "javascript:alert(1)"}]}),
            "private_reply.buttons[0].url",
            "https://",
        ),
        (
            with_(private_reply={"text": "x", "buttons": [{"title": "Go", "url": "https://user:pw@a.example/"}]}),
            "private_reply.buttons[0].url",
            "password",
        ),
        (
            with_(private_reply={"text": "x", "buttons": [{"title": "Go", "url": "https://a.example/a b"}]}),
            "private_reply.buttons[0].url",
            "spaces",
        ),
        (
            with_(private_reply={"text": "x", "buttons": [{"title": "Go", "url": "https:///path"}]}),
            "private_reply.buttons[0].url",
            "host",
        ),
        (
            with_(private_reply={"text": "x", "buttons": [{"title": "Go", "url": "https://a.example:99999/"}]}),
            "private_reply.buttons[0].url",
            "not a valid URL",
        ),
        (
            with_(private_reply={"text": "x", "quick_replies": [{"title": "q"}] * 14}),
            "private_reply.quick_replies",
            "at most 13",
        ),
        (
            with_(private_reply={"text": "x", "quick_replies": [{"title": "x" * 21}]}),
            "private_reply.quick_replies[0].title",
            "at most 20",
        ),
        (
            with_(
                private_reply={
                    "text": "x",
                    "buttons": [{"title": "Go", "url": "https://a.example"}],
                    "quick_replies": [{"title": "q"}],
                }
            ),
            "private_reply.quick_replies",
            "not both",
        ),
        (
            with_(private_reply={"text": "x", "delay": {"min_seconds": 60, "max_seconds": 5}}),
            "private_reply.delay.max_seconds",
            "at least min_seconds",
        ),
        (
            with_(private_reply={"text": "x", "delay": {"min_seconds": 0, "max_seconds": 8 * 24 * 3600}}),
            "private_reply.delay.max_seconds",
            "less than or equal to 86400",
        ),
        (
            with_(private_reply={"text": "x", "delay": {"min_seconds": -1}}),
            "private_reply.delay.min_seconds",
            "greater than or equal to 0",
        ),
        (with_(private_reply=None, follow_up={"text": "more"}), "follow_up", "needs a private_reply"),
        (with_(priority=10**9), "priority", "less than or equal"),
        (with_(priority="high"), "priority", "integer"),
        (with_(keyword=["typo"]), "keyword", "Extra inputs"),
        ({k: v for k, v in CONTRACT_RULE.items() if k != "account_id"}, "account_id", "required"),
        ({k: v for k, v in CONTRACT_RULE.items() if k != "posts"}, "posts", "required"),
    ],
)
def test_invalid_rules_name_the_field(data: dict[str, Any], field: str, says: str) -> None:
    error = field_of(data)
    assert error.field == field
    assert says in error.message
    assert error.message.startswith(f"{field}: ")
    body = error.to_dict()["error"]
    assert body["code"] == "validation_failed"
    assert body["field"] == field
    assert error.http_status == 422


def test_every_problem_is_listed() -> None:
    error = field_of(with_(name="", keywords=["!!!"]))
    assert [problem["field"] for problem in error.extra["errors"]] == ["name", "keywords[0]"]


def test_keywords_are_trimmed_and_deduplicated_after_normalisation() -> None:
    rule = RuleCreate.model_validate(with_(keywords=[" Link ", "link!", "LÍNK", "price", "Price?"]))
    assert rule.keywords == ["Link", "price"]
    exclude = RuleCreate.model_validate(with_(exclude_keywords=["No", "no", "NO!"]))
    assert exclude.exclude_keywords == ["No"]


def test_any_comment_needs_no_keywords() -> None:
    rule = RuleCreate.model_validate(with_(match="any_comment", keywords=[], exclude_keywords=["no"]))
    assert rule.keywords == []
    # With any_comment the keywords are not used, so an exclude word equal to one is harmless.
    RuleCreate.model_validate(with_(match="any_comment", keywords=["no"], exclude_keywords=["no"]))


def test_emoji_and_other_scripts_are_valid_keywords() -> None:
    rule = RuleCreate.model_validate(with_(keywords=["🔥", "💰 price", "链接", "リンク", "ราคา"]))
    assert len(rule.keywords) == 5


def test_posts_modes() -> None:
    assert RuleCreate.model_validate(with_(posts={"mode": "any"})).posts.media_ids == []
    assert RuleCreate.model_validate(with_(posts={"mode": "next"})).posts.mode is PostsMode.NEXT
    bound = RuleCreate.model_validate(with_(posts={"mode": "next", "media_ids": ["178"]}))
    assert bound.posts.media_ids == ["178"]
    twice = RuleCreate.model_validate(with_(posts={"mode": "specific", "media_ids": ["1", "2", "1"]}))
    assert twice.posts.media_ids == ["1", "2"]


def test_a_dm_only_and_a_reply_only_rule() -> None:
    assert RuleCreate.model_validate(with_(public_reply=None)).public_reply is None
    reply_only = RuleCreate.model_validate(with_(private_reply=None))
    assert reply_only.private_reply is None


def test_a_fixed_delay_can_be_given_as_min_seconds_alone() -> None:
    rule = RuleCreate.model_validate(with_(private_reply={"text": "x", "delay": {"min_seconds": 30}}))
    assert rule.private_reply is not None and rule.private_reply.delay is not None
    assert (rule.private_reply.delay.min_seconds, rule.private_reply.delay.max_seconds) == (30, 30)


def test_the_matcher_is_compiled_once_per_rule() -> None:
    rule = RuleCreate.model_validate(with_(keywords=["Précio", "link"], exclude_keywords=["no"]))
    assert rule.matcher is rule.matcher
    assert [keyword.normalised for keyword in rule.matcher.keywords] == ["precio", "link"]
    assert rule.matcher.mode is MatchMode.CONTAINS_ANY
    assert "matcher" not in rule.model_dump()


def test_rules_are_immutable() -> None:
    rule = RuleCreate.model_validate(CONTRACT_RULE)
    with pytest.raises(ValidationError):
        rule.match = MatchMode.EXACT  # type: ignore[misc]


def test_patch_changes_only_what_was_sent() -> None:
    current = RuleCreate.model_validate(CONTRACT_RULE)
    updated = RuleUpdate.model_validate({"match": "whole_word", "keywords": ["Price"]}).apply_to(current)
    assert isinstance(updated, RuleCreate)
    assert updated.match is MatchMode.WHOLE_WORD
    assert updated.keywords == ["Price"]
    assert updated.public_reply == current.public_reply
    assert updated.account_id == current.account_id
    assert updated.matcher.keywords[0].normalised == "price"


def test_patch_with_null_clears_an_optional_part() -> None:
    current = RuleCreate.model_validate(CONTRACT_RULE)
    updated = RuleUpdate.model_validate({"public_reply": None}).apply_to(current)
    assert updated.public_reply is None
    assert updated.private_reply == current.private_reply


def test_patch_replaces_nested_objects_whole() -> None:
    current = RuleCreate.model_validate(CONTRACT_RULE)
    updated = RuleUpdate.model_validate({"private_reply": {"text": "New"}}).apply_to(current)
    assert updated.private_reply is not None and updated.private_reply.buttons == []


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"keywords": []}, "keywords"),
        ({"match": "exact", "keywords": []}, "keywords"),
        ({"exclude_keywords": ["link"]}, "exclude_keywords[0]"),
        ({"public_reply": None, "private_reply": None}, "private_reply"),
        ({"name": None}, "name"),
        ({"enabled": None}, "enabled"),
    ],
)
def test_patch_is_validated_as_merged(patch: dict[str, Any], field: str) -> None:
    current = RuleCreate.model_validate(CONTRACT_RULE)
    update = RuleUpdate.model_validate(patch)
    with pytest.raises(ValidationError) as caught:
        update.apply_to(current)
    assert validation_failed(caught.value).field == field


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"keywords": ["???"]}, "keywords[0]"),
        ({"account_id": "acc_other"}, "account_id"),
        ({"posts": {"mode": "specific"}}, "posts.media_ids"),
        ({"public_reply": {"texts": ["{foo}"]}}, "public_reply.texts[0]"),
    ],
)
def test_patch_body_fields_are_checked_on_their_own(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RuleUpdate.model_validate(patch)
    assert validation_failed(caught.value).field == field


def test_rule_out_serialises_a_saved_rule() -> None:
    created = RuleCreate.model_validate(CONTRACT_RULE)
    now = datetime(2025, 11, 3, 12, 0, tzinfo=UTC)
    out = RuleOut.model_validate({**created.model_dump(), "id": "rul_01", "created_at": now, "updated_at": now})
    body = out.model_dump(mode="json")
    assert body["id"] == "rul_01"
    assert body["account_id"] == CONTRACT_RULE["account_id"]
    assert body["keywords"] == ["link", "price"]
    assert body["created_at"].startswith("2025-11-03T12:00:00")
    # A RuleOut is a RuleSpec, so a saved rule evaluates directly.
    assert isinstance(out, RuleSpec) and out.matcher.find("price") is not None


def test_rendering_reply_texts() -> None:
    rule = RuleCreate.model_validate(
        with_(
            public_reply={"texts": ["Sent you a DM, @{username}!", "Check your inbox, {first_name}"]},
            private_reply={"text": "Hi {first_name}, here is the {keyword}"},
        )
    )
    variables = {"username": "ana.cafe", "first_name": "Ana", "keyword": "link"}
    assert rule.public_reply is not None and rule.private_reply is not None
    rendered = {rule.public_reply.render(variables, rng=random.Random(seed)) for seed in range(20)}
    assert rendered == {"Sent you a DM, @ana.cafe!", "Check your inbox, Ana"}
    assert rule.private_reply.render_text(variables) == "Hi Ana, here is the link"


def test_rendered_texts_are_cut_to_metas_limits() -> None:
    rule = RuleCreate.model_validate(
        with_(private_reply={"text": "x" * 620 + "{first_name}", "buttons": [{"title": "Go", "url": "https://a.b"}]})
    )
    assert rule.private_reply is not None
    text = rule.private_reply.render_text({"first_name": "Bartholomew " * 5})
    assert len(text) == 640 and text.endswith("…")


def test_unknown_variables_are_refused_but_other_braces_are_text() -> None:
    rule = RuleCreate.model_validate(with_(public_reply={"texts": ["Price: {{ 10 }} or {1} {}"]}))
    assert rule.public_reply is not None
    assert rule.public_reply.render({"username": "x"}, rng=random.Random(1)) == "Price: {{ 10 }} or {1} {}"
