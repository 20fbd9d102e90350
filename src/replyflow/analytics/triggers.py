"""Analytics of the ways in: runs per trigger, and each follow-gated rule's funnel (gate sent → tapped → followed →
unlocked). Read straight from ``runs`` (message triggers only, through ``ix_runs_trigger_created_at``: comments are
the rollup's) and from ``follow_gates`` (one row per gated run), for a date range."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from replyflow.automation.models import FollowGateState, Rule, Run, SendState
from replyflow.automation.triggers import Trigger

_NON_COMMENT = [t.value for t in Trigger if t is not Trigger.COMMENT]


@dataclass(frozen=True)
class TriggerCount:
    trigger: str
    received: int
    matched: int
    dms_sent: int


@dataclass(frozen=True)
class GateFunnel:
    rule_id: str | None
    rule_name: str
    gate_sent: int
    tapped: int
    followed: int
    unlocked: int


def _bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    low = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    return low, dt.datetime.combine(end, dt.time(), tzinfo=dt.UTC) + dt.timedelta(days=1)


def trigger_counts(
    *,
    session: Session,
    workspace_id: str,
    start: dt.date,
    end: dt.date,
    account_id: str | None = None,
    comments: tuple[int, int, int] = (0, 0, 0),
) -> list[TriggerCount]:
    """Per trigger: received, matched, DMs sent. ``comments`` is the period's totals (all runs, from the rollup);
    the comment row is what remains after the other triggers."""
    low, high = _bounds(start, end)
    query = (
        select(
            Run.trigger,
            func.count(),
            func.count(Run.matched_at),
            func.sum(case((Run.dm_state == SendState.SENT.value, 1), else_=0)),
        )
        .where(
            Run.trigger.in_(_NON_COMMENT),
            Run.created_at >= low,
            Run.created_at < high,
            Run.workspace_id == workspace_id,
        )
        .group_by(Run.trigger)
    )
    if account_id:
        query = query.where(Run.account_id == account_id)
    found = {row[0]: TriggerCount(row[0], int(row[1]), int(row[2]), int(row[3] or 0)) for row in session.execute(query)}
    others = [found.get(t, TriggerCount(t, 0, 0, 0)) for t in _NON_COMMENT]
    comment = TriggerCount(
        Trigger.COMMENT.value,
        max(0, comments[0] - sum(c.received for c in others)),
        max(0, comments[1] - sum(c.matched for c in others)),
        max(0, comments[2] - sum(c.dms_sent for c in others)),
    )
    return [comment, *others]


def gate_funnels(
    *, session: Session, workspace_id: str, start: dt.date, end: dt.date, account_id: str | None = None
) -> list[GateFunnel]:
    """One funnel per rule that gated someone in the period."""
    low, high = _bounds(start, end)
    query = (
        select(
            FollowGateState.rule_id,
            Rule.name,
            func.count(),
            func.count(FollowGateState.first_tap_at),
            func.count(FollowGateState.followed_at),
            func.count(FollowGateState.unlocked_at),
        )
        .outerjoin(Rule, Rule.id == FollowGateState.rule_id)
        .where(
            FollowGateState.workspace_id == workspace_id,
            FollowGateState.created_at >= low,
            FollowGateState.created_at < high,
        )
        .group_by(FollowGateState.rule_id, Rule.name)
        .order_by(Rule.name)
    )
    if account_id:
        query = query.where(FollowGateState.account_id == account_id)
    return [
        GateFunnel(row[0], row[1] or "(deleted rule)", int(row[2]), int(row[3]), int(row[4]), int(row[5]))
        for row in session.execute(query)
    ]
