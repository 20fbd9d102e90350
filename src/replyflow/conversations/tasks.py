"""Queue jobs of conversations: send a follow-up, and the periodic repair of threads and follow-ups."""

from __future__ import annotations

from replyflow.conversations import followups
from replyflow.conversations.sync import sync_threads
from replyflow.queue import job, periodic
from replyflow.runtime import current


@job(name=followups.SEND_FOLLOW_UP_JOB)
def send_follow_up(follow_up_id: str) -> None:
    """Send one follow-up if Meta's 24-hour window is still open (a no-op when it was handled already)."""
    followups.send(runtime=current(), follow_up_id=follow_up_id)


@periodic(name="conversations.sync", every_minutes=1)
def sync() -> None:
    """Threads for DMs the engine did not record, lost follow-up jobs, and follow-ups stuck mid-send."""
    runtime = current()
    sync_threads(runtime=runtime)
    followups.sweep(runtime=runtime)
