"""Analytics at scale: one workspace with 1,000,000 runs over 90 days, and the time ``GET /api/analytics`` needs.

Seeds runs (and their engagement) by bulk insert, builds the analytics rollup, then times the report the API
serves — refresh of recent changes plus totals, per rule, per post and per day — for the last 30 days and for
all 90 days. Each is the median of several warm runs, printed in ms and as a ratio to ``SELECT count(*) FROM
runs`` measured in the same run (budget: < 100 ms). For contrast it also times one GROUP BY straight over the
runs table, which is what the rollup saves. SQLite always; PostgreSQL too when 127.0.0.1:5432 answers.

Run with ``python -m bench.bench_analytics`` (``BENCH_ANALYTICS_RUNS`` changes the size; ``BENCH_ANALYTICS_POSTGRES=0``
skips PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, case, create_engine, func, insert, select, text

RUNS = int(os.environ.get("BENCH_ANALYTICS_RUNS", "1000000"))
DAYS = 90
ACCOUNTS = 2
RULES_PER_ACCOUNT = 10
POSTS_PER_ACCOUNT = 30
BATCH = 20_000
REPEATS = 7
BUDGET_MS = 100.0
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
END = dt.datetime(2026, 3, 31, 23, 0, tzinfo=dt.UTC)

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _b32(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


def _run_id(rng: random.Random, created: dt.datetime) -> str:
    """Time-ordered like replyflow.ids.new_id, but for the moment the run was created."""
    return f"run_{_b32(int(created.timestamp() * 1000), 10)}{_b32(rng.getrandbits(60), 12)}"


# -- the data set ------------------------------------------------------------------------------------------------


class World:
    def __init__(self) -> None:
        self.workspace_id = f"ws_{uuid.uuid4().hex[:20]}"
        self.accounts = [f"acc_{uuid.uuid4().hex[:20]}" for _ in range(ACCOUNTS)]
        self.posts: dict[str, list[tuple[str, dt.datetime]]] = {}
        self.rules: dict[str, list[tuple[str, set[str]]]] = {}
        rng = random.Random(1)
        start = END - dt.timedelta(days=DAYS)
        for account in self.accounts:
            posts = [
                (f"1790{rng.getrandbits(40):013d}", start + dt.timedelta(days=DAYS * i / POSTS_PER_ACCOUNT))
                for i in range(POSTS_PER_ACCOUNT)
            ]
            self.posts[account] = posts
            # Each rule watches one or two posts, the way creators set up a giveaway per reel.
            self.rules[account] = [
                (f"rule_{uuid.uuid4().hex[:20]}", {p[0] for p in rng.sample(posts, rng.choice((2, 3)))})
                for _ in range(RULES_PER_ACCOUNT)
            ]


def _rows(world: World, count: int) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Runs shaped like real traffic: a post's comments arrive mostly in its first days; most match a rule."""
    rng = random.Random(2)
    skip_reasons = ["no_keyword"] * 6 + ["post_not_targeted"] * 3 + ["own_comment", "already_handled_user"]
    fail_reasons = ["user_unavailable", "private_reply_already_sent_or_invalid", "permission_denied", "outside_window"]
    for n in range(count):
        account = world.accounts[n % ACCOUNTS]
        media_id, published = rng.choice(world.posts[account])
        created = min(END, published + dt.timedelta(hours=rng.expovariate(1 / 40)))
        watching = [rule for rule, media in world.rules[account] if media_id in media]
        roll = rng.random()
        run: dict[str, Any] = {
            "id": _run_id(rng, created),
            "workspace_id": world.workspace_id,
            "account_id": account,
            "source": "webhook",
            "comment_id": f"178{n:015d}",
            "media_id": media_id,
            "text": "link please",
            "from_id": f"9{rng.getrandbits(50):016d}",
            "is_live": False,
            "status": "skipped",
            "reason": None,
            "rule_id": None,
            "attempts": 0,
            "public_reply_state": "none",
            "public_reply_attempts": 0,
            "hide_state": "none",
            "dm_state": "none",
            "dm_attempts": 0,
            "dm_reconciled": False,
            "created_at": created,
            "updated_at": created,
            "matched_at": None,
            "finished_at": created,
            "dm_sent_at": None,
        }
        engagement: dict[str, Any] | None = None
        if not watching or roll < 0.35:
            run["reason"] = "post_not_targeted" if not watching else rng.choice(skip_reasons)
        else:
            run.update(
                rule_id=rng.choice(watching), matched_at=created, public_reply_state="sent", public_reply_attempts=1
            )
            if roll < 0.40:
                run.update(status="failed", reason=rng.choice(fail_reasons), dm_attempts=1)
            elif roll < 0.41:
                run.update(status="waiting_quota", finished_at=None)
            else:
                ttd = rng.lognormvariate(1.2, 0.8) if rng.random() < 0.9 else rng.uniform(60, 7200)
                sent = created + dt.timedelta(seconds=ttd)
                run.update(status="done", dm_state="sent", dm_attempts=1, dm_sent_at=sent, finished_at=sent)
                if rng.random() < 0.35:
                    engagement = {
                        "run_id": run["id"],
                        "account_id": account,
                        "replies": rng.choice((0, 1, 1, 2)),
                        "taps": rng.choice((0, 1)),
                        "clicks": rng.choice((0, 0, 1, 2)),
                        "links": 1,
                        "follow_ups": 1,
                        "updated_at": sent + dt.timedelta(minutes=5),
                    }
            run["updated_at"] = run["finished_at"] or created
        yield run, engagement


