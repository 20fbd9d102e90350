"""Builders for the ``message`` object of Send API and private-reply calls, checked against Meta's limits.

Limits and how sure we are of them (see /work/shared/meta-graph-api-notes.md §7):

- Text: 1000 characters. Only one third-party tool states this for Instagram DMs (seen-3p, not confirmed by
  Meta); Messenger allows 2000. We use the lower figure so nothing we accept is refused by Instagram.
- Quick replies: at most 13, titles at most 20 characters, ``content_type`` "text" (seen, Meta's IG quick
  replies page).
- Button template: at most 3 buttons of type ``web_url`` or ``postback`` (seen, Meta's button-template page);
  titles at most 20 characters and template text at most 640 characters, payloads at most 1000 (Messenger's
  published limits, inferred to apply to Instagram).

Characters are counted as Python counts them (code points).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from replyflow.errors import ValidationFailed

MAX_TEXT_CHARS = 1000
MAX_QUICK_REPLIES = 13
MAX_QUICK_REPLY_TITLE_CHARS = 20
MAX_BUTTONS = 3
MAX_BUTTON_TITLE_CHARS = 20
MAX_BUTTON_TEMPLATE_TEXT_CHARS = 640
MAX_PAYLOAD_CHARS = 1000
MAX_URL_CHARS = 2000

Message = dict[str, Any]


@dataclass(frozen=True)
class QuickReply:
    """A tappable suggestion under a text; a tap comes back as a ``messages`` event with ``quick_reply.payload``."""

    title: str
    payload: str


@dataclass(frozen=True)
class UrlButton:
    """Opens ``url`` in the browser."""

    title: str
    url: str


@dataclass(frozen=True)
class PostbackButton:
    """Sends ``payload`` back to us as a ``messaging_postbacks`` event."""

    title: str
    payload: str


Button = UrlButton | PostbackButton


def text_message(text: str, quick_replies: Sequence[QuickReply] | None = None) -> Message:
    """``{"text": ...}``, with ``quick_replies`` when given."""
    _text(text, field="text", limit=MAX_TEXT_CHARS)
    message: Message = {"text": text}
    if quick_replies:
        if len(quick_replies) > MAX_QUICK_REPLIES:
            raise ValidationFailed(
                f"A message can have at most {MAX_QUICK_REPLIES} quick replies.", field="quick_replies"
            )
        message["quick_replies"] = [
            {
                "content_type": "text",
                "title": _text(qr.title, field=f"quick_replies.{i}.title", limit=MAX_QUICK_REPLY_TITLE_CHARS),
                "payload": _text(qr.payload, field=f"quick_replies.{i}.payload", limit=MAX_PAYLOAD_CHARS),
            }
            for i, qr in enumerate(quick_replies)
        ]
    return message


def button_template(text: str, buttons: Sequence[Button]) -> Message:
    """A text with 1-3 buttons (links or postbacks), as a ``template_type: button`` attachment."""
    _text(text, field="text", limit=MAX_BUTTON_TEMPLATE_TEXT_CHARS)
    if not buttons:
        raise ValidationFailed("A button message needs at least one button.", field="buttons")
    if len(buttons) > MAX_BUTTONS:
        raise ValidationFailed(f"A message can have at most {MAX_BUTTONS} buttons.", field="buttons")
    return {
        "attachment": {
            "type": "template",
            "payload": {
                "template_type": "button",
                "text": text,
                "buttons": [_button(button, index=i) for i, button in enumerate(buttons)],
            },
        }
    }


def _button(button: Button, *, index: int) -> dict[str, str]:
    title = _text(button.title, field=f"buttons.{index}.title", limit=MAX_BUTTON_TITLE_CHARS)
    if isinstance(button, UrlButton):
        return {"type": "web_url", "url": _url(button.url, field=f"buttons.{index}.url"), "title": title}
    payload = _text(button.payload, field=f"buttons.{index}.payload", limit=MAX_PAYLOAD_CHARS)
    return {"type": "postback", "title": title, "payload": payload}


def _text(value: str, *, field: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(f"{field} must not be empty.", field=field)
    if len(value) > limit:
        raise ValidationFailed(
            f"{field} is {len(value)} characters long; Instagram allows at most {limit}.",
            field=field,
            hint=f"Shorten it to {limit} characters or fewer.",
        )
    return value


def _url(value: str, *, field: str) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        raise ValidationFailed(f"{field} must be a full http:// or https:// link.", field=field)
    if len(value) > MAX_URL_CHARS:
        raise ValidationFailed(f"{field} is longer than {MAX_URL_CHARS} characters.", field=field)
    return value
