"""Analytics reports: per rule, per post and per day over a date range, read from the rollup (and as CSV).

Days are UTC and a run counts on the day its comment was received; what followed the DM (replies, taps,
clicks, follow-ups) counts on that same day, so each row is a funnel: comments → matched → DMs → clicks.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import ColumnElement, Date, Select, bindparam, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from replyflow.accounts.models import Account
from replyflow.analytics import rollup
from replyflow.analytics.models import COUNTERS, NO_RULE, TTD_COLUMNS, TTD_EDGES, AnalyticsDaily, AnalyticsLabel
from replyflow.automation import clock
from replyflow.automation.models import Rule, RunFailure
from replyflow.automation.reasons import SkipReason
from replyflow.errors import NotFound, ValidationFailed
from replyflow.graph.errors import CommentFinalReason
from replyflow.logging import get_logger

log = get_logger("replyflow.analytics")

MAX_DAYS = 366
DEFAULT_DAYS = 30
GroupBy = Literal["day", "rule", "post"]
NO_RULE_NAME = "(no rule)"


def percentile(histogram: dict[int, int], q: float) -> float | None:
    """Nearest-rank percentile over ``{bucket lower edge (s): count}``, reported as that bucket's lower edge."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for edge in sorted(histogram):
        seen += histogram[edge]
        if seen >= rank:
            return float(edge)
    return float(max(histogram))


@dataclass
class Metrics:
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    dm_failures_by_reason: dict[str, int] = field(default_factory=dict)
    ttd: dict[int, int] = field(default_factory=dict)  # histogram: bucket lower edge (s) -> DMs

    def add_label(self, kind: str, label: str, count: int) -> None:
        target = self.skipped_by_reason if kind == "skip" else self.dm_failures_by_reason if kind == "failure" else None
        if target is not None and count:
            target[label] = target.get(label, 0) + count

    def as_dict(self) -> dict[str, Any]:
        c = self.counters
        with_links = c["dms_with_links"]
        return {
            "comments_seen": c["comments_seen"],
            "matched": c["matched"],
            "skipped": c["skipped"],
            "skipped_by_reason": _sorted(self.skipped_by_reason),
            "public_replies": c["public_replies"],
            "dms_sent": c["dms_sent"],
            "dm_failures": c["dm_failures"],
            "dm_failures_by_reason": _sorted(self.dm_failures_by_reason),
            "in_progress": c["in_progress"],
            "replies_received": c["replies"],
            "button_taps": c["taps"],
            "link_clicks": c["clicks"],
            "unique_link_clicks": c["clicked_runs"],
            "dms_with_links": with_links,
            "click_through_rate": round(c["clicked_runs"] / with_links, 4) if with_links else None,
            "follow_ups_sent": c["follow_ups"],
            "time_to_dm_p50_seconds": percentile(self.ttd, 0.50),
            "time_to_dm_p95_seconds": percentile(self.ttd, 0.95),
            "time_to_dm_avg_seconds": round(c["ttd_sum_ms"] / c["ttd_count"] / 1000, 3) if c["ttd_count"] else None,
        }


def _sorted(counts: dict[str, int]) -> dict[str, int]:
    return {key: counts[key] for key in sorted(counts, key=lambda k: (-counts[k], k)) if counts[key]}


@dataclass
class Report:
    start: dt.date
    end: dt.date
    account_id: str | None
    rule_id: str | None
    media_id: str | None
    totals: Metrics
    by_rule: list[tuple[str | None, str, Metrics]]  # (rule id, rule name, metrics)
    by_post: list[tuple[str, str, Metrics]]  # (account id, media id, metrics)
    by_day: list[tuple[dt.date, Metrics]]


def resolve_range(start: dt.date | None, end: dt.date | None) -> tuple[dt.date, dt.date]:
    """Default: the last 30 days up to today (UTC), inclusive."""
    today = clock.now().astimezone(dt.UTC).date()
    end = end or (start + dt.timedelta(days=DEFAULT_DAYS - 1) if start else today)
    start = start or end - dt.timedelta(days=DEFAULT_DAYS - 1)
    if end < start:
        raise ValidationFailed("'to' must not be before 'from'.", field="to", hint="Dates are YYYY-MM-DD, inclusive.")
    if (end - start).days + 1 > MAX_DAYS:
        raise ValidationFailed(
            f"A report covers at most {MAX_DAYS} days.", field="from", hint="Ask for a shorter range."
        )
    return start, end