def _seed_references(engine: Engine, world: World) -> None:
    from replyflow.accounts.models import Account
    from replyflow.automation.models import Rule
    from replyflow.workspaces.models import Workspace

    with engine.begin() as conn:
        conn.execute(insert(Workspace), [{"id": world.workspace_id, "name": "bench"}])
        for i, account in enumerate(world.accounts):
            conn.execute(
                insert(Account),
                [{"id": account, "workspace_id": world.workspace_id, "page_id": f"page{i}", "instagram_id": f"ig{i}"}],
            )
            conn.execute(
                insert(Rule),
                [
                    {
                        "id": rule,
                        "workspace_id": world.workspace_id,
                        "account_id": account,
                        "name": f"Rule {j + 1}",
                        "posts_mode": "specific",
                        "media_ids": sorted(media),
                        "match": "contains_any",
                    }
                    for j, (rule, media) in enumerate(world.rules[account])
                ],
            )


def _seed_runs(engine: Engine, world: World, count: int) -> int:
    from replyflow.automation.models import Run
    from replyflow.conversations.models import RunEngagement

    runs: list[dict[str, Any]] = []
    engaged: list[dict[str, Any]] = []
    total_engaged = 0

    def flush() -> None:
        if engine.dialect.name == "postgresql":
            _copy(engine, Run.__tablename__, runs)
            _copy(engine, RunEngagement.__tablename__, engaged)
        else:
            with engine.begin() as conn:
                conn.execute(insert(Run), runs)
                if engaged:
                    conn.execute(insert(RunEngagement), engaged)
        runs.clear()
        engaged.clear()

    for run, engagement in _rows(world, count):
        runs.append(run)
        if engagement is not None:
            engaged.append(engagement)
            total_engaged += 1
        if len(runs) >= BATCH:
            flush()
    if runs:
        flush()
    return total_engaged


def _copy(engine: Engine, table: str, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL's COPY: the fast bulk path (text format; values here never contain tabs or newlines)."""
    if not rows:
        return
    columns = list(rows[0])
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(_pg_text(row[c]) for c in columns) + "\n")
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            copy.write(buffer.getvalue())
        raw.commit()
    finally:
        raw.close()


def _pg_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


# -- timing ------------------------------------------------------------------------------------------------------------


