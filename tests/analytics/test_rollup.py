"""The rollup stays equal to a plain count over the runs through every kind of change, and repairs what it missed."""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import Counter
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from replyflow.accounts.models import Account
from replyflow.analytics import rollup
from replyflow.analytics.models import AnalyticsCursor, AnalyticsDaily, AnalyticsLabel
from replyflow.analytics.service import report
from replyflow.automation.models import Rule, Run, RunStatus, SendState
from replyflow.conversations.models import RunEngagement
from replyflow.conversations.repository import bump_engagement
from replyflow.runtime import Runtime

from .seed import D1, D3, Seeded, add_run

STATUSES = [RunStatus.DONE, RunStatus.SKIPPED, RunStatus.FAILED, RunStatus.WAITING_QUOTA, RunStatus.PAUSED]


def _oracle(session: Session, workspace_id: str, start: dt.date, end: dt.date) -> dict[str, Any]:
    """The report's totals computed the obvious way, straight from runs and engagement (own comments left out)."""
    runs = [
        r
        for r in session.scalars(select(Run).where(Run.workspace_id == workspace_id))
        if start <= r.created_at.date() <= end and not (r.status == "skipped" and r.reason == "own_comment")
    ]
    engagement = {e.run_id: e for e in session.scalars(select(RunEngagement))}
    ttd = sorted(
        int((r.dm_sent_at - r.created_at).total_seconds())
        for r in runs
        if r.dm_state == SendState.SENT.value and r.dm_sent_at is not None
    )

    def nearest_rank(q: float) -> float | None:
        # Reported to the histogram's resolution: 1 s under two minutes, coarser above (rollup.ttd_bucket).
        return float(rollup.ttd_bucket(1000 * ttd[max(1, math.ceil(q * len(ttd))) - 1])) if ttd else None

    def total(name: str) -> int:
        return sum(getattr(engagement[r.id], name) for r in runs if r.id in engagement)

    return {
        "comments_seen": len(runs),
        "matched": sum(r.matched_at is not None for r in runs),
        "skipped": sum(r.status == "skipped" for r in runs),
        "skipped_by_reason": _by_count(Counter(r.reason or "unknown" for r in runs if r.status == "skipped")),
        "dm_failures_by_reason": _by_count(Counter(r.reason or "unknown" for r in runs if r.status == "failed")),
        "dms_sent": sum(r.dm_state == SendState.SENT.value for r in runs),
        "public_replies": sum(r.public_reply_state == SendState.SENT.value for r in runs),
        "in_progress": sum(r.status in (RunStatus.WAITING_QUOTA.value, RunStatus.PAUSED.value) for r in runs),
        "replies_received": total("replies"),
        "button_taps": total("taps"),
        "link_clicks": total("clicks"),
        "unique_link_clicks": sum(1 for r in runs if r.id in engagement and engagement[r.id].clicks > 0),
        "time_to_dm_p50_seconds": nearest_rank(0.5),
        "time_to_dm_p95_seconds": nearest_rank(0.95),
    }


def _by_count(counts: Counter[str]) -> dict[str, int]:
    return {key: counts[key] for key in sorted(counts, key=lambda k: (-counts[k], k))}


def _assert_matches_oracle(runtime: Runtime, seeded: Seeded, start: dt.date = D1, end: dt.date = D3) -> None:
    with runtime.session() as session:
        rollup.refresh(session=session)
    with runtime.session() as session:
        totals = report(session=session, workspace_id=seeded.workspace_id, start=start, end=end).totals.as_dict()
        expected = _oracle(session, seeded.workspace_id, start, end)
    assert {key: totals[key] for key in expected} == expected


def _verify_everything(runtime: Runtime) -> int:
    """Run the verification pass once around all runs, in small slices; returns the runs it corrected."""
    corrected = 0
    while True:
        with runtime.session() as session:
            corrected += rollup.verify(session=session, batch=10)
            if session.get(AnalyticsCursor, "verify").position_id is None:  # type: ignore[union-attr]
                return corrected


def _snapshot(session: Session) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    # All-zero rows may remain after subtractions; they count nothing.
    daily = {tuple(row) for row in session.execute(select(AnalyticsDaily.__table__)) if any(row[5:])}
    labels = {tuple(row) for row in session.execute(select(AnalyticsLabel.__table__)) if row._mapping["count"]}
    return daily, labels


def _accounts(session: Session, seeded: Seeded) -> tuple[Account, list[Rule]]:
    account = session.get(Account, seeded.accounts["a"])
    assert account is not None
    rules = list(session.scalars(select(Rule).where(Rule.account_id == account.id)))
    return account, rules


