"""The scrape-time collector: gauges read from the database, so every process (web or worker) reports the same state.

Every query is bounded by an index (pending rows, active statuses, one account at a time, the last hour of
event ids); results are cached for a few seconds so a tight scrape interval cannot load the database.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from replyflow.accounts.models import Account, TokenStatus
from replyflow.automation import clock
from replyflow.automation.models import ACTIVE_STATUSES, AccountAutomationState, Run, RunStatus
from replyflow.config import Settings
from replyflow.logging import get_logger
from replyflow.monitoring.alerts import account_alerts, event_id_floor, quota_used
from replyflow.webhooks.models import DeliveryStatus, EventStatus, WebhookDelivery, WebhookEvent

if TYPE_CHECKING:
    from replyflow.runtime import Runtime

log = get_logger("replyflow.monitoring")

_LIVE_STATUSES = sorted(s.value for s in (*ACTIVE_STATUSES, RunStatus.PAUSED))


class DatabaseCollector(Collector):
    def __init__(self, runtime: Runtime, *, cache_seconds: float = 5.0) -> None:
        self._runtime = runtime
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._cached_at = -1e18

    def describe(self) -> Iterable[Metric]:
        return []  # names are dynamic per scrape; never collect at registration

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            if time.monotonic() - self._cached_at >= self._cache_seconds:
                self._cached = self._gather()
                self._cached_at = time.monotonic()
            return list(self._cached)

    def _gather(self) -> list[Metric]:
        up = GaugeMetricFamily("replyflow_database_up", "1 when the database answered the metrics queries.")
        started = time.perf_counter()
        try:
            with self._runtime.session() as session:
                metrics = self._from_database(session, now=clock.now())
        except Exception as exc:  # a scrape must answer even when the database does not
            log.warning("metrics_database_unavailable", error=exc)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        took = GaugeMetricFamily(
            "replyflow_metrics_collect_seconds", "How long the database part of the last scrape took."
        )
        took.add_metric([], time.perf_counter() - started)
        return [up, took, *metrics]

    def _from_database(self, session: Session, *, now: dt.datetime) -> list[Metric]:
        settings = self._runtime.settings
        accounts = list(session.scalars(select(Account).where(Account.disconnected_at.is_(None)).order_by(Account.id)))
        return [
            *self._runs(session),
            *self._inbox(session, now),
            *self._accounts(session, accounts, now),
            *self._quota(session, accounts, now, settings),
            *self._alerts(session, accounts, settings, now),
            *self._follow_ups(session),
        ]

    # -- runs -------------------------------------------------------------------------------------------------

    def _runs(self, session: Session) -> list[Metric]:
        from replyflow.analytics.models import AnalyticsDaily

        live = GaugeMetricFamily(
            "replyflow_runs",
            "Runs by account and status: live counts for unfinished statuses, the analytics rollup for final ones "
            "(which leaves out the account's own comments).",
            labels=["account_id", "status"],
        )
        for account_id, status, count in session.execute(
            select(Run.account_id, Run.status, func.count())
            .where(Run.status.in_(_LIVE_STATUSES))
            .group_by(Run.account_id, Run.status)
        ):
            live.add_metric([account_id, status], count)
        finished = {
            RunStatus.DONE.value: "done",
            RunStatus.SKIPPED.value: "skipped",
            RunStatus.FAILED.value: "dm_failures",
        }
        daily = AnalyticsDaily.__table__.c
        for row in session.execute(
            select(daily.account_id, *(func.sum(daily[column]) for column in finished.values())).group_by(
                daily.account_id
            )
        ):
            for status, count in zip(finished, row[1:], strict=True):
                live.add_metric([row[0], status], int(count or 0))
        return [live]

    # -- the inbox --------------------------------------------------------------------------------------------

    def _inbox(self, session: Session, now: dt.datetime) -> list[Metric]:
        pending = session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.status == DeliveryStatus.PENDING.value)
        )
        oldest = session.scalar(
            select(func.min(WebhookDelivery.received_at)).where(WebhookDelivery.status == DeliveryStatus.PENDING.value)
        )
        deliveries = GaugeMetricFamily(
            "replyflow_inbox_pending_deliveries", "Stored webhook deliveries not yet turned into events."
        )
        deliveries.add_metric([], int(pending or 0))
        lag = GaugeMetricFamily(
            "replyflow_inbox_lag_seconds",
            "Age of the oldest stored delivery still waiting to be processed (0 when the inbox is empty).",
        )
        lag.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)

        events_pending = GaugeMetricFamily(
            "replyflow_inbox_pending_events", "Events waiting for their consumer, by webhook field.", labels=["field"]
        )
        oldest_event: dt.datetime | None = None
        for field, count, first in session.execute(
            select(WebhookEvent.field, func.count(), func.min(WebhookEvent.created_at))
            .where(WebhookEvent.status == EventStatus.PENDING.value)
            .group_by(WebhookEvent.field)
        ):
            events_pending.add_metric([field], count)
            if first is not None and (oldest_event is None or first < oldest_event):
                oldest_event = first
        event_lag = GaugeMetricFamily(
            "replyflow_inbox_event_lag_seconds", "Age of the oldest event still waiting for its consumer."
        )
        event_lag.add_metric([], max(0.0, (now - oldest_event).total_seconds()) if oldest_event else 0.0)

        recent = GaugeMetricFamily(
            "replyflow_webhook_events_last_hour",
            "Webhook updates received in the last hour, by field and result (from the inbox, across processes).",
            labels=["field", "result"],
        )
        for field, status, count in session.execute(
            select(WebhookEvent.field, WebhookEvent.status, func.count())
            .where(WebhookEvent.id >= event_id_floor(now - dt.timedelta(hours=1)))
            .group_by(WebhookEvent.field, WebhookEvent.status)
        ):
            recent.add_metric([field, status], count)
        received = GaugeMetricFamily(
            "replyflow_webhook_deliveries_last_hour",
            "Signed deliveries stored in the last hour, by processing status.",
            labels=["status"],
        )
        for status in DeliveryStatus:
            stored = session.scalar(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(
                    WebhookDelivery.status == status.value,
                    WebhookDelivery.received_at >= now - dt.timedelta(hours=1),
                )
            )
            received.add_metric([status.value], int(stored or 0))
        return [deliveries, lag, events_pending, event_lag, recent, received]

    # -- accounts: token health and webhooks ----------------------------------------------------------------------

    def _accounts(self, session: Session, accounts: list[Account], now: dt.datetime) -> list[Metric]:
        status = GaugeMetricFamily(
            "replyflow_account_token_status",
            "1 for the account's current token status (valid, expiring, invalid, missing_permissions).",
            labels=["account_id", "username", "status"],
        )
        healthy = GaugeMetricFamily(
            "replyflow_account_token_healthy",
            "1 when the account's token works and needs no re-authorisation.",
            labels=["account_id", "username"],
        )
        expires = GaugeMetricFamily(
            "replyflow_account_token_expires_in_seconds",
            "Seconds until the account's token expires (absent when it does not expire).",
            labels=["account_id", "username"],
        )
        subscribed = GaugeMetricFamily(
            "replyflow_account_webhooks_subscribed",
            "1 when the account's Page is subscribed to replyflow's webhooks.",
            labels=["account_id", "username"],
        )
        silence = GaugeMetricFamily(
            "replyflow_account_last_webhook_age_seconds",
            "Seconds since the last webhook for the account (since it was connected, when none came yet).",
            labels=["account_id", "username"],
        )
        for account in accounts:
            names = [account.id, account.username or ""]
            for value in TokenStatus:
                status.add_metric([*names, value.value], 1 if account.token_status == value.value else 0)
            healthy.add_metric(names, 0 if account.automation_paused else 1)
            if account.token_expires_at is not None:
                expires.add_metric(names, (account.token_expires_at - now).total_seconds())
            subscribed.add_metric(names, 1 if account.webhooks_subscribed else 0)
            since = account.last_webhook_at or account.created_at
            silence.add_metric(names, max(0.0, (now - since).total_seconds()))
        return [status, healthy, expires, subscribed, silence]

    # -- quota and Meta's usage ------------------------------------------------------------------------------------

    def _quota(self, session: Session, accounts: list[Account], now: dt.datetime, settings: Settings) -> list[Metric]:
        limit = settings.private_reply_quota.count
        used = GaugeMetricFamily(
            "replyflow_private_reply_quota_used",
            "Private replies sent in the current quota window (REPLYFLOW_PRIVATE_REPLY_QUOTA), per account.",
            labels=["account_id", "username"],
        )
        ratio = GaugeMetricFamily(
            "replyflow_private_reply_quota_usage_ratio",
            "Share of the private-reply quota used in the current window (1 = saturated).",
            labels=["account_id", "username"],
        )
        ceiling = GaugeMetricFamily(
            "replyflow_private_reply_quota_limit", "Private replies allowed per window, per account."
        )
        ceiling.add_metric([], limit)
        meta = GaugeMetricFamily(
            "replyflow_meta_usage_percent",
            "Meta's last reported usage of its rate limits for the account (percent; throttling starts at 100).",
            labels=["account_id", "username"],
        )
        throttled = GaugeMetricFamily(
            "replyflow_account_throttled",
            "1 while replyflow waits because Meta asked it to slow down for the account.",
            labels=["account_id", "username"],
        )
        states = (
            {
                s.account_id: s
                for s in session.scalars(
                    select(AccountAutomationState).where(
                        AccountAutomationState.account_id.in_([a.id for a in accounts])
                    )
                )
            }
            if accounts
            else {}
        )
        for account in accounts:
            names = [account.id, account.username or ""]
            count = quota_used(session=session, account_id=account.id, quota=settings.private_reply_quota, now=now)
            used.add_metric(names, count)
            ratio.add_metric(names, count / limit if limit else 0.0)
            state = states.get(account.id)
            if state is not None and state.usage_percent is not None:
                meta.add_metric(names, state.usage_percent)
            until = state.throttled_until if state is not None else None
            throttled.add_metric(names, 1 if until is not None and until > now else 0)
        return [used, ratio, ceiling, meta, throttled]

    # -- alerts and follow-ups ---------------------------------------------------------------------------------------

    def _alerts(self, session: Session, accounts: list[Account], settings: Settings, now: dt.datetime) -> list[Metric]:
        family = GaugeMetricFamily(
            "replyflow_alerts",
            "Open alerts (1 each) by account, code and severity; see GET /api/alerts for the words.",
            labels=["account_id", "code", "severity"],
        )
        for account in accounts:
            for alert in account_alerts(session=session, account=account, quota=settings.private_reply_quota, now=now):
                family.add_metric([account.id, alert.code, alert.severity.value], 1)
        return [family]

    def _follow_ups(self, session: Session) -> list[Metric]:
        from replyflow.conversations.models import FollowUp, FollowUpStatus

        pending = GaugeMetricFamily(
            "replyflow_follow_ups_pending", "Follow-ups triggered and not yet sent (or waiting to retry)."
        )
        count = session.scalar(
            select(func.count()).select_from(FollowUp).where(FollowUp.status == FollowUpStatus.PENDING.value)
        )
        pending.add_metric([], int(count or 0))
        return [pending]
