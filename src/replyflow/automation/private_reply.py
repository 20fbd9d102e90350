"""The DM a rule sends (Meta's Private Reply): its message object, and quick-reply payloads that name the run."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from replyflow.automation.schemas import PrivateReply
from replyflow.graph.messages import QuickReply, UrlButton, button_template, text_message

_PAYLOAD = re.compile(r"^rf:(run_[0-9a-z]+):qr:(\d{1,2})$")


def quick_reply_payload(*, run_id: str, index: int) -> str:
    """What Meta sends back in ``message.quick_reply.payload`` when the person taps quick reply ``index``."""
    return f"rf:{run_id}:qr:{index}"


def parse_quick_reply_payload(payload: str | None) -> tuple[str, int] | None:
    """``(run_id, index)`` for a payload made by :func:`quick_reply_payload`; None for anything else."""
    match = _PAYLOAD.match(payload or "")
    if match is None:
        return None
    return match.group(1), int(match.group(2))


def build_message(reply: PrivateReply, variables: Mapping[str, str], *, run_id: str) -> tuple[str, dict[str, Any]]:
    """The rendered text and the ``message`` object: a button template with buttons, else text (+ quick replies)."""
    text = reply.render_text(variables)
    if reply.buttons:
        return text, button_template(text, [UrlButton(title=b.title, url=b.url) for b in reply.buttons])
    quick = [
        QuickReply(title=q.title, payload=quick_reply_payload(run_id=run_id, index=i))
        for i, q in enumerate(reply.quick_replies)
    ]
    return text, text_message(text, quick or None)
