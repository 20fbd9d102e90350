"""The private-reply budget per Instagram account (``REPLYFLOW_PRIVATE_REPLY_QUOTA``), shared by every worker.

A sliding window: at most ``count`` private replies in any ``seconds``-long window, counted from our own send
log, so Meta's limit (750/hour; the sandbox answers 613 beyond it) is never reached. A run asks the gate just
before its DM:

* granted: the send is written to the log now (under a lock, or atomically in Redis), then made;
* refused: the run gets a *place in line* — the moment the budget frees up for it, after everyone already
  waiting — and is scheduled for then, so a burst drains at exactly the allowed pace, first come first served,
  without waking every waiting run at once. Places are only a schedule: the decision to send always counts
  real sends, so a run that wakes late or early can never push the account over the limit.

Two implementations of one :class:`QuotaGate`: the database (``private_reply_slots``; embedded deployments) and
Redis sorted sets (``REPLYFLOW_REDIS_URL``; one Lua script per decision).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from replyflow.automation.models import PrivateReplySlot, QuotaLock
from replyflow.automation.sql import insert_ignore, is_postgresql
from replyflow.config import Quota
from replyflow.db import session_scope

SENT = "sent"
HOLD = "hold"


def safety_margin(quota: Quota) -> dt.timedelta:
    """Extra width of our window over Meta's: clocks and queues are never exact (1%, 50 ms to 30 s)."""
    return dt.timedelta(seconds=min(max(quota.seconds * 0.01, 0.05), 30.0))


@dataclass(frozen=True)
class QuotaDecision:
    """``granted``: send now (``at`` is the moment recorded). Otherwise come back at ``at``."""

    granted: bool
    at: dt.datetime


class QuotaGate(Protocol):
    """One account's private-reply budget; ``key`` names one send attempt (idempotent per key)."""

    quota: Quota

    def acquire(self, *, account_id: str, key: str, now: dt.datetime) -> QuotaDecision: ...

    def release(self, *, account_id: str, key: str) -> None:
        """Give back a slot whose send certainly never reached Meta."""

    def confirm(self, *, account_id: str, key: str, at: dt.datetime) -> None:
        """The granted send ``key`` is over (or its outcome unknown) at ``at``: count it from then on. Meta counts a
        send when it arrives, which is after the grant; counting from the end of the call keeps us behind Meta."""

    def confirm_in(self, session: Session, *, account_id: str, key: str, at: dt.datetime) -> bool:
        """``confirm`` inside the caller's transaction, when the gate keeps its counts in the same database (then
        it costs no transaction of its own); False: it does not, call ``confirm``."""

    def used(self, *, account_id: str, now: dt.datetime) -> int:
        """Sends counted in the window ending at ``now``."""

    def close(self) -> None: ...


def _place_in_line(
    *, now: dt.datetime, window: dt.timedelta, limit: int, newest: dt.datetime | None, kth_newest: dt.datetime | None
) -> dt.datetime:
    """The earliest moment after every queued entry at which one more send keeps every window within ``limit``.

    ``kth_newest`` is the ``limit``-th most recent entry (sent or held); appending at ``t`` is safe when
    ``t >= kth_newest + window``.
    """
    candidates = [now]
    if newest is not None:
        candidates.append(newest)
    if kth_newest is not None:
        candidates.append(kth_newest + window)
    return max(candidates)


