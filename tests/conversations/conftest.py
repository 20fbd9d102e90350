"""Fixtures: a conversation world on a real SQLite database, with the sandbox standing in for Meta."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from replyflow.config import Settings
from replyflow.db import Base
from replyflow.runtime import Runtime

from .world import ConversationWorld, build_world, production_like_settings


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    return production_like_settings(make_settings)


@pytest.fixture
def world(settings: Settings) -> Iterator[ConversationWorld]:
    runtime = Runtime(settings)
    Base.metadata.create_all(runtime.engine)
    try:
        yield from build_world(settings, runtime)
    finally:
        runtime.close()
