"""Keeps the analytics rollup equal to the sum, over every run, of what the run contributes (its ``Fact``).

Change feeds: ``runs.updated_at`` (the engine and intake stamp every change) and ``run_engagement.updated_at``
(conversations stamp every reply, tap, click and follow-up). ``refresh`` reads what changed since its cursor
(minus a small margin, for transactions that committed late or clocks a little apart), recomputes those runs'
facts and applies the *difference* from the facts last counted, so reading a row twice never counts it twice.
``verify`` walks every run in slices and repairs anything a change feed missed; ``rebuild`` starts over.
All three take the cursor rows' lock, so concurrent refreshes (web and worker) serialise.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from replyflow.analytics.models import (
    COUNTERS,
    NO_RULE,
    TTD_COLUMNS,
    TTD_EDGES,
    AnalyticsCursor,
    AnalyticsDaily,
    AnalyticsLabel,
    AnalyticsRunFact,
)
from replyflow.automation import clock
from replyflow.automation.models import ACTIVE_STATUSES, Run, RunStatus, SendState
from replyflow.automation.reasons import SkipReason
from replyflow.conversations.models import RunEngagement
from replyflow.db import utcnow
from replyflow.logging import get_logger

log = get_logger("replyflow.analytics")

#: Rows stamped up to this long before the cursor are read again: a transaction that committed late, or a
#: process whose clock is a little behind, is still counted. Re-reading is free of double counting.
MARGIN = dt.timedelta(minutes=2)
REFRESH_LIMIT = 50_000
VERIFY_BATCH = 20_000
_CHUNK = 500

Key = tuple[str, str, str, dt.date]
_IN_PROGRESS = frozenset(s.value for s in (*ACTIVE_STATUSES, RunStatus.PAUSED))
# Plain strings: this runs once per run in a rebuild, and enum attribute access is not free.
_SENT, _SKIPPED, _FAILED, _DONE = (
    SendState.SENT.value,
    RunStatus.SKIPPED.value,
    RunStatus.FAILED.value,
    RunStatus.DONE.value,
)
_OWN_COMMENT = SkipReason.OWN_COMMENT.value
_RUNS = Run.__table__.c
_ENGAGEMENT = RunEngagement.__table__.c
_RUN_COLUMNS = (
    _RUNS.id,
    _RUNS.workspace_id,
    _RUNS.account_id,
    _RUNS.rule_id,
    _RUNS.media_id,
    _RUNS.created_at,
    _RUNS.status,
    _RUNS.reason,
    _RUNS.matched_at,
    _RUNS.public_reply_state,
    _RUNS.dm_state,
    _RUNS.dm_sent_at,
)
_ENGAGEMENT_COLUMNS = (
    _ENGAGEMENT.run_id,
    _ENGAGEMENT.replies,
    _ENGAGEMENT.taps,
    _ENGAGEMENT.clicks,
    _ENGAGEMENT.links,
    _ENGAGEMENT.follow_ups,
)


def ttd_index(ms: int) -> int:
    """The time-to-DM histogram bucket (an index into ``TTD_EDGES``) of a DM sent ``ms`` after the comment."""
    return bisect.bisect_right(TTD_EDGES, max(0, ms) / 1000) - 1


def ttd_bucket(ms: int) -> int:
    """The lower edge, in seconds, of the bucket ``ms`` falls in (what percentiles report)."""
    return TTD_EDGES[ttd_index(ms)]


_COLUMNS = (*COUNTERS, *TTD_COLUMNS)
_WIDTH = len(_COLUMNS)
_TTD_OFFSET = len(COUNTERS)


@dataclass(frozen=True)
class Fact:
    """What one run adds to the counters of its (account, rule, post, day)."""

    workspace_id: str
    account_id: str
    rule_key: str
    media_id: str
    day: dt.date
    status: str
    reason: str | None
    matched: bool
    public_replied: bool
    dm_sent: bool
    ttd_ms: int | None
    replies: int = 0
    taps: int = 0
    clicks: int = 0
    links: int = 0
    follow_ups: int = 0

    @property
    def key(self) -> Key:
        return (self.account_id, self.rule_key, self.media_id, self.day)

    @property
    def counted(self) -> bool:
        """False for the account's own comments (e.g. our public reply, which Meta sends back as a comment).

        They are not comments the audience wrote, so they count nowhere: not in ``comments_seen`` (the
        denominator of the match rate), not in ``skipped``, not in the skip reasons (which must add up to
        ``skipped``). The activity log still lists them. The fact row is kept all the same, so a run
        reclassified later is counted by difference like any other.
        """
        return not (self.status == _SKIPPED and self.reason == _OWN_COMMENT)

    def counters(self) -> list[tuple[int, int]]:
        """The non-zero (column index, value) pairs, indexes into ``COUNTERS`` then ``TTD_COLUMNS``."""
        if not self.counted:
            return []
        values = (
            1,
            int(self.matched),
            int(self.status == _SKIPPED),
            int(self.public_replied),
            int(self.dm_sent),
            int(self.status == _FAILED),
            int(self.status == _DONE),
            int(self.status in _IN_PROGRESS),
            self.replies,
            self.taps,
            self.clicks,
            int(self.clicks > 0),
            int(self.dm_sent and self.links > 0),
            self.follow_ups,
            int(self.ttd_ms is not None),
            self.ttd_ms or 0,
        )
        pairs = [(index, value) for index, value in enumerate(values) if value]
        if self.ttd_ms is not None:
            pairs.append((_TTD_OFFSET + ttd_index(self.ttd_ms), 1))
        return pairs

    def labels(self) -> list[tuple[str, str]]:
        if not self.counted:
            return []
        if self.status == _SKIPPED:
            return [("skip", self.reason or "unknown")]
        if self.status == _FAILED:
            return [("failure", self.reason or "unknown")]
        return []

    def row(self, run_id: str) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "workspace_id": self.workspace_id,
            "account_id": self.account_id,
            "rule_key": self.rule_key,
            "media_id": self.media_id,
            "day": self.day,
            "status": self.status,
            "reason": self.reason,
            "matched": self.matched,
            "public_replied": self.public_replied,
            "dm_sent": self.dm_sent,
            "ttd_ms": self.ttd_ms,
            "replies": self.replies,
            "taps": self.taps,
            "clicks": self.clicks,
            "links": self.links,
            "follow_ups": self.follow_ups,
        }


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def fact_of_run(run: Any, engagement: Any | None) -> Fact:
    """The contribution of a run row (and its engagement row) as it is now."""
    created = _utc(run.created_at)
    dm_sent = run.dm_state == _SENT
    ttd_ms: int | None = None
    if dm_sent and run.dm_sent_at is not None:
        ttd_ms = max(0, int((_utc(run.dm_sent_at) - created).total_seconds() * 1000))
    return Fact(
        workspace_id=run.workspace_id,
        account_id=run.account_id,
        rule_key=run.rule_id or NO_RULE,
        media_id=run.media_id,
        day=created.date(),
        status=run.status,
        reason=run.reason,
        matched=run.matched_at is not None,
        public_replied=run.public_reply_state == _SENT,
        dm_sent=dm_sent,
        ttd_ms=ttd_ms,
        replies=engagement.replies if engagement is not None else 0,
        taps=engagement.taps if engagement is not None else 0,
        clicks=engagement.clicks if engagement is not None else 0,
        links=engagement.links if engagement is not None else 0,
        follow_ups=engagement.follow_ups if engagement is not None else 0,
    )


def fact_of_row(row: Any) -> Fact:
    return Fact(
        workspace_id=row.workspace_id,
        account_id=row.account_id,
        rule_key=row.rule_key,
        media_id=row.media_id,
        day=row.day,
        status=row.status,
        reason=row.reason,
        matched=bool(row.matched),
        public_replied=bool(row.public_replied),
        dm_sent=bool(row.dm_sent),
        ttd_ms=row.ttd_ms,
        replies=row.replies,
        taps=row.taps,
        clicks=row.clicks,
        links=row.links,
        follow_ups=row.follow_ups,
    )


class _Delta:
    """Differences to add to the rollup, summed per key before touching the database."""

    def __init__(self) -> None:
        self.main: dict[Key, list[int]] = {}
        self.labels: dict[tuple[Key, str, str], int] = {}
        self.workspaces: dict[Key, str] = {}

    def add(self, fact: Fact, sign: int) -> None:
        key = fact.key
        self.workspaces[key] = fact.workspace_id
        vector = self.main.get(key)
        if vector is None:
            vector = self.main[key] = [0] * _WIDTH
        for index, value in fact.counters():
            vector[index] += sign * value
        for kind, label in fact.labels():
            slot = (key, kind, label)
            self.labels[slot] = self.labels.get(slot, 0) + sign

    def flush(self, session: Session) -> None:
        main = [
            {
                "account_id": key[0],
                "rule_key": key[1],
                "media_id": key[2],
                "day": key[3],
                "workspace_id": self.workspaces[key],
                **dict(zip(_COLUMNS, vector, strict=True)),
            }
            for key, vector in self.main.items()
            if any(vector)
        ]
        labels = [
            {
                "account_id": key[0],
                "rule_key": key[1],
                "media_id": key[2],
                "day": key[3],
                "kind": kind,
                "label": label,
                "workspace_id": self.workspaces[key],
                "count": count,
            }
            for (key, kind, label), count in self.labels.items()
            if count
        ]
        if main:
            statement = _insert(session, AnalyticsDaily)
            table = AnalyticsDaily.__table__.c
            _write(
                session,
                statement.on_conflict_do_update(
                    index_elements=["account_id", "rule_key", "media_id", "day"],
                    set_={name: table[name] + statement.excluded[name] for name in _COLUMNS},
                ),
                main,
            )
        if labels:
            statement = _insert(session, AnalyticsLabel)
            _write(
                session,
                statement.on_conflict_do_update(
                    index_elements=["account_id", "rule_key", "media_id", "day", "kind", "label"],
                    set_={"count": AnalyticsLabel.__table__.c["count"] + statement.excluded["count"]},
                ),
                labels,
            )
        self.main.clear()
        self.labels.clear()


def _write(session: Session, statement: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.connection().execute(statement, rows)


def _copy_facts(session: Session, rows: list[dict[str, Any]]) -> None:
    """Append facts in bulk: PostgreSQL's COPY (an executemany of a million rows takes minutes), else executemany."""
    connection = session.connection()
    if connection.dialect.name != "postgresql" or not rows:
        _write(session, insert(AnalyticsRunFact), rows)
        return
    columns = list(rows[0])
    lines = "".join("\t".join(_copy_text(row[name]) for name in columns) + "\n" for row in rows)
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(f"COPY {AnalyticsRunFact.__tablename__} ({', '.join(columns)}) FROM STDIN") as copy:
            copy.write(lines)
    finally:
        cursor.close()


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value).translate(_COPY_ESCAPES)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _insert(session: Session, model: type[Any]) -> Any:
    table = model.__table__
    return postgresql.insert(table) if session.get_bind().dialect.name == "postgresql" else sqlite.insert(table)


