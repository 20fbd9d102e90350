"""One contract, two Metas: the same GraphClient assertions against the sandbox and against recorded-shape fixtures.

If the sandbox drifts from the shapes we recorded (or the fixtures from the sandbox), a test here fails for one
backend only. Each backend arranges a scenario its own way; the assertions after ``arrange`` are shared.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
import respx

from replyflow.graph.client import GraphClient
from replyflow.graph.errors import (
    CommentFinal,
    CommentFinalReason,
    InvalidRequest,
    OutcomeUnknown,
    PermissionDenied,
    RateLimited,
    TokenInvalid,
    TokenInvalidReason,
)
from replyflow.sandbox import SandboxState, create_sandbox_app, seed_demo_world
from replyflow.sandbox.models import DemoWorld
from tests.graph.fixtures import load_fixture
from tests.sandbox.conftest import APP_ID, APP_SECRET, START, VERSION

pytestmark = pytest.mark.anyio

RECORDED_BASE = "https://graph.test"
RECORDED_API = f"{RECORDED_BASE}/{VERSION}"
# Ids inside the recorded fixtures.
REC_PAGE = "102938475610293"
REC_PAGE_NO_IG = "111222333444555"
REC_IG = "17841400000000001"
REC_MEDIA = "17900000000000003"
REC_COMMENT = "17858893269000003"
REC_PERSON = "6912345678901234"
REDIRECT = "https://replyflow.example/accounts/oauth/callback"
TEXT = {"text": "Here you go: https://roastery.example/guji"}


@dataclass
class Ids:
    user_token: str
    page_token: str
    page_id: str
    page_without_ig: str
    ig_id: str
    media_id: str


class Backend:
    """How a scenario is arranged; the tests' assertions are the same for every backend."""

    name: str
    client: GraphClient
    ids: Ids

    def arrange(self, scenario: str, **hints: Any) -> dict[str, Any]:
        raise NotImplementedError


class SandboxBackend(Backend):
    name = "sandbox"

    def __init__(self, state: SandboxState, demo: DemoWorld, client: GraphClient) -> None:
        self.state, self.demo, self.client = state, demo, client
        self.ids = Ids(
            user_token=demo.user_token,
            page_token=state.page_token(user_token=demo.user_token, page_id=demo.page_id),
            page_id=demo.page_id,
            page_without_ig=demo.page_without_instagram_id,
            ig_id=demo.ig_account_id,
            media_id=demo.media_ids[0],
        )

    def _comment(self, text: str = "ROAST please") -> str:
        return self.state.add_comment(self.demo.media_ids[0], text=text, username="coffee.lena").id

    def _send(self, comment_id: str) -> None:
        actor = self.state.principal_for(self.ids.page_token)
        self.state.private_reply(actor=actor, page_id=self.demo.page_id, comment_id=comment_id, message=TEXT)

    def arrange(self, scenario: str, **hints: Any) -> dict[str, Any]:
        state = self.state
        if scenario in ("comment", "private_reply_sent", "reply", "hide"):
            return {"comment_id": self._comment()}
        if scenario == "private_reply_used":
            comment_id = self._comment()
            self._send(comment_id)
            return {"comment_id": comment_id}
        if scenario == "outside_window":
            comment_id = self._comment()
            state.clock.advance(days=8)
            return {"comment_id": comment_id}
        if scenario == "no_window":
            return {"recipient_id": state.get_comment(self._comment()).from_id}  # type: ignore[union-attr]
        if scenario == "rate_limited":
            # One private reply 48 minutes ago fills a 1/hour quota: 12 minutes until the next one fits.
            state.set_private_reply_quota(count=1, seconds=3600)
            self._send(self._comment("first"))
            state.clock.advance(minutes=48)
            return {"comment_id": self._comment("second")}
        if scenario == "timeout_after_send":
            state.inject_failure("POST /{page-id}/messages", kind="timeout_after_send")
            return {"comment_id": self._comment()}
        if scenario == "transient_on_send":
            state.inject_failure("POST /{page-id}/messages", kind="transient", code=2, subcode=1545133)
            return {"comment_id": self._comment()}
        if scenario == "token_expired":
            token = state.issue_user_token(self.demo.user_id)
            state.clock.advance(hours=3)
            return {"token": token}
        if scenario == "password_changed":
            state.invalidate_user_sessions(self.demo.user_id, reason="password_changed")
            return {}
        if scenario == "debug_expired":
            token = state.issue_user_token(self.demo.user_id)
            state.invalidate_token(token, reason="expired")
            return {"token": token}
        if scenario == "short_lived":
            return {"token": state.issue_user_token(self.demo.user_id)}
        if scenario == "code":
            code = state.issue_oauth_code(user_id=self.demo.user_id, client_id=APP_ID, redirect_uri=REDIRECT,
                                          scopes=list(self.demo_scopes()), page_ids=None)  # fmt: skip
            return {"code": code}
        if scenario == "code_used":
            code = state.issue_oauth_code(user_id=self.demo.user_id, client_id=APP_ID, redirect_uri=REDIRECT,
                                          scopes=["pages_show_list"], page_ids=None)  # fmt: skip
            state.redeem_oauth_code(code=code, client_id=APP_ID, redirect_uri=REDIRECT)
            return {"code": code}
        if scenario == "page_subscriptions":
            state.subscribe_page(self.demo.page_id, fields=["feed", "messages"])
            return {}
        return {}

    def demo_scopes(self) -> list[str]:
        token = self.state.token_info(self.demo.user_token)
        assert token is not None
        return token.scopes


