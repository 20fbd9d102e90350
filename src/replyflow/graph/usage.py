"""Meta's rate-limit usage headers, parsed into one typed ``Usage`` so the scheduler can slow down in time.

Meta reports consumption as percentages of a limit (throttling starts at 100) in JSON-valued headers:

- ``X-App-Usage`` — platform limit of the whole app: ``{"call_count", "total_cputime", "total_time"}``.
- ``X-Business-Use-Case-Usage`` — per business object (Page, IG account):
  ``{"<object id>": [{"type", "call_count", "total_cputime", "total_time", "estimated_time_to_regain_access"}]}``.
- ``X-Page-Usage`` — the X-App-Usage shape for Page-token calls (sometimes with a regain estimate).
- ``X-Ad-Account-Usage`` — ``{"acc_id_util_pct", "reset_time_duration", "ads_api_access_tier"}``.

``estimated_time_to_regain_access`` is read as **minutes**: Meta's rate-limiting page and the independent
implementations we found agree on minutes (one outlier treats it as seconds; minutes is the cautious reading,
since over-waiting is cheap and under-waiting earns more throttling). Headers arrive from the network, so the
parser never raises: a value it cannot read is left out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

APP_USAGE_HEADER = "x-app-usage"
BUSINESS_USAGE_HEADER = "x-business-use-case-usage"
PAGE_USAGE_HEADER = "x-page-usage"
AD_ACCOUNT_USAGE_HEADER = "x-ad-account-usage"

_MAX_HEADER_CHARS = 64 * 1024  # a real header is a few hundred bytes; refuse to parse megabytes of junk
_MAX_REGAIN_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class PlatformUsage:
    """Percentages (0-100+) of the app- or page-level limit used in the rolling window."""

    call_count: float = 0.0
    total_cputime: float = 0.0
    total_time: float = 0.0
    regain_seconds: int | None = None

    @property
    def max_percent(self) -> float:
        return max(self.call_count, self.total_cputime, self.total_time)


@dataclass(frozen=True)
class BusinessUsage:
    """One entry of ``X-Business-Use-Case-Usage``: a business object's use of one use case's limit."""

    business_id: str
    type: str
    call_count: float = 0.0
    total_cputime: float = 0.0
    total_time: float = 0.0
    regain_seconds: int | None = None

    @property
    def max_percent(self) -> float:
        return max(self.call_count, self.total_cputime, self.total_time)


@dataclass(frozen=True)
class AdAccountUsage:
    util_percent: float = 0.0
    reset_seconds: int | None = None
    access_tier: str | None = None


@dataclass(frozen=True)
class Usage:
    """Everything the usage headers of one response said; empty when the response carried none."""

    app: PlatformUsage | None = None
    page: PlatformUsage | None = None
    business: tuple[BusinessUsage, ...] = field(default_factory=tuple)
    ad_account: AdAccountUsage | None = None

    @property
    def is_empty(self) -> bool:
        return self.app is None and self.page is None and not self.business and self.ad_account is None

    @property
    def max_percent(self) -> float:
        """The highest share of any limit used; at 100 Meta starts refusing calls."""
        values = [entry.max_percent for entry in self.business]
        values += [u.max_percent for u in (self.app, self.page) if u is not None]
        if self.ad_account is not None:
            values.append(self.ad_account.util_percent)
        return max(values, default=0.0)

    @property
    def regain_seconds(self) -> int | None:
        """The longest wait Meta announced before calls are accepted again, if it announced one."""
        waits = [e.regain_seconds for e in self.business if e.regain_seconds]
        waits += [u.regain_seconds for u in (self.app, self.page) if u is not None and u.regain_seconds]
        if self.ad_account is not None and self.ad_account.reset_seconds:
            waits.append(self.ad_account.reset_seconds)
        return max(waits, default=None)

    def for_business(self, business_id: str) -> tuple[BusinessUsage, ...]:
        return tuple(entry for entry in self.business if entry.business_id == business_id)


def parse_usage(headers: Mapping[str, str]) -> Usage:
    """Read every usage header present in ``headers`` (any mapping; names are case-insensitive)."""
    lowered: dict[str, str] = {}
    try:
        for name, value in headers.items():
            if isinstance(name, str) and isinstance(value, str):
                lowered[name.lower()] = value
    except Exception:  # a broken mapping must not break the call that carried it
        return Usage()
    return Usage(
        app=_platform(_load(lowered.get(APP_USAGE_HEADER))),
        page=_platform(_load(lowered.get(PAGE_USAGE_HEADER))),
        business=_business(_load(lowered.get(BUSINESS_USAGE_HEADER))),
        ad_account=_ad_account(_load(lowered.get(AD_ACCOUNT_USAGE_HEADER))),
    )


def _load(raw: str | None) -> Any:
    if not raw or len(raw) > _MAX_HEADER_CHARS:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _percent(value: Any) -> float | None:
    """A finite, non-negative number (numbers sometimes arrive as strings); anything else is unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float):
        return None
    number = float(value)
    if not math.isfinite(number) or number < 0:
        return None
    return number


