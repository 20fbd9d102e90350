"""The Graph client's Instagram Login calls against recorded shapes (respx): host, token, paths and parsing.

Facebook Login calls stay on graph.facebook.com with a Page token and ``appsecret_proof``; Instagram Login calls
go to graph.instagram.com with the Instagram User token as a Bearer header and no proof (the Instagram app's
secret may not be ours, and Meta documents no proof there).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from replyflow.graph.client import GraphClient
from replyflow.graph.errors import InvalidRequest, TokenInvalid
from replyflow.graph.messages import text_message
from tests.graph.conftest import APP_ID, APP_SECRET, PAGE_TOKEN, VERSION
from tests.graph.fixtures import load_fixture
from tests.graph.test_client import assert_signed_with

pytestmark = pytest.mark.anyio

FB = "https://graph.test"
IG = "https://ig.test"
IG_OAUTH = "https://api.ig.test"
IG_TOKEN = "IGAAshortLivedTokenForGraphClientTests000000000000000000000000000"
IG_ID = "17841400000000002"
PAGE_ID = "102938475610293"
COMMENT_ID = "17858893269000003"


@pytest.fixture
def meta() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
async def graph(meta: respx.MockRouter) -> AsyncIterator[GraphClient]:
    client = GraphClient(
        base_url=FB,
        version=VERSION,
        app_id=APP_ID,
        app_secret=APP_SECRET,
        instagram_base_url=IG,
        instagram_oauth_url=IG_OAUTH,
    )
    async with client:
        yield client


def _bearer_without_proof(request: httpx.Request, token: str) -> None:
    assert request.headers["authorization"] == f"Bearer {token}"
    assert "appsecret_proof" not in request.url.params
    assert request.url.host == "ig.test"


async def test_me_reads_the_professional_account_id_and_the_app_scoped_id(
    graph: GraphClient, meta: respx.MockRouter
) -> None:
    route = meta.get(f"{IG}/{VERSION}/me").mock(return_value=load_fixture("instagram_login__me").response())

    me = await graph.get_instagram_me(token=IG_TOKEN)

    request = route.calls.last.request
    _bearer_without_proof(request, IG_TOKEN)
    assert set(request.url.params["fields"].split(",")) >= {"user_id", "username", "account_type"}
    assert (me.instagram_id, me.id, me.username, me.account_type) == (
        IG_ID,
        "27012345678901234",
        "lina.ceramics",
        "BUSINESS",
    )


async def test_a_token_instagram_cannot_parse_is_token_invalid(graph: GraphClient, meta: respx.MockRouter) -> None:
    meta.get(f"{IG}/{VERSION}/me").mock(return_value=load_fixture("instagram_login__token_invalid_190").response())

    with pytest.raises(TokenInvalid) as caught:
        await graph.get_instagram_me(token=IG_TOKEN)

    assert IG_TOKEN not in str(caught.value.to_dict())


async def test_exchange_and_refresh_are_unversioned_gets_as_meta_documents_them(
    graph: GraphClient, meta: respx.MockRouter
) -> None:
    exchange = meta.get(f"{IG}/access_token").mock(return_value=load_fixture("instagram_login__exchange").response())
    refresh = meta.get(f"{IG}/refresh_access_token").mock(
        return_value=load_fixture("instagram_login__refresh").response()
    )

    long_lived = await graph.exchange_instagram_token(short_lived_token=IG_TOKEN)
    fresh = await graph.refresh_instagram_token(token=long_lived.access_token)

    sent = exchange.calls.last.request.url.params
    assert (sent["grant_type"], sent["client_secret"], sent["access_token"]) == (
        "ig_exchange_token",
        APP_SECRET,
        IG_TOKEN,
    )
    assert long_lived.expires_in == 5183944 and long_lived.access_token.get_secret_value().startswith("IGAA")
    again = refresh.calls.last.request.url.params
    assert again["grant_type"] == "ig_refresh_token" and "client_secret" not in again
    assert again["access_token"] == long_lived.access_token.get_secret_value()
    assert fresh.access_token.get_secret_value() != long_lived.access_token.get_secret_value()


async def test_a_refused_refresh_names_no_secret(graph: GraphClient, meta: respx.MockRouter) -> None:
    meta.get(f"{IG}/refresh_access_token").mock(
        return_value=load_fixture("instagram_login__refresh_too_new").response()
    )

    with pytest.raises(InvalidRequest) as caught:
        await graph.refresh_instagram_token(token=IG_TOKEN)

    assert IG_TOKEN not in str(caught.value.to_dict()) and IG_TOKEN not in str(caught.value)


async def test_the_code_exchange_posts_a_form_and_reads_the_data_list(
    graph: GraphClient, meta: respx.MockRouter
) -> None:
    route = meta.post(f"{IG_OAUTH}/oauth/access_token").mock(
        return_value=load_fixture("instagram_login__code").response()
    )

    token = await graph.exchange_instagram_code(code="AQcode#_"[:-2], redirect_uri="https://rf.example/cb")

    form = {k: v[0] for k, v in parse_qs(route.calls.last.request.content.decode()).items()}
    assert form == {
        "client_id": APP_ID,
        "client_secret": APP_SECRET,
        "grant_type": "authorization_code",
        "redirect_uri": "https://rf.example/cb",
        "code": "AQcode",
    }
    assert token.user_id == IG_ID and "instagram_business_manage_messages" in token.permissions
    assert "code" not in str(route.calls.last.request.url)


async def test_an_instagram_view_sends_the_private_reply_from_the_instagram_account(
    graph: GraphClient, meta: respx.MockRouter
) -> None:
    ig_send = meta.post(f"{IG}/{VERSION}/{IG_ID}/messages").mock(
        return_value=load_fixture("instagram_login__private_reply_sent").response()
    )
    fb_send = meta.post(f"{FB}/{VERSION}/{PAGE_ID}/messages").mock(
        return_value=load_fixture("messages__private_reply_sent").response()
    )

    bound = graph.for_login("instagram", sender_id=IG_ID)
    result = await bound.send_private_reply(
        page_id=None, comment_id=COMMENT_ID, message=text_message("Here you go"), token=IG_TOKEN
    )
    facebook = graph.for_login("facebook", sender_id=PAGE_ID)
    await facebook.send_private_reply(
        page_id=PAGE_ID, comment_id=COMMENT_ID, message=text_message("Here you go"), token=PAGE_TOKEN
    )

    request = ig_send.calls.last.request
    _bearer_without_proof(request, IG_TOKEN)
    assert request.read() and b'"recipient":{"comment_id":"17858893269000003"}' in request.content.replace(b" ", b"")
    assert result.message_id
    assert_signed_with(fb_send.calls.last.request, PAGE_TOKEN)
    assert bound.last_usage is not None and bound.last_usage.auth_kind == "instagram"


async def test_account_calls_of_an_instagram_view_go_to_the_instagram_host(
    graph: GraphClient, meta: respx.MockRouter
) -> None:
    replies = meta.post(f"{IG}/{VERSION}/{COMMENT_ID}/replies").mock(
        return_value=load_fixture("comment_reply__created").response()
    )
    subscribe = meta.post(f"{IG}/{VERSION}/me/subscribed_apps").mock(
        return_value=load_fixture("instagram_login__subscribed_apps").response()
    )
    bound = graph.for_login("instagram", sender_id=IG_ID)

    await bound.reply_to_comment(comment_id=COMMENT_ID, message="Sent you a DM!", token=IG_TOKEN)
    assert await graph.subscribe_instagram(token=IG_TOKEN, fields=["comments", "messages"]) is True

    _bearer_without_proof(replies.calls.last.request, IG_TOKEN)
    body = parse_qs(subscribe.calls.last.request.content.decode())
    assert body["subscribed_fields"] == ["comments,messages"]
    with pytest.raises(ValueError):
        graph.for_login("twitter")