def _chunks(values: Sequence[str], size: int = _CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _cursor(session: Session, name: str) -> AnalyticsCursor:
    """The cursor row, locked for this transaction (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises)."""
    statement = _insert(session, AnalyticsCursor).values(name=name, updated_at=utcnow()).on_conflict_do_nothing()
    session.execute(statement)
    cursor = session.scalar(select(AnalyticsCursor).where(AnalyticsCursor.name == name).with_for_update())
    assert cursor is not None
    return cursor


def _load(session: Session, ids: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    runs = {row.id: row for row in session.execute(select(*_RUN_COLUMNS).where(_RUNS.id.in_(ids)))}
    engagement = {
        row.run_id: row for row in session.execute(select(*_ENGAGEMENT_COLUMNS).where(_ENGAGEMENT.run_id.in_(ids)))
    }
    facts = {
        row.run_id: row
        for row in session.execute(
            select(AnalyticsRunFact.__table__).where(AnalyticsRunFact.__table__.c.run_id.in_(ids))
        )
    }
    return runs, engagement, facts


def apply_runs(session: Session, run_ids: Iterable[str]) -> int:
    """Recount these runs (gone ones are subtracted); returns how many contributed differently than before."""
    ids = sorted(set(run_ids))
    delta = _Delta()
    changed = 0
    for chunk in _chunks(ids):
        runs, engagement, facts = _load(session, chunk)
        upserts: list[dict[str, Any]] = []
        gone: list[str] = []
        for run_id in chunk:
            run = runs.get(run_id)
            new = fact_of_run(run, engagement.get(run_id)) if run is not None else None
            stored = facts.get(run_id)
            old = fact_of_row(stored) if stored is not None else None
            if new == old:
                continue
            changed += 1
            if old is not None:
                delta.add(old, -1)
            if new is not None:
                delta.add(new, 1)
                upserts.append(new.row(run_id))
            else:
                gone.append(run_id)
        if upserts:
            statement = _insert(session, AnalyticsRunFact)
            columns = [name for name in upserts[0] if name != "run_id"]
            _write(
                session,
                statement.on_conflict_do_update(
                    index_elements=["run_id"], set_={name: statement.excluded[name] for name in columns}
                ),
                upserts,
            )
        if gone:
            session.execute(delete(AnalyticsRunFact).where(AnalyticsRunFact.run_id.in_(gone)))
    delta.flush(session)
    return changed


@dataclass(frozen=True)
class RefreshResult:
    examined: int
    changed: int
    complete: bool  # False: more changes are waiting (the limit was reached); call again


def _changed_since(
    session: Session,
    id_column: ColumnElement[str],
    stamp: ColumnElement[dt.datetime],
    position: dt.datetime | None,
    *,
    limit: int,
    margin: dt.timedelta,
) -> tuple[list[str], dt.datetime | None, bool]:
    query = select(id_column, stamp).order_by(stamp, id_column).limit(limit)
    if position is not None:
        query = query.where(stamp >= position - margin)
    rows = session.execute(query).all()
    mark = _utc(rows[-1][1]) if rows else None
    return [row[0] for row in rows], mark, len(rows) == limit


def refresh(*, session: Session, limit: int = REFRESH_LIMIT, margin: dt.timedelta = MARGIN) -> RefreshResult:
    """Fold every run changed since the last refresh into the rollup (the caller commits)."""
    runs_cursor = _cursor(session, "runs")
    engagement_cursor = _cursor(session, "engagement")
    run_ids, run_mark, more_runs = _changed_since(
        session, _RUNS.id, _RUNS.updated_at, runs_cursor.position, limit=limit, margin=margin
    )
    engaged_ids, engaged_mark, more_engaged = _changed_since(
        session, _ENGAGEMENT.run_id, _ENGAGEMENT.updated_at, engagement_cursor.position, limit=limit, margin=margin
    )
    ids = set(run_ids) | set(engaged_ids)
    changed = apply_runs(session, ids)
    now = clock.now()
    for cursor, mark in ((runs_cursor, run_mark), (engagement_cursor, engaged_mark)):
        # Never past our own "now": a row stamped by a clock running ahead must not make us skip
        # the rows other writers stamp in the meantime (it is simply read again until we catch up).
        position = min(mark, now) if mark is not None else None
        if position is not None and (cursor.position is None or position > cursor.position):
            cursor.position = position
        cursor.updated_at = utcnow()
    if changed:
        log.debug("analytics_refreshed", examined=len(ids), changed=changed)
    return RefreshResult(examined=len(ids), changed=changed, complete=not (more_runs or more_engaged))


def verify(*, session: Session, batch: int = VERIFY_BATCH) -> int:
    """Recount the next slice of runs by id (wrapping around); returns how many were counted wrongly."""
    cursor = _cursor(session, "verify")
    after = cursor.position_id or ""
    ids = list(session.scalars(select(_RUNS.id).where(_RUNS.id > after).order_by(_RUNS.id).limit(batch)))
    upper = ids[-1] if len(ids) == batch else None
    facts = select(AnalyticsRunFact.run_id).where(AnalyticsRunFact.run_id > after)
    if upper is not None:
        facts = facts.where(AnalyticsRunFact.run_id <= upper)
    known = set(ids)
    orphans = [run_id for run_id in session.scalars(facts) if run_id not in known]
    changed = apply_runs(session, [*ids, *orphans])
    cursor.position_id = upper
    cursor.updated_at = utcnow()
    if changed:
        log.warning("analytics_corrected", runs=changed, hint="a change to a run did not update runs.updated_at")
    return changed


def rebuild(*, session: Session, account_id: str | None = None, batch: int = VERIFY_BATCH) -> int:
    """Recount from scratch (one account, or everything); returns the number of runs counted."""
    runs_cursor = _cursor(session, "runs")
    engagement_cursor = _cursor(session, "engagement")
    for model in (AnalyticsDaily, AnalyticsLabel, AnalyticsRunFact):
        statement = delete(model)
        if account_id is not None:
            statement = statement.where(model.account_id == account_id)
        session.execute(statement)
    marks = (
        session.scalar(select(func.max(_RUNS.updated_at))),
        session.scalar(select(func.max(_ENGAGEMENT.updated_at))),
    )
    counted = 0
    after = ""
    delta = _Delta()
    while True:
        query = select(*_RUN_COLUMNS).where(_RUNS.id > after).order_by(_RUNS.id).limit(batch)
        if account_id is not None:
            query = query.where(_RUNS.account_id == account_id)
        runs = session.execute(query).all()
        if not runs:
            break
        ids = [row.id for row in runs]
        engagement: dict[str, Any] = {}
        for chunk in _chunks(ids):
            engagement.update(
                (row.run_id, row)
                for row in session.execute(select(*_ENGAGEMENT_COLUMNS).where(_ENGAGEMENT.run_id.in_(chunk)))
            )
        facts = [fact_of_run(row, engagement.get(row.id)) for row in runs]
        for fact in facts:
            delta.add(fact, 1)
        _copy_facts(session, [fact.row(row.id) for fact, row in zip(facts, runs, strict=True)])
        delta.flush(session)
        counted += len(runs)
        after = ids[-1]
    if account_id is None:
        runs_cursor.position = _utc(marks[0]) if marks[0] is not None else None
        engagement_cursor.position = _utc(marks[1]) if marks[1] is not None else None
    log.info("analytics_rebuilt", runs=counted, account_id=account_id)
    return counted
