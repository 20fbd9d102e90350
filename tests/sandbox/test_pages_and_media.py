"""Pages, Instagram accounts, media and comments as the Graph API shows them: fields, paging, access, moderation."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from replyflow.sandbox import SandboxState
from replyflow.sandbox.models import DemoWorld
from tests.sandbox.conftest import BASE, Graph

pytestmark = pytest.mark.anyio

ACCOUNT_FIELDS = "id,name,access_token,tasks,category,instagram_business_account{id,username}"


async def test_me_accounts_lists_pages_with_and_without_instagram(graph: Graph, demo: DemoWorld) -> None:
    body = (await graph.get("me/accounts", token=demo.user_token, fields=ACCOUNT_FIELDS)).json()
    with_ig, without_ig = body["data"]
    assert with_ig["id"] == demo.page_id and with_ig["name"] == "Demo Roastery"
    assert with_ig["instagram_business_account"] == {"id": demo.ig_account_id, "username": "demo.roastery"}
    assert "MESSAGING" in with_ig["tasks"] and with_ig["access_token"].startswith("EAAB")
    assert without_ig["id"] == demo.page_without_instagram_id
    assert "instagram_business_account" not in without_ig  # Meta leaves missing fields out
    assert set(body["paging"]["cursors"]) == {"before", "after"} and "next" not in body["paging"]


async def test_me_accounts_default_fields(graph: Graph, demo: DemoWorld) -> None:
    row = (await graph.get("me/accounts", token=demo.user_token)).json()["data"][0]
    assert list(row) == ["access_token", "category", "category_list", "name", "id", "tasks"]


async def test_me_accounts_gives_the_same_page_token_each_time(graph: Graph, demo: DemoWorld) -> None:
    first = (await graph.get("me/accounts", token=demo.user_token, fields="access_token")).json()
    second = (await graph.get("me/accounts", token=demo.user_token, fields="access_token")).json()
    assert first["data"][0]["access_token"] == second["data"][0]["access_token"]


async def test_me_accounts_paging_with_cursors(graph: Graph, demo: DemoWorld) -> None:
    first = (await graph.get("me/accounts", token=demo.user_token, fields="id", limit=1)).json()
    assert [p["id"] for p in first["data"]] == [demo.page_id]
    next_url = httpx.URL(first["paging"]["next"])
    assert str(next_url).startswith(f"{BASE}/graph/v25.0/me/accounts")
    assert "access_token" not in next_url.params  # the token came in a header, so it is not echoed
    after = first["paging"]["cursors"]["after"]
    second = (await graph.get("me/accounts", token=demo.user_token, fields="id", limit=1, after=after)).json()
    assert [p["id"] for p in second["data"]] == [demo.page_without_instagram_id]
    assert "next" not in second["paging"] and "previous" in second["paging"]
    bad = await graph.get("me/accounts", token=demo.user_token, after="not-a-cursor")
    assert bad.json()["error"]["code"] == 100


async def test_me_accounts_echoes_a_query_token_into_next(graph: Graph, demo: DemoWorld) -> None:
    body = (await graph.get("me/accounts", access_token=demo.user_token, fields="id", limit=1)).json()
    assert httpx.URL(body["paging"]["next"]).params["access_token"] == demo.user_token


async def test_granular_page_choice_limits_what_the_token_sees(
    graph: Graph, state: SandboxState, demo: DemoWorld
) -> None:
    token = state.issue_user_token(demo.user_id, page_ids=[demo.page_without_instagram_id])
    body = (await graph.get("me/accounts", token=token, fields="id")).json()
    assert [p["id"] for p in body["data"]] == [demo.page_without_instagram_id]
    hidden = await graph.get(demo.page_id, token=token)
    assert (hidden.json()["error"]["code"], hidden.json()["error"]["error_subcode"]) == (100, 33)


async def test_me_accounts_without_pages_show_list_is_empty(graph: Graph, state: SandboxState, demo: DemoWorld) -> None:
    token = state.issue_user_token(demo.user_id, scopes=["instagram_basic"])
    assert (await graph.get("me/accounts", token=token)).json() == {"data": []}


async def test_page_node_and_unknown_fields(graph: Graph, demo: DemoWorld, page_token: str) -> None:
    page = (await graph.get(demo.page_id, token=page_token, fields="id,name,instagram_business_account")).json()
    assert page == {
        "id": demo.page_id,
        "name": "Demo Roastery",
        "instagram_business_account": {"id": demo.ig_account_id},
    }
    bad = (await graph.get(demo.page_id, token=page_token, fields="id,fans")).json()["error"]
    assert bad["message"] == "(#100) Tried accessing nonexisting field (fans) on node type (Page)"


async def test_page_token_on_me_and_wrong_edges(graph: Graph, demo: DemoWorld, page_token: str) -> None:
    me = (await graph.get("me", token=page_token, fields="id,name")).json()
    assert me == {"id": demo.page_id, "name": "Demo Roastery"}
    error = (await graph.get("me/accounts", token=page_token)).json()["error"]
    assert error["message"] == "(#100) Tried accessing nonexisting field (accounts) on node type (Page)"


async def test_unknown_objects(graph: Graph, demo: DemoWorld) -> None:
    error = (await graph.get("12345678901234567", token=demo.user_token)).json()["error"]
    assert (error["code"], error["error_subcode"], error["type"]) == (100, 33, "GraphMethodException")
    assert error["message"].startswith("Unsupported get request. Object with ID '12345678901234567' does not exist")
    alias = (await graph.get("someone", token=demo.user_token)).json()["error"]
    assert alias["code"] == 803


async def test_instagram_profile(graph: Graph, demo: DemoWorld, page_token: str, http: httpx.AsyncClient) -> None:
    fields = "id,username,name,profile_picture_url,followers_count,media_count"
    profile = (await graph.get(demo.ig_account_id, token=page_token, fields=fields)).json()
    assert profile["username"] == "demo.roastery" and profile["media_count"] == 5
    picture = await http.get(profile["profile_picture_url"])
    assert picture.status_code == 200 and picture.headers["content-type"].startswith("image/svg+xml")
    assert picture.text.startswith("<svg") and "<script" not in picture.text


async def test_instagram_needs_instagram_basic(graph: Graph, state: SandboxState, demo: DemoWorld) -> None:
    user = state.issue_user_token(demo.user_id, scopes=["pages_show_list"])
    token = state.page_token(user_token=user, page_id=demo.page_id)
    error = (await graph.get(demo.ig_account_id, token=token)).json()["error"]
    assert error["code"] == 10
    page = (await graph.get(demo.page_id, token=token, fields="instagram_business_account")).json()
    assert "instagram_business_account" not in page


async def test_media_list_newest_first_with_paging_and_thumbnails(
    graph: Graph, demo: DemoWorld, page_token: str, http: httpx.AsyncClient
) -> None:
    fields = "id,caption,media_type,media_product_type,permalink,timestamp,thumbnail_url,media_url,comments_count"
    first = (await graph.get(f"{demo.ig_account_id}/media", token=page_token, fields=fields, limit=3)).json()
    assert [m["id"] for m in first["data"]] == demo.media_ids[:3]
    reel, post = first["data"][0], first["data"][1]
    assert (reel["media_type"], reel["media_product_type"]) == ("VIDEO", "REELS")
    assert reel["permalink"].startswith("https://www.instagram.com/reel/") and "thumbnail_url" in reel
    assert (post["media_type"], post["media_product_type"]) == ("IMAGE", "FEED")
    assert post["permalink"].startswith("https://www.instagram.com/p/") and "thumbnail_url" not in post
    assert reel["timestamp"].endswith("+0000") and reel["comments_count"] == 2
    thumb = await http.get(reel["thumbnail_url"])
    assert thumb.status_code == 200 and "REEL" in thumb.text
    rest = await graph.get(
        f"{demo.ig_account_id}/media", token=page_token, fields="id", limit=3, after=first["paging"]["cursors"]["after"]
    )
    assert [m["id"] for m in rest.json()["data"]] == demo.media_ids[3:]
    assert "next" not in rest.json()["paging"]


async def test_comments_newest_first_with_nested_replies(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str
) -> None:
    media_id = demo.media_ids[0]
    newest = state.add_comment(media_id, text="price?", username="new.fan")
    state.add_comment(media_id, text="same q", username="other.fan", parent_id=newest.id)
    fields = "id,text,timestamp,from{id,username},parent_id,hidden,replies{id,text,parent_id}"
    body = (await graph.get(f"{media_id}/comments", token=page_token, fields=fields)).json()
    top = body["data"][0]
    assert top["id"] == newest.id and top["from"] == {"id": newest.from_id, "username": "new.fan"}
    assert "parent_id" not in top and top["hidden"] is False
    assert [r["text"] for r in top["replies"]["data"]] == ["same q"]
    assert top["replies"]["data"][0]["parent_id"] == newest.id
    assert len(body["data"]) == 3  # two seeded top-level comments plus the new one; replies are nested only


async def test_comment_default_fields(graph: Graph, demo: DemoWorld, page_token: str) -> None:
    row = (await graph.get(f"{demo.media_ids[0]}/comments", token=page_token)).json()["data"][0]
    assert list(row) == ["timestamp", "text", "id"]


async def test_public_reply_goes_under_the_top_level_comment(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str
) -> None:
    top = state.add_comment(demo.media_ids[1], text="LINK", username="fan.one")
    reply = state.add_comment(demo.media_ids[1], text="me too", username="fan.two", parent_id=top.id)
    created = await graph.post(f"{reply.id}/replies", token=page_token, data={"message": "Sent you a DM!"})
    assert created.status_code == 200
    new_id = created.json()["id"]
    replies = (await graph.get(f"{top.id}/replies", token=page_token, fields="id,text,username,parent_id")).json()
    assert replies["data"][-1] == {
        "id": new_id,
        "text": "Sent you a DM!",
        "username": "demo.roastery",
        "parent_id": top.id,
    }
    (entry,) = state.outbox(kind="public_reply")
    assert entry.comment_id == reply.id and entry.result_id == new_id and entry.text == "Sent you a DM!"
    assert entry.token_kind == "PAGE" and entry.token_owner_id == demo.page_id


async def test_public_reply_needs_a_message(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str
) -> None:
    comment = state.add_comment(demo.media_ids[0], text="hi", username="fan")
    error = (await graph.post(f"{comment.id}/replies", token=page_token)).json()["error"]
    assert error == {**error, "code": 100, "message": "(#100) The parameter message is required"}


async def test_no_public_reply_to_hidden_or_live_comments(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str
) -> None:
    comment = state.add_comment(demo.media_ids[0], text="spam", username="bot")
    hidden = await graph.post(comment.id, token=page_token, data={"hide": "true"})
    assert hidden.json() == {"success": True}
    assert (await graph.get(comment.id, token=page_token, fields="hidden")).json()["hidden"] is True
    refused = await graph.post(f"{comment.id}/replies", token=page_token, data={"message": "hi"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == 100
    live = state.add_media(demo.ig_account_id, caption="Live roasting!", live=True)
    live_comment = state.add_comment(live.id, text="hello from live", username="viewer")
    refused = await graph.post(f"{live_comment.id}/replies", token=page_token, data={"message": "hi"})
    assert refused.status_code == 400 and "live" in refused.json()["error"]["message"]
    unhide = await graph.post(comment.id, token=page_token, data={"hide": "false"})
    assert unhide.json() == {"success": True} and state.get_comment(comment.id).hidden is False  # type: ignore[union-attr]
    assert state.outbox() == []


async def test_moderation_needs_instagram_manage_comments(graph: Graph, state: SandboxState, demo: DemoWorld) -> None:
    user = state.issue_user_token(demo.user_id, scopes=["pages_show_list", "instagram_basic"])
    token = state.page_token(user_token=user, page_id=demo.page_id)
    comment = state.add_comment(demo.media_ids[0], text="hi", username="fan")
    for response in (
        await graph.get(f"{demo.media_ids[0]}/comments", token=token),
        await graph.post(f"{comment.id}/replies", token=token, data={"message": "x"}),
        await graph.post(comment.id, token=token, data={"hide": "true"}),
    ):
        assert response.json()["error"]["code"] == 10


async def test_user_token_works_for_reads_through_the_page_role(graph: Graph, demo: DemoWorld) -> None:
    body = (await graph.get(f"{demo.ig_account_id}/media", token=demo.user_token, fields="id", limit=1)).json()
    assert body["data"][0]["id"] == demo.media_ids[0]


async def test_deleted_comments_disappear(graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str) -> None:
    comment = state.add_comment(demo.media_ids[2], text="oops", username="fan")
    assert (await graph.delete(comment.id, token=page_token)).json() == {"success": True}
    gone = (await graph.get(comment.id, token=page_token)).json()["error"]
    assert gone["code"] == 100
    assert comment.id not in [c.id for c in state.comments_of(demo.media_ids[2])]


async def test_seeded_world_has_comments_across_the_window(state: SandboxState, demo: DemoWorld) -> None:
    ages = [state.now() - c.timestamp for m in demo.media_ids for c in state.comments_of(m)]
    assert any(age < timedelta(days=7) for age in ages) and any(age > timedelta(days=7) for age in ages)
