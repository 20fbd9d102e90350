"""The engine's storage guarantees on SQLite and PostgreSQL: one run per comment, one claim at a time."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from replyflow.automation.clock import use_clock
from replyflow.automation.engine import _Lease
from replyflow.config import Settings
from replyflow.db import Base
from replyflow.runtime import Runtime

from .world import World, build_world


@pytest.fixture
def any_db_world(make_settings: object, database_url: str) -> Iterator[World]:
    settings: Settings = make_settings(database_url=database_url)  # type: ignore[operator]
    runtime = Runtime(settings)
    Base.metadata.create_all(runtime.engine)
    try:
        for world in build_world(runtime):
            with use_clock(world.state.now):
                yield world
    finally:
        runtime.close()


def test_end_to_end_on_each_database(any_db_world: World) -> None:
    world = any_db_world
    world.add_rule()
    comment_id = world.comment("link")
    world.deliver(again=True)
    world.drive()
    world.assert_reply_then_dm_once(comment_id)


def test_only_one_of_many_concurrent_claims_wins(any_db_world: World) -> None:
    world = any_db_world
    world.add_rule()
    run_id = world.run_for(world.comment("link")).id
    barrier = threading.Barrier(8)
    wins: list[str] = []

    def claim(n: int) -> None:
        barrier.wait()
        if world.engine._claim(_Lease(run_id=run_id, owner=f"worker-{n}"), world.now()):
            wins.append(f"worker-{n}")

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1


def test_concurrent_processing_sends_once(any_db_world: World) -> None:
    world = any_db_world
    world.add_rule()
    comment_id = world.comment("link")
    run_id = world.run_for(comment_id).id
    barrier = threading.Barrier(4)

    def process() -> None:
        barrier.wait()
        world.engine.process_run(run_id)

    threads = [threading.Thread(target=process) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    world.drive()
    world.assert_reply_then_dm_once(comment_id)
