"""``GET /api/analytics`` (JSON, or CSV with ``?format=csv``) and ``GET /api/analytics.csv``."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from replyflow.analytics import service
from replyflow.analytics.schemas import AnalyticsOut
from replyflow.db import SessionDep
from replyflow.workspaces.auth import CurrentWorkspace

router = APIRouter(tags=["analytics"])

FromDate = Annotated[
    dt.date | None, Query(alias="from", description="First day (UTC, inclusive); default 30 days back.")
]
ToDate = Annotated[dt.date | None, Query(description="Last day (UTC, inclusive); default today.")]
IdFilter = Annotated[str | None, Query(max_length=128)]
GroupBy = Annotated[Literal["day", "rule", "post"], Query(description="CSV rows: one per day, rule or post.")]


def _report(
    session: SessionDep,
    workspace_id: str,
    start: dt.date | None,
    end: dt.date | None,
    account_id: str | None,
    rule_id: str | None,
    media_id: str | None,
) -> service.Report:
    service.refresh_in(session)
    return service.report(
        session=session,
        workspace_id=workspace_id,
        start=start,
        end=end,
        account_id=account_id,
        rule_id=rule_id,
        media_id=media_id,
    )


def _csv(result: service.Report, group_by: service.GroupBy) -> Response:
    name = f"replyflow-analytics-{result.start.isoformat()}-{result.end.isoformat()}-by-{group_by}.csv"
    return Response(
        service.to_csv(result, group_by=group_by),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/api/analytics",
    response_model=AnalyticsOut,
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with format=csv."}},
)
def get_analytics(
    session: SessionDep,
    workspace: CurrentWorkspace,
    from_: FromDate = None,
    to: ToDate = None,
    account_id: IdFilter = None,
    rule_id: IdFilter = None,
    media_id: IdFilter = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
    group_by: GroupBy = "day",
) -> Response:
    """Per rule, per post and per day: comments seen, matched, skipped by reason, public replies, DMs sent,
    failures by reason, replies, taps, link clicks, click-through rate and time-to-DM p50/p95."""
    result = _report(session, workspace.id, from_, to, account_id, rule_id, media_id)
    if format == "csv":
        return _csv(result, group_by)
    return JSONResponse(AnalyticsOut.of(result).model_dump(mode="json", by_alias=True))


@router.get("/api/analytics.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def get_analytics_csv(
    session: SessionDep,
    workspace: CurrentWorkspace,
    from_: FromDate = None,
    to: ToDate = None,
    account_id: IdFilter = None,
    rule_id: IdFilter = None,
    media_id: IdFilter = None,
    group_by: GroupBy = "day",
) -> Response:
    """The same report as CSV, one row per day (default), rule or post."""
    return _csv(_report(session, workspace.id, from_, to, account_id, rule_id, media_id), group_by)


@router.get("/api/analytics/triggers")
def get_trigger_analytics(
    session: SessionDep,
    workspace: CurrentWorkspace,
    from_: FromDate = None,
    to: ToDate = None,
    account_id: IdFilter = None,
) -> dict[str, Any]:
    """Per way in (comment, live_comment, story_reply, dm_keyword, story_mention): received, matched, DMs sent; and
    per follow-gated rule its funnel: gate_sent → tapped → followed → unlocked (one count per gated run)."""
    from replyflow.analytics.triggers import gate_funnels, trigger_counts

    result = _report(session, workspace.id, from_, to, account_id, None, None)
    totals = result.totals.as_dict()
    comments = (int(totals["comments_seen"]), int(totals["matched"]), int(totals["dms_sent"]))
    by_trigger = trigger_counts(
        session=session, workspace_id=workspace.id, start=result.start, end=result.end, account_id=account_id,
        comments=comments,
    )  # fmt: skip
    gates = gate_funnels(
        session=session, workspace_id=workspace.id, start=result.start, end=result.end, account_id=account_id
    )
    return {
        "from": result.start.isoformat(),
        "to": result.end.isoformat(),
        "by_trigger": [dataclasses.asdict(row) for row in by_trigger],
        "follow_gates": [dataclasses.asdict(row) for row in gates],
    }
