"""Template rendering never fails; DM delays stay inside Meta's 7-day private-reply window."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replyflow.automation.templates import (
    KNOWN_VARIABLES,
    pick_text,
    render_template,
    template_variables,
    unknown_variables,
    variables_in,
)
from replyflow.automation.window import (
    MAX_DELAY_SECONDS,
    PRIVATE_REPLY_WINDOW,
    pick_delay,
    private_reply_deadline,
    within_window,
)

from .factories import NOW


def test_render_fills_known_variables_and_leaves_the_rest() -> None:
    variables = template_variables(username="ana.cafe", first_name=None, keyword="link")
    assert render_template("Hi @{username} ({first_name}): {keyword}", variables) == "Hi @ana.cafe (ana.cafe): link"
    assert render_template("{unknown} {username", variables) == "{unknown} {username"
    assert render_template("{ username } {{keyword}}", variables) == "{ username } {link}"


def test_a_missing_first_name_takes_the_written_fallback_or_the_username() -> None:
    unnamed = template_variables(username="maria.k", first_name=None, keyword="link")
    assert render_template("Hi {first_name|there}!", unnamed) == "Hi there!"
    assert render_template("Hi {first_name}!", unnamed) == "Hi maria.k!"
    assert render_template("Hi {first_name|}!", unnamed) == "Hi !"
    named = template_variables(username="maria.k", first_name="Maria", keyword="link")
    assert render_template("Hi {first_name|there}!", named) == "Hi Maria!"
    assert render_template("{nickname|you}", named) == "{nickname|you}"


def test_render_is_a_single_pass() -> None:
    # A first name chosen by the commenter must not pull other variables in.
    variables = template_variables(username="ana", first_name="{keyword}", keyword="secret")
    assert render_template("Hi {first_name}", variables) == "Hi {keyword}"


def test_missing_names_render_empty_rather_than_as_placeholders() -> None:
    assert template_variables(username=None, first_name=None, keyword=None) == {
        "username": "",
        "first_name": "",
        "keyword": "",
    }


@pytest.mark.parametrize(("limit", "expected"), [(5, "abcd…"), (1, "a"), (0, ""), (20, "abcdefgh")])
def test_render_cuts_to_a_limit(limit: int, expected: str) -> None:
    assert render_template("abcdefgh", {}, max_chars=limit) == expected


@settings(deadline=None)
@given(st.text(max_size=60), st.dictionaries(st.sampled_from([*KNOWN_VARIABLES, "x"]), st.text(max_size=10)))
def test_render_never_raises(text: str, variables: dict[str, str]) -> None:
    rendered = render_template(text, variables, max_chars=50)
    assert len(rendered) <= 50


def test_variables_in_and_unknown_variables() -> None:
    text = "{username} {foo} {username} {1} {bar_2}"
    assert variables_in(text) == ["username", "foo", "bar_2"]
    assert unknown_variables(text) == ["foo", "bar_2"]


def test_pick_text_uses_every_text() -> None:
    rng = random.Random(7)
    assert {pick_text(["a", "b", "c"], rng=rng) for _ in range(50)} == {"a", "b", "c"}
    with pytest.raises(ValueError):
        pick_text([], rng=rng)


def test_window() -> None:
    created = NOW - timedelta(days=3)
    deadline = private_reply_deadline(created)
    assert deadline < created + PRIVATE_REPLY_WINDOW
    assert within_window(comment_created_at=created, now=deadline)
    assert not within_window(comment_created_at=created, now=deadline + timedelta(seconds=1))


def test_pick_delay_stays_in_bounds() -> None:
    rng = random.Random(3)
    delays = {pick_delay(min_seconds=10, max_seconds=20, now=NOW, comment_created_at=NOW, rng=rng) for _ in range(200)}
    assert min(delays) >= timedelta(seconds=10) and max(delays) <= timedelta(seconds=20)
    assert len(delays) > 1
    fixed = pick_delay(min_seconds=30, max_seconds=30, now=NOW, comment_created_at=None, rng=rng)
    assert fixed == timedelta(seconds=30)


def test_pick_delay_never_passes_the_deadline() -> None:
    created = NOW - PRIVATE_REPLY_WINDOW + timedelta(hours=1)
    delay = pick_delay(
        min_seconds=MAX_DELAY_SECONDS,
        max_seconds=MAX_DELAY_SECONDS,
        now=NOW,
        comment_created_at=created,
        rng=random.Random(),
    )
    assert NOW + delay == private_reply_deadline(created)
    late = pick_delay(
        min_seconds=60, max_seconds=60, now=NOW, comment_created_at=NOW - timedelta(days=30), rng=random.Random()
    )
    assert late == timedelta(0)


def test_pick_delay_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        pick_delay(min_seconds=5, max_seconds=1, now=NOW, comment_created_at=None, rng=random.Random())
