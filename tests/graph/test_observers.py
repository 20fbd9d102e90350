"""Call observers: every Graph call (success and failure) is reported by name, outcome and duration, never by token."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import respx

from replyflow.graph.client import GraphCallRecord, GraphClient, add_call_observer, remove_call_observer
from replyflow.graph.errors import RateLimited, TransientError
from tests.graph.conftest import APP_SECRET, PAGE_TOKEN, USER_TOKEN
from tests.graph.test_client import COMMENT_ID, PAGE_ID, route

pytestmark = pytest.mark.anyio


@pytest.fixture
def records() -> Iterator[list[GraphCallRecord]]:
    seen: list[GraphCallRecord] = []
    add_call_observer(seen.append)
    add_call_observer(seen.append)  # registering twice must not report twice
    yield seen
    remove_call_observer(seen.append)


async def test_successes_and_failures_are_reported(
    graph: GraphClient, meta: respx.MockRouter, records: list[GraphCallRecord]
) -> None:
    route(meta, "me_accounts__empty")
    await graph.list_pages(user_token=USER_TOKEN)
    meta.routes.clear()
    route(meta, "error__rate_limit_613")
    with pytest.raises(RateLimited):
        await graph.send_private_reply(page_id=PAGE_ID, comment_id=COMMENT_ID, message={"text": "x"}, token=PAGE_TOKEN)

    assert [(r.endpoint, r.method, r.outcome) for r in records] == [
        ("list_pages", "GET", "ok"),
        ("send_private_reply", "POST", "meta_rate_limited"),
    ]
    assert all(0 <= r.seconds < 5 for r in records)
    # Names and codes only: no token, proof or id can reach a metrics label.
    text = repr(records)
    assert USER_TOKEN not in text and PAGE_TOKEN not in text and APP_SECRET not in text and PAGE_ID not in text


async def test_a_call_that_never_reached_meta_is_reported_once(
    graph: GraphClient, meta: respx.MockRouter, records: list[GraphCallRecord]
) -> None:
    meta.get(path__regex=r".*/me/accounts$").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(TransientError):
        await graph.list_pages(user_token=USER_TOKEN)
    # The read was retried inside the client: one call, one record.
    assert [(r.endpoint, r.outcome) for r in records] == [("list_pages", "meta_unavailable")]


async def test_a_broken_observer_never_breaks_the_call(graph: GraphClient, meta: respx.MockRouter) -> None:
    def broken(_record: GraphCallRecord) -> None:
        raise RuntimeError("observer bug")

    add_call_observer(broken)
    try:
        route(meta, "me_accounts__empty")
        assert await graph.list_pages(user_token=USER_TOKEN) == []
        meta.routes.clear()
        route(meta, "error__rate_limit_613")
        with pytest.raises(RateLimited):  # the call's own error, not the observer's
            await graph.send_private_reply(
                page_id=PAGE_ID, comment_id=COMMENT_ID, message={"text": "x"}, token=PAGE_TOKEN
            )
    finally:
        remove_call_observer(broken)
