"""``/api/rules`` (CRUD with clear 422s, posts checked against the account's media), the dry run and ``/api/runs``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Mount

from replyflow.sandbox import create_sandbox_app
from replyflow.workspaces import service as workspaces
from replyflow.workspaces.models import Workspace

from .world import World


@pytest.fixture
def api(world: World, app: Any, client: TestClient) -> Iterator[TestClient]:
    """A client authenticated for the world's workspace; the app's Graph calls go to the world's sandbox."""
    mounted = Starlette(routes=[Mount("/sandbox", app=create_sandbox_app(world.state))])
    app.state.graph_transport = httpx.ASGITransport(app=mounted)
    with world.runtime.session() as session:
        ws = session.get(Workspace, world.workspace_id)
        assert ws is not None
        key = workspaces.issue_key(session=session, workspace=ws).secret
    client.headers["Authorization"] = f"Bearer {key}"
    yield client


def rule_body(world: World, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "account_id": world.account_id,
        "name": "Roast giveaway",
        "enabled": True,
        "posts": {"mode": "specific", "media_ids": [world.media_ids[0]]},
        "keywords": ["link", "price"],
        "match": "contains_any",
        "exclude_keywords": [],
        "public_reply": {"texts": ["Sent you a DM, @{username}!", "Check your inbox 📬"]},
        "private_reply": {"text": "Here you go: ...", "buttons": [{"title": "Open", "url": "https://shop.example"}]},
        "once_per_user": True,
    }
    body.update(overrides)
    return body


def test_create_read_update_delete(api: TestClient, world: World) -> None:
    created = api.post("/api/rules", json=rule_body(world))
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["id"].startswith("rule_")
    assert rule["posts"] == {"mode": "specific", "media_ids": [world.media_ids[0]]}
    assert rule["priority"] == 0

    assert api.get(f"/api/rules/{rule['id']}").json() == rule
    listed = api.get("/api/rules", params={"account_id": world.account_id}).json()
    assert [r["id"] for r in listed["items"]] == [rule["id"]]

    patched = api.patch(f"/api/rules/{rule['id']}", json={"name": "Renamed", "priority": 3, "enabled": False})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["name"], patched.json()["priority"], patched.json()["enabled"]) == ("Renamed", 3, False)

    assert api.delete(f"/api/rules/{rule['id']}").status_code == 204
    assert api.get(f"/api/rules/{rule['id']}").status_code == 404
    assert api.get("/api/rules").json()["items"] == []


