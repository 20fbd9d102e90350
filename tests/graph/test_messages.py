"""Message builders produce Meta's shapes and refuse what Instagram would refuse."""

from __future__ import annotations

import pytest

from replyflow.errors import ValidationFailed
from replyflow.graph.messages import (
    MAX_BUTTON_TEMPLATE_TEXT_CHARS,
    MAX_TEXT_CHARS,
    PostbackButton,
    QuickReply,
    UrlButton,
    button_template,
    text_message,
)


def test_text_message() -> None:
    assert text_message("Here you go 📬") == {"text": "Here you go 📬"}


def test_text_with_quick_replies() -> None:
    message = text_message("Which size?", [QuickReply("Small", "SIZE_S"), QuickReply("Large", "SIZE_L")])
    assert message == {
        "text": "Which size?",
        "quick_replies": [
            {"content_type": "text", "title": "Small", "payload": "SIZE_S"},
            {"content_type": "text", "title": "Large", "payload": "SIZE_L"},
        ],
    }


def test_button_template() -> None:
    message = button_template(
        "Here is the link",
        [UrlButton("Open shop", "https://shop.example/roast?ref=ig"), PostbackButton("More info", "MORE_INFO")],
    )
    assert message == {
        "attachment": {
            "type": "template",
            "payload": {
                "template_type": "button",
                "text": "Here is the link",
                "buttons": [
                    {"type": "web_url", "url": "https://shop.example/roast?ref=ig", "title": "Open shop"},
                    {"type": "postback", "title": "More info", "payload": "MORE_INFO"},
                ],
            },
        }
    }


def test_limits_are_inclusive() -> None:
    text_message("x" * MAX_TEXT_CHARS)
    text_message("x", [QuickReply("t" * 20, "p")] * 13)
    button_template("x" * MAX_BUTTON_TEMPLATE_TEXT_CHARS, [UrlButton("t" * 20, "https://a.example")] * 3)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: text_message(""), "text"),
        (lambda: text_message("   "), "text"),
        (lambda: text_message("x" * (MAX_TEXT_CHARS + 1)), "text"),
        (lambda: text_message("x", [QuickReply("t", "p")] * 14), "quick_replies"),
        (lambda: text_message("x", [QuickReply("t" * 21, "p")]), "quick_replies.0.title"),
        (lambda: text_message("x", [QuickReply("ok", "")]), "quick_replies.0.payload"),
        (lambda: button_template("x", []), "buttons"),
        (lambda: button_template("x", [UrlButton("a", "https://a.example")] * 4), "buttons"),
        (lambda: button_template("x" * (MAX_BUTTON_TEMPLATE_TEXT_CHARS + 1), [UrlButton("a", "https://a.b")]), "text"),
        (lambda: button_template("x", [UrlButton("t" * 21, "https://a.example")]), "buttons.0.title"),
        (lambda: button_template("x", [UrlButton("ok", "javascript:alert(1)")]), "buttons.0.url"),
        (lambda: button_template("x", [UrlButton("ok", "shop.example")]), "buttons.0.url"),
        (lambda: button_template("x", [UrlButton("ok", "https://a.example/" + "p" * 2000)]), "buttons.0.url"),
        (lambda: button_template("x", [PostbackButton("ok", "p" * 1001)]), "buttons.0.payload"),
        (
            lambda: button_template("x", [UrlButton("ok", "https://a.example"), PostbackButton("", "P")]),
            "buttons.1.title",
        ),
    ],
)
def test_invalid_messages_name_the_field(build: object, field: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        build()  # type: ignore[operator]
    assert info.value.field == field
    assert info.value.error_code == "validation_failed"