def refresh_in(session: Session) -> None:
    """Fold recent changes in before reading; a failure only makes the report a little stale, never an error."""
    try:
        with session.begin_nested():
            rollup.refresh(session=session)
    except SQLAlchemyError as exc:
        log.warning("analytics_refresh_failed", error=exc)


def report(
    *,
    session: Session,
    workspace_id: str,
    start: dt.date | None = None,
    end: dt.date | None = None,
    account_id: str | None = None,
    rule_id: str | None = None,
    media_id: str | None = None,
) -> Report:
    start, end = resolve_range(start, end)
    _check_owned(session=session, workspace_id=workspace_id, account_id=account_id, rule_id=rule_id)

    given = {"account_id": account_id, "rule_key": rule_id, "media_id": media_id}
    filters = tuple(column for column in _FILTERS if given[column])
    params: dict[str, Any] = {"workspace_id": workspace_id, "start": start, "end": end}
    params.update({column: given[column] for column in filters})
    totals = _grouped(session, (), filters, params)[()]
    by_rule_raw = _grouped(session, ("rule_key",), filters, params)
    by_post_raw = _grouped(session, ("account_id", "media_id"), filters, params)
    by_day_raw = _grouped(session, ("day",), filters, params)

    rule_ids = [key[0] for key in by_rule_raw if key[0] != NO_RULE]
    names = {row.id: row.name for row in session.execute(select(Rule.id, Rule.name).where(Rule.id.in_(rule_ids)))}
    by_rule = sorted(
        (
            (None if key[0] == NO_RULE else key[0], NO_RULE_NAME if key[0] == NO_RULE else names.get(key[0], key[0]), m)
            for key, m in by_rule_raw.items()
        ),
        key=lambda row: (row[0] is None, -row[2].counters["comments_seen"], row[1]),
    )
    by_post = sorted(
        ((key[0], key[1], m) for key, m in by_post_raw.items()),
        key=lambda row: (-row[2].counters["comments_seen"], row[0], row[1]),
    )
    days = [start + dt.timedelta(days=offset) for offset in range((end - start).days + 1)]
    by_day = [(day, by_day_raw.get((day,), Metrics())) for day in days]
    return Report(start, end, account_id, rule_id, media_id, totals, by_rule, by_post, by_day)


def _check_owned(*, session: Session, workspace_id: str, account_id: str | None, rule_id: str | None) -> None:
    if account_id:
        account = session.get(Account, account_id)
        if account is None or account.workspace_id != workspace_id:
            raise NotFound("No account with this id.", hint="List your accounts with GET /api/accounts.")
    if rule_id:
        rule = session.get(Rule, rule_id)
        if rule is None or rule.workspace_id != workspace_id:
            raise NotFound("No rule with this id.", hint="List your rules with GET /api/rules.")


#: Columns a report may be narrowed by (account, rule, post).
_FILTERS = ("account_id", "rule_key", "media_id")
_Statements = tuple[Select[Any], Select[Any]]
_statements: dict[tuple[tuple[str, ...], tuple[str, ...]], _Statements] = {}


def _statements_for(keys: tuple[str, ...], filters: tuple[str, ...]) -> _Statements:
    """The two GROUP BY queries for a grouping and a set of filters, built once (values are bound parameters)."""
    found = _statements.get((keys, filters))
    if found is not None:
        return found

    def where(columns: Any) -> list[ColumnElement[bool]]:
        clauses = [
            columns.workspace_id == bindparam("workspace_id"),
            columns.day >= bindparam("start", type_=Date),
            columns.day <= bindparam("end", type_=Date),
        ]
        return clauses + [columns[name] == bindparam(name) for name in filters]

    daily = AnalyticsDaily.__table__.c
    daily_keys = [daily[name] for name in keys]
    sums = [func.coalesce(func.sum(daily[name]), 0) for name in (*COUNTERS, *TTD_COLUMNS)]
    main: Select[Any] = select(*daily_keys, *sums).where(*where(daily))
    labels_table = AnalyticsLabel.__table__.c
    label_keys = [labels_table[name] for name in keys]
    labels: Select[Any] = select(
        *label_keys, labels_table.kind, labels_table.label, func.sum(labels_table["count"])
    ).where(*where(labels_table))
    if keys:
        main = main.group_by(*daily_keys)
    labels = labels.group_by(*label_keys, labels_table.kind, labels_table.label)
    found = _statements[(keys, filters)] = (main, labels)
    return found