def test_specific_posts_must_be_the_accounts_own(api: TestClient, world: World) -> None:
    body = rule_body(world, posts={"mode": "specific", "media_ids": [world.media_ids[1], "17999999999999999"]})
    response = api.post("/api/rules", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "posts.media_ids[1]"
    assert "17999999999999999" in error["message"]


def test_changing_posts_is_checked_too(api: TestClient, world: World) -> None:
    rule_id = api.post("/api/rules", json=rule_body(world)).json()["id"]
    bad = api.patch(f"/api/rules/{rule_id}", json={"posts": {"mode": "specific", "media_ids": ["1790000000000"]}})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "posts.media_ids[0]"
    good = api.patch(f"/api/rules/{rule_id}", json={"posts": {"mode": "any"}})
    assert good.status_code == 200 and good.json()["posts"] == {"mode": "any", "media_ids": []}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"keywords": []}, "keywords"),
        ({"match": "sometimes"}, "match"),
        ({"private_reply": {"text": "x", "buttons": [{"title": "Open", "url": "http://plain.example"}]}}, "url"),
        ({"public_reply": None, "private_reply": None}, "private_reply"),
        ({"posts": {"mode": "next", "media_ids": ["17900000000000001"]}}, "posts.media_ids"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_invalid_rules_are_422_naming_the_field(
    api: TestClient, world: World, overrides: dict[str, Any], field: str
) -> None:
    response = api.post("/api/rules", json=rule_body(world, **overrides))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert field in error["field"]


def test_a_patch_that_breaks_the_rule_is_422(api: TestClient, world: World) -> None:
    rule_id = api.post("/api/rules", json=rule_body(world, match="any_comment", keywords=[])).json()["id"]
    response = api.patch(f"/api/rules/{rule_id}", json={"match": "exact"})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "keywords"


def test_another_workspaces_rules_and_accounts_are_404(api: TestClient, world: World) -> None:
    rule_id = api.post("/api/rules", json=rule_body(world)).json()["id"]
    with world.runtime.session() as session:
        _, issued = workspaces.create_workspace(session=session, name="Someone else")
    other = {"Authorization": f"Bearer {issued.secret}"}
    assert api.get(f"/api/rules/{rule_id}", headers=other).status_code == 404
    assert api.patch(f"/api/rules/{rule_id}", json={"name": "x"}, headers=other).status_code == 404
    assert api.delete(f"/api/rules/{rule_id}", headers=other).status_code == 404
    assert api.post("/api/rules", json=rule_body(world), headers=other).status_code == 404
    assert api.get("/api/runs", headers=other).json()["items"] == []


def test_rules_need_an_api_key(api: TestClient) -> None:
    assert api.get("/api/rules", headers={"Authorization": "Bearer rf_wrong"}).status_code == 401


def test_next_rules_bind_and_show_their_post(api: TestClient, world: World) -> None:
    rule = api.post("/api/rules", json=rule_body(world, posts={"mode": "next"})).json()
    assert rule["posts"] == {"mode": "next", "media_ids": []}
    world.advance(minutes=1)
    post = world.state.add_media(world.sandbox.ig_id, caption="New").id
    comment_id = world.comment("link", media=post)
    world.drive()
    world.assert_reply_then_dm_once(comment_id)
    assert api.get(f"/api/rules/{rule['id']}").json()["posts"] == {"mode": "next", "media_ids": [post]}
    # Saving it back unchanged keeps the binding; saving "next" without a post waits for a new one.
    kept = api.patch(f"/api/rules/{rule['id']}", json={"posts": {"mode": "next", "media_ids": [post]}})
    assert kept.json()["posts"]["media_ids"] == [post]
    rearmed = api.patch(f"/api/rules/{rule['id']}", json={"posts": {"mode": "next"}})
    assert rearmed.json()["posts"]["media_ids"] == []


# -- the dry run ----------------------------------------------------------------------------------------------


def test_dry_run_of_an_unsaved_rule(api: TestClient, world: World) -> None:
    body = {
        "rule": rule_body(world, public_reply={"texts": ["On its way, @{username}!"]}),
        "comment": {"text": "What's the PRICE?", "media_id": world.media_ids[0], "username": "ana.cafe"},
    }
    response = api.post("/api/rules/test", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["match"], result["reason"], result["public_reply"]) == (True, None, "On its way, @ana.cafe!")
    assert result["keyword"] == "price"
    assert world.outbox() == [] and world.runs() == []


@pytest.mark.parametrize(
    ("comment", "reason"),
    [
        ({"text": "nice"}, "no_keyword"),
        ({"text": "no link please"}, "excluded_keyword"),
        ({"text": "link", "media_id": "17900000000000777"}, "post_not_targeted"),
        ({"text": "link", "parent_id": "17800000000000001"}, "reply_to_reply"),
    ],
)
def test_dry_run_says_why_not(api: TestClient, world: World, comment: dict[str, Any], reason: str) -> None:
    sample = {"media_id": world.media_ids[0], "username": "ana.cafe", **comment}
    result = api.post(
        "/api/rules/test", json={"rule": rule_body(world, exclude_keywords=["no"]), "comment": sample}
    ).json()
    assert (result["match"], result["reason"], result["public_reply"]) == (False, reason, None)
    assert result["detail"]


def test_dry_run_of_a_saved_rule_uses_what_live_matching_knows(api: TestClient, world: World) -> None:
    rule_id = api.post("/api/rules", json=rule_body(world)).json()["id"]
    sample = {"text": "link", "media_id": world.media_ids[0], "username": world.sandbox.username}
    own = api.post(
        "/api/rules/test", json={"rule": {"id": rule_id}, "comment": {**sample, "from_id": world.sandbox.ig_id}}
    )
    assert own.json()["reason"] == "own_comment"

    comment_id = world.comment("link", username="repeat.person")
    world.drive()
    from_id = world.run_for(comment_id).from_id
    again = api.post(
        "/api/rules/test",
        json={"rule": {"id": rule_id}, "comment": {**sample, "from_id": from_id, "username": "repeat.person"}},
    )
    assert (again.json()["match"], again.json()["reason"]) == (False, "already_handled_user")


def test_dry_run_errors(api: TestClient, world: World) -> None:
    sample = {"text": "link", "media_id": world.media_ids[0]}
    assert api.post("/api/rules/test", json={"rule": {"id": "rule_nope"}, "comment": sample}).status_code == 404
    invalid = api.post("/api/rules/test", json={"rule": rule_body(world, keywords=[]), "comment": sample})
    assert invalid.status_code == 422
    assert invalid.json()["error"]["field"] == "rule.keywords"


# -- runs ---------------------------------------------------------------------------------------------------------


def test_runs_list_every_comment_with_steps_and_reasons(api: TestClient, world: World) -> None:
    rule_id = api.post("/api/rules", json=rule_body(world)).json()["id"]
    handled = world.comment("link please", username="fan.one")
    skipped = world.comment("lovely", username="fan.two")
    world.drive()

    page = api.get("/api/runs", params={"account_id": world.account_id}).json()
    by_comment = {r["comment_id"]: r for r in page["items"]}
    done, skip = by_comment[handled], by_comment[skipped]
    assert (done["status"], done["rule_id"], done["media_id"], done["reason"]) == (
        "done",
        rule_id,
        world.media_ids[0],
        None,
    )
    assert [s["step"] for s in done["steps"]][-3:] == ["dm_attempt", "dm_sent", "done"]
    assert all(s["at"] for s in done["steps"])
    assert done["private_reply"]["message_id"] == world.outbox("private_reply", comment_id=handled)[0].result_id
    assert (skip["status"], skip["reason"], skip["rule_id"]) == ("skipped", "no_keyword", None)
    # Our own public reply came back as a webhook: it is listed too, skipped as the account's own comment.
    assert any(r["reason"] == "own_comment" for r in page["items"])

    only_done = api.get("/api/runs", params={"status": "done"}).json()["items"]
    assert [r["comment_id"] for r in only_done] == [handled]
    by_rule = api.get("/api/runs", params={"rule_id": rule_id}).json()["items"]
    assert [r["comment_id"] for r in by_rule] == [handled]
    assert api.get("/api/runs", params={"status": "bogus"}).status_code == 422
    assert api.get(f"/api/runs/{done['id']}").json()["id"] == done["id"]


def test_runs_are_paginated_newest_first(api: TestClient, world: World) -> None:
    ids = [world.comment(f"hello {i}", username=f"p{i}") for i in range(5)]
    first = api.get("/api/runs", params={"limit": 2}).json()
    second = api.get("/api/runs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    third = api.get("/api/runs", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    seen = [r["comment_id"] for r in first["items"] + second["items"] + third["items"]]
    assert seen == list(reversed(ids))
    assert third["next_cursor"] is None


def test_deleted_rules_keep_their_runs(api: TestClient, world: World) -> None:
    rule_id = api.post("/api/rules", json=rule_body(world)).json()["id"]
    comment_id = world.comment("link")
    world.drive()
    api.delete(f"/api/rules/{rule_id}")
    run = next(r for r in api.get("/api/runs").json()["items"] if r["comment_id"] == comment_id)
    assert run["rule_id"] == rule_id
