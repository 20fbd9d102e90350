"""The group-commit writer: concurrent deliveries each get their own committed row, and a dropped connection heals."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from replyflow.app import create_app
from replyflow.db import Base
from replyflow.runtime import Runtime
from tests.conftest import PG_ADMIN_URL
from tests.webhooks.conftest import META_SETTINGS, comments_delivery, signed_headers
from tests.webhooks.helpers import deliveries

URL = "http://testserver/webhooks/instagram"


def test_concurrent_deliveries_are_each_stored_once(db_runtime: Runtime) -> None:
    app = create_app(db_runtime.settings, runtime=db_runtime)
    bodies = [comments_delivery(f"1786600000005{i:04d}") for i in range(120)]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            return await asyncio.gather(
                *(client.post(URL, content=body, headers=signed_headers(body)) for body in bodies)
            )

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * len(bodies)
    ids = [r.json()["delivery_id"] for r in responses]
    assert len(set(ids)) == len(bodies)
    stored = {d.id: d.body for d in deliveries(db_runtime)}
    assert {i: stored[i] for i in ids} == dict(zip(ids, bodies, strict=True))


@pytest.fixture
def pg_runtime(make_settings: Any, postgres_url: str) -> Iterator[Runtime]:
    rt = Runtime(make_settings(database_url=postgres_url, **META_SETTINGS))
    Base.metadata.create_all(rt.engine)
    yield rt
    rt.close()


@pytest.mark.postgres
def test_writer_recovers_when_the_database_drops_its_connection(pg_runtime: Runtime) -> None:
    database = pg_runtime.engine.url.database
    with TestClient(create_app(pg_runtime.settings, runtime=pg_runtime), raise_server_exceptions=False) as client:
        first = comments_delivery("17866000000006001")
        assert client.post(URL, content=first, headers=signed_headers(first)).status_code == 200
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            killed = conn.execute(
                text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = :db"),
                {"db": database},
            ).scalar()
        admin.dispose()
        assert killed, "the writer's kept connection was terminated"
        second = comments_delivery("17866000000006002")
        assert client.post(URL, content=second, headers=signed_headers(second)).status_code == 200
    assert [d.body for d in deliveries(pg_runtime)] == [first, second]


def test_delivery_waits_for_another_writer_then_is_stored(client: TestClient, runtime: Runtime) -> None:
    """SQLite: while a worker holds the write lock the request waits for it (no error, no 503), then commits."""
    holding = threading.Event()
    release = threading.Event()

    def hold_the_lock() -> None:
        with runtime.engine.begin() as conn:  # BEGIN IMMEDIATE (replyflow.db)
            conn.execute(text("UPDATE webhook_deliveries SET attempts = attempts"))
            holding.set()
            release.wait(5)

    worker = threading.Thread(target=hold_the_lock)
    worker.start()
    assert holding.wait(5)
    threading.Timer(0.3, release.set).start()
    body = comments_delivery("17866000000006101")
    started = time.monotonic()
    resp = client.post("/webhooks/instagram", content=body, headers=signed_headers(body))
    waited = time.monotonic() - started
    worker.join(5)
    assert resp.status_code == 200
    assert 0.25 <= waited < 3.0
    assert [d.body for d in deliveries(runtime)] == [body]
