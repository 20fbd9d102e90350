"""The private-reply budget: both gates keep every sliding window within the quota, hand out places in line,
and a burst larger than the quota drains at the allowed pace without Meta ever answering 613."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from replyflow.automation.clock import use_clock
from replyflow.automation.quota import DatabaseQuotaGate, QuotaGate, RedisQuotaGate
from replyflow.config import Quota
from replyflow.db import Base, make_engine, make_session_factory
from replyflow.runtime import Runtime

from .world import build_world

REDIS_URL = "redis://127.0.0.1:6379/0"
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def _redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except redis.RedisError:
        return False


REDIS_AVAILABLE = _redis_available()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    if not REDIS_AVAILABLE:
        pytest.skip("Redis is not answering on 127.0.0.1:6379")
    prefix = f"rf-test-{uuid.uuid4().hex[:12]}:quota:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def _gate_factory(request: pytest.FixtureRequest, kind: str, tmp_path: Any) -> Iterator[Any]:
    gates: list[QuotaGate] = []
    engine = None
    prefix = ""
    if kind == "redis":
        prefix = request.getfixturevalue("redis_prefix")
    else:
        url = f"sqlite:///{tmp_path}/quota.db" if kind == "sqlite" else request.getfixturevalue("postgres_url")
        engine = make_engine(url)
        Base.metadata.create_all(engine)

    def make(count: int, seconds: int) -> QuotaGate:
        gate: QuotaGate
        if engine is None:
            gate = RedisQuotaGate(url=REDIS_URL, quota=Quota(count, seconds), prefix=prefix)
        else:
            gate = DatabaseQuotaGate(session_factory=make_session_factory(engine), quota=Quota(count, seconds))
        gates.append(gate)
        return gate

    yield make
    for gate in gates:
        gate.close()
    if engine is not None:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def make_gate(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    """A factory of gates sharing one store: the database gate (SQLite) or the Redis gate."""
    yield from _gate_factory(request, request.param, tmp_path)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def make_any_gate(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    """Also the database gate on PostgreSQL, where the per-account row lock is what serialises decisions."""
    yield from _gate_factory(request, request.param, tmp_path)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_grants_up_to_the_quota_then_gives_places_in_line(make_any_gate: Any) -> None:
    gate = make_any_gate(3, 10)
    granted = [gate.acquire(account_id="acc_a", key=f"run{i}", now=at(0)) for i in range(3)]
    assert all(d.granted for d in granted)

    waiting = [gate.acquire(account_id="acc_a", key=f"run{i}", now=at(1)) for i in range(3, 8)]
    assert not any(d.granted for d in waiting)
    # Three per window: places 3-5 open when the first sends age out, places 6-7 a window later.
    window = 10.1  # our window is 1% wider than Meta's
    assert [round((d.at - T0).total_seconds(), 2) for d in waiting] == [window] * 3 + [2 * window] * 2
    assert gate.used(account_id="acc_a", now=at(1)) == 3

    # Another account has its own budget.
    assert gate.acquire(account_id="acc_b", key="run0", now=at(1)).granted


def test_a_place_is_kept_and_honoured(make_gate: Any) -> None:
    gate = make_gate(1, 10)
    assert gate.acquire(account_id="acc", key="first", now=at(0)).granted
    place = gate.acquire(account_id="acc", key="second", now=at(1))
    assert not place.granted
    assert gate.acquire(account_id="acc", key="second", now=at(5)).at == place.at  # asking again keeps the place
    assert not gate.acquire(account_id="acc", key="third", now=at(5)).granted
    assert gate.acquire(account_id="acc", key="second", now=place.at).granted


def test_acquire_is_idempotent_per_key(make_gate: Any) -> None:
    gate = make_gate(2, 10)
    first = gate.acquire(account_id="acc", key="run:dm1", now=at(0))
    again = gate.acquire(account_id="acc", key="run:dm1", now=at(1))
    assert first.granted and again.granted
    assert gate.used(account_id="acc", now=at(1)) == 1


def test_release_gives_the_slot_back(make_gate: Any) -> None:
    gate = make_gate(1, 10)
    assert gate.acquire(account_id="acc", key="a", now=at(0)).granted
    assert not gate.acquire(account_id="acc", key="b", now=at(0)).granted
    gate.release(account_id="acc", key="a")
    assert gate.acquire(account_id="acc", key="b", now=at(0.5)).granted


def test_the_window_slides(make_gate: Any) -> None:
    gate = make_gate(2, 10)
    assert gate.acquire(account_id="acc", key="a", now=at(0)).granted
    assert gate.acquire(account_id="acc", key="b", now=at(6)).granted
    assert not gate.acquire(account_id="acc", key="c", now=at(9)).granted
    assert gate.acquire(account_id="acc", key="d", now=at(10.2)).granted  # "a" aged out, "b" still counts
    assert not gate.acquire(account_id="acc", key="e", now=at(10.3)).granted


def test_concurrent_workers_never_exceed_the_quota(make_any_gate: Any) -> None:
    make_gate = make_any_gate
    gate = make_gate(5, 60)
    grants: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        other = make_gate(5, 60) if n % 2 else gate  # separate gate objects share the same store
        for i in range(6):
            decision = other.acquire(account_id="acc", key=f"w{n}-{i}", now=at(1))
            if decision.granted:
                with lock:
                    grants.append(f"w{n}-{i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(grants) == 5
    assert gate.used(account_id="acc", now=at(1)) == 5


# -- a burst through the engine ---------------------------------------------------------------------------------


def _assert_within_quota(times: list[dt.datetime], *, count: int, seconds: int) -> None:
    for i, start in enumerate(times):
        inside = [t for t in times[i:] if t - start < dt.timedelta(seconds=seconds)]
        assert len(inside) <= count, f"{len(inside)} private replies within {seconds}s from {start}"


def _drain_burst(runtime: Runtime, gate: QuotaGate | None) -> None:
    for world in build_world(runtime, quota=(5, 2), gate=gate):
        with use_clock(world.state.now):
            world.add_rule(once_per_user=False)
            comments = [world.comment(f"link please #{i}", username=f"fan{i}") for i in range(12)]

            world.drive()

            dms = world.outbox("private_reply")
            assert sorted(e.comment_id for e in dms if e.comment_id) == sorted(comments)
            for comment_id in comments:
                world.assert_reply_then_dm_once(comment_id)
            _assert_within_quota([e.at for e in dms], count=5, seconds=2)
            # 12 DMs at 5 per 2 s: three windows, not a retry loop; Meta never had to say 613.
            assert dms[-1].at - dms[0].at < dt.timedelta(seconds=5)
            all_steps = [s for r in world.runs() for s in world.steps(r.id)]
            assert not [s for s in all_steps if s.reason == "meta_rate_limited" or s.step == "throttled"]
            waited = {s.run_id for s in all_steps if s.step == "waiting_quota"}
            assert len(waited) == 7
            assert sum(1 for s in all_steps if s.step == "dm_attempt") == 12


def test_a_burst_drains_at_the_quota_without_613_database_gate(small_quota_world: Any) -> None:
    runtime = small_quota_world.runtime
    small_quota_world.runner.close()
    _drain_burst(runtime, None)


@pytest.mark.redis
def test_a_burst_drains_at_the_quota_without_613_redis_gate(quota_settings: Any, redis_prefix: str) -> None:
    runtime = Runtime(quota_settings)
    Base.metadata.create_all(runtime.engine)
    gate = RedisQuotaGate(url=REDIS_URL, quota=quota_settings.private_reply_quota, prefix=redis_prefix)
    try:
        _drain_burst(runtime, gate)
    finally:
        gate.close()
        runtime.close()


def test_a_confirmed_send_counts_from_when_its_call_ended(make_any_gate: Any) -> None:
    """Meta counts a DM when it arrives, after our grant: a slot confirmed at the end of its call keeps the window
    closed until a full window after that, so a slow call can never let a send through early at a window edge."""
    gate = make_any_gate(1, 10)
    assert gate.acquire(account_id="acc_a", key="run1", now=at(0)).granted
    gate.confirm(account_id="acc_a", key="run1", at=at(4))
    assert not gate.acquire(account_id="acc_a", key="run2", now=at(10.5)).granted  # 10.1 s after the grant only
    assert gate.acquire(account_id="acc_a", key="run2", now=at(14.2)).granted  # 10.1 s after the call ended


def test_confirming_a_released_slot_does_not_bring_it_back(make_any_gate: Any) -> None:
    gate = make_any_gate(1, 10)
    assert gate.acquire(account_id="acc_a", key="run1", now=at(0)).granted
    gate.release(account_id="acc_a", key="run1")
    gate.confirm(account_id="acc_a", key="run1", at=at(1))
    assert gate.used(account_id="acc_a", now=at(2)) == 0
