"""Contacts: one row per person who interacted, kept by the real paths (comments, DMs, the gate, replies with an
email), read through ``GET /api/contacts`` and its CSV export, per workspace and never with a token."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from replyflow.automation import follow_gate
from replyflow.contacts.models import Contact
from replyflow.contacts.service import find_email
from replyflow.workspaces import service as workspaces

from .test_api import api  # noqa: F401  (the fixture)
from .world import World


def _contacts(world: World) -> dict[str, Contact]:
    with world.runtime.session() as session:
        return {c.username or c.igsid: c for c in session.scalars(select(Contact))}


def test_find_email() -> None:
    assert find_email("sure, it's Ana.Cafe+news@Example.COM thanks") == "Ana.Cafe+news@example.com"
    assert find_email("ana@") is None
    assert find_email("ana@localhost") is None
    assert find_email("a..b@example.com") is None
    assert find_email("no address here") is None


def test_contacts_follow_what_happened(world: World) -> None:
    world.state.set_app_subscription(object="instagram", fields=["messaging_postbacks"])
    rule_id = world.add_rule(
        tags=["coffee", "giveaway"],
        collect_email=True,
        private_reply={"text": "Here is the link! Reply with your email for the newsletter."},
    )
    world.comment("link please", username="ana.cafe")
    world.comment("nice photo", username="just.looking")
    world.drive()
    people = _contacts(world)
    assert set(people) == {"ana.cafe", "just.looking"}
    ana = people["ana.cafe"]
    assert (ana.rule_ids, ana.tags, ana.email, ana.follows) == ([rule_id], ["coffee", "giveaway"], None, None)
    assert people["just.looking"].rule_ids == [] and people["just.looking"].tags == []

    world.state.user_message(world.sandbox.ig_id, text="ana@", username="ana.cafe")
    world.deliver()
    assert _contacts(world)["ana.cafe"].email is None  # not an address: nothing stored
    world.advance(minutes=1)
    world.state.user_message(world.sandbox.ig_id, text="it's Ana@Example.com", username="ana.cafe")
    world.deliver()
    ana = _contacts(world)["ana.cafe"]
    assert ana.email == "Ana@example.com" and ana.last_seen_at > ana.first_seen_at


def test_the_gate_records_who_follows(world: World) -> None:
    world.state.set_app_subscription(object="instagram", fields=["messaging_postbacks"])
    world.add_rule(follow_gate={"text": "Follow first, then tap", "button_title": "Done"})
    comment_id = world.comment("link", username="ana.cafe")
    world.drive()
    world.state.set_follows(world.sandbox.ig_id, follows=True, username="ana.cafe")
    payload = follow_gate.gate_payload(world.run_for(comment_id).id)
    world.state.user_postback(world.sandbox.ig_id, payload=payload, title="Done", username="ana.cafe")
    world.deliver()
    world.drive()
    assert _contacts(world)["ana.cafe"].follows is True


def test_api_filters_export_and_isolation(api: TestClient, world: World) -> None:  # noqa: F811
    tagged = world.add_rule(tags=["vip"], keywords=["link"])
    world.comment("link please", username="ana.cafe")
    world.comment("what a roast", username="=cmd.user")
    world.drive()

    everyone = api.get("/api/contacts").json()
    assert {c["username"] for c in everyone["items"]} == {"ana.cafe", "=cmd.user"}
    assert everyone["next_cursor"] is None
    [vip] = api.get("/api/contacts", params={"tag": "vip"}).json()["items"]
    assert vip["username"] == "ana.cafe" and vip["rule_ids"] == [tagged] and vip["tags"] == ["vip"]
    assert api.get("/api/contacts", params={"rule_id": tagged}).json()["items"] == [vip]
    assert [c["username"] for c in api.get("/api/contacts", params={"q": "@ANA"}).json()["items"]] == ["ana.cafe"]
    first = api.get("/api/contacts", params={"limit": 1}).json()
    second = api.get("/api/contacts", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert len(first["items"]) == len(second["items"]) == 1 and second["next_cursor"] is None

    exported = api.get("/api/contacts.csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    lines = exported.text.splitlines()
    assert lines[0].startswith("igsid,username,email,follows,tags,rules")
    assert any(",ana.cafe,,,vip," in line for line in lines)
    assert any(",'=cmd.user," in line for line in lines)  # a spreadsheet will not run it as a formula
    for body in (exported.text, api.get("/api/contacts").text):
        assert world.sandbox.page_token not in body

    with world.runtime.session() as session:
        _other, key = workspaces.create_workspace(session=session, name="someone else")
        secret = key.secret
    assert api.get("/api/contacts", headers={"Authorization": f"Bearer {secret}"}).json()["items"] == []
    assert api.get("/api/contacts.csv", headers={"Authorization": f"Bearer {secret}"}).text.count("\n") == 1
    assert api.get("/api/contacts", params={"cursor": "nonsense"}).status_code == 422