def _grouped(
    session: Session, keys: tuple[str, ...], filters: tuple[str, ...], params: dict[str, Any]
) -> dict[tuple[Any, ...], Metrics]:
    """Metrics per value of ``keys`` (one group ``()`` when empty), summed in the database."""
    found: dict[tuple[Any, ...], Metrics] = {}
    if not keys:
        found[()] = Metrics()
    main, labels = _statements_for(keys, filters)
    connection = session.connection()  # Core rows: the ORM's per-row machinery is pure overhead here
    width = len(keys)
    histogram_at = width + len(COUNTERS)
    for row in connection.execute(main, params):
        group = tuple(row[:width])
        metrics = found.get(group)
        if metrics is None:
            metrics = found[group] = Metrics()
        counters = metrics.counters
        for name, value in zip(COUNTERS, row[width:histogram_at], strict=True):
            counters[name] += int(value or 0)
        for edge, value in zip(TTD_EDGES, row[histogram_at:], strict=True):
            if value:
                metrics.ttd[edge] = metrics.ttd.get(edge, 0) + int(value)
    for row in connection.execute(labels, params):
        group = tuple(row[:width])
        kind, label, count = row[width:]
        metrics = found.get(group)
        if metrics is None:
            metrics = found[group] = Metrics()
        metrics.add_label(kind, label, int(count or 0))
    return found


# -- CSV ---------------------------------------------------------------------------------------------------------

_CSV_METRICS = (
    "comments_seen",
    "matched",
    "skipped",
    "public_replies",
    "dms_sent",
    "dm_failures",
    "in_progress",
    "replies_received",
    "button_taps",
    "link_clicks",
    "unique_link_clicks",
    "dms_with_links",
    "click_through_rate",
    "follow_ups_sent",
    "time_to_dm_p50_seconds",
    "time_to_dm_p95_seconds",
    "time_to_dm_avg_seconds",
)


def to_csv(result: Report, *, group_by: GroupBy) -> str:
    """One row per day, rule or post, with a column per skip and failure reason (every known one, then others)."""
    rows: list[tuple[list[str], Metrics]]
    if group_by == "rule":
        head = ["rule_id", "rule_name"]
        rows = [([rule_id or "", name], m) for rule_id, name, m in result.by_rule]
    elif group_by == "post":
        head = ["account_id", "media_id"]
        rows = [([account_id, media_id], m) for account_id, media_id, m in result.by_post]
    else:
        head = ["day"]
        rows = [([day.isoformat()], m) for day, m in result.by_day]
    skip_reasons = _reasons([r.value for r in SkipReason], [m.skipped_by_reason for _, m in rows])
    failure_reasons = _reasons(
        [r.value for r in RunFailure] + [r.value for r in CommentFinalReason],
        [m.dm_failures_by_reason for _, m in rows],
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            *head,
            *_CSV_METRICS,
            *(f"skipped:{reason}" for reason in skip_reasons),
            *(f"dm_failures:{reason}" for reason in failure_reasons),
        ]
    )
    for keys, metrics in rows:
        data = metrics.as_dict()
        writer.writerow(
            [
                *(_safe_cell(value) for value in keys),
                *("" if data[name] is None else data[name] for name in _CSV_METRICS),
                *(metrics.skipped_by_reason.get(reason, 0) for reason in skip_reasons),
                *(metrics.dm_failures_by_reason.get(reason, 0) for reason in failure_reasons),
            ]
        )
    return buffer.getvalue()


def _reasons(known: list[str], seen: list[dict[str, int]]) -> list[str]:
    ordered = list(dict.fromkeys(known))
    extra = sorted({reason for counts in seen for reason in counts} - set(ordered))
    return ordered + extra


def _safe_cell(value: str) -> str:
    """Rule names are user input: keep a spreadsheet from reading one as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
