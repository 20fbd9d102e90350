"""The analytics rollup: daily counters per (account, rule, post), labelled counts, and each run's counted state.

Every counter is a sum over runs of what :class:`replyflow.analytics.rollup.Fact` says a run contributes, kept
current incrementally (see ``rollup.refresh``), so reading a month of analytics touches a few hundred rows
however many runs there are.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from replyflow.db import Base, UTCDateTime, utcnow

#: ``rule_key`` of comments no rule handled (a primary key column cannot be NULL).
NO_RULE = ""

#: The summed counters, in the order of the ``analytics_daily`` columns.
COUNTERS = (
    "comments_seen",
    "matched",
    "skipped",
    "public_replies",
    "dms_sent",
    "dm_failures",
    "done",
    "in_progress",
    "replies",
    "taps",
    "clicks",
    "clicked_runs",
    "dms_with_links",
    "follow_ups",
    "ttd_count",
    "ttd_sum_ms",
)

#: Lower edges (seconds) of the time-to-DM histogram buckets: 1 s wide up to 10 s, then widening to a day.
TTD_EDGES = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 25, 30, 40, 50, 60, 90, 120, 180, 240, 300, 450, 600, 900,
    1200, 1800, 2700, 3600, 5400, 7200, 10800, 14400, 21600, 43200, 86400,
)  # fmt: skip
#: One column per bucket (``ttd_00`` …): summing them per rule, post or day is a plain SUM.
TTD_COLUMNS = tuple(f"ttd_{index:02d}" for index in range(len(TTD_EDGES)))


class AnalyticsDaily(Base):
    """Counters of the runs received on ``day`` (UTC) for one account, rule (or none) and post."""

    __tablename__ = "analytics_daily"
    __table_args__ = (Index("ix_analytics_daily_workspace_id_day", "workspace_id", "day"),)

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    rule_key: Mapped[str] = mapped_column(String(40), primary_key=True)
    media_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40))

    comments_seen: Mapped[int] = mapped_column(Integer, default=0)
    matched: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    public_replies: Mapped[int] = mapped_column(Integer, default=0)
    dms_sent: Mapped[int] = mapped_column(Integer, default=0)
    dm_failures: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    in_progress: Mapped[int] = mapped_column(Integer, default=0)
    replies: Mapped[int] = mapped_column(Integer, default=0)
    taps: Mapped[int] = mapped_column(Integer, default=0)
    clicks: Mapped[int] = mapped_column(Integer, default=0)
    clicked_runs: Mapped[int] = mapped_column(Integer, default=0)
    dms_with_links: Mapped[int] = mapped_column(Integer, default=0)
    follow_ups: Mapped[int] = mapped_column(Integer, default=0)
    ttd_count: Mapped[int] = mapped_column(Integer, default=0)
    ttd_sum_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    # The histogram: ttd_00 … ttd_37, one per TTD_EDGES bucket (declared in a loop; they are all alike).
    for _column in TTD_COLUMNS:
        vars()[_column] = mapped_column(_column, Integer, default=0, nullable=False)
    del _column


class AnalyticsLabel(Base):
    """Counts of the same runs by an open-ended label: ``skip`` and ``failure`` reasons."""

    __tablename__ = "analytics_daily_labels"
    __table_args__ = (Index("ix_analytics_daily_labels_workspace_id_day", "workspace_id", "day", "kind"),)

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    rule_key: Mapped[str] = mapped_column(String(40), primary_key=True)
    media_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40))
    count: Mapped[int] = mapped_column(Integer, default=0)


class AnalyticsRunFact(Base):
    """What one run contributes to the rollup as last counted; a changed run is counted again by difference."""

    __tablename__ = "analytics_run_facts"

    run_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str] = mapped_column(String(40))
    rule_key: Mapped[str] = mapped_column(String(40))
    media_id: Mapped[str] = mapped_column(String(128))
    day: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    matched: Mapped[bool] = mapped_column(Boolean)
    public_replied: Mapped[bool] = mapped_column(Boolean)
    dm_sent: Mapped[bool] = mapped_column(Boolean)
    ttd_ms: Mapped[int | None] = mapped_column(BigInteger)
    replies: Mapped[int] = mapped_column(Integer, default=0)
    taps: Mapped[int] = mapped_column(Integer, default=0)
    clicks: Mapped[int] = mapped_column(Integer, default=0)
    links: Mapped[int] = mapped_column(Integer, default=0)
    follow_ups: Mapped[int] = mapped_column(Integer, default=0)


class AnalyticsCursor(Base):
    """How far the rollup has read a change feed (``runs``, ``engagement``) or the verification pass (``verify``)."""

    __tablename__ = "analytics_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    position_id: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
