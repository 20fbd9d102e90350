"""The Graph client against recorded-shape answers: what it sends, what it returns, and how it fails."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from pydantic import SecretStr

from replyflow.errors import ConfigurationError
from replyflow.graph.client import GraphClient, token_fingerprint
from replyflow.graph.errors import (
    CommentFinal,
    CommentFinalReason,
    GraphError,
    OutcomeUnknown,
    PermissionDenied,
    RateLimited,
    TokenInvalid,
    TokenInvalidReason,
    TransientError,
)
from replyflow.graph.messages import UrlButton, button_template, text_message
from replyflow.graph.usage import UsageReport
from tests.graph.conftest import API, APP_ID, APP_SECRET, BASE_URL, PAGE_TOKEN, USER_TOKEN, VERSION
from tests.graph.fixtures import load_fixture

pytestmark = pytest.mark.anyio

PAGE_ID = "102938475610293"
IG_ID = "17841400000000001"
MEDIA_ID = "17900000000000003"
COMMENT_ID = "17858893269000003"


def proof(token: str) -> str:
    """appsecret_proof computed here independently of the client: HMAC-SHA256(key=secret, msg=token), hex."""
    return hmac.new(APP_SECRET.encode("utf-8"), msg=token.encode("utf-8"), digestmod=hashlib.sha256).hexdigest()


def route(meta: respx.MockRouter, name: str, **overrides: Any) -> respx.Route:
    fx = load_fixture(name)
    return meta.route(method=fx.method, path=fx.path).mock(return_value=fx.response(**overrides))


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode(), keep_blank_values=True).items()}


def assert_signed_with(request: httpx.Request, token: str) -> None:
    assert request.headers["authorization"] == f"Bearer {token}"
    assert request.url.params["appsecret_proof"] == proof(token)
    assert token not in str(request.url)


# -- tokens and OAuth -----------------------------------------------------------------------------------------


async def test_debug_token_uses_app_token_and_keeps_input_out_of_the_url(
    graph: GraphClient, meta: respx.MockRouter
) -> None:
    r = route(meta, "debug_token__user_valid")
    info = await graph.debug_token(input_token=USER_TOKEN)

    request = r.calls.last.request
    assert request.method == "POST"
    assert request.headers["authorization"] == f"Bearer {APP_ID}|{APP_SECRET}"
    assert "appsecret_proof" not in request.url.params
    assert form(request) == {"method": "GET", "input_token": USER_TOKEN}
    assert USER_TOKEN not in str(request.url) and APP_SECRET not in str(request.url)

    assert info.is_valid and info.is_user_token
    assert info.user_id == "10160000000000001"
    assert "instagram_manage_comments" in info.scopes
    assert info.targets_of("instagram_basic") == [IG_ID]
    assert info.expires_at is not None and info.expires_at.tzinfo is not None
    assert info.data_access_expires_at is not None


async def test_debug_token_page_token_never_expires(graph: GraphClient, meta: respx.MockRouter) -> None:
    route(meta, "debug_token__page")
    info = await graph.debug_token(input_token=SecretStr(PAGE_TOKEN))
    assert info.is_page_token and info.is_valid
    assert info.expires_at is None
    assert info.profile_id == PAGE_ID


async def test_debug_token_expired_is_data_not_an_exception(graph: GraphClient, meta: respx.MockRouter) -> None:
    route(meta, "debug_token__expired")
    info = await graph.debug_token(input_token=USER_TOKEN)
    assert not info.is_valid
    assert info.error is not None and (info.error.code, info.error.subcode) == (190, 463)


async def test_exchange_long_lived_user_token(graph: GraphClient, meta: respx.MockRouter) -> None:
    r = route(meta, "oauth_access_token__long_lived")
    token = await graph.exchange_long_lived_user_token(user_token=USER_TOKEN)

    request = r.calls.last.request
    assert request.method == "POST"
    assert "authorization" not in request.headers
    assert form(request) == {
        "method": "GET",
        "grant_type": "fb_exchange_token",
        "client_id": APP_ID,
        "client_secret": APP_SECRET,
        "fb_exchange_token": USER_TOKEN,
    }
    assert str(request.url) == f"{API}/oauth/access_token"
    assert isinstance(token.access_token, SecretStr)
    assert token.access_token.get_secret_value().startswith("EAAB")
    assert token.expires_in == 5183944
    assert "EAAB" not in repr(token)


async def test_exchange_oauth_code(graph: GraphClient, meta: respx.MockRouter) -> None:
    r = route(meta, "oauth_access_token__code")
    token = await graph.exchange_oauth_code(code="AQDcode123", redirect_uri="http://127.0.0.1:8000/cb")
    sent = form(r.calls.last.request)
    assert sent["code"] == "AQDcode123" and sent["redirect_uri"] == "http://127.0.0.1:8000/cb"
    assert sent["client_secret"] == APP_SECRET
    assert token.token_type == "bearer"


async def test_exchange_oauth_code_used_twice(graph: GraphClient, meta: respx.MockRouter) -> None:
    route(meta, "error__code_used_100_36009")
    with pytest.raises(GraphError) as info:
        await graph.exchange_oauth_code(code="AQDcode123", redirect_uri="http://127.0.0.1:8000/cb")
    assert info.value.error_code == "meta_invalid_request"
    assert APP_SECRET not in str(info.value)


def test_oauth_dialog_url() -> None:
    client = GraphClient(base_url=BASE_URL, version=VERSION, app_id=APP_ID, app_secret=APP_SECRET)
    url = client.oauth_dialog_url(
        dialog_base_url="https://www.facebook.com/",
        redirect_uri="https://rf.example/accounts/oauth/callback",
        state="st4te",
        scopes=["pages_show_list", "instagram_basic"],
    )
    base, _, query = url.partition("?")
    assert base == f"https://www.facebook.com/{VERSION}/dialog/oauth"
    params = {k: v[0] for k, v in parse_qs(query).items()}
    assert params == {
        "client_id": APP_ID,
        "redirect_uri": "https://rf.example/accounts/oauth/callback",
        "state": "st4te",
        "response_type": "code",
        "scope": "pages_show_list,instagram_basic",
    }
    assert APP_SECRET not in url
    with pytest.raises(ValueError, match="state"):
        client.oauth_dialog_url(dialog_base_url="https://x", redirect_uri="https://y", state="", scopes=[])


# -- pages and accounts -----------------------------------------------------------------------------------------


async def test_list_pages_two_pages(graph: GraphClient, meta: respx.MockRouter) -> None:
    r = route(meta, "me_accounts__two_pages")
    pages = await graph.list_pages(user_token=USER_TOKEN)

    request = r.calls.last.request
    assert_signed_with(request, USER_TOKEN)
    assert request.url.params["fields"] == (
        "id,name,access_token,tasks,category,instagram_business_account{id,username}"
    )
    assert [p.id for p in pages] == [PAGE_ID, "109876543210987"]
    first = pages[0]
    assert first.name == "Roast & Toast" and "MESSAGING" in first.tasks
    assert first.instagram_business_account is not None
    assert (first.instagram_business_account.id, first.instagram_business_account.username) == (IG_ID, "roastandtoast")
    assert isinstance(first.access_token, SecretStr)
    assert "EAAB" not in repr(pages) and "EAAB" not in str(pages)


async def test_list_pages_page_without_instagram(graph: GraphClient, meta: respx.MockRouter) -> None:
    route(meta, "me_accounts__page_without_instagram")
    (page,) = await graph.list_pages(user_token=USER_TOKEN)
    assert page.instagram_business_account is None
    assert page.access_token is not None


async def test_list_pages_follows_cursors_not_next_urls(graph: GraphClient, meta: respx.MockRouter) -> None:
    first, last = load_fixture("me_accounts__paged_first"), load_fixture("me_accounts__paged_last")
    after = first.body["paging"]["cursors"]["after"]
    r = meta.get("/me/accounts").mock(side_effect=[first.response(), last.response()])

    pages = await graph.list_pages(user_token=USER_TOKEN)

    assert [p.name for p in pages] == ["Roast & Toast", "Corner Bakery"]
    assert len(r.calls) == 2
    assert "after" not in r.calls[0].request.url.params
    second = r.calls[1].request
    assert second.url.params["after"] == after
    assert second.url.host == "graph.test"  # our base URL, not the host in Meta's "next" link
    assert_signed_with(second, USER_TOKEN)


async def test_list_pages_empty(graph: GraphClient, meta: respx.MockRouter) -> None:
    route(meta, "me_accounts__empty")
    assert await graph.list_pages(user_token=USER_TOKEN) == []


async def test_list_pages_stops_on_a_repeated_cursor(graph: GraphClient, meta: respx.MockRouter) -> None:
    # A misbehaving server that always says "there is more" with the same cursor must not loop forever.
    r = route(meta, "me_accounts__paged_first")
    pages = await graph.list_pages(user_token=USER_TOKEN)
    assert len(r.calls) == 2 and len(pages) == 2


async def test_get_page(graph: GraphClient, meta: respx.MockRouter) -> None:
    r = route(meta, "page__with_instagram")
    page = await graph.get_page(page_id=PAGE_ID, token=PAGE_TOKEN)
    assert_signed_with(r.calls.last.request, PAGE_TOKEN)
    assert r.calls.last.request.url.params["fields"] == "id,name,category,instagram_business_account{id,username}"
    assert page.instagram_business_account is not None and page.instagram_business_account.id == IG_ID
    assert page.access_token is None

    route(meta, "page__without_instagram")
    bare = await graph.get_page(page_id="111222333444555", token=PAGE_TOKEN)
    assert bare.instagram_business_account is None


async def test_get_instagram_account(graph: GraphClient, meta: respx.MockRouter) -> None:
    r = route(meta, "instagram_account__profile")
    account = await graph.get_instagram_account(ig_id=IG_ID, token=PAGE_TOKEN)
    assert_signed_with(r.calls.last.request, PAGE_TOKEN)
    assert r.calls.last.request.url.params["fields"] == (
        "id,username,name,profile_picture_url,followers_count,media_count"
    )
    assert account.username == "roastandtoast"
    assert account.followers_count == 12840 and account.media_count == 312


# -- media and comments -------------------------------------------------------------------------------------------


async def test_list_media_paging(graph: GraphClient, meta: respx.MockRouter) -> None:
    first, last = load_fixture("media__page1"), load_fixture("media__last_page")
    r = meta.get(f"/{IG_ID}/media").mock(side_effect=[first.response(), last.response()])

    page1 = await graph.list_media(ig_id=IG_ID, token=PAGE_TOKEN, limit=2)
    assert [m.id for m in page1.items] == ["17900000000000003", "17900000000000002"]
    assert page1.next_cursor == first.body["paging"]["cursors"]["after"]
    reel = page1.items[0]
    assert reel.media_product_type == "REELS" and reel.thumbnail_url and reel.permalink
    assert reel.timestamp is not None and reel.timestamp.utcoffset() is not None
    assert reel.timestamp.isoformat() == "2025-11-28T17:02:11+00:00"

    page2 = await graph.list_media(ig_id=IG_ID, token=PAGE_TOKEN, after=page1.next_cursor, limit=2)
    assert [m.id for m in page2.items] == ["17900000000000001"]
    assert page2.next_cursor is None  # no paging.next: last page, even though cursors are present

    params = r.calls[1].request.url.params
    assert params["after"] == page1.next_cursor and params["limit"] == "2"
    assert params["fields"] == (
        "id,caption,media_type,media_product_type,permalink,timestamp,thumbnail_url,media_url,comments_count"
    )


@pytest.mark.parametrize("limit", [0, -1, 101])
async def test_list_limits_are_checked(graph: GraphClient, limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        await graph.list_media(ig_id=IG_ID, token=PAGE_TOKEN, limit=limit)


async def test_list_comments(graph: GraphClient, meta: respx.MockRouter) -> None:
    r = route(meta, "comments__list")
    page = await graph.list_comments(media_id=MEDIA_ID, token=PAGE_TOKEN)
    assert r.calls.last.request.url.params["fields"] == "id,text,timestamp,from{id,username},parent_id,hidden"
    assert r.calls.last.request.url.params["limit"] == "50"
    first = page.items[0]
    assert first.text == "LINK please!!"
    assert first.author is not None and first.author.username == "maria.kaffee"
    assert first.parent_id is None and first.hidden is False
    assert page.items[2].hidden is True
    assert page.next_cursor is None


async def test_list_comments_empty(graph: GraphClient, meta: respx.MockRouter) -> None:
    route(meta, "comments__empty")
    page = await graph.list_comments(media_id="17900000000000001", token=PAGE_TOKEN)
    assert page.items == [] and page.next_cursor is None


async def test_list_comment_replies_finds_our_own_reply(graph: GraphClient, meta: respx.MockRouter) -> None:
    route(meta, "comment_replies__list")
    replies = await graph.list_comment_replies(comment_id=COMMENT_ID, token=PAGE_TOKEN)
    ours = [c for c in replies if c.author is not None and c.author.id == IG_ID]
    assert len(ours) == 1 and ours[0].parent_id == COMMENT_ID


async def test_reply_to_comment(graph: GraphClient, meta: respx.MockRouter) -> None:
    r = route(meta, "comment_reply__created")
    new_id = await graph.reply_to_comment(
        comment_id=COMMENT_ID, message="Sent you a DM, @maria.kaffee!", token=PAGE_TOKEN
    )
    request = r.calls.last.request
    assert_signed_with(request, PAGE_TOKEN)
    assert form(request) == {"message": "Sent you a DM, @maria.kaffee!"}
    assert "message" not in request.url.params
    assert new_id == "17858893269000011"


async def test_hide_comment(graph: GraphClient, meta: respx.MockRouter) -> None:
    r = route(meta, "comment_hide__success")
    assert await graph.hide_comment(comment_id="17858893269000001", token=PAGE_TOKEN) is True
    assert form(r.calls.last.request) == {"hide": "true"}
    await graph.hide_comment(comment_id="17858893269000001", token=PAGE_TOKEN, hide=False)
    assert form(r.calls.last.request) == {"hide": "false"}


@pytest.mark.parametrize("bad_id", ["", "..", "../me", "1/messages", "1?x=2", "a b", "1#frag"])
async def test_ids_cannot_change_the_path(graph: GraphClient, bad_id: str) -> None:
    with pytest.raises(ValueError, match="Graph object id"):
        await graph.get_page(page_id=bad_id, token=PAGE_TOKEN)


# -- messaging -----------------------------------------------------------------------------------------------------


async def test_send_private_reply(graph: GraphClient, meta: respx.MockRouter) -> None:
    r = route(meta, "messages__private_reply_sent")
    message = button_template("Here you go", [UrlButton(title="Open shop", url="https://roastandtoast.example/shop")])
    result = await graph.send_private_reply(page_id=PAGE_ID, comment_id=COMMENT_ID, message=message, token=PAGE_TOKEN)

    request = r.calls.last.request
    assert request.url.path == f"/{VERSION}/{PAGE_ID}/messages"
    assert_signed_with(request, PAGE_TOKEN)
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"recipient": {"comment_id": COMMENT_ID}, "message": message}
    assert result.recipient_id == "6912345678901234"
    assert result.message_id.startswith("aWdf")


async def test_send_message(graph: GraphClient, meta: respx.MockRouter) -> None:
    r = route(meta, "messages__sent")
    result = await graph.send_message(
        page_id=PAGE_ID, recipient_id="6912345678901234", message=text_message("Thanks!"), token=PAGE_TOKEN
    )
    assert json.loads(r.calls.last.request.content) == {
        "recipient": {"id": "6912345678901234"},
        "messaging_type": "RESPONSE",
        "message": {"text": "Thanks!"},
    }
    assert result.message_id

    await graph.send_message(
        page_id=PAGE_ID,
        recipient_id="6912345678901234",
        message=text_message("A person will answer"),
        token=PAGE_TOKEN,
        messaging_type="MESSAGE_TAG",
        tag="HUMAN_AGENT",
    )
    body = json.loads(r.calls.last.request.content)
    assert (body["messaging_type"], body["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")


async def test_send_message_checks_its_arguments(graph: GraphClient) -> None:
    kwargs: dict[str, Any] = {"page_id": PAGE_ID, "recipient_id": "1", "token": PAGE_TOKEN}
    with pytest.raises(ValueError, match="text"):
        await graph.send_message(message={}, **kwargs)
    with pytest.raises(ValueError, match="messaging_type"):
        await graph.send_message(message={"text": "x"}, messaging_type="PROMO", **kwargs)
    with pytest.raises(ValueError, match="tag"):
        await graph.send_message(message={"text": "x"}, messaging_type="MESSAGE_TAG", **kwargs)


async def test_second_private_reply_is_final(graph: GraphClient, meta: respx.MockRouter) -> None:
    r = route(meta, "error__private_reply_used_2534025")
    with pytest.raises(CommentFinal) as info:
        await graph.send_private_reply(
            page_id=PAGE_ID, comment_id=COMMENT_ID, message=text_message("hi"), token=PAGE_TOKEN
        )
    assert info.value.reason is CommentFinalReason.PRIVATE_REPLY_ALREADY_SENT_OR_INVALID
    assert info.value.endpoint == "send_private_reply"
    assert len(r.calls) == 1


async def test_wrong_node_capability_error(graph: GraphClient, meta: respx.MockRouter) -> None:
    fx = load_fixture("error__capability_3")
    meta.post(f"/{PAGE_ID}/messages").mock(return_value=fx.response())
    with pytest.raises(PermissionDenied) as info:
        await graph.send_private_reply(page_id=PAGE_ID, comment_id=COMMENT_ID, message={"text": "x"}, token=PAGE_TOKEN)
    assert info.value.meta_code == 3
    assert "capability" in info.value.message


async def test_rate_limited_send_carries_the_wait(graph: GraphClient, meta: respx.MockRouter) -> None:
    route(meta, "error__rate_limit_613")
    with pytest.raises(RateLimited) as info:
        await graph.send_private_reply(page_id=PAGE_ID, comment_id=COMMENT_ID, message={"text": "x"}, token=PAGE_TOKEN)
    assert info.value.retry_after_seconds == 12 * 60


async def test_expired_token_on_a_read(graph: GraphClient, meta: respx.MockRouter) -> None:
    route(meta, "error__token_expired_463")
    with pytest.raises(TokenInvalid) as info:
        await graph.list_pages(user_token=USER_TOKEN)
    assert info.value.reason is TokenInvalidReason.EXPIRED
    assert info.value.subcode == 463


async def test_meta_echoing_our_token_is_scrubbed(graph: GraphClient, meta: respx.MockRouter) -> None:
    fx = load_fixture("error__token_malformed_190")
    body = json.loads(
        json.dumps(fx.body).replace("EAABsbCS1iHgBOthisTokenIsEchoedBackByMeta0000000000000000000", USER_TOKEN)
    )
    meta.get("/me/accounts").mock(return_value=httpx.Response(400, json=body, headers=fx.headers))
    with pytest.raises(TokenInvalid) as info:
        await graph.list_pages(user_token=USER_TOKEN)
    for text in (str(info.value), info.value.message, repr(info.value), json.dumps(info.value.to_dict())):
        assert USER_TOKEN not in text


# -- subscriptions -----------------------------------------------------------------------------------------------


async def test_subscribe_page(graph: GraphClient, meta: respx.MockRouter) -> None:
    r = route(meta, "subscribed_apps__success")
    assert await graph.subscribe_page(page_id=PAGE_ID, token=PAGE_TOKEN, fields=["feed", "messages"]) is True
    assert form(r.calls.last.request) == {"subscribed_fields": "feed,messages"}
    assert_signed_with(r.calls.last.request, PAGE_TOKEN)
    with pytest.raises(ValueError):
        await graph.subscribe_page(page_id=PAGE_ID, token=PAGE_TOKEN, fields=[])


async def test_list_page_subscriptions(graph: GraphClient, meta: respx.MockRouter) -> None:
    route(meta, "subscribed_apps__list")
    (app,) = await graph.list_page_subscriptions(page_id=PAGE_ID, token=PAGE_TOKEN)
    assert app.id == APP_ID and "messages" in app.subscribed_fields


async def test_list_app_subscriptions_uses_the_app_token(graph: GraphClient, meta: respx.MockRouter) -> None:
    r = route(meta, "app_subscriptions__list")
    subs = await graph.list_app_subscriptions()
    request = r.calls.last.request
    assert request.url.path == f"/{VERSION}/{APP_ID}/subscriptions"
    assert request.headers["authorization"] == f"Bearer {APP_ID}|{APP_SECRET}"
    assert "appsecret_proof" not in request.url.params
    instagram = next(s for s in subs if s.object_type == "instagram")
    assert instagram.active and {"comments", "messages"} <= set(instagram.field_names)


async def test_app_calls_need_app_credentials(meta: respx.MockRouter) -> None:
    async with GraphClient(base_url=BASE_URL, version=VERSION, app_id=None, app_secret=None) as client:
        with pytest.raises(ConfigurationError):
            await client.list_app_subscriptions()
        with pytest.raises(ConfigurationError):
            await client.get_page(page_id=PAGE_ID, token=PAGE_TOKEN)  # appsecret_proof needs the secret
    assert not meta.calls


# -- usage reporting -----------------------------------------------------------------------------------------------


async def test_usage_is_reported_for_every_response(
    graph: GraphClient, meta: respx.MockRouter, usage_reports: list[UsageReport]
) -> None:
    route(meta, "media__page1")
    route(meta, "error__rate_limit_613")
    await graph.list_media(ig_id=IG_ID, token=PAGE_TOKEN)
    with pytest.raises(RateLimited):
        await graph.send_private_reply(page_id=PAGE_ID, comment_id=COMMENT_ID, message={"text": "x"}, token=PAGE_TOKEN)

    media, limited = usage_reports
    assert (media.endpoint, media.method, media.object_id, media.auth_kind) == ("list_media", "GET", IG_ID, "page")
    assert media.http_status == 200
    assert media.usage.for_business(IG_ID)[0].type == "instagram"
    assert media.token_fingerprint == token_fingerprint(PAGE_TOKEN) != PAGE_TOKEN
    assert limited.endpoint == "send_private_reply" and limited.http_status == 400
    assert limited.usage.max_percent == 100 and limited.usage.regain_seconds == 720
    assert graph.last_usage is limited
    assert PAGE_TOKEN not in repr(usage_reports)


async def test_a_failing_usage_listener_does_not_fail_the_call(meta: respx.MockRouter) -> None:
    def broken(_report: UsageReport) -> None:
        raise RuntimeError("listener bug")

    route(meta, "page__with_instagram")
    async with GraphClient(
        base_url=BASE_URL, version=VERSION, app_id=APP_ID, app_secret=APP_SECRET, usage_listener=broken
    ) as client:
        page = await client.get_page(page_id=PAGE_ID, token=PAGE_TOKEN)
    assert page.id == PAGE_ID


# -- tokens never in URLs ----------------------------------------------------------------------------------------


async def test_no_request_ever_has_a_credential_in_its_url(graph: GraphClient, meta: respx.MockRouter) -> None:
    for name in (
        "debug_token__user_valid",
        "oauth_access_token__long_lived",
        "oauth_access_token__code",
        "me_accounts__two_pages",
        "page__with_instagram",
        "instagram_account__profile",
        "media__last_page",
        "comments__list",
        "comment_replies__list",
        "comment_reply__created",
        "comment_hide__success",
        "messages__private_reply_sent",
        "subscribed_apps__success",
        "subscribed_apps__list",
        "app_subscriptions__list",
    ):
        route(meta, name)
    await graph.debug_token(input_token=USER_TOKEN)
    await graph.exchange_long_lived_user_token(user_token=USER_TOKEN)
    await graph.exchange_oauth_code(code="AQDsecretcode", redirect_uri="https://rf.example/cb")
    await graph.list_pages(user_token=USER_TOKEN)
    await graph.get_page(page_id=PAGE_ID, token=PAGE_TOKEN)
    await graph.get_instagram_account(ig_id=IG_ID, token=PAGE_TOKEN)
    await graph.list_media(ig_id=IG_ID, token=PAGE_TOKEN)
    await graph.list_comments(media_id=MEDIA_ID, token=PAGE_TOKEN)
    await graph.list_comment_replies(comment_id=COMMENT_ID, token=PAGE_TOKEN)
    await graph.reply_to_comment(comment_id=COMMENT_ID, message="hi", token=PAGE_TOKEN)
    await graph.hide_comment(comment_id="17858893269000001", token=PAGE_TOKEN)
    await graph.send_private_reply(page_id=PAGE_ID, comment_id=COMMENT_ID, message={"text": "x"}, token=PAGE_TOKEN)
    await graph.subscribe_page(page_id=PAGE_ID, token=PAGE_TOKEN, fields=["feed"])
    await graph.list_page_subscriptions(page_id=PAGE_ID, token=PAGE_TOKEN)
    await graph.list_app_subscriptions()

    assert len(meta.calls) == 15
    for call in meta.calls:
        url = str(call.request.url)
        for secret in (USER_TOKEN, PAGE_TOKEN, APP_SECRET, "AQDsecretcode", "access_token="):
            assert secret not in url, (call.request.method, url)


# -- transport failures ---------------------------------------------------------------------------------------------


def client_with(handler: Callable[[httpx.Request], httpx.Response]) -> GraphClient:
    return GraphClient(
        base_url=BASE_URL, version=VERSION, app_id=APP_ID, app_secret=APP_SECRET, transport=httpx.MockTransport(handler)
    )


def failing(
    exc_type: type[httpx.TransportError], calls: list[httpx.Request]
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise exc_type("simulated", request=request)

    return handler


async def private_reply(client: GraphClient) -> Any:
    return await client.send_private_reply(
        page_id=PAGE_ID, comment_id=COMMENT_ID, message={"text": "x"}, token=PAGE_TOKEN
    )


async def public_reply(client: GraphClient) -> Any:
    return await client.reply_to_comment(comment_id=COMMENT_ID, message="x", token=PAGE_TOKEN)


async def dm(client: GraphClient) -> Any:
    return await client.send_message(page_id=PAGE_ID, recipient_id="69", message={"text": "x"}, token=PAGE_TOKEN)


SENDS = [private_reply, public_reply, dm]


@pytest.mark.parametrize("send", SENDS)
@pytest.mark.parametrize(
    "exc_type", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError]
)
async def test_send_that_may_have_reached_meta_is_outcome_unknown(
    send: Callable[[GraphClient], Any], exc_type: type[httpx.TransportError]
) -> None:
    calls: list[httpx.Request] = []
    async with client_with(failing(exc_type, calls)) as client:
        with pytest.raises(OutcomeUnknown) as info:
            await send(client)
    assert len(calls) == 1  # never re-sent
    assert info.value.error_code == "meta_outcome_unknown"
    assert info.value.cause in ("timeout", "connection_lost")


@pytest.mark.parametrize("send", SENDS)
@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_send_that_never_left_is_transient_and_not_retried(
    send: Callable[[GraphClient], Any], exc_type: type[httpx.TransportError]
) -> None:
    calls: list[httpx.Request] = []
    async with client_with(failing(exc_type, calls)) as client:
        with pytest.raises(TransientError):
            await send(client)
    assert len(calls) == 1


@pytest.mark.parametrize("fixture", ["error__server_500_empty", "error__temporarily_unavailable_2", "error__unknown_1"])
async def test_send_answered_with_5xx_is_outcome_unknown(fixture: str) -> None:
    fx = load_fixture(fixture)
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return fx.response()

    async with client_with(handler) as client:
        with pytest.raises(OutcomeUnknown) as info:
            await private_reply(client)
    assert info.value.cause == "server_error"
    assert len(calls) == 1


@pytest.mark.parametrize("content", [b"", b"<html>ok</html>", b"[]", b'{"recipient_id": "1"}'])
async def test_send_with_unreadable_success_is_outcome_unknown(content: bytes) -> None:
    async with client_with(lambda request: httpx.Response(200, content=content)) as client:
        with pytest.raises(OutcomeUnknown) as info:
            await private_reply(client)
        assert info.value.cause == "unreadable_response"
        with pytest.raises(OutcomeUnknown):
            await public_reply(client)


async def test_read_timeout_on_a_read_is_transient_without_retry() -> None:
    calls: list[httpx.Request] = []
    async with client_with(failing(httpx.ReadTimeout, calls)) as client:
        with pytest.raises(TransientError) as info:
            await client.list_comments(media_id=MEDIA_ID, token=PAGE_TOKEN)
    assert len(calls) == 1
    assert info.value.is_transient


async def test_read_retries_once_after_a_connect_error() -> None:
    page = load_fixture("page__with_instagram")
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        return page.response()

    async with client_with(handler) as client:
        result = await client.get_page(page_id=PAGE_ID, token=PAGE_TOKEN)
    assert result.id == PAGE_ID and len(calls) == 2


async def test_read_gives_up_after_the_second_connect_error() -> None:
    calls: list[httpx.Request] = []
    async with client_with(failing(httpx.ConnectError, calls)) as client:
        with pytest.raises(TransientError):
            await client.get_page(page_id=PAGE_ID, token=PAGE_TOKEN)
    assert len(calls) == 2


@pytest.mark.parametrize("fixture", ["error__server_500_empty", "error__bad_gateway_html", "error__unknown_1"])
async def test_5xx_on_a_read_is_transient(fixture: str) -> None:
    fx = load_fixture(fixture)
    async with client_with(lambda request: fx.response()) as client:
        with pytest.raises(TransientError):
            await client.list_media(ig_id=IG_ID, token=PAGE_TOKEN)


async def test_unexpected_shape_is_reported_without_echoing_the_body() -> None:
    rows = {"data": [{"name": "no id", "access_token": PAGE_TOKEN}]}
    async with client_with(lambda request: httpx.Response(200, json=rows)) as client:
        with pytest.raises(GraphError) as info:
            await client.list_pages(user_token=USER_TOKEN)
    assert info.value.error_code == "meta_api_error"
    assert "id" in info.value.message
    assert PAGE_TOKEN not in str(info.value)


async def test_timeouts_are_explicit_on_every_request() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions["timeout"]))
        return httpx.Response(200, json={"id": PAGE_ID})

    client = GraphClient(
        base_url=BASE_URL,
        version=VERSION,
        app_id=APP_ID,
        app_secret=APP_SECRET,
        transport=httpx.MockTransport(handler),
        timeout=httpx.Timeout(7.0, connect=2.0),
    )
    async with client:
        await client.get_page(page_id=PAGE_ID, token=PAGE_TOKEN)
        await client.reply_to_comment(comment_id=COMMENT_ID, message="x", token=PAGE_TOKEN)
    assert seen == [{"connect": 2.0, "read": 7.0, "write": 7.0, "pool": 7.0}] * 2


@pytest.mark.parametrize("token", ["", "EAAB with space", "EAAB\r\nX-Injected: 1", "EAAB\x00"])
async def test_malformed_tokens_are_refused_before_sending(
    graph: GraphClient, meta: respx.MockRouter, token: str
) -> None:
    with pytest.raises(ValueError, match="access token"):
        await graph.get_page(page_id=PAGE_ID, token=token)
    assert not meta.calls


@pytest.mark.parametrize(
    ("base_url", "version"), [("graph.facebook.com", "v25.0"), ("https://graph.facebook.com", "25.0")]
)
def test_bad_configuration_is_refused(base_url: str, version: str) -> None:
    with pytest.raises(ConfigurationError):
        GraphClient(base_url=base_url, version=version, app_id=APP_ID, app_secret=APP_SECRET)


async def test_base_url_with_a_path_prefix(meta: respx.MockRouter) -> None:
    # The sandbox is mounted under /sandbox/graph in our own app.
    with respx.mock(base_url="http://127.0.0.1:8000/sandbox/graph/v25.0") as sandbox:
        r = sandbox.get(f"/{PAGE_ID}").mock(return_value=load_fixture("page__with_instagram").response())
        async with GraphClient(
            base_url="http://127.0.0.1:8000/sandbox/graph/", version=VERSION, app_id=APP_ID, app_secret=APP_SECRET
        ) as client:
            await client.get_page(page_id=PAGE_ID, token=PAGE_TOKEN)
        assert r.calls.last.request.url.path == f"/sandbox/graph/v25.0/{PAGE_ID}"


def test_from_settings(make_settings: Any) -> None:
    settings = make_settings()
    client = GraphClient.from_settings(settings)
    assert client.base_url == settings.graph_base_url
    assert client.version == settings.graph_api_version
    assert client.app_id == settings.app_id
    assert (
        client.appsecret_proof(PAGE_TOKEN)
        == hmac.new(settings.app_secret.encode(), PAGE_TOKEN.encode(), hashlib.sha256).hexdigest()
    )


async def test_an_error_body_with_status_200_is_still_an_error() -> None:
    body = load_fixture("error__private_reply_used_2534025").body
    async with client_with(lambda request: httpx.Response(200, json=body)) as client:
        with pytest.raises(CommentFinal):
            await private_reply(client)