def test_every_change_is_counted_by_difference_and_equals_a_rebuild(runtime: Runtime, seeded: Seeded) -> None:
    rng = random.Random(20260301)
    _assert_matches_oracle(runtime, seeded)
    # Every change is stamped later than the one before, as the engine's writes are.
    stamp = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)
    with runtime.session() as session:
        account, rules = _accounts(session, seeded)
        for i in range(120):
            status = rng.choice(STATUSES)
            rule = rng.choice([*rules, None]) if status is not RunStatus.SKIPPED else None
            add_run(
                session,
                account,
                day=D1 + dt.timedelta(days=rng.randrange(3)),
                media_id=rng.choice(["m1", "m2", "m9"]),
                status=status,
                rule=rule,
                reason=rng.choice(["no_keyword", "own_comment", "graph_error", None])
                if status in STATUSES[1:3]
                else None,
                public_reply=rng.random() < 0.5,
                ttd=rng.randrange(0, 4000) if status is RunStatus.DONE else None,
                offset=i,
                updated_at=stamp + dt.timedelta(seconds=i),
            )
    _assert_matches_oracle(runtime, seeded)

    for round_ in range(6):
        stamp += dt.timedelta(hours=1)
        with runtime.session() as session:
            ids = list(session.scalars(select(Run.id).where(Run.workspace_id == seeded.workspace_id)))
            rng.shuffle(ids)
            for run_id in ids[:15]:  # a run moves on: waiting → done, a rule takes it, it fails ...
                status = rng.choice(STATUSES)
                sent = status is RunStatus.DONE and rng.random() < 0.8
                run = session.get(Run, run_id)
                assert run is not None
                run.status = status.value
                run.reason = "too_many_attempts" if status is RunStatus.FAILED else run.reason
                run.dm_state = (SendState.SENT if sent else SendState.NONE).value
                run.dm_sent_at = run.created_at + dt.timedelta(seconds=rng.randrange(1, 900)) if sent else None
                run.rule_id = rng.choice([seeded.rules["r1"], seeded.rules["r2"], None])
                run.updated_at = stamp
            for run_id in ids[15:25]:  # the people answer, tap and click
                bump_engagement(
                    session=session,
                    run_id=run_id,
                    account_id=seeded.accounts["a"],
                    at=stamp,
                    replies=rng.randrange(2),
                    taps=rng.randrange(2),
                    clicks=rng.randrange(3),
                    links=1,
                )
            if round_ == 3:  # a run deleted by hand leaves no change to read: the verification pass finds it
                session.execute(delete(Run).where(Run.id.in_(ids[25:28])))
        if round_ == 3:
            _verify_everything(runtime)
        _assert_matches_oracle(runtime, seeded)
        with runtime.session() as session:
            assert rollup.refresh(session=session).changed == 0  # reading the same changes again adds nothing

    with runtime.session() as session:
        incremental = _snapshot(session)
    with runtime.session() as session:
        rollup.rebuild(session=session)
    with runtime.session() as session:
        assert _snapshot(session) == incremental
    _assert_matches_oracle(runtime, seeded)


def test_a_late_commit_within_the_margin_is_still_counted(runtime: Runtime, seeded: Seeded) -> None:
    _assert_matches_oracle(runtime, seeded)
    with runtime.session() as session:
        newest = session.scalar(select(Run.updated_at).order_by(Run.updated_at.desc()).limit(1))
        assert newest is not None
        waiting = session.get(Run, seeded.runs["r2_waiting"][0])
        assert waiting is not None
        # Stamped a minute *before* the newest change already read, as a slow transaction would be.
        waiting.status = RunStatus.DONE.value
        waiting.dm_state = SendState.SENT.value
        waiting.dm_sent_at = waiting.created_at + dt.timedelta(seconds=20)
        waiting.updated_at = newest - dt.timedelta(minutes=1)
    _assert_matches_oracle(runtime, seeded)


def test_verify_repairs_a_change_that_skipped_the_change_feed(runtime: Runtime, seeded: Seeded) -> None:
    _assert_matches_oracle(runtime, seeded)
    with runtime.session() as session:
        # A bulk UPDATE that forgot runs.updated_at: invisible to refresh.
        session.execute(
            update(Run)
            .where(Run.id.in_(seeded.runs["r1_failed"]))
            .values(status=RunStatus.DONE.value, reason=None, updated_at=Run.created_at)
        )
        rollup.refresh(session=session)
    with runtime.session() as session:
        stale = report(session=session, workspace_id=seeded.workspace_id, start=D1, end=D3)
        assert stale.totals.counters["dm_failures"] == 2  # still the old count
    assert _verify_everything(runtime) == 2
    _assert_matches_oracle(runtime, seeded)


def test_rebuilding_one_account_leaves_the_others_alone(runtime: Runtime, seeded: Seeded) -> None:
    _assert_matches_oracle(runtime, seeded)
    with runtime.session() as session:
        before = _snapshot(session)
        counted = rollup.rebuild(session=session, account_id=seeded.accounts["b"])
        assert counted == 4
    with runtime.session() as session:
        assert _snapshot(session) == before
