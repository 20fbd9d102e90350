"""``/api/rules`` with triggers and a follow gate: message triggers refuse a public reply with 422, round-trip the
new fields, and ``/api/runs`` says what started each run."""

from __future__ import annotations

from fastapi.testclient import TestClient

from .test_api import api, rule_body  # noqa: F401  (the fixture)
from .world import World


def test_message_trigger_with_a_public_reply_is_422(api: TestClient, world: World) -> None:  # noqa: F811
    body = rule_body(world, trigger="dm_keyword", posts={"mode": "any"})
    answer = api.post("/api/rules", json=body)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "validation_failed" and error["field"] == "public_reply"
    assert error["hint"]


def test_trigger_and_gate_round_trip(api: TestClient, world: World) -> None:  # noqa: F811
    gate = {"text": "Follow us, then tap below", "button_title": "I follow"}
    body = rule_body(world, trigger="story_reply", posts={"mode": "any"}, public_reply=None, follow_gate=gate)
    created = api.post("/api/rules", json=body)
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["trigger"] == "story_reply" and rule["follow_gate"] == gate
    patched = api.patch(f"/api/rules/{rule['id']}", json={"follow_gate": None})
    assert patched.status_code == 200 and patched.json()["follow_gate"] is None
    # Comment rules keep working as before: the trigger defaults to "comment".
    plain = api.post("/api/rules", json=rule_body(world)).json()
    assert plain["trigger"] == "comment" and plain["follow_gate"] is None


def test_runs_say_what_started_them(api: TestClient, world: World) -> None:  # noqa: F811
    world.add_rule(trigger="dm_keyword", posts={"mode": "any"}, keywords=["price"], public_reply=None)
    world.state.user_message(world.sandbox.ig_id, text="price?", username="dm.fan")
    world.deliver()
    world.drive()
    [run] = api.get("/api/runs", params={"account_id": world.account_id}).json()["items"]
    assert run["trigger"] == "dm_keyword" and run["status"] == "done"


def test_analytics_per_trigger_and_gate_funnel(api: TestClient, world: World) -> None:  # noqa: F811
    world.state.set_app_subscription(object="instagram", fields=["messaging_postbacks"])
    rule_id = world.add_rule(follow_gate={"text": "Follow, then tap", "button_title": "Done"})
    world.add_rule(trigger="dm_keyword", posts={"mode": "any"}, keywords=["price"], public_reply=None)
    comment_id = world.comment("link")
    world.state.user_message(world.sandbox.ig_id, text="price?", username="dm.fan")
    world.deliver()
    world.drive()
    world.state.set_follows(world.sandbox.ig_id, follows=True, username="ana.cafe")
    payload = f"rf:{world.run_for(comment_id).id}:gate"
    world.state.user_postback(world.sandbox.ig_id, payload=payload, title="Done", username="ana.cafe")
    world.deliver()
    world.drive()

    body = api.get("/api/analytics/triggers", params={"from": world.now().date().isoformat()}).json()
    rows = {row["trigger"]: row for row in body["by_trigger"]}
    assert rows["dm_keyword"] == {"trigger": "dm_keyword", "received": 1, "matched": 1, "dms_sent": 1}
    assert rows["comment"]["received"] >= 1 and rows["comment"]["dms_sent"] == 1
    [gate] = body["follow_gates"]
    assert gate["rule_id"] == rule_id
    assert (gate["gate_sent"], gate["tapped"], gate["followed"], gate["unlocked"]) == (1, 1, 1, 1)
