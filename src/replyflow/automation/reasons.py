"""Why a comment was not handled by a rule: the typed skip reasons behind the activity log and analytics."""

from __future__ import annotations

from enum import StrEnum


class SkipReason(StrEnum):
    """A stable, snake_case reason a rule did not handle a comment (stored in runs, shown in the API).

    The member order is the order of the matching chain in :mod:`replyflow.automation.matching`: a
    reason later in the list means the comment got further before it was turned down, which is what
    :meth:`stage` exposes so a run can report the most telling reason among several rules.
    """

    NO_RULE = "no_rule"
    RULE_DISABLED = "rule_disabled"
    ACCOUNT_NEEDS_REAUTH = "account_needs_reauth"
    OWN_COMMENT = "own_comment"
    POST_NOT_TARGETED = "post_not_targeted"
    REPLY_TO_REPLY = "reply_to_reply"
    OUTSIDE_WINDOW = "outside_window"
    # A DM trigger: Meta's 24-hour window the person's message opened has closed (``recipient.id`` sends only).
    WINDOW_CLOSED = "window_closed"
    EXCLUDED_KEYWORD = "excluded_keyword"
    NO_KEYWORD = "no_keyword"
    ALREADY_TAKEN = "already_taken"
    ALREADY_HANDLED_USER = "already_handled_user"
    # A follow-gated rule already sent this person its gate the most times it may (3): it stops asking.
    GATE_LIMIT_REACHED = "gate_limit_reached"
    # Not a reason to skip a whole run: the engine records it on a matched run whose public-reply step
    # it leaves out, because Meta refuses public replies to comments on a live video (the DM still goes).
    LIVE_COMMENT_NOT_SUPPORTED_FOR_PUBLIC_REPLY = "live_comment_not_supported_for_public_reply"

    @property
    def description(self) -> str:
        """One plain sentence for the activity log."""
        return _DESCRIPTIONS[self]

    @property
    def stage(self) -> int:
        """Position in the matching chain; higher means the comment passed more checks first."""
        return _STAGES[self]


_DESCRIPTIONS: dict[SkipReason, str] = {
    SkipReason.NO_RULE: "No enabled rule exists for this account.",
    SkipReason.RULE_DISABLED: "The rule is turned off.",
    SkipReason.ACCOUNT_NEEDS_REAUTH: "The Instagram account must be reconnected before anything can be sent.",
    SkipReason.OWN_COMMENT: "The comment was written by the account itself.",
    SkipReason.POST_NOT_TARGETED: "The rule does not target the post this comment is on.",
    SkipReason.REPLY_TO_REPLY: "The comment is a reply to another comment and the rule skips replies.",
    SkipReason.OUTSIDE_WINDOW: "The comment is too old: Meta allows a private reply only within 7 days.",
    SkipReason.WINDOW_CLOSED: (
        "The message is too old: Meta allows an answer by DM only within 24 hours of the person's message."
    ),
    SkipReason.EXCLUDED_KEYWORD: "The comment contains one of the rule's excluded words.",
    SkipReason.NO_KEYWORD: "The comment does not contain the rule's keywords.",
    SkipReason.ALREADY_TAKEN: "Another rule with a higher priority already handled this comment.",
    SkipReason.ALREADY_HANDLED_USER: "This person was already answered by this rule on this post.",
    SkipReason.GATE_LIMIT_REACHED: "This person already got this rule's follow gate 3 times; it stops asking.",
    SkipReason.LIVE_COMMENT_NOT_SUPPORTED_FOR_PUBLIC_REPLY: (
        "Instagram does not allow public replies to comments on a live video; only the DM was sent."
    ),
}

_STAGES: dict[SkipReason, int] = {reason: index for index, reason in enumerate(SkipReason)}