def _seconds(value: Any, *, unit_seconds: int) -> int | None:
    number = _percent(value)
    if number is None or number <= 0:
        return None
    return min(math.ceil(number * unit_seconds), _MAX_REGAIN_SECONDS)


def _platform(data: Any) -> PlatformUsage | None:
    if not isinstance(data, dict):
        return None
    values = {key: _percent(data.get(key)) for key in ("call_count", "total_cputime", "total_time")}
    if all(v is None for v in values.values()):
        return None
    return PlatformUsage(
        call_count=values["call_count"] or 0.0,
        total_cputime=values["total_cputime"] or 0.0,
        total_time=values["total_time"] or 0.0,
        regain_seconds=_seconds(data.get("estimated_time_to_regain_access"), unit_seconds=60),
    )


def _business(data: Any) -> tuple[BusinessUsage, ...]:
    if not isinstance(data, dict):
        return ()
    entries: list[BusinessUsage] = []
    for business_id, items in data.items():
        # Meta sends a list per object; tolerate a bare object too.
        for item in items if isinstance(items, list) else [items]:
            if not isinstance(item, dict):
                continue
            values = {key: _percent(item.get(key)) for key in ("call_count", "total_cputime", "total_time")}
            regain = _seconds(item.get("estimated_time_to_regain_access"), unit_seconds=60)
            if all(v is None for v in values.values()) and regain is None:
                continue
            kind = item.get("type")
            entries.append(
                BusinessUsage(
                    business_id=str(business_id),
                    type=kind if isinstance(kind, str) else "unknown",
                    call_count=values["call_count"] or 0.0,
                    total_cputime=values["total_cputime"] or 0.0,
                    total_time=values["total_time"] or 0.0,
                    regain_seconds=regain,
                )
            )
    return tuple(entries)


def _ad_account(data: Any) -> AdAccountUsage | None:
    if not isinstance(data, dict):
        return None
    util = _percent(data.get("acc_id_util_pct"))
    if util is None:
        return None
    tier = data.get("ads_api_access_tier")
    return AdAccountUsage(
        util_percent=util,
        reset_seconds=_seconds(data.get("reset_time_duration"), unit_seconds=1),
        access_tier=tier if isinstance(tier, str) else None,
    )


AuthKind = Literal["user", "page", "user_or_page", "app", "app_credentials", "instagram"]


@dataclass(frozen=True)
class UsageReport:
    """What one Graph response said about our consumption, and on whose behalf the call was made.

    ``token_fingerprint`` (see ``replyflow.graph.client.token_fingerprint``) identifies the token owner without
    carrying the token; ``usage.business`` names the Page / IG account ids Meta counts the call against.
    """

    endpoint: str  # the client method, e.g. "send_private_reply"
    method: str
    object_id: str | None  # the Graph node addressed (page, IG account, media, comment, "me", app)
    auth_kind: AuthKind
    token_fingerprint: str | None
    http_status: int
    usage: Usage