class DatabaseQuotaGate:
    """The gate on our own database: a per-account lock row, then count and insert in one transaction."""

    def __init__(self, *, session_factory: sessionmaker[Session], quota: Quota) -> None:
        self.quota = quota
        self._factory = session_factory
        self._window = dt.timedelta(seconds=quota.seconds) + safety_margin(quota)

    def acquire(self, *, account_id: str, key: str, now: dt.datetime) -> QuotaDecision:
        limit = self.quota.count
        horizon = now - self._window
        with session_scope(self._factory) as session:
            self._lock(session, account_id)
            mine = PrivateReplySlot.account_id == account_id
            session.execute(delete(PrivateReplySlot).where(mine, PrivateReplySlot.at <= horizon))
            own = session.scalar(
                select(PrivateReplySlot).where(PrivateReplySlot.account_id == account_id, PrivateReplySlot.key == key)
            )
            if own is not None and own.kind == SENT:
                return QuotaDecision(granted=True, at=own.at)
            used = self._count_sent(session, account_id)
            if used < limit:
                if own is None:
                    session.add(PrivateReplySlot(account_id=account_id, key=key, kind=SENT, at=now))
                else:
                    own.kind, own.at = SENT, now
                return QuotaDecision(granted=True, at=now)
            if own is not None and own.at > now:
                return QuotaDecision(granted=False, at=own.at)
            if own is not None:
                # Our place came but late senders still fill the window: the next send to age out is ours.
                oldest = session.scalars(
                    select(PrivateReplySlot.at)
                    .where(PrivateReplySlot.account_id == account_id, PrivateReplySlot.kind == SENT)
                    .order_by(PrivateReplySlot.at.desc())
                    .offset(limit - 1)
                    .limit(1)
                ).first()
                own.at = max(now, (oldest or now) + self._window)
                return QuotaDecision(granted=False, at=own.at)
            newest = session.scalar(select(func.max(PrivateReplySlot.at)).where(mine))
            kth = session.scalars(
                select(PrivateReplySlot.at)
                .where(PrivateReplySlot.account_id == account_id)
                .order_by(PrivateReplySlot.at.desc())
                .offset(limit - 1)
                .limit(1)
            ).first()
            at = _place_in_line(now=now, window=self._window, limit=limit, newest=newest, kth_newest=kth)
            session.add(PrivateReplySlot(account_id=account_id, key=key, kind=HOLD, at=at))
            return QuotaDecision(granted=False, at=at)

    def release(self, *, account_id: str, key: str) -> None:
        with session_scope(self._factory) as session:
            session.execute(
                delete(PrivateReplySlot).where(PrivateReplySlot.account_id == account_id, PrivateReplySlot.key == key)
            )

    def confirm(self, *, account_id: str, key: str, at: dt.datetime) -> None:
        with session_scope(self._factory) as session:
            self.confirm_in(session, account_id=account_id, key=key, at=at)

    def confirm_in(self, session: Session, *, account_id: str, key: str, at: dt.datetime) -> bool:
        session.execute(
            update(PrivateReplySlot)
            .where(
                PrivateReplySlot.account_id == account_id,
                PrivateReplySlot.key == key,
                PrivateReplySlot.kind == SENT,
                PrivateReplySlot.at < at,
            )
            .values(at=at)
            .execution_options(synchronize_session=False)
        )
        return True

    def used(self, *, account_id: str, now: dt.datetime) -> int:
        with session_scope(self._factory) as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(PrivateReplySlot)
                    .where(
                        PrivateReplySlot.account_id == account_id,
                        PrivateReplySlot.kind == SENT,
                        PrivateReplySlot.at > now - self._window,
                    )
                )
                or 0
            )

    def close(self) -> None:
        return None

    @staticmethod
    def _count_sent(session: Session, account_id: str) -> int:
        return int(
            session.scalar(
                select(func.count())
                .select_from(PrivateReplySlot)
                .where(PrivateReplySlot.account_id == account_id, PrivateReplySlot.kind == SENT)
            )
            or 0
        )

    @staticmethod
    def _lock(session: Session, account_id: str) -> None:
        # SQLite: the transaction began with BEGIN IMMEDIATE and already holds the write lock.
        if is_postgresql(session):
            insert_ignore(session, QuotaLock, {"account_id": account_id})
            session.execute(select(QuotaLock).where(QuotaLock.account_id == account_id).with_for_update())


