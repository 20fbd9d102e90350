"""The emulator's clock: real time plus an offset tests can move, or frozen at an instant."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any


class Clock:
    """``now()`` is wall-clock time shifted by ``advance()``; ``freeze()`` pins it for exact assertions."""

    def __init__(self, *, offset: timedelta | None = None, frozen_at: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._offset = offset or timedelta()
        self._frozen_at = frozen_at

    def now(self) -> datetime:
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return datetime.now(UTC) + self._offset

    def advance(self, *, days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
        step = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if step < timedelta():
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += step
            else:
                self._offset += step
        return self.now()

    def freeze(self, at: datetime | None = None) -> datetime:
        moment = at or self.now()
        if moment.tzinfo is None:
            raise ValueError("freeze() needs a timezone-aware datetime")
        with self._lock:
            self._frozen_at = moment.astimezone(UTC)
        return moment

    def unfreeze(self) -> None:
        """Continue from the frozen instant at real speed."""
        with self._lock:
            if self._frozen_at is not None:
                self._offset = self._frozen_at - datetime.now(UTC)
                self._frozen_at = None

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "offset_seconds": self._offset.total_seconds(),
                "frozen_at": self._frozen_at.isoformat() if self._frozen_at else None,
            }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Clock:
        frozen = data.get("frozen_at")
        return cls(
            offset=timedelta(seconds=float(data.get("offset_seconds", 0))),
            frozen_at=datetime.fromisoformat(frozen) if frozen else None,
        )
