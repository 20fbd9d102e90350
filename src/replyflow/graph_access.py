"""How replyflow gets a Graph client: request-scoped in the API, per command in the CLI, the runner in workers.

Every client is built by :func:`build_graph` from settings. A transport can be injected (tests route calls to
the sandbox through ``httpx.ASGITransport`` or to respx), per app via ``app.state.graph_transport`` or per
process via :func:`set_default_transport`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, TypeVar

import httpx
from fastapi import Depends, Request

from replyflow.config import Settings
from replyflow.graph.client import GraphClient
from replyflow.graph.runner import get_runner

T = TypeVar("T")
TransportFactory = Callable[[], httpx.AsyncBaseTransport | None]

# The app attribute a test (or the in-process sandbox) sets to route this app's Graph calls.
APP_STATE_TRANSPORT = "graph_transport"

_default_transport: TransportFactory | None = None


def set_default_transport(factory: TransportFactory | None) -> None:
    """Route every client this process builds without an explicit transport (None restores the network)."""
    global _default_transport
    _default_transport = factory


def build_graph(settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> GraphClient:
    if transport is None and _default_transport is not None:
        transport = _default_transport()
    return GraphClient.from_settings(settings, transport=transport)


@asynccontextmanager
async def open_graph(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[GraphClient]:
    """A client for one unit of work (a CLI command), closed afterwards."""
    client = build_graph(settings, transport=transport)
    try:
        yield client
    finally:
        await client.aclose()


async def get_graph(request: Request) -> AsyncIterator[GraphClient]:
    """FastAPI dependency: a client for this request, honouring ``app.state.graph_transport``."""
    transport = getattr(request.app.state, APP_STATE_TRANSPORT, None)
    async with open_graph(request.app.state.settings, transport=transport) as client:
        yield client


GraphDep = Annotated[GraphClient, Depends(get_graph)]


def run_with_graph(settings: Settings, work: Callable[[GraphClient], Awaitable[T]]) -> T:
    """For sync callers (huey jobs): run ``work(client)`` on this process's shared Graph runner."""

    async def call(client: GraphClient) -> T:
        return await work(client)

    return get_runner(lambda: build_graph(settings)).run_sync(call)
