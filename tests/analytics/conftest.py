"""Fixtures: an app on a real database (SQLite by default), seeded with the hand-counted data set."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from replyflow.config import Settings
from replyflow.db import Base
from replyflow.runtime import Runtime
from tests.conversations.world import RecordingQueue, production_like_settings

from .seed import Seeded, seed


@pytest.fixture
def settings(make_settings: Any, database_url: str) -> Settings:
    return production_like_settings(make_settings, database_url=database_url)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime(settings)
    rt.__dict__["queue"] = RecordingQueue()
    Base.metadata.create_all(rt.engine)
    yield rt
    rt.close()


@pytest.fixture
def seeded(runtime: Runtime) -> Seeded:
    with runtime.session() as session:
        return seed(session)


@pytest.fixture
def app(settings: Settings, runtime: Runtime) -> FastAPI:
    from replyflow.app import create_app

    return create_app(settings, runtime=runtime)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=True) as c:
        yield c
