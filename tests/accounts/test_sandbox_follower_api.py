"""The sandbox's follower side over the API: story replies and mentions, follows, and Live broadcasts."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from tests.accounts.test_sandbox_mode import sandbox_client  # noqa: F401  (the fixture)

Client = tuple[TestClient, dict[str, str], Any]


def _connect(client: TestClient, headers: dict[str, str], state: Any) -> str:
    token = state.page_token(user_token=state.demo.user_token, page_id=state.demo.page_id)
    saved = client.post("/api/instagram/save-page-token", json={"page_access_token": token}, headers=headers)
    assert saved.status_code in (200, 201), saved.text
    account_id: str = saved.json()["account"]["id"]
    return account_id


def test_the_follower_side(sandbox_client: Client) -> None:  # noqa: F811
    client, headers, state = sandbox_client
    account_id = _connect(client, headers, state)

    mention = client.post(
        "/api/sandbox/messages",
        json={"account_id": account_id, "username": "mia.m", "story_mention": True},
        headers=headers,
    )
    assert mention.status_code == 202, mention.text
    body = mention.json()
    assert body["result"]["message"]["attachments"][0]["type"] == "story_mention"
    assert all(d["ok"] for d in body["webhook_deliveries"])
    story = client.post(
        "/api/sandbox/messages",
        json={"account_id": account_id, "username": "mia.m", "text": "love it", "story_id": "story_9"},
        headers=headers,
    ).json()
    assert story["result"]["message"]["reply_to"]["story"]["id"] == "story_9"
    empty = client.post("/api/sandbox/messages", json={"account_id": account_id, "username": "mia.m"}, headers=headers)
    assert empty.status_code == 422 and empty.json()["error"]["hint"]

    follows = client.post(
        "/api/sandbox/follows", json={"account_id": account_id, "username": "mia.m", "follows": True}, headers=headers
    )
    assert follows.json()["follows"] is True
    igsid = follows.json()["igsid"]
    assert state.follow_status(state.demo.ig_account_id, igsid) is True
    client.post("/api/sandbox/follows", json={"account_id": account_id, "username": "mia.m", "follows": None},
                headers=headers)  # fmt: skip
    assert state.follow_status(state.demo.ig_account_id, igsid) is None

    live = client.post("/api/sandbox/live", json={"account_id": account_id}, headers=headers)
    assert live.status_code == 201
    media_id = live.json()["media_id"]
    comment = client.post(
        "/api/sandbox/comments",
        json={"account_id": account_id, "media_id": media_id, "text": "link?", "username": "viewer.v"},
        headers=headers,
    ).json()
    assert [d["field"] for d in comment["webhook_deliveries"]] == ["live_comments"]
    assert client.post(f"/api/sandbox/live/{media_id}/end", headers=headers).json() == {"media_id": media_id,
                                                                                         "live": False}  # fmt: skip
    assert client.post(f"/api/sandbox/live/{media_id}/end", headers=headers).status_code == 200
    assert client.post("/api/sandbox/live/nope/end", headers=headers).status_code == 404
