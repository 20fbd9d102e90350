"""The engine's storage guarantees on SQLite and PostgreSQL: one run per comment, one claim at a time."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from replyflow.automation.clock import use_clock
from replyflow.automation.engine import _Lease
from replyflow.automation.models import Rule
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


def test_rules_for_other_posts_are_left_out_but_one_that_stands_for_them(any_db_world: World) -> None:
    """The database finds the rules for a comment's post in the rules' JSON lists (SQLite and PostgreSQL alike); of
    the rules for other posts only, the first is kept, and a comment on no rule's post is skipped as before."""
    from replyflow.automation import repository as repo

    world = any_db_world
    first, second = world.media_ids[0], world.media_ids[1]
    other_a = world.add_rule(name="other a", posts={"mode": "specific", "media_ids": ["1790000000000001"]})
    this_post = world.add_rule(name="this post", posts={"mode": "specific", "media_ids": ["1790000000000002", first]})
    other_b = world.add_rule(name="other b", posts={"mode": "specific", "media_ids": ["1790000000000003"]})
    every_post = world.add_rule(name="every post", posts={"mode": "any"})
    with world.runtime.session() as session:
        on_first = [
            r.id
            for r in repo.rules_for_post(
                session=session, account_id=world.account_id, media_id=first, triggers=["comment"]
            )
        ]
        on_second = [
            r.id
            for r in repo.rules_for_post(
                session=session, account_id=world.account_id, media_id=second, triggers=["comment"]
            )
        ]
    assert on_first == [other_a, this_post, every_post]  # priority order kept; "other b" is stood for by "other a"
    assert on_second == [other_a, every_post]
    assert other_b not in on_first + on_second

    with world.runtime.session() as session:
        for rule_id in (every_post,):
            rule = session.get(Rule, rule_id)
            assert rule is not None
            rule.enabled = False
    run = world.run_for(world.comment("link please", media=1))
    assert (run.status, run.reason) == ("skipped", "post_not_targeted")
    matched = world.run_for(world.comment("link please", media=0, username="ben.k"))
    assert (matched.status, matched.rule_id) == ("matched", this_post)
