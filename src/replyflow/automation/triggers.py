"""What starts a rule (CONTRACT.md "An optional ``trigger``"), and Meta's window for answering each kind.

Pure: no storage, no clock. Comment triggers answer with Meta's Private Reply (``recipient.comment_id``, 7 days
after the comment); message triggers answer a DM the person wrote first, so the answer goes by ``recipient.id``
inside the standard 24-hour window that their message opened (meta-graph-api-notes.md §7).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum


class Trigger(StrEnum):
    """A rule's ``trigger``."""

    COMMENT = "comment"  # a comment on a post or reel (``comments``)
    LIVE_COMMENT = "live_comment"  # a comment on a Live broadcast (``live_comments``); DM only
    STORY_REPLY = "story_reply"  # a DM answering one of the account's stories (``message.reply_to.story``)
    DM_KEYWORD = "dm_keyword"  # any other DM the person sends
    STORY_MENTION = "story_mention"  # the person mentioned the account in their story (a ``story_mention`` attachment)


COMMENT_TRIGGERS = frozenset({Trigger.COMMENT, Trigger.LIVE_COMMENT})
MESSAGE_TRIGGERS = frozenset({Trigger.STORY_REPLY, Trigger.DM_KEYWORD, Trigger.STORY_MENTION})

#: Meta's standard messaging window: a person's message opens 24 hours of replies by ``recipient.id``.
MESSAGING_WINDOW = dt.timedelta(hours=24)
#: Queueing and clock skew eat into it; replyflow stops trying this much before Meta would refuse.
MESSAGING_WINDOW_MARGIN = dt.timedelta(minutes=5)

#: What ``Run.media_id`` holds for a run started by a DM that is not about a story or a post.
NO_MEDIA = ""


def parse(value: str | None) -> Trigger:
    """A stored trigger (None and unknown values, from rows older than triggers, are comment rules)."""
    try:
        return Trigger(value or Trigger.COMMENT.value)
    except ValueError:
        return Trigger.COMMENT


def is_message_trigger(value: str | None) -> bool:
    return parse(value) in MESSAGE_TRIGGERS


def messaging_deadline(message_at: dt.datetime) -> dt.datetime:
    """The last moment replyflow sends by ``recipient.id`` after the person's message at ``message_at``."""
    return message_at + MESSAGING_WINDOW - MESSAGING_WINDOW_MARGIN


def rule_answers(rule_trigger: str | None, run_trigger: str | None) -> bool:
    """Whether a rule with ``rule_trigger`` is tried for a run started by ``run_trigger``.

    ``comment`` rules predate triggers and have always answered live comments too (with the DM only); they keep
    doing so. A ``live_comment`` rule answers live comments only.
    """
    rule, run = parse(rule_trigger), parse(run_trigger)
    if rule is Trigger.COMMENT:
        return run in COMMENT_TRIGGERS
    return rule is run
