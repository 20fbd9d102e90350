"""The automation jobs as huey runs them: the periodic reconciler and sweeper find the runtime and do their work."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from replyflow.automation import tasks
from replyflow.queue import build_queue
from replyflow.runtime import set_current

from .world import World


@pytest.fixture
def immediate(world: World) -> Iterator[World]:
    """Jobs run as soon as they are enqueued (huey's immediate mode), in this process, on the world's runtime."""
    world.runtime.queue = build_queue(  # type: ignore[misc]
        world.runtime.settings, name=f"rf-test-{uuid.uuid4().hex[:8]}", immediate=True
    )
    set_current(world.runtime)
    try:
        yield world
    finally:
        set_current(None)


def test_the_periodic_reconciler_feeds_missed_comments(immediate: World) -> None:
    world = immediate
    world.add_rule()
    comment = world.state.add_comment(world.media_ids[0], text="link", username="missed.person")
    world.state.take_pending_webhooks()  # the webhook never comes

    tasks.reconcile_due_accounts()
    world.drive()

    world.assert_reply_then_dm_once(comment.id)
    assert world.run_for(comment.id).source == "reconciler"


class LosingQueue:
    """A queue that loses every job (a Redis flush, a crash between commit and enqueue)."""

    def __init__(self) -> None:
        self.lost: list[tuple[str, tuple[object, ...]]] = []

    def enqueue(self, name: str, *args: object, **_kwargs: object) -> None:
        self.lost.append((name, args))


def test_the_sweeper_job_requeues_runs_whose_job_was_lost(world: World) -> None:
    queue = LosingQueue()
    world.runtime.queue = queue  # type: ignore[assignment]
    set_current(world.runtime)
    try:
        world.add_rule()
        comment_id = world.comment("link")
        run_id = world.run_for(comment_id).id
        assert queue.lost == [("automation.process_run", (run_id,))]

        tasks.sweep_runs()
        assert world.jobs == []  # a fresh run is not "lost" yet
        world.advance(seconds=60)
        tasks.sweep_runs()
        assert [job[0] for job in world.jobs] == [run_id]

        world.engine.process_run(run_id)
        world.assert_reply_then_dm_once(comment_id)
    finally:
        set_current(None)
