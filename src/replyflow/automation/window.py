"""Meta's 7-day private-reply window, and picking a DM delay that always lands inside it."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

# Meta accepts one private reply per comment, and only within 7 days of the comment.
PRIVATE_REPLY_WINDOW = timedelta(days=7)
# Queueing, quota waits and clock skew eat into the window; we stop this much before Meta does.
WINDOW_SAFETY_MARGIN = timedelta(minutes=15)
# Longest DM delay a rule may ask for. A day is plenty for "feel human" delays and, with the clamp in
# pick_delay, a delay can never push a DM past the window.
MAX_DELAY_SECONDS = 24 * 60 * 60


def private_reply_deadline(comment_created_at: datetime) -> datetime:
    """The last moment replyflow will attempt a private reply to a comment made at ``comment_created_at``."""
    return comment_created_at + PRIVATE_REPLY_WINDOW - WINDOW_SAFETY_MARGIN


def within_window(*, comment_created_at: datetime, now: datetime) -> bool:
    """Whether a private reply to the comment may still be attempted at ``now``."""
    return now <= private_reply_deadline(comment_created_at)


def pick_delay(
    *,
    min_seconds: int,
    max_seconds: int,
    now: datetime,
    comment_created_at: datetime | None,
    rng: random.Random,
) -> timedelta:
    """A delay in ``[min_seconds, max_seconds]`` (whole seconds), shortened so the DM stays inside the window.

    ``min_seconds == max_seconds`` is a fixed delay. When the comment's time is unknown, no clamp applies.
    Never negative: a comment already at its deadline gets no delay (the matcher skips it anyway).
    """
    if min_seconds < 0 or max_seconds < min_seconds:
        raise ValueError(f"invalid delay bounds {min_seconds}..{max_seconds}")
    seconds = rng.randint(min_seconds, max_seconds)
    delay = timedelta(seconds=seconds)
    if comment_created_at is not None:
        room = private_reply_deadline(comment_created_at) - now
        delay = max(timedelta(0), min(delay, room))
    return delay
