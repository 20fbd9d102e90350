"""Response shapes of ``GET /api/analytics``."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from replyflow.analytics.service import Metrics, Report


class MetricsOut(BaseModel):
    comments_seen: int = Field(
        description=(
            "Comments received (each is a run), skipped ones included; the account's own comments (such as its "
            "public replies, which Meta sends back as comments) are not counted anywhere."
        )
    )
    matched: int = Field(description="Comments a rule took.")
    skipped: int
    skipped_by_reason: dict[str, int]
    public_replies: int
    dms_sent: int
    dm_failures: int = Field(description="Runs that ended failed (the DM could not be sent).")
    dm_failures_by_reason: dict[str, int]
    in_progress: int = Field(description="Runs not finished yet (waiting for the quota, a delay, a retry, ...).")
    replies_received: int = Field(description="Messages the people wrote back after the DM.")
    button_taps: int = Field(description="Quick-reply and postback taps.")
    link_clicks: int = Field(description="Clicks on tracked links (link previews excluded).")
    unique_link_clicks: int = Field(description="DMs whose links were clicked at least once.")
    dms_with_links: int = Field(description="DMs sent whose conversation carried a tracked link.")
    click_through_rate: float | None = Field(description="unique_link_clicks / dms_with_links; null without links.")
    follow_ups_sent: int
    time_to_dm_p50_seconds: float | None = Field(
        description="Median time from receiving the comment to the DM (exact to the second under 2 minutes)."
    )
    time_to_dm_p95_seconds: float | None
    time_to_dm_avg_seconds: float | None

    @classmethod
    def of(cls, metrics: Metrics) -> MetricsOut:
        return cls.model_validate(metrics.as_dict())


class RuleMetricsOut(MetricsOut):
    rule_id: str | None = Field(description="null for comments no rule handled.")
    rule_name: str


class PostMetricsOut(MetricsOut):
    account_id: str
    media_id: str


class DayMetricsOut(MetricsOut):
    day: dt.date


class AnalyticsOut(BaseModel):
    from_: dt.date = Field(serialization_alias="from")
    to: dt.date
    timezone: str = "UTC"
    account_id: str | None = None
    rule_id: str | None = None
    media_id: str | None = None
    totals: MetricsOut
    by_rule: list[RuleMetricsOut]
    by_post: list[PostMetricsOut]
    by_day: list[DayMetricsOut]

    @classmethod
    def of(cls, report: Report) -> AnalyticsOut:
        return cls(
            from_=report.start,
            to=report.end,
            account_id=report.account_id,
            rule_id=report.rule_id,
            media_id=report.media_id,
            totals=MetricsOut.of(report.totals),
            by_rule=[
                RuleMetricsOut(rule_id=rule_id, rule_name=name, **m.as_dict()) for rule_id, name, m in report.by_rule
            ],
            by_post=[
                PostMetricsOut(account_id=account_id, media_id=media_id, **m.as_dict())
                for account_id, media_id, m in report.by_post
            ],
            by_day=[DayMetricsOut(day=day, **m.as_dict()) for day, m in report.by_day],
        )
