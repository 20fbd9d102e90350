"""The world itself: persistence across restarts, the movable clock, thread safety and the demo seed."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from replyflow.sandbox import SandboxState, seed_demo_world
from replyflow.sandbox.clock import Clock
from replyflow.sandbox.state import Principal


def test_open_seeds_once_and_keeps_the_world_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    first = SandboxState.open(path, app_id="100000000000001", app_secret="s" * 32)
    demo = first.demo
    assert demo is not None and path.exists()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    comment = first.add_comment(demo.media_ids[0], text="persist me", username="fan")
    first.set_private_reply_quota(count=5, seconds=60)

    second = SandboxState.open(path, app_id="100000000000001", app_secret="s" * 32)
    assert second.demo == demo
    assert second.get_comment(comment.id) is not None
    assert second.private_reply_quota == (5, 60)
    assert second.check_token(demo.user_token).long_lived
    assert seed_demo_world(second) == demo  # idempotent


def test_open_applies_the_configured_app_credentials(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    SandboxState.open(path, app_id="100000000000001", app_secret="a" * 32)
    again = SandboxState.open(path, app_id="100000000000001", app_secret="b" * 32, private_reply_quota=(10, 60))
    assert again.app.secret == "b" * 32 and again.private_reply_quota == (10, 60)


def test_unreadable_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    path.write_text("{not json")
    state = SandboxState.open(path)
    assert state.demo is not None
    assert [p.name for p in tmp_path.iterdir() if ".unreadable-" in p.name]


def test_json_round_trip_keeps_everything(state: SandboxState) -> None:
    assert state.demo is not None
    state.clock.advance(days=2)
    copy = SandboxState.from_json(state.to_json())
    assert copy.summary() == state.summary()
    assert copy.now() == state.now()
    assert json.loads(copy.to_json()) == json.loads(state.to_json())


def test_summary_never_contains_secrets(state: SandboxState) -> None:
    assert state.demo is not None
    text = json.dumps(state.summary())
    assert state.app.secret not in text and state.demo.user_token not in text and "EAAB" not in text


def test_clock_moves_forward_only_and_freezes() -> None:
    clock = Clock()
    before = clock.now()
    clock.advance(days=8)
    assert clock.now() - before >= timedelta(days=8)
    with pytest.raises(ValueError):
        clock.advance(seconds=-1)
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    clock.freeze(moment)
    assert clock.now() == moment
    clock.advance(hours=1)
    assert clock.now() == moment + timedelta(hours=1)
    clock.unfreeze()
    assert clock.now() >= moment + timedelta(hours=1)
    assert Clock.from_dict(clock.to_dict()).now() >= moment


def test_concurrent_private_replies_respect_once_per_comment(state: SandboxState) -> None:
    demo = state.demo
    assert demo is not None
    token = state.page_token(user_token=demo.user_token, page_id=demo.page_id)
    actor = state.principal_for(token)
    comments = [state.add_comment(demo.media_ids[0], text=f"c{i}", username=f"u{i}") for i in range(10)]
    results: list[str] = []
    errors: list[int] = []

    def send(comment_id: str) -> None:
        from replyflow.sandbox.errors import GraphError

        try:
            state.private_reply(actor=actor, page_id=demo.page_id, comment_id=comment_id, message={"text": "hi"})
            results.append(comment_id)
        except GraphError as exc:
            errors.append(exc.subcode or 0)

    threads = [threading.Thread(target=send, args=(c.id,)) for c in comments for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == sorted(c.id for c in comments)
    assert errors == [2534025] * 30
    assert len(state.outbox()) == 10


def test_seed_builds_the_demo_world(state: SandboxState) -> None:
    demo = state.demo
    assert demo is not None
    assert state.find_user("Demo Creator") is not None
    roastery, bakery = state.get_page(demo.page_id), state.get_page(demo.page_without_instagram_id)
    assert roastery is not None and roastery.ig_account_id == demo.ig_account_id
    assert bakery is not None and bakery.ig_account_id is None
    kinds = [m.media_product_type for m in state.media_of(demo.ig_account_id)]
    assert kinds.count("REELS") == 2 and kinds.count("FEED") == 3
    assert all(m.caption for m in state.media_of(demo.ig_account_id))
    assert "comments" in next(s for s in state.app_subscriptions() if s.object == "instagram").fields


def test_seed_reissues_a_dead_demo_token(state: SandboxState) -> None:
    demo = state.demo
    assert demo is not None
    state.invalidate_token(demo.user_token, reason="expired")
    fresh = seed_demo_world(state)
    assert fresh.user_token != demo.user_token and state.check_token(fresh.user_token)
    assert fresh.page_id == demo.page_id


def test_outbox_is_newest_first_and_filterable(state: SandboxState) -> None:
    demo = state.demo
    assert demo is not None
    actor: Principal = state.principal_for(state.page_token(user_token=demo.user_token, page_id=demo.page_id))
    first = state.add_comment(demo.media_ids[0], text="a", username="a")
    second = state.add_comment(demo.media_ids[0], text="b", username="b")
    state.public_reply(actor=actor, comment_id=first.id, message="thanks a")
    state.private_reply(actor=actor, page_id=demo.page_id, comment_id=second.id, message={"text": "dm b"})
    assert [e.kind for e in state.outbox()] == ["private_reply", "public_reply"]
    assert [e.text for e in state.outbox(kind="public_reply")] == ["thanks a"]
    assert state.outbox(ig_account_id="nope") == []
    assert len(state.outbox(limit=1)) == 1


def test_python_simulation_api_validates_input(state: SandboxState) -> None:
    demo = state.demo
    assert demo is not None
    with pytest.raises(KeyError):
        state.add_comment("17900000000000000", text="x", username="a")
    with pytest.raises(ValueError):
        state.add_comment(demo.media_ids[0], text="   ", username="a")
    with pytest.raises(ValueError):
        state.set_private_reply_quota(count=0, seconds=10)
    same = state.add_person("someone")
    assert state.add_person("someone").igsid == same.igsid
