"""The runner lets sync worker threads use the one async client of the process, and shuts down cleanly."""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from replyflow.graph.client import GraphClient
from replyflow.graph.errors import CommentFinal
from replyflow.graph.runner import GraphRunner, RunnerClosed, get_runner, shutdown_runner
from tests.graph.conftest import APP_ID, APP_SECRET, BASE_URL, PAGE_TOKEN, VERSION
from tests.graph.fixtures import load_fixture

PAGE = load_fixture("page__with_instagram")
USED = load_fixture("error__private_reply_used_2534025")


def handler(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/messages"):
        return USED.response()
    return PAGE.response()


def make_client() -> GraphClient:
    return GraphClient(
        base_url=BASE_URL, version=VERSION, app_id=APP_ID, app_secret=APP_SECRET, transport=httpx.MockTransport(handler)
    )


def test_run_sync_from_many_threads_shares_one_client() -> None:
    with GraphRunner(make_client) as runner:
        loop_threads: set[str] = set()

        async def fetch(client: GraphClient) -> str:
            assert client is runner.client
            loop_threads.add(threading.current_thread().name)
            page = await client.get_page(page_id="102938475610293", token=PAGE_TOKEN)
            return page.id

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda _: runner.run_sync(fetch), range(40)))

    assert results == ["102938475610293"] * 40
    assert loop_threads == {"replyflow-graph"}


def test_exceptions_reach_the_caller_typed() -> None:
    with GraphRunner(make_client) as runner, pytest.raises(CommentFinal):
        runner.run_sync(
            lambda c: c.send_private_reply(page_id="1", comment_id="2", message={"text": "x"}, token=PAGE_TOKEN)
        )


def test_close_stops_the_thread_and_refuses_new_work() -> None:
    runner = GraphRunner(make_client)
    thread = runner._thread
    runner.close()
    runner.close()  # idempotent
    assert not thread.is_alive()
    assert runner.closed
    assert runner.client._http.is_closed
    with pytest.raises(RunnerClosed):
        runner.run_sync(lambda c: c.get_page(page_id="1", token=PAGE_TOKEN))


def test_close_waits_for_calls_in_flight() -> None:
    started, release = threading.Event(), threading.Event()
    results: list[str] = []

    async def slow(client: GraphClient) -> str:
        started.set()
        await asyncio.to_thread(release.wait, 5)
        page = await client.get_page(page_id="102938475610293", token=PAGE_TOKEN)
        return page.id

    runner = GraphRunner(make_client)
    worker = threading.Thread(target=lambda: results.append(runner.run_sync(slow)))
    worker.start()
    assert started.wait(5)
    closer = threading.Thread(target=runner.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # still waiting for the call in flight
    release.set()
    worker.join(5)
    closer.join(5)
    assert results == ["102938475610293"]
    assert not closer.is_alive()


def test_run_sync_inside_the_loop_is_refused() -> None:
    with GraphRunner(make_client) as runner:

        async def nested(client: GraphClient) -> None:
            runner.run_sync(lambda c: c.get_page(page_id="1", token=PAGE_TOKEN))

        with pytest.raises(RuntimeError, match="own loop"):
            runner.run_sync(nested)


def test_a_failing_factory_leaves_no_thread_behind() -> None:
    before = threading.active_count()

    def broken() -> GraphClient:
        raise RuntimeError("bad config")

    with pytest.raises(RuntimeError, match="bad config"):
        GraphRunner(broken)
    assert threading.active_count() == before


def test_process_runner_is_reused_and_replaced_after_shutdown() -> None:
    try:
        first = get_runner(make_client)
        assert get_runner(make_client) is first
        shutdown_runner()
        assert first.closed
        second = get_runner(make_client)
        assert second is not first
        # A forked child sees the parent's pid on the runner and builds its own.
        second.pid = -1
        third = get_runner(make_client)
        assert third is not second
        second.pid = os.getpid()
        second.close()
    finally:
        shutdown_runner()