class RecordedBackend(Backend):
    name = "recorded"

    def __init__(self, router: respx.MockRouter, client: GraphClient) -> None:
        self.router, self.client = router, client
        rows = load_fixture("me_accounts__two_pages").body["data"]
        self.ids = Ids(
            user_token="EAABsbCS1iHgBOuserTokenForContractTests000000000000000000",
            page_token=rows[0]["access_token"],
            page_id=REC_PAGE,
            page_without_ig=REC_PAGE_NO_IG,
            ig_id=REC_IG,
            media_id=REC_MEDIA,
        )

    def serve(self, *names: str) -> respx.Route:
        fixtures = [load_fixture(name) for name in names]
        first = fixtures[0]
        route = self.router.route(method=first.method, path=first.path)
        if len(fixtures) == 1:
            return route.mock(return_value=first.response())
        return route.mock(side_effect=[f.response() for f in fixtures])

    def arrange(self, scenario: str, **hints: Any) -> dict[str, Any]:
        serve = self.serve
        table: dict[str, tuple[str, ...]] = {
            "me_accounts": ("me_accounts__two_pages",),
            "page_with_ig": ("page__with_instagram",),
            "page_without_ig": ("page__without_instagram",),
            "profile": ("instagram_account__profile",),
            "debug_user": ("debug_token__user_valid",),
            "debug_page": ("debug_token__page",),
            "debug_expired": ("debug_token__expired",),
            "media": ("media__page1", "media__last_page"),
            "comment": ("comments__list",),
            "reply": ("comment_reply__created",),
            "replies": ("comment_replies__list",),
            "private_reply_sent": ("messages__private_reply_sent",),
            "private_reply_used": ("error__private_reply_used_2534025",),
            "outside_window": ("error__outside_window_2534022",),
            "no_window": ("error__outside_window_2018278",),
            "rate_limited": ("error__rate_limit_613",),
            "transient_on_send": ("error__temporarily_unavailable_2",),
            "wrong_node": ("error__capability_3",),
            "token_expired": ("error__token_expired_463",),
            "password_changed": ("error__token_password_changed_460",),
            "short_lived": ("oauth_access_token__long_lived",),
            "code": ("oauth_access_token__code",),
            "code_used": ("error__code_used_100_36009",),
            "subscribe": ("subscribed_apps__success",),
            "page_subscriptions": ("subscribed_apps__list",),
            "app_subscriptions": ("app_subscriptions__list",),
        }
        if scenario == "hide":
            self.router.post(f"/{REC_COMMENT}").mock(return_value=load_fixture("comment_hide__success").response())
            return {"comment_id": REC_COMMENT}
        if scenario == "timeout_after_send":
            self.router.post(f"/{REC_PAGE}/messages").mock(side_effect=httpx.ReadTimeout("timed out"))
            return {"comment_id": REC_COMMENT}
        if scenario in table:
            serve(*table[scenario])
        return {"comment_id": REC_COMMENT, "recipient_id": REC_PERSON, "token": self.ids.user_token, "code": "AQxyz"}


