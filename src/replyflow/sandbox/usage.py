"""Counts calls per app and per business object to fill ``X-App-Usage`` / ``X-Business-Use-Case-Usage`` plausibly."""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime

_WINDOW_SECONDS = 3600.0


@dataclass(frozen=True)
class BusinessUse:
    """One business object touched by a call: its id and Meta's use-case type (instagram, pages, messenger)."""

    object_id: str
    type: str
    # A stricter budget that applies to this call (the private-reply quota), as used/limit and a regain time.
    quota_used: int | None = None
    quota_limit: int | None = None
    regain_seconds: float = 0.0


class UsageMeter:
    """Sliding one-hour counters; callers hold the state lock, so the meter itself is not locked."""

    def __init__(self, *, app_calls_per_hour: int = 4800, object_calls_per_hour: int = 4800) -> None:
        self.app_calls_per_hour = app_calls_per_hour
        self.object_calls_per_hour = object_calls_per_hour
        self._app: deque[float] = deque()
        self._objects: dict[tuple[str, str], deque[float]] = {}

    def record(self, *, now: datetime, uses: list[BusinessUse]) -> None:
        stamp = now.timestamp()
        self._app.append(stamp)
        for use in uses:
            self._objects.setdefault((use.object_id, use.type), deque()).append(stamp)

    def app_header(self, *, now: datetime, throttled: bool = False) -> str:
        percent = 100 if throttled else self._percent(self._app, now, self.app_calls_per_hour)
        return _dump({"call_count": percent, "total_cputime": percent // 3, "total_time": percent // 2})

    def business_header(
        self, *, now: datetime, uses: list[BusinessUse], regain_minutes: int | None = None
    ) -> str | None:
        if not uses:
            return None
        body: dict[str, list[dict[str, int | str]]] = {}
        for use in uses:
            calls = self._objects.get((use.object_id, use.type), deque())
            percent = self._percent(calls, now, self.object_calls_per_hour)
            regain = 0
            if use.quota_limit:
                percent = max(percent, math.floor(100 * (use.quota_used or 0) / use.quota_limit))
                regain = math.ceil(use.regain_seconds / 60) if use.regain_seconds > 0 else 0
            if regain_minutes is not None:
                percent, regain = max(percent, 100), max(regain, regain_minutes)
            body.setdefault(use.object_id, []).append(
                {
                    "type": use.type,
                    "call_count": percent,
                    "total_cputime": percent // 3,
                    "total_time": percent // 2,
                    "estimated_time_to_regain_access": regain,
                }
            )
        return _dump(body)

    @staticmethod
    def _percent(calls: deque[float], now: datetime, limit: int) -> int:
        horizon = now.timestamp() - _WINDOW_SECONDS
        while calls and calls[0] < horizon:
            calls.popleft()
        return min(100, math.floor(100 * len(calls) / max(limit, 1)))


def _dump(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
