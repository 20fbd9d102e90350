"""Fixtures for the Graph client tests: a client wired to respx with a fixed app id and secret."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import respx

from replyflow.graph.client import GraphClient
from replyflow.graph.usage import UsageReport

BASE_URL = "https://graph.test"
VERSION = "v25.0"
API = f"{BASE_URL}/{VERSION}"
APP_ID = "100000000000001"
APP_SECRET = "f3c1a5e7d9b2c4e6a8b0d2f4e6a8c0e2"
USER_TOKEN = "EAABsbCS1iHgBOuserTokenForTests00000000000000000000000000"
PAGE_TOKEN = "EAABsbCS1iHgBOpageTokenForTests00000000000000000000000000"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def meta() -> Iterator[respx.MockRouter]:
    """respx standing in for Meta; every request the client makes must match a route."""
    with respx.mock(base_url=API, assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
def usage_reports() -> list[UsageReport]:
    return []


@pytest.fixture
async def graph(meta: respx.MockRouter, usage_reports: list[UsageReport]) -> AsyncIterator[GraphClient]:
    client = GraphClient(
        base_url=BASE_URL,
        version=VERSION,
        app_id=APP_ID,
        app_secret=APP_SECRET,
        usage_listener=usage_reports.append,
    )
    async with client:
        yield client
