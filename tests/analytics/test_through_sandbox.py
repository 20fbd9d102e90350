"""Analytics of a real conversation: comments through Meta's webhooks, DMs, a tap, a reply, follow-ups and a click."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from replyflow.db import Base
from replyflow.runtime import Runtime
from tests.conversations.world import ConversationWorld, build_world, production_like_settings


@pytest.fixture
def world(make_settings: Any) -> Iterator[ConversationWorld]:
    settings = production_like_settings(make_settings)
    runtime = Runtime(settings)
    Base.metadata.create_all(runtime.engine)
    # The clock starts at the real time: writes stamped by the database's defaults and by the engine agree.
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    try:
        yield from build_world(settings, runtime, start=start)
    finally:
        runtime.close()


def test_the_funnel_of_one_rule_from_comment_to_click(world: ConversationWorld) -> None:
    rule_id = world.add_rule(name="Early bird")
    ana = world.comment("link please", username="ana.cafe")
    world.comment("LINK", username="bruno.beans")
    world.comment("lovely photo", username="carla.crema")

    ana_dm = next(e for e in world.outbox("private_reply") if e.comment_id == ana)
    world.reply(
        "Send it", username="ana.cafe", quick_reply_payload=ana_dm.body["message"]["quick_replies"][0]["payload"]
    )
    world.reply("thanks!", username="bruno.beans")
    assert world.run_follow_ups() == ["sent", "sent"]
    world.deliver()
    link = next(
        e.body["message"]["attachment"]["payload"]["buttons"][0]["url"]
        for e in world.outbox("message")
        if e.recipient_id == world.person("ana.cafe")
    )
    path = urlsplit(link).path
    for agent in ("Mozilla/5.0 Instagram", "facebookexternalhit/1.1"):  # a person, then a link preview
        assert world.client.get(path, headers={"User-Agent": agent}, follow_redirects=False).status_code == 302

    body = world.get("/api/analytics").json()
    totals = body["totals"]
    # Our own two public replies come back as comments too: skipped as the account's own, they count nowhere.
    assert totals["comments_seen"] == 3
    assert (totals["skipped"], totals["skipped_by_reason"]) == (1, {"no_keyword": 1})
    assert (totals["matched"], totals["public_replies"], totals["dms_sent"], totals["dm_failures"]) == (2, 2, 2, 0)
    assert (totals["replies_received"], totals["button_taps"], totals["follow_ups_sent"]) == (1, 1, 2)
    assert (totals["link_clicks"], totals["unique_link_clicks"], totals["dms_with_links"]) == (1, 1, 2)
    assert totals["click_through_rate"] == 0.5
    assert totals["time_to_dm_p50_seconds"] == 0.0  # the sandbox clock stood still while the engine worked

    (rule,) = [row for row in body["by_rule"] if row["rule_id"] == rule_id]
    assert (rule["rule_name"], rule["comments_seen"], rule["dms_sent"], rule["link_clicks"]) == ("Early bird", 2, 2, 1)
    today = world.now().date().isoformat()
    assert [row["comments_seen"] for row in body["by_day"] if row["day"] == today] == [3]
