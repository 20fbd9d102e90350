"""The automation domain's notion of "now": wall-clock UTC, replaceable by tests that move time instead of sleeping."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from replyflow.db import utcnow

Clock = Callable[[], dt.datetime]

_clock: Clock = utcnow


def now() -> dt.datetime:
    """Timezone-aware UTC."""
    return _clock()


@contextmanager
def use_clock(clock: Clock) -> Iterator[None]:
    """Within the block, intake, engine and reconciler read time from ``clock`` (e.g. the sandbox's)."""
    global _clock
    previous, _clock = _clock, clock
    try:
        yield
    finally:
        _clock = previous