# KEYS: sent zset, hold zset. ARGV: now_ms, window_ms, limit, member. Scores are epoch milliseconds.
# Returns {granted (0/1), at_ms}. Mirrors DatabaseQuotaGate.acquire.
_ACQUIRE_LUA = """
local sent, hold = KEYS[1], KEYS[2]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local member = ARGV[4]
local horizon = now - window
redis.call('ZREMRANGEBYSCORE', sent, '-inf', horizon)
redis.call('ZREMRANGEBYSCORE', hold, '-inf', horizon)
local mine = redis.call('ZSCORE', sent, member)
if mine then
  return {1, tonumber(mine)}
end
local used = redis.call('ZCARD', sent)
local held = redis.call('ZSCORE', hold, member)
local at
if used < limit then
  redis.call('ZREM', hold, member)
  redis.call('ZADD', sent, now, member)
  redis.call('PEXPIRE', sent, window * 2)
  return {1, now}
end
if held and tonumber(held) > now then
  return {0, tonumber(held)}
end
if held then
  local oldest = redis.call('ZREVRANGE', sent, limit - 1, limit - 1, 'WITHSCORES')
  at = now
  if oldest[2] then at = math.max(now, tonumber(oldest[2]) + window) end
else
  local holds = redis.call('ZCARD', hold)
  local kth
  if holds >= limit then
    kth = redis.call('ZREVRANGE', hold, limit - 1, limit - 1, 'WITHSCORES')
  else
    kth = redis.call('ZREVRANGE', sent, limit - holds - 1, limit - holds - 1, 'WITHSCORES')
  end
  local newest = redis.call('ZREVRANGE', hold, 0, 0, 'WITHSCORES')
  at = now
  if newest[2] then at = math.max(at, tonumber(newest[2])) end
  if kth[2] then at = math.max(at, tonumber(kth[2]) + window) end
end
redis.call('ZADD', hold, at, member)
redis.call('PEXPIRE', hold, math.floor(at - now + window * 2))
return {0, at}
"""


class RedisQuotaGate:
    """The gate in Redis: two sorted sets per account (sends, places in line), one atomic Lua script."""

    def __init__(self, *, url: str, quota: Quota, prefix: str = "replyflow:quota:", client: Any = None) -> None:
        import redis

        self.quota = quota
        self.prefix = prefix
        self._redis: Any = client if client is not None else redis.Redis.from_url(url, socket_timeout=5)
        self._owns_client = client is None
        self._window_ms = int((dt.timedelta(seconds=quota.seconds) + safety_margin(quota)).total_seconds() * 1000)
        self._acquire = self._redis.register_script(_ACQUIRE_LUA)

    def _keys(self, account_id: str) -> list[str]:
        return [f"{self.prefix}{account_id}:sent", f"{self.prefix}{account_id}:hold"]

    def acquire(self, *, account_id: str, key: str, now: dt.datetime) -> QuotaDecision:
        now_ms = _ms(now)
        granted, at_ms = self._acquire(
            keys=self._keys(account_id), args=[now_ms, self._window_ms, self.quota.count, key]
        )
        return QuotaDecision(granted=bool(int(granted)), at=_from_ms(int(at_ms)))

    def release(self, *, account_id: str, key: str) -> None:
        sent, hold = self._keys(account_id)
        pipe = self._redis.pipeline()
        pipe.zrem(sent, key)
        pipe.zrem(hold, key)
        pipe.execute()

    def confirm_in(self, session: Session, *, account_id: str, key: str, at: dt.datetime) -> bool:
        return False  # the counts live in Redis, not in the caller's database

    def confirm(self, *, account_id: str, key: str, at: dt.datetime) -> None:
        sent, _ = self._keys(account_id)
        # XX: only a slot still recorded (never re-create one released meanwhile); GT: never move it earlier.
        self._redis.zadd(sent, {key: _ms(at)}, xx=True, gt=True)

    def used(self, *, account_id: str, now: dt.datetime) -> int:
        sent, _ = self._keys(account_id)
        return int(self._redis.zcount(sent, f"({_ms(now) - self._window_ms}", "+inf"))

    def close(self) -> None:
        if self._owns_client:
            self._redis.close()


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _from_ms(value: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC)


def build_quota_gate(*, settings: Any, session_factory: sessionmaker[Session]) -> QuotaGate:
    """Redis when ``REPLYFLOW_REDIS_URL`` is set (shared by every worker), else our database."""
    quota: Quota = settings.private_reply_quota
    if settings.redis_url:
        return RedisQuotaGate(url=settings.redis_url, quota=quota)
    return DatabaseQuotaGate(session_factory=session_factory, quota=quota)
