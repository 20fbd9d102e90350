"""The follow gate through the sandbox: gate → tap → Meta's follow check → the unlocked DM exactly once (double taps,
redelivered postbacks, crashes between the tap and the DM), at most three gates per person and rule."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from replyflow.automation import follow_gate
from replyflow.automation.models import FollowGateState, RunStatus, SendState
from replyflow.automation.schemas import RuleSpec

from .world import World

MESSAGES = "POST /{page-id}/messages"
GATE = {"text": "Follow @roastery.test, then tap below to get the link 🔓", "button_title": "I follow"}
UNLOCKED = "Here is the link, {username}: https://roastery.example/early"


def _gated_rule(world: World, **overrides: Any) -> str:
    world.state.set_app_subscription(object="instagram", fields=["messaging_postbacks"])  # the taps
    return world.add_rule(follow_gate=GATE, **overrides)


def _gate_button(body: dict[str, Any]) -> dict[str, Any]:
    payload = body["message"]["attachment"]["payload"]
    [button] = payload["buttons"]
    return dict(button)


def _tap(world: World, payload: str, *, username: str = "ana.cafe", again: bool = False) -> None:
    world.state.user_postback(world.sandbox.ig_id, payload=payload, title="I follow", username=username)
    world.deliver(again=again)


def _unlocked(world: World) -> list[dict[str, Any]]:
    return [e.body for e in world.outbox("message") if "text" in e.body["message"]]


def _gates(world: World) -> list[dict[str, Any]]:
    sent = [e.body for e in world.outbox() if e.kind in ("private_reply", "message")]
    return [b for b in sent if "attachment" in b["message"] and _gate_button(b)["type"] == "postback"]


def _gate_row(world: World, run_id: str) -> FollowGateState:
    with world.runtime.session() as session:
        row = session.get(FollowGateState, run_id)
        assert row is not None
        return row


def _step_names(world: World, run_id: str) -> list[str]:
    return [s.step for s in world.steps(run_id)]


def test_gate_rule_validation() -> None:
    base = {"name": "g", "posts": {"mode": "any"}, "match": "any_comment", "follow_gate": GATE}
    spec = RuleSpec.model_validate({**base, "private_reply": {"text": "x"}})
    assert spec.follow_gate is not None and spec.follow_gate.button_title == "I follow"
    with pytest.raises(ValidationError) as caught:
        RuleSpec.model_validate({**base, "public_reply": {"texts": ["hi"]}})  # a gate holds back a DM it needs
    assert caught.value.errors()[0]["loc"] == ("follow_gate",)


def test_a_follower_gets_the_dm_after_tapping(world: World) -> None:
    _gated_rule(world)
    comment_id = world.comment("link please")
    world.drive()

    run = world.run_for(comment_id)
    assert run.status == RunStatus.GATED.value
    [gate] = world.outbox("private_reply")
    button = _gate_button(gate.body)
    assert gate.body["recipient"] == {"comment_id": comment_id}
    assert button == {"type": "postback", "title": "I follow", "payload": f"rf:{run.id}:gate"}
    assert gate.body["message"]["attachment"]["payload"]["text"] == GATE["text"]
    assert _unlocked(world) == []  # nothing unlocked before the tap

    world.state.set_follows(world.sandbox.ig_id, follows=True, username="ana.cafe")
    _tap(world, button["payload"])
    world.drive()

    [dm] = _unlocked(world)
    assert dm["recipient"] == {"id": run.from_id}
    assert dm["message"]["text"] == "Here is the link, ana.cafe: https://roastery.example/early"
    run = world.run_for(comment_id)
    assert run.status == RunStatus.DONE.value
    row = _gate_row(world, run.id)
    assert (row.gates_sent, row.taps, row.follows, row.unlock_state) == (1, 1, True, SendState.SENT.value)
    steps = _step_names(world, run.id)
    assert steps[-6:] == ["gate_sent", "gate_tapped", "follow_checked", "unlock_attempt", "unlocked", "done"]
    with world.runtime.session() as session:
        funnel = follow_gate.funnel_counts(session=session, workspace_id=world.workspace_id)
    assert funnel == {"gate_sent": 1, "tapped": 1, "followed": 1, "unlocked": 1}


def test_someone_who_does_not_follow_gets_the_gate_again_at_most_three_times(world: World) -> None:
    _gated_rule(world)
    comment_id = world.comment("link please")
    world.drive()
    run_id = world.run_for(comment_id).id
    payload = follow_gate.gate_payload(run_id)
    for _ in range(3):
        _tap(world, payload)
        world.drive()
    assert len(_gates(world)) == 3  # the first (private reply) and two reminders (by recipient.id)
    run = world.run_for(comment_id)
    assert run.status == RunStatus.DONE.value
    assert _step_names(world, run_id)[-2:] == ["follow_checked", follow_gate.GATE_LIMIT_REACHED]
    assert _unlocked(world) == []

    # Following afterwards and tapping an old button changes nothing: replyflow stopped asking.
    world.state.set_follows(world.sandbox.ig_id, follows=True, username="ana.cafe")
    _tap(world, payload)
    world.drive()
    assert _unlocked(world) == [] and len(_gates(world)) == 3
    assert _step_names(world, run_id)[-1] == "gate_tap_ignored"


def test_not_yet_then_follows_unlocks_on_the_next_tap(world: World) -> None:
    _gated_rule(world)
    comment_id = world.comment("link please")
    world.drive()
    payload = follow_gate.gate_payload(world.run_for(comment_id).id)
    _tap(world, payload)
    world.drive()
    assert world.run_for(comment_id).status == RunStatus.GATED.value and len(_gates(world)) == 2
    world.state.set_follows(world.sandbox.ig_id, follows=True, username="ana.cafe")
    _tap(world, payload)
    world.drive()
    assert len(_unlocked(world)) == 1 and world.run_for(comment_id).status == RunStatus.DONE.value


def test_an_unknown_answer_is_not_yet_with_a_plain_explanation(world: World) -> None:
    _gated_rule(world)
    comment_id = world.comment("link please")
    world.drive()
    run_id = world.run_for(comment_id).id
    world.state.set_follows(world.sandbox.ig_id, follows=None, username="ana.cafe")
    _tap(world, follow_gate.gate_payload(run_id))
    world.drive()

    assert _unlocked(world) == [] and len(_gates(world)) == 2
    [check] = [s for s in world.steps(run_id) if s.step == "follow_checked"]
    assert check.reason == follow_gate.FOLLOW_UNKNOWN
    assert "did not say whether this person follows" in (check.detail or "")
    assert "not yet" in (check.detail or "")


def test_a_double_tap_and_a_redelivered_postback_unlock_once(world: World) -> None:
    _gated_rule(world)
    comment_id = world.comment("link please")
    world.drive()
    run_id = world.run_for(comment_id).id
    world.state.set_follows(world.sandbox.ig_id, follows=True, username="ana.cafe")
    payload = follow_gate.gate_payload(run_id)
    _tap(world, payload, again=True)  # tap 1, delivered twice by Meta
    _tap(world, payload)  # tap 2, before the engine got to the first
    world.drive()
    _tap(world, payload)  # tap 3, after the DM went
    world.drive()

    assert len(_unlocked(world)) == 1
    steps = _step_names(world, run_id)
    assert steps.count("gate_tapped") == 1 and steps.count("gate_tap_ignored") == 2
    assert _gate_row(world, run_id).taps == 3


def test_a_crash_between_the_tap_and_the_dm_sends_it_once(world: World) -> None:
    """The worker that claimed the tapped run dies before the call: the lease runs out, another one sends it."""
    _gated_rule(world)
    comment_id = world.comment("link please")
    world.drive()
    run_id = world.run_for(comment_id).id
    world.state.set_follows(world.sandbox.ig_id, follows=True, username="ana.cafe")
    _tap(world, follow_gate.gate_payload(run_id))
    claimed = world.engine.claim_due(limit=10, per_account=10)  # ... and the process dies here
    assert [c.run_id for c in claimed] == [run_id]
    assert world.drive(advance=False) == 0  # leased by the dead worker: nobody touches it yet
    world.drive()  # the clock moves past the lease; another worker takes over
    assert len(_unlocked(world)) == 1
    assert world.run_for(comment_id).status == RunStatus.DONE.value


def test_a_crash_during_the_unlock_call_never_sends_it_twice(world: World) -> None:
    _gated_rule(world)
    comment_id = world.comment("link please")
    world.drive()
    run_id = world.run_for(comment_id).id
    world.state.set_follows(world.sandbox.ig_id, follows=True, username="ana.cafe")
    world.state.inject_failure(MESSAGES, kind="timeout_after_send")  # Meta delivers it; the answer is lost
    _tap(world, follow_gate.gate_payload(run_id))
    world.drive()
    _tap(world, follow_gate.gate_payload(run_id))  # the person taps again, nothing arrived for them to see
    world.drive()

    assert len(_unlocked(world)) == 1
    run = world.run_for(comment_id)
    assert (run.status, run.reason) == (RunStatus.FAILED.value, follow_gate.UNLOCK_OUTCOME_UNKNOWN)
    assert _gate_row(world, run_id).unlock_state == SendState.UNKNOWN.value


def test_a_crash_after_the_attempt_was_recorded_is_not_repeated(world: World) -> None:
    """A worker died after writing ``attempting`` (the call may have gone out): the next one does not resend."""
    _gated_rule(world)
    comment_id = world.comment("link please")
    world.drive()
    run_id = world.run_for(comment_id).id
    world.state.set_follows(world.sandbox.ig_id, follows=True, username="ana.cafe")
    _tap(world, follow_gate.gate_payload(run_id))
    with world.runtime.session() as session:  # what the dead worker left behind
        row = session.get(FollowGateState, run_id)
        assert row is not None
        row.unlock_state = SendState.ATTEMPTING.value
    world.drive()
    assert _unlocked(world) == []
    assert world.run_for(comment_id).reason == follow_gate.UNLOCK_OUTCOME_UNKNOWN


def test_a_tap_on_someone_elses_gate_does_nothing(world: World) -> None:
    _gated_rule(world)
    comment_id = world.comment("link please")
    world.drive()
    run_id = world.run_for(comment_id).id
    world.state.set_follows(world.sandbox.ig_id, follows=True, username="mallory")
    _tap(world, follow_gate.gate_payload(run_id), username="mallory")
    world.drive()
    assert _unlocked(world) == [] and world.run_for(comment_id).status == RunStatus.GATED.value


def test_a_gated_dm_keyword_rule(world: World) -> None:
    world.state.set_app_subscription(object="instagram", fields=["messaging_postbacks"])
    world.add_rule(
        trigger="dm_keyword",
        posts={"mode": "any"},
        keywords=["guide"],
        public_reply=None,
        private_reply={"text": "The guide: https://roastery.example/guide"},
        follow_gate=GATE,
    )
    world.state.user_message(world.sandbox.ig_id, text="guide please", username="dm.fan")
    world.deliver()
    world.drive()
    [gate] = _gates(world)
    assert "id" in gate["recipient"]
    [run] = world.runs()
    assert run.status == RunStatus.GATED.value
    # A message while the gate waits belongs to that conversation: it starts no new run.
    world.state.user_message(world.sandbox.ig_id, text="guide?? I followed", username="dm.fan")
    world.deliver()
    world.drive()
    assert len(world.runs()) == 1
    world.state.set_follows(world.sandbox.ig_id, follows=True, username="dm.fan")
    _tap(world, follow_gate.gate_payload(run.id), username="dm.fan")
    world.drive()
    [dm] = _unlocked(world)
    assert dm["message"]["text"] == "The guide: https://roastery.example/guide"
    with world.runtime.session() as session:
        gates = session.scalars(select(FollowGateState)).all()
        assert [g.unlock_state for g in gates] == [SendState.SENT.value]


def test_after_three_gates_a_new_comment_of_the_person_gets_no_fourth(world: World) -> None:
    _gated_rule(world, posts={"mode": "any"})
    first = world.comment("link please")
    world.drive()
    payload = follow_gate.gate_payload(world.run_for(first).id)
    for _ in range(3):
        _tap(world, payload)
        world.drive()
    assert len(_gates(world)) == 3
    again = world.comment("link please!!", media=1)  # another post: once_per_user does not stop it
    world.drive()
    run = world.run_for(again)
    assert (run.status, run.reason) == (RunStatus.SKIPPED.value, "gate_limit_reached")
    assert len(_gates(world)) == 3 and world.outbox(comment_id=again) == []
