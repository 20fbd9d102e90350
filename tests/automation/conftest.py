"""Fixtures for engine tests: a sandbox world on a real database, with intake and engine on the sandbox's clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from replyflow.automation.clock import use_clock
from replyflow.config import Settings
from replyflow.db import Base
from replyflow.runtime import Runtime

from .world import World, build_world


@pytest.fixture
def quota_settings(make_settings: Any) -> Settings:
    settings: Settings = make_settings(private_reply_quota="5/2")
    return settings


@pytest.fixture
def world(settings: Settings, runtime: Runtime) -> Iterator[World]:
    """Meta's default quota (750/h)."""
    for built in build_world(runtime):
        with use_clock(built.state.now):
            yield built


@pytest.fixture
def small_quota_world(quota_settings: Settings) -> Iterator[World]:
    """5 private replies per 2 seconds, on our side and on the sandbox's."""
    runtime = Runtime(quota_settings)
    Base.metadata.create_all(runtime.engine)
    try:
        for built in build_world(runtime, quota=(5, 2)):
            with use_clock(built.state.now):
                yield built
    finally:
        runtime.close()