@pytest.fixture(params=["sandbox", "recorded"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "sandbox":
        state = SandboxState(app_id=APP_ID, app_secret=APP_SECRET, require_appsecret_proof=True)
        state.clock.freeze(START)
        demo = seed_demo_world(state)
        app = create_sandbox_app(state)
        client = GraphClient(base_url="http://sandbox.test/graph", version=VERSION, app_id=APP_ID,
                             app_secret=APP_SECRET, transport=httpx.ASGITransport(app=app))  # fmt: skip
        async with client:
            yield SandboxBackend(state, demo, client)
        return
    with respx.mock(base_url=RECORDED_API, assert_all_called=True, assert_all_mocked=True) as router:
        client = GraphClient(base_url=RECORDED_BASE, version=VERSION, app_id=APP_ID, app_secret=APP_SECRET)
        async with client:
            yield RecordedBackend(router, client)


# -- tokens --------------------------------------------------------------------------------------------------------


async def test_debug_token_user(backend: Backend) -> None:
    backend.arrange("debug_user")
    info = await backend.client.debug_token(input_token=backend.ids.user_token)
    assert info.is_user_token and info.is_valid and info.app_id == APP_ID
    assert isinstance(info.expires_at, datetime) and info.expires_at.tzinfo is not None
    assert {"pages_show_list", "pages_messaging", "instagram_manage_comments", "pages_manage_metadata"} <= set(
        info.scopes
    )
    assert info.targets_of("pages_show_list") and info.user_id
    assert info.error is None


async def test_debug_token_page_never_expires(backend: Backend) -> None:
    backend.arrange("debug_page")
    info = await backend.client.debug_token(input_token=backend.ids.page_token)
    assert info.is_page_token and info.is_valid
    assert info.expires_at is None and info.profile_id == backend.ids.page_id
    assert backend.ids.ig_id in info.targets_of("instagram_manage_comments")


async def test_debug_token_expired(backend: Backend) -> None:
    token = backend.arrange("debug_expired")["token"]
    info = await backend.client.debug_token(input_token=token)
    assert not info.is_valid and info.error is not None
    assert (info.error.code, info.error.subcode) == (190, 463)


async def test_long_lived_exchange(backend: Backend) -> None:
    token = backend.arrange("short_lived")["token"]
    result = await backend.client.exchange_long_lived_user_token(user_token=token)
    assert result.access_token.get_secret_value().startswith("EAAB")
    assert result.token_type == "bearer" and result.expires_in is not None and result.expires_in > 50 * 86400


async def test_code_exchange_and_reuse(backend: Backend) -> None:
    code = backend.arrange("code")["code"]
    token = await backend.client.exchange_oauth_code(code=code, redirect_uri=REDIRECT)
    assert token.access_token.get_secret_value().startswith("EAAB")
    assert token.expires_in is not None and 0 < token.expires_in <= 2 * 3600


async def test_code_used_twice(backend: Backend) -> None:
    code = backend.arrange("code_used")["code"]
    with pytest.raises(InvalidRequest) as info:
        await backend.client.exchange_oauth_code(code=code, redirect_uri=REDIRECT)
    assert (info.value.meta_code, info.value.subcode) == (100, 36009)


async def test_expired_token_needs_reauth(backend: Backend) -> None:
    token = backend.arrange("token_expired")["token"]
    with pytest.raises(TokenInvalid) as info:
        await backend.client.list_pages(user_token=token)
    assert info.value.reason is TokenInvalidReason.EXPIRED


async def test_password_change_needs_reauth(backend: Backend) -> None:
    backend.arrange("password_changed")
    with pytest.raises(TokenInvalid) as info:
        await backend.client.list_media(ig_id=backend.ids.ig_id, token=backend.ids.page_token)
    assert info.value.reason is TokenInvalidReason.PASSWORD_CHANGED


# -- pages and Instagram accounts -------------------------------------------------------------------------------------


async def test_me_accounts_shape(backend: Backend) -> None:
    backend.arrange("me_accounts")
    pages = await backend.client.list_pages(user_token=backend.ids.user_token)
    assert len(pages) == 2
    linked = [p for p in pages if p.instagram_business_account is not None]
    assert linked and linked[0].instagram_business_account.id == backend.ids.ig_id  # type: ignore[union-attr]
    assert linked[0].instagram_business_account.username  # type: ignore[union-attr]
    for page in pages:
        assert page.name and page.category and "MESSAGING" in page.tasks
        assert page.access_token is not None and page.access_token.get_secret_value().startswith("EAAB")


async def test_page_with_instagram(backend: Backend) -> None:
    backend.arrange("page_with_ig")
    page = await backend.client.get_page(page_id=backend.ids.page_id, token=backend.ids.page_token)
    assert page.id == backend.ids.page_id and page.instagram_business_account is not None
    assert page.instagram_business_account.id == backend.ids.ig_id and page.instagram_business_account.username


async def test_page_without_instagram(backend: Backend) -> None:
    backend.arrange("page_without_ig")
    page = await backend.client.get_page(page_id=backend.ids.page_without_ig, token=backend.ids.user_token)
    assert page.id == backend.ids.page_without_ig and page.instagram_business_account is None


async def test_instagram_profile(backend: Backend) -> None:
    backend.arrange("profile")
    account = await backend.client.get_instagram_account(ig_id=backend.ids.ig_id, token=backend.ids.page_token)
    assert account.id == backend.ids.ig_id and account.username
    assert account.profile_picture_url and account.profile_picture_url.startswith(("http://", "https://"))
    assert account.media_count and account.followers_count


# -- media and comments -----------------------------------------------------------------------------------------------


async def test_media_paging(backend: Backend) -> None:
    backend.arrange("media")
    first = await backend.client.list_media(ig_id=backend.ids.ig_id, token=backend.ids.page_token, limit=2)
    assert len(first.items) == 2 and first.next_cursor
    reel = first.items[0]
    assert (reel.media_type, reel.media_product_type) == ("VIDEO", "REELS")
    assert reel.thumbnail_url and reel.permalink and "/reel/" in reel.permalink
    assert reel.timestamp is not None and reel.timestamp.tzinfo is not None
    assert first.items[0].timestamp >= first.items[1].timestamp  # type: ignore[operator]
    rest = await backend.client.list_media(
        ig_id=backend.ids.ig_id, token=backend.ids.page_token, after=first.next_cursor, limit=100
    )
    assert rest.items and rest.next_cursor is None
    assert not {m.id for m in rest.items} & {m.id for m in first.items}


async def test_comments_shape(backend: Backend) -> None:
    comment_id = backend.arrange("comment")["comment_id"]
    page = await backend.client.list_comments(media_id=backend.ids.media_id, token=backend.ids.page_token)
    newest = page.items[0]
    assert newest.id == comment_id and newest.text
    assert newest.author is not None and newest.author.id and newest.author.username
    assert newest.parent_id is None and newest.hidden is False and newest.timestamp is not None


async def test_public_reply_then_find_it_among_replies(backend: Backend) -> None:
    comment_id = backend.arrange("reply")["comment_id"]
    reply_id = await backend.client.reply_to_comment(
        comment_id=comment_id, message="Sent you a DM!", token=backend.ids.page_token
    )
    assert reply_id.isdigit()
    backend.arrange("replies")
    replies = await backend.client.list_comment_replies(comment_id=comment_id, token=backend.ids.page_token)
    ours = [r for r in replies if r.author is not None and r.author.id == backend.ids.ig_id]
    assert ours and all(r.parent_id == comment_id for r in ours)


async def test_hide_comment(backend: Backend) -> None:
    comment_id = backend.arrange("hide")["comment_id"]
    assert await backend.client.hide_comment(comment_id=comment_id, token=backend.ids.page_token) is True


# -- messaging --------------------------------------------------------------------------------------------------------


async def test_private_reply_sent(backend: Backend) -> None:
    comment_id = backend.arrange("private_reply_sent")["comment_id"]
    result = await backend.client.send_private_reply(
        page_id=backend.ids.page_id, comment_id=comment_id, message=TEXT, token=backend.ids.page_token
    )
    assert result.recipient_id and result.message_id.startswith("aWdfZAG1faXRlbTox")


async def test_private_reply_used_is_comment_final(backend: Backend) -> None:
    comment_id = backend.arrange("private_reply_used")["comment_id"]
    with pytest.raises(CommentFinal) as info:
        await backend.client.send_private_reply(
            page_id=backend.ids.page_id, comment_id=comment_id, message=TEXT, token=backend.ids.page_token
        )
    assert info.value.reason is CommentFinalReason.PRIVATE_REPLY_ALREADY_SENT_OR_INVALID
    assert (info.value.meta_code, info.value.subcode) == (100, 2534025)


async def test_private_reply_outside_seven_days(backend: Backend) -> None:
    comment_id = backend.arrange("outside_window")["comment_id"]
    with pytest.raises(CommentFinal) as info:
        await backend.client.send_private_reply(
            page_id=backend.ids.page_id, comment_id=comment_id, message=TEXT, token=backend.ids.page_token
        )
    assert info.value.reason is CommentFinalReason.OUTSIDE_WINDOW and info.value.subcode == 2534022


async def test_send_api_outside_24_hours(backend: Backend) -> None:
    recipient = backend.arrange("no_window")["recipient_id"]
    with pytest.raises(CommentFinal) as info:
        await backend.client.send_message(
            page_id=backend.ids.page_id, recipient_id=recipient, message={"text": "hi"}, token=backend.ids.page_token
        )
    assert info.value.reason is CommentFinalReason.OUTSIDE_WINDOW and info.value.subcode == 2018278


async def test_rate_limit_carries_retry_after(backend: Backend) -> None:
    comment_id = backend.arrange("rate_limited")["comment_id"]
    with pytest.raises(RateLimited) as info:
        await backend.client.send_private_reply(
            page_id=backend.ids.page_id, comment_id=comment_id, message=TEXT, token=backend.ids.page_token
        )
    assert info.value.meta_code == 613
    assert info.value.retry_after_seconds == 12 * 60


async def test_wrong_node_is_permission_denied_capability(backend: Backend) -> None:
    backend.arrange("wrong_node")
    with pytest.raises(PermissionDenied) as info:
        # The Instagram id where the Page id belongs: the Facebook Login pitfall.
        await backend.client.send_private_reply(
            page_id=backend.ids.ig_id, comment_id=REC_COMMENT, message=TEXT, token=backend.ids.page_token
        )
    assert info.value.meta_code == 3


async def test_timeout_after_send_is_outcome_unknown(backend: Backend) -> None:
    comment_id = backend.arrange("timeout_after_send")["comment_id"]
    with pytest.raises(OutcomeUnknown) as info:
        await backend.client.send_private_reply(
            page_id=backend.ids.page_id, comment_id=comment_id, message=TEXT, token=backend.ids.page_token
        )
    assert info.value.cause == "timeout"


async def test_transient_error_on_a_send_is_outcome_unknown(backend: Backend) -> None:
    comment_id = backend.arrange("transient_on_send")["comment_id"]
    with pytest.raises(OutcomeUnknown):
        await backend.client.send_private_reply(
            page_id=backend.ids.page_id, comment_id=comment_id, message=TEXT, token=backend.ids.page_token
        )


# -- webhook subscriptions ----------------------------------------------------------------------------------------


async def test_subscribe_page(backend: Backend) -> None:
    backend.arrange("subscribe")
    ok = await backend.client.subscribe_page(
        page_id=backend.ids.page_id, token=backend.ids.page_token, fields=["feed", "messages"]
    )
    assert ok is True


async def test_page_subscriptions_list(backend: Backend) -> None:
    backend.arrange("page_subscriptions")
    (app,) = await backend.client.list_page_subscriptions(page_id=backend.ids.page_id, token=backend.ids.page_token)
    assert app.id == APP_ID and {"feed", "messages"} <= set(app.subscribed_fields)


async def test_app_subscriptions(backend: Backend) -> None:
    backend.arrange("app_subscriptions")
    subscriptions = await backend.client.list_app_subscriptions()
    instagram = next(s for s in subscriptions if s.object_type == "instagram")
    assert instagram.active and {"comments", "messages"} <= set(instagram.field_names)
