"""Follow-ups for an Instagram Login account: sent with ``recipient.id`` from the Instagram account, on its host."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from replyflow.config import Settings
from replyflow.db import Base
from replyflow.runtime import Runtime

from .world import ConversationWorld, build_world


@pytest.fixture
def ig_world(settings: Settings) -> Iterator[ConversationWorld]:
    runtime = Runtime(settings)
    Base.metadata.create_all(runtime.engine)
    try:
        yield from build_world(settings, runtime, login="instagram")
    finally:
        runtime.close()


def test_a_quick_reply_tap_gets_its_follow_up_through_instagram_login(ig_world: ConversationWorld) -> None:
    world = ig_world
    world.add_rule()
    comment_id = world.comment("link")
    dm = world.outbox("private_reply")[-1]
    assert dm.token_kind == "INSTAGRAM" and dm.body["recipient"] == {"comment_id": comment_id}
    payload: str = dm.body["message"]["quick_replies"][0]["payload"]

    world.reply("Send it", quick_reply_payload=payload)
    assert world.run_follow_ups() == ["sent"]

    (sent,) = world.outbox("message")
    assert sent.token_kind == "INSTAGRAM" and sent.token_owner_id == world.ig_id
    assert sent.body["recipient"] == {"id": world.person("ana.cafe")}
    assert len(world.outbox("private_reply")) == 1
