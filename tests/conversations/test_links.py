"""Tracked links: the short URL in the DM counts clicks and redirects, and cannot be turned into an open redirect."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from replyflow.automation.models import Run
from replyflow.conversations import links
from replyflow.conversations.models import LinkClick, RunEngagement, TrackedLink
from replyflow.errors import ValidationFailed

from .world import ConversationWorld

BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Instagram 329.0.0.0.58"


def _short_path(world: ConversationWorld) -> str:
    """The /r/… path of the follow-up's button, after the person asked for the link."""
    world.add_rule()
    world.comment("link")
    world.reply("send it")
    assert world.run_follow_ups() == ["sent"]
    url: str = world.outbox("message")[-1].body["message"]["attachment"]["payload"]["buttons"][0]["url"]
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == "https://replyflow.example"
    return parts.path


def _clicks(world: ConversationWorld) -> list[LinkClick]:
    with world.runtime.session() as session:
        return list(session.scalars(select(LinkClick).order_by(LinkClick.id)))


def test_a_click_is_counted_and_redirected_to_the_stored_url(world: ConversationWorld) -> None:
    path = _short_path(world)
    response = world.client.get(path, headers={"User-Agent": BROWSER}, follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "https://roastery.example/early-bird?ref=ig"
    assert response.headers["cache-control"] == "no-store, private"
    assert response.headers["referrer-policy"] == "no-referrer"
    world.client.get(path, headers={"User-Agent": BROWSER}, follow_redirects=False)

    (click, _second) = _clicks(world)
    assert click.is_preview is False
    # Nothing about the visitor is kept: the row has no column for an address, an agent or a cookie.
    assert set(LinkClick.__table__.columns.keys()) == {
        "id",
        "link_id",
        "account_id",
        "run_id",
        "clicked_at",
        "is_preview",
    }
    item = world.get("/api/conversations").json()["items"][0]
    assert item["clicks"] == 2 and item["links"][0]["clicks"] == 2
    with world.runtime.session() as session:
        engagement = session.get(RunEngagement, click.run_id)
        assert engagement is not None and engagement.clicks == 2


def test_link_previews_are_redirected_but_not_counted(world: ConversationWorld) -> None:
    path = _short_path(world)
    preview = world.client.get(
        path, headers={"User-Agent": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"},
        follow_redirects=False,
    )  # fmt: skip
    assert preview.status_code == 302
    (click,) = _clicks(world)
    assert click.is_preview is True
    assert world.get("/api/conversations").json()["items"][0]["clicks"] == 0


@pytest.mark.parametrize(
    "suffix",
    [
        "?url=https://evil.example/",
        "?next=//evil.example&redirect=https%3A%2F%2Fevil.example",
    ],
)
def test_query_parameters_never_choose_the_target(world: ConversationWorld, suffix: str) -> None:
    path = _short_path(world)
    response = world.client.get(path + suffix, follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "https://roastery.example/early-bird?ref=ig"


@pytest.mark.parametrize(
    "path",
    [
        "/r/https://evil.example",
        "/r/%2F%2Fevil.example",
        "/r//evil.example",
        "/r/evil.example",
        "/r/",
        "/r/" + "A" * 22,  # well-formed, but no such code
        "/r/" + "A" * 200,
        "/r/..%2F..%2Fadmin",
    ],
)
def test_unknown_or_malformed_codes_are_a_404_page_without_a_location(world: ConversationWorld, path: str) -> None:
    _short_path(world)
    response = world.client.get(path, follow_redirects=False)
    assert response.status_code == 404
    assert "location" not in response.headers
    assert "evil.example" not in response.text
    assert _clicks(world) == []


def test_a_tampered_code_is_a_404(world: ConversationWorld) -> None:
    path = _short_path(world)
    code = path.removeprefix("/r/")
    assert links.CODE_PATTERN.fullmatch(code)
    for position in (0, len(code) // 2, len(code) - 1):
        flipped = "B" if code[position] != "B" else "C"
        tampered = code[:position] + flipped + code[position + 1 :]
        assert world.client.get(f"/r/{tampered}", follow_redirects=False).status_code == 404


def test_a_stored_url_that_is_not_http_is_never_followed(world: ConversationWorld) -> None:
    path = _short_path(world)
    with world.runtime.session() as session:
        link = session.scalar(select(TrackedLink))
        assert link is not None
        link.url = "javascript:alert(document.cookie)"
    response = world.client.get(path, follow_redirects=False)
    assert response.status_code == 404 and "location" not in response.headers


def test_tracked_url_is_stable_per_run_and_refuses_non_http_links(world: ConversationWorld) -> None:
    world.add_rule(follow_up=None)
    comment_id = world.comment("link")
    with world.runtime.session() as session:
        run = session.scalar(select(Run).where(Run.comment_id == comment_id))
        assert run is not None
        first = links.tracked_url(session=session, run_or_thread=run, url="https://shop.example/a")
        again = links.tracked_url(session=session, run_or_thread=run, url="https://shop.example/a")
        other = links.tracked_url(session=session, run_or_thread=run, url="https://shop.example/b")
        assert first == again != other
        assert first.startswith("https://replyflow.example/r/")
        with pytest.raises(ValidationFailed):
            links.tracked_url(session=session, run_or_thread=run, url="javascript:alert(1)")
        engagement = session.get(RunEngagement, run.id)
        assert engagement is not None and engagement.links == 2


def test_track_message_rewrites_link_buttons_and_default_actions_only(world: ConversationWorld) -> None:
    world.add_rule(follow_up=None)
    comment_id = world.comment("link")
    message = {
        "attachment": {
            "type": "template",
            "payload": {
                "template_type": "generic",
                "elements": [
                    {
                        "title": "Guji",
                        "default_action": {"type": "web_url", "url": "https://shop.example/guji"},
                        "buttons": [
                            {"type": "web_url", "url": "https://shop.example/buy", "title": "Buy"},
                            {"type": "postback", "payload": "rf:x", "title": "More"},
                        ],
                    }
                ],
            },
        }
    }
    with world.runtime.session() as session:
        run = session.scalar(select(Run).where(Run.comment_id == comment_id))
        assert run is not None
        tracked = links.track_message(session=session, run_or_thread=run, message=message)
    element = tracked["attachment"]["payload"]["elements"][0]
    assert element["default_action"]["url"].startswith("https://replyflow.example/r/")
    assert element["buttons"][0]["url"].startswith("https://replyflow.example/r/")
    assert element["buttons"][1] == {"type": "postback", "payload": "rf:x", "title": "More"}
    # The original is left as it was (the engine may keep it for its records).
    assert message["attachment"]["payload"]["elements"][0]["buttons"][0]["url"] == "https://shop.example/buy"  # type: ignore[index]


def test_links_stay_untracked_when_the_public_url_is_this_machine(world: ConversationWorld) -> None:
    world.add_rule(follow_up=None)
    comment_id = world.comment("link")
    with world.runtime.session() as session:
        run = session.scalar(select(Run).where(Run.comment_id == comment_id))
        assert run is not None
        # Outside sandbox mode nobody on Instagram can open http://127.0.0.1:8000/r/…: the link goes out as it is.
        url = links.tracked_url(
            session=session, run_or_thread=run, url="https://shop.example/a", public_url="http://127.0.0.1:8000"
        )
        assert url == "https://shop.example/a"
        assert session.scalars(select(TrackedLink)).all() == []
