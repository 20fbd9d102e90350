"""Log context: bind a run's id and comment id once, and every log line of that step carries them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Within the block, every structlog line (any logger, any module) carries ``values``; None values are left out."""
    bound = {key: value for key, value in values.items() if value is not None}
    with structlog.contextvars.bound_contextvars(**bound):
        yield


@contextmanager
def run_log_context(*, run_id: str, comment_id: str | None = None, account_id: str | None = None) -> Iterator[None]:
    """For the engine's steps: ``with run_log_context(run_id=run.id, comment_id=run.comment_id): ...``."""
    with log_context(run_id=run_id, comment_id=comment_id, account_id=account_id):
        yield
