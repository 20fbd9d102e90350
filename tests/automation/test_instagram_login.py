"""The engine on an Instagram Login account: the same rules, quota and exactly-once, on graph.instagram.com.

The sandbox accepts Instagram User tokens only on its graph.instagram.com stand-in (and refuses them on the Facebook
host), so an outbox entry made with an INSTAGRAM token proves the call went to the Instagram host with that token.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from replyflow.automation.clock import use_clock
from replyflow.runtime import Runtime
from replyflow.sandbox.models import Comment

from .world import World, build_world


@pytest.fixture
def ig_world(runtime: Runtime) -> Iterator[World]:
    for built in build_world(runtime, login="instagram"):
        with use_clock(built.state.now):
            yield built


def test_comment_gets_a_public_reply_then_one_dm_through_the_instagram_host(ig_world: World) -> None:
    world = ig_world
    world.add_rule()
    comment_id = world.comment("Can I get the LINK please? 🙏", username="ana.cafe")

    world.drive()

    world.assert_reply_then_dm_once(comment_id)
    public, private = world.outbox(comment_id=comment_id)
    assert public.page_id is None and public.token_kind == "INSTAGRAM"
    assert private.token_kind == "INSTAGRAM" and private.token_owner_id == world.sandbox.ig_id
    assert private.body["recipient"] == {"comment_id": comment_id}
    run = world.run_for(comment_id)
    assert (run.status, run.dm_message_id, run.public_reply_id) == ("done", private.result_id, public.result_id)


def test_our_own_reply_comes_back_with_the_app_scoped_id_and_is_skipped(ig_world: World) -> None:
    world = ig_world
    world.add_rule(match="any_comment", keywords=[])
    comment_id = world.comment("hello", username="ana.cafe")

    world.drive()

    public = world.outbox("public_reply", comment_id=comment_id)[0]
    reply = world.state.get_comment(public.result_id)
    assert isinstance(reply, Comment) and reply.from_id == world.sandbox.app_scoped_id != world.sandbox.ig_id
    own = world.run_for(public.result_id)
    assert (own.status, own.reason) == ("skipped", "own_comment")
    assert len(world.outbox("private_reply")) == 1


def test_redelivered_webhooks_still_mean_one_reply_and_one_dm(ig_world: World) -> None:
    world = ig_world
    world.add_rule()
    comment = world.state.add_comment(world.media_ids[0], text="link", username="bo.reads")
    world.deliver(again=True)

    world.drive()

    world.assert_reply_then_dm_once(comment.id)


def test_a_dm_whose_outcome_is_unknown_is_reconciled_never_sent_twice(ig_world: World) -> None:
    world = ig_world
    world.add_rule(public_reply=None)
    world.state.inject_failure("POST /{ig-id}/messages", kind="timeout_after_send")
    comment_id = world.comment("link", username="cy.sips")

    world.drive()

    assert [e.kind for e in world.outbox(comment_id=comment_id)] == ["private_reply"]
    assert world.run_for(comment_id).status == "done"
