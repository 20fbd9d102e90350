"""``/app/analytics``: per-rule funnels, a daily chart (server-rendered SVG), skip and failure reasons, CSV export.

The numbers are the analytics service's report (the same as ``GET /api/analytics``); this page only lays
them out for people.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from replyflow.accounts import repository as accounts_repository
from replyflow.analytics import service as analytics
from replyflow.analytics.triggers import GateFunnel, gate_funnels, trigger_counts
from replyflow.automation import clock
from replyflow.web.charts import DayValues, Series, daily_bars
from replyflow.web.pages.activity import TRIGGERS, reason_text
from replyflow.web.pages.labels import post_previews, rule_labels
from replyflow.web.pages.rules import Post
from replyflow.web.rendering import CurrentUser, PageDb, PageRoute, render
from replyflow.web.sessions import SignedIn

router = APIRouter(route_class=PageRoute)

PATH = "/app/analytics"
PERIODS = (7, 30, 90)
SERIES = (
    Series("comments_seen", "Comments", "bar-seen"),
    Series("matched", "Matched", "bar-matched"),
    Series("dms_sent", "DMs sent", "bar-dm"),
)
GROUPINGS: tuple[tuple[analytics.GroupBy, str], ...] = (("day", "per day"), ("rule", "per rule"), ("post", "per post"))


@dataclass(frozen=True)
class FunnelStep:
    label: str
    count: int
    percent: int  # of the step at the top of the funnel

    @property
    def width_class(self) -> str:
        return f"w-{min(100, max(0, self.percent)) // 5 * 5}"


@dataclass(frozen=True)
class RuleFunnel:
    rule_id: str | None
    name: str
    numbers: dict[str, Any]
    steps: list[FunnelStep]
    deleted: bool = False


@dataclass(frozen=True)
class PostRow:
    media_id: str
    post: Post | None
    numbers: dict[str, Any]


# The posts with the most comments in the period, shown with their thumbnail and caption.
TOP_POSTS = 6


def _funnel(numbers: dict[str, Any]) -> list[FunnelStep]:
    top = numbers["matched"] or 0
    rows = [
        ("Matched", numbers["matched"]),
        ("Public replies", numbers["public_replies"]),
        ("DMs sent", numbers["dms_sent"]),
        ("Replied or tapped", numbers["replies_received"] + numbers["button_taps"]),
        ("Clicked a link", numbers["unique_link_clicks"]),
    ]
    return [FunnelStep(label, count, round(100 * count / top) if top else 0) for label, count in rows]


def _gate_steps(gate: GateFunnel) -> list[FunnelStep]:
    top = gate.gate_sent
    rows = [
        ("Gate sent", gate.gate_sent),
        ("Tapped", gate.tapped),
        ("Followed", gate.followed),
        ("Unlocked", gate.unlocked),
    ]
    return [FunnelStep(label, count, round(100 * count / top) if top else 0) for label, count in rows]


def _reasons(counts: dict[str, int]) -> list[tuple[str, str, int]]:
    return [(code, reason_text(code) or code, n) for code, n in counts.items()]


def _period(days: int | None) -> int:
    return days if days in PERIODS else analytics.DEFAULT_DAYS


def _range(days: int) -> tuple[dt.date, dt.date]:
    today = clock.now().astimezone(dt.UTC).date()
    return analytics.resolve_range(today - dt.timedelta(days=days - 1), today)


def _report(db: Session, signed_in: SignedIn, *, days: int, account_id: str | None) -> analytics.Report:
    start, end = _range(days)
    analytics.refresh_in(db)
    return analytics.report(
        session=db, workspace_id=signed_in.workspace.id, start=start, end=end, account_id=account_id
    )


def _owned_account(db: Session, signed_in: SignedIn, account_id: str | None) -> tuple[list[Any], str | None]:
    accounts = accounts_repository.list_accounts(session=db, workspace_id=signed_in.workspace.id)
    return accounts, next((a.id for a in accounts if a.id == account_id), None)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return "< 1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@router.get(PATH)
async def analytics_page(
    request: Request, db: PageDb, signed_in: CurrentUser, days: int | None = None, account_id: str | None = None
) -> Response:
    period = _period(days)
    accounts, owned = _owned_account(db, signed_in, account_id)
    result = _report(db, signed_in, days=period, account_id=owned)
    totals = result.totals.as_dict()
    chart_days = [
        DayValues(day, {s.key: int(metrics.as_dict()[s.key]) for s in SERIES}) for day, metrics in result.by_day
    ]
    labels = rule_labels(db, signed_in.workspace.id, (rule_id for rule_id, _, _ in result.by_rule))
    rules = []
    for rule_id, name, metrics in result.by_rule:
        if rule_id is None:
            continue  # comments no rule took: they appear under "why comments were skipped"
        numbers = metrics.as_dict()
        label = labels.get(rule_id)
        rules.append(RuleFunnel(rule_id, name, numbers, _funnel(numbers), deleted=label is None or label.deleted))
    top = sorted(result.by_post, key=lambda row: -int(row[2].as_dict()["comments_seen"] or 0))[:TOP_POSTS]
    previews = await post_previews(request, db, accounts, ((account, media) for account, media, _ in top))
    posts = [PostRow(media, previews.get(media), metrics.as_dict()) for _, media, metrics in top]
    query = f"days={period}" + (f"&account_id={owned}" if owned else "")
    values = {
        "totals": totals,
        "period": period,
        "start": result.start,
        "end": result.end,
        "chart": daily_bars(chart_days, SERIES, title=f"Comments, matches and DMs per day, last {period} days"),
        "chart_days": chart_days,
        "series": SERIES,
        "periods": PERIODS,
        "accounts": accounts,
        "account_filter": owned or "",
        "rules": rules,
        "posts": posts,
        "skipped": _reasons(result.totals.skipped_by_reason),
        "failures": _reasons(result.totals.dm_failures_by_reason),
        "exports": [(f"{PATH}/export.csv?{query}&group_by={key}", label) for key, label in GROUPINGS],
        "ttd_p50": _duration(totals["time_to_dm_p50_seconds"]),
        "ttd_p95": _duration(totals["time_to_dm_p95_seconds"]),
        "by_trigger": trigger_counts(
            session=db,
            workspace_id=signed_in.workspace.id,
            start=result.start,
            end=result.end,
            account_id=owned,
            comments=(int(totals["comments_seen"]), int(totals["matched"]), int(totals["dms_sent"])),
        ),
        "trigger_labels": TRIGGERS,
        "gates": [
            (g, _gate_steps(g))
            for g in gate_funnels(
                session=db, workspace_id=signed_in.workspace.id, start=result.start, end=result.end, account_id=owned
            )
        ],
    }
    return render(request, "analytics.html", values, signed_in=signed_in)


@router.get(PATH + "/export.csv")
def analytics_csv(
    db: PageDb,
    signed_in: CurrentUser,
    days: int | None = None,
    account_id: str | None = None,
    group_by: Literal["day", "rule", "post"] = "day",
) -> Response:
    """The report as a spreadsheet (the analytics service's CSV), one row per day, rule or post."""
    period = _period(days)
    _, owned = _owned_account(db, signed_in, account_id)
    result = _report(db, signed_in, days=period, account_id=owned)
    filename = f"replyflow-analytics-{result.start.isoformat()}-{result.end.isoformat()}-by-{group_by}.csv"
    return Response(
        analytics.to_csv(result, group_by=group_by),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