def _median_ms(work: Callable[[], Any], repeats: int = REPEATS) -> float:
    work()  # warm: the first run pays for cold caches and statement compilation
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _bench(url: str, label: str) -> None:
    from replyflow.analytics import rollup, service
    from replyflow.analytics.models import AnalyticsDaily, AnalyticsLabel
    from replyflow.automation.models import Run
    from replyflow.db import Base, make_engine, make_session_factory, session_scope
    from replyflow.models import load_all

    load_all()
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    world = World()
    factory = make_session_factory(engine)

    started = time.perf_counter()
    _seed_references(engine, world)
    engaged = _seed_runs(engine, world, RUNS)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    seed_s = time.perf_counter() - started

    started = time.perf_counter()
    with session_scope(factory) as session:
        rollup.rebuild(session=session)
    rebuild_s = time.perf_counter() - started
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    with session_scope(factory) as session:
        daily_rows = session.scalar(select(func.count()).select_from(AnalyticsDaily))
        label_rows = session.scalar(select(func.count()).select_from(AnalyticsLabel))

    def count_all() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT count(*) FROM runs")).scalar()

    def report(days: int) -> Callable[[], Any]:
        def run() -> Any:
            with session_scope(factory) as session:
                service.refresh_in(session)
                return service.report(
                    session=session,
                    workspace_id=world.workspace_id,
                    start=(END - dt.timedelta(days=days - 1)).date(),
                    end=END.date(),
                )

        return run

    def naive() -> None:
        with session_scope(factory) as session:
            session.execute(
                select(
                    Run.rule_id,
                    func.count(),
                    func.count(Run.dm_sent_at),
                    func.sum(case((Run.status == "skipped", 1), else_=0)),
                    func.sum(case((Run.status == "failed", 1), else_=0)),
                )
                .where(Run.workspace_id == world.workspace_id, Run.created_at >= END - dt.timedelta(days=DAYS))
                .group_by(Run.rule_id)
            ).all()

    reference = _median_ms(count_all)
    last_30 = _median_ms(report(30))
    last_90 = _median_ms(report(DAYS))
    straight = _median_ms(naive, repeats=1)
    totals = report(DAYS)().totals.counters

    print(
        f"analytics on {label}: {RUNS:,} runs over {DAYS} days in one workspace "
        f"({ACCOUNTS} accounts, {ACCOUNTS * RULES_PER_ACCOUNT} rules, {ACCOUNTS * POSTS_PER_ACCOUNT} posts)"
    )
    print(
        f"  seeded in {seed_s:.1f} s ({engaged:,} runs with engagement); rollup rebuilt in {rebuild_s:.1f} s "
        f"into {daily_rows:,} daily rows + {label_rows:,} labelled rows"
    )
    print(f"  check: {totals['comments_seen']:,} comments seen, {totals['dms_sent']:,} DMs in the 90-day report")
    print(f"  reference SELECT count(*) FROM runs: {reference:.1f} ms")
    for name, ms in (("last 30 days", last_30), (f"all {DAYS} days", last_90)):
        verdict = "OK" if ms < BUDGET_MS else "OVER BUDGET"
        print(
            f"  GET /api/analytics, {name} (refresh + totals + per rule/post/day): {ms:.1f} ms "
            f"= {ms / reference:.2f}x the reference; budget {BUDGET_MS:.0f} ms: {verdict}"
        )
    print(f"  for contrast, one GROUP BY straight over the runs table: {straight:.0f} ms")
    engine.dispose()


@contextmanager
def _postgres_database() -> Iterator[str | None]:
    if os.environ.get("BENCH_ANALYTICS_POSTGRES", "1") == "0":
        yield None
        return
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 2})
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:
        yield None
        return
    name = f"replyflow_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _bench(f"sqlite:///{tmp}/analytics.db", "SQLite")
    with _postgres_database() as url:
        if url is None:
            print("analytics on PostgreSQL: skipped (no server on 127.0.0.1:5432)")
        else:
            _bench(url, "PostgreSQL")


if __name__ == "__main__":
    main()
