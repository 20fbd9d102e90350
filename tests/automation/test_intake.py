"""Intake inside the webhook processor's transaction: the engine is told about a run only once it is committed."""

from __future__ import annotations

from replyflow.accounts.models import Account
from replyflow.automation.intake import accept_comment
from replyflow.webhooks.events import CommentEvent

from .world import World


class RecordingQueue:
    def __init__(self) -> None:
        self.jobs: list[tuple[str, tuple[object, ...]]] = []

    def enqueue(self, name: str, *args: object, **_kwargs: object) -> None:
        self.jobs.append((name, args))


def _event(world: World, text: str = "link") -> CommentEvent:
    comment = world.state.add_comment(world.media_ids[0], text=text, username="ana.cafe")
    world.state.take_pending_webhooks()
    return CommentEvent(
        entry_id=world.sandbox.ig_id,
        comment_id=comment.id,
        text=comment.text,
        from_id=comment.from_id,
        from_username=comment.from_username,
        media_id=comment.media_id,
        entry_time=comment.timestamp,
    )


def test_the_job_is_enqueued_after_the_outer_commit_only(world: World) -> None:
    queue = RecordingQueue()
    world.runtime.queue = queue  # type: ignore[assignment]
    world.add_rule()
    event = _event(world)
    with world.runtime.session() as session:
        account = session.get(Account, world.account_id)
        assert account is not None
        with session.begin_nested():  # as the webhook processor calls us
            accept_comment(session=session, account=account, event=event, runtime=world.runtime)
        assert queue.jobs == []  # the savepoint is released, but nothing is committed yet
    run_id = world.run_for(event.comment_id).id
    assert queue.jobs == [("automation.process_run", (run_id,))]


def test_nothing_is_enqueued_when_the_transaction_rolls_back(world: World) -> None:
    queue = RecordingQueue()
    world.runtime.queue = queue  # type: ignore[assignment]
    world.add_rule()
    event = _event(world)
    session = world.runtime.session_factory()
    try:
        account = session.get(Account, world.account_id)
        assert account is not None
        accept_comment(session=session, account=account, event=event, runtime=world.runtime)
        session.rollback()
    finally:
        session.close()
    assert queue.jobs == []
    assert world.runs() == []


def test_a_skipped_comment_enqueues_nothing(world: World) -> None:
    queue = RecordingQueue()
    world.runtime.queue = queue  # type: ignore[assignment]
    world.add_rule()
    event = _event(world, text="just lovely")
    with world.runtime.session() as session:
        account = session.get(Account, world.account_id)
        assert account is not None
        accept_comment(session=session, account=account, event=event, runtime=world.runtime)
    assert queue.jobs == []
    assert world.run_for(event.comment_id).reason == "no_keyword"
