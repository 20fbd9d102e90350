"""Private replies and the Send API with Meta's rules: one DM per comment, 7-day window, quota, 24 h window."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from replyflow.sandbox import SandboxState
from replyflow.sandbox.models import Comment, DemoWorld
from tests.sandbox.conftest import Graph

pytestmark = pytest.mark.anyio

TEXT = {"text": "Here's the early-bird link: https://roastery.example/guji"}


def private_reply(comment_id: str, message: dict[str, Any] = TEXT) -> dict[str, Any]:
    return {"recipient": {"comment_id": comment_id}, "message": message}


@pytest.fixture
def comment(state: SandboxState, demo: DemoWorld) -> Comment:
    return state.add_comment(demo.media_ids[0], text="ROAST please", username="coffee.lena")


async def test_private_reply_is_recorded_once(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str, comment: Comment
) -> None:
    first = await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comment.id))
    assert first.status_code == 200
    body = first.json()
    assert body["recipient_id"] == comment.from_id and body["message_id"].startswith("aWdfZAG1faXRlbTox")
    (entry,) = state.outbox(kind="private_reply")
    assert (entry.comment_id, entry.recipient_id, entry.result_id) == (comment.id, comment.from_id, body["message_id"])
    assert entry.body == private_reply(comment.id) and entry.text == TEXT["text"]
    assert entry.token_kind == "PAGE" and entry.page_id == demo.page_id

    second = await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comment.id))
    assert second.status_code == 400
    error = second.json()["error"]
    assert (error["code"], error["error_subcode"]) == (100, 2534025)
    assert len(state.outbox(kind="private_reply")) == 1


async def test_me_messages_with_a_page_token_is_the_same_call(
    graph: Graph, state: SandboxState, page_token: str, comment: Comment
) -> None:
    response = await graph.post("me/messages", token=page_token, json=private_reply(comment.id))
    assert response.status_code == 200 and len(state.outbox()) == 1


async def test_form_encoded_recipient_is_accepted(
    graph: Graph, demo: DemoWorld, page_token: str, comment: Comment
) -> None:
    data = {"recipient": json.dumps({"comment_id": comment.id}), "message": json.dumps(TEXT)}
    response = await graph.post(f"{demo.page_id}/messages", token=page_token, data=data)
    assert response.status_code == 200


async def test_private_reply_after_seven_days_is_outside_the_window(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str, comment: Comment
) -> None:
    state.clock.advance(days=7, seconds=1)
    response = await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comment.id))
    error = response.json()["error"]
    assert (error["code"], error["error_subcode"]) == (10, 2534022)
    assert "outside of allowed window" in error["message"]
    assert state.outbox() == []


async def test_private_reply_just_inside_the_window(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str, comment: Comment
) -> None:
    state.clock.advance(days=6, hours=23)
    response = await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comment.id))
    assert response.status_code == 200


@pytest.mark.parametrize("case", ["unknown", "deleted", "own", "other_account"])
async def test_comments_that_cannot_get_a_private_reply(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str, case: str
) -> None:
    if case == "unknown":
        comment_id = "17800000000000000"
    elif case == "deleted":
        gone = state.add_comment(demo.media_ids[0], text="x", username="fan")
        state.delete_comment(gone.id)
        comment_id = gone.id
    elif case == "own":
        comment_id = state.add_comment(demo.media_ids[0], text="Thanks all!", username=demo.username).id
    else:
        other_page = state.add_page("Other", owner_user_id=demo.user_id)
        other = state.add_instagram_account(other_page.id, username="other.shop")
        media = state.add_media(other.id, caption="hello")
        comment_id = state.add_comment(media.id, text="hi", username="fan").id
    response = await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comment_id))
    error = response.json()["error"]
    assert (error["code"], error["error_subcode"]) == (100, 2534025)


async def test_private_reply_on_live_comment_only_while_live(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str
) -> None:
    live = state.add_media(demo.ig_account_id, caption="Roasting live", live=True)
    during = state.add_comment(live.id, text="link?", username="viewer.one")
    after = state.add_comment(live.id, text="me too", username="viewer.two")
    ok = await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(during.id))
    assert ok.status_code == 200
    state.end_live(live.id)
    late = await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(after.id))
    assert late.json()["error"]["error_subcode"] == 2534025


async def test_quota_answers_613_with_regain_time_in_the_buc_header(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str
) -> None:
    state.set_private_reply_quota(count=2, seconds=3600)
    comments = [state.add_comment(demo.media_ids[0], text=f"ROAST {i}", username=f"fan{i}") for i in range(3)]
    for comment in comments[:2]:
        sent = await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comment.id))
        assert sent.status_code == 200
    usage = json.loads(sent.headers["x-business-use-case-usage"])[demo.page_id][0]
    assert usage["type"] == "messenger" and usage["call_count"] == 100

    state.clock.advance(minutes=10)
    refused = await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comments[2].id))
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == 613 and error["is_transient"] is True
    usage = json.loads(refused.headers["x-business-use-case-usage"])[demo.page_id][0]
    assert usage["call_count"] == 100 and usage["estimated_time_to_regain_access"] == 50

    state.clock.advance(minutes=50)
    again = await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comments[2].id))
    assert again.status_code == 200


async def test_quota_is_per_instagram_account_and_a_sliding_window(state: SandboxState, demo: DemoWorld) -> None:
    state.set_private_reply_quota(count=3, seconds=60)
    assert state.private_reply_quota_status(demo.ig_account_id) == (0, 3, 0.0)


async def test_wrong_node_for_facebook_login(graph: Graph, demo: DemoWorld, page_token: str, comment: Comment) -> None:
    response = await graph.post(f"{demo.ig_account_id}/messages", token=page_token, json=private_reply(comment.id))
    error = response.json()["error"]
    assert error["code"] == 3
    assert error["message"] == "(#3) Application does not have the capability to make this API call."


async def test_messages_need_a_page_token_and_permissions(
    graph: Graph, state: SandboxState, demo: DemoWorld, comment: Comment
) -> None:
    with_user_token = await graph.post(
        f"{demo.page_id}/messages", token=demo.user_token, json=private_reply(comment.id)
    )
    assert with_user_token.json()["error"]["code"] == 190
    user = state.issue_user_token(
        demo.user_id,
        scopes=["pages_show_list", "pages_read_engagement", "instagram_basic", "instagram_manage_comments"],
    )
    token = state.page_token(user_token=user, page_id=demo.page_id)
    no_messaging = await graph.post(f"{demo.page_id}/messages", token=token, json=private_reply(comment.id))
    assert no_messaging.json()["error"]["code"] == 10, "neither instagram_manage_messages nor pages_messaging"
    no_engagement = state.issue_user_token(demo.user_id, scopes=["pages_messaging", "instagram_basic",
                                                                 "instagram_manage_comments"])  # fmt: skip
    token = state.page_token(user_token=no_engagement, page_id=demo.page_id)
    refused = await graph.post(f"{demo.page_id}/messages", token=token, json=private_reply(comment.id))
    assert refused.json()["error"]["code"] == 200
    state.set_page_role(demo.page_id, demo.user_id, tasks=["ANALYZE"])
    page_token = state.page_token(user_token=demo.user_token, page_id=demo.page_id)
    no_task = await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comment.id))
    assert no_task.json()["error"]["code"] == 200
    other_page = await graph.post(
        f"{demo.page_without_instagram_id}/messages", token=page_token, json=private_reply(comment.id)
    )
    assert other_page.json()["error"]["error_subcode"] == 33
    assert state.outbox() == []


@pytest.mark.parametrize(
    "message",
    [
        {},
        {"text": ""},
        {"text": "x" * 1001},
        {"text": "a", "attachment": {"type": "image", "payload": {"url": "https://x.example/a.png"}}},
        {"attachment": {"type": "template", "payload": {"template_type": "button", "text": "hi", "buttons": []}}},
        {"text": "pick", "quick_replies": [{"content_type": "text", "title": "x" * 21, "payload": "A"}]},
    ],
)
async def test_invalid_messages_are_code_100(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str, comment: Comment, message: dict[str, Any]
) -> None:
    response = await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comment.id, message))
    assert response.json()["error"]["code"] == 100
    assert state.outbox() == []


async def test_private_reply_with_a_button_template(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str, comment: Comment
) -> None:
    message = {
        "attachment": {
            "type": "template",
            "payload": {
                "template_type": "button",
                "text": "Tap for the early-bird link",
                "buttons": [{"type": "web_url", "url": "https://roastery.example/guji", "title": "Open"}],
            },
        }
    }
    response = await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comment.id, message))
    assert response.status_code == 200
    assert state.outbox()[0].text == "Tap for the early-bird link"


async def test_send_api_needs_the_24_hour_window(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str, comment: Comment
) -> None:
    message = {
        "recipient": {"id": comment.from_id},
        "messaging_type": "RESPONSE",
        "message": {"text": "Anything else?"},
    }
    # The private reply does not open the window; only the person's own message does.
    await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comment.id))
    closed = await graph.post(f"{demo.page_id}/messages", token=page_token, json=message)
    error = closed.json()["error"]
    assert (error["code"], error["error_subcode"]) == (10, 2018278)

    state.user_message(demo.ig_account_id, from_id=comment.from_id, text="yes, the price?")
    state.clock.advance(hours=23)
    sent = await graph.post(f"{demo.page_id}/messages", token=page_token, json=message)
    assert sent.status_code == 200 and sent.json()["recipient_id"] == comment.from_id
    assert state.outbox(kind="message")[0].recipient_id == comment.from_id

    state.clock.advance(hours=2)
    late = await graph.post(f"{demo.page_id}/messages", token=page_token, json=message)
    assert late.json()["error"]["error_subcode"] == 2018278
    tagged = {**message, "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}
    assert (await graph.post(f"{demo.page_id}/messages", token=page_token, json=tagged)).status_code == 200
    state.clock.advance(days=7)
    assert (await graph.post(f"{demo.page_id}/messages", token=page_token, json=tagged)).status_code == 400


async def test_postback_and_quick_reply_open_the_window(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str
) -> None:
    tapper = state.add_person("tapper")
    state.user_postback(demo.ig_account_id, from_id=tapper.igsid, payload="SEND_LINK", title="Send link")
    message = {"recipient": {"id": tapper.igsid}, "message": {"text": "Here it is"}}
    assert (await graph.post(f"{demo.page_id}/messages", token=page_token, json=message)).status_code == 200


async def test_send_api_to_unknown_person(graph: Graph, demo: DemoWorld, page_token: str) -> None:
    message = {"recipient": {"id": "6999999999999999"}, "message": {"text": "hi"}}
    error = (await graph.post(f"{demo.page_id}/messages", token=page_token, json=message)).json()["error"]
    assert (error["code"], error["error_subcode"]) == (100, 2018001)


async def test_quota_status_counts_only_inside_the_window(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str
) -> None:
    for i in range(2):
        comment = state.add_comment(demo.media_ids[0], text=f"x{i}", username=f"f{i}")
        await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comment.id))
    assert state.private_reply_quota_status(demo.ig_account_id)[0] == 2
    state.clock.advance(seconds=3601)
    assert state.private_reply_quota_status(demo.ig_account_id)[0] == 0
    assert state.now() - state.outbox()[0].at > timedelta(hours=1)
