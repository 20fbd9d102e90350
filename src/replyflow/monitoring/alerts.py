"""Alerts an operator acts on, per connected account: dead or expiring tokens, silent webhooks, failing rules, quota.

:func:`account_alerts` is what ``/api/accounts``, ``/api/alerts``, the dashboard and the ``replyflow_alerts``
metric show. Every alert says what is wrong in plain words and what to do about it.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from replyflow.accounts.health import reconnect_hint
from replyflow.accounts.models import Account, TokenStatus
from replyflow.automation import clock
from replyflow.automation.models import AccountAutomationState, PrivateReplySlot, Rule, Run, RunFailure, RunStatus
from replyflow.config import Quota
from replyflow.ids import _b32
from replyflow.webhooks.models import EventSource, WebhookEvent

TOKEN_EXPIRY_WARNING = dt.timedelta(days=7)
#: No webhook for this long on a subscribed account is suspicious (Meta disables a subscription after ~1 h of
#: failed deliveries); polled comments that no webhook delivered make it certain.
WEBHOOK_SILENCE = dt.timedelta(hours=12)
#: A rule failing this many times in a row (within a day, with no success in between) is failing repeatedly.
RULE_FAILURE_STREAK = 5
RULE_FAILURE_WINDOW = dt.timedelta(hours=24)
QUOTA_WARNING_SHARE = 0.9
META_USAGE_WARNING_PERCENT = 80.0
# Failure reasons that point at the setup (not at one comment): these make a failing rule critical.
_SYSTEMIC_FAILURES = frozenset(
    {
        RunFailure.PERMISSION_DENIED.value,
        RunFailure.INVALID_REQUEST.value,
        RunFailure.GRAPH_ERROR.value,
        RunFailure.TOO_MANY_ATTEMPTS.value,
    }
)
RECONNECT_HINT = "Reconnect the account: convert a fresh User token (or use Connect with Facebook) and save the Page."


class Severity(enum.StrEnum):
    CRITICAL = "critical"  # automation is not working
    WARNING = "warning"  # it works now, but will not for long, or only partly
    INFO = "info"


_ORDER = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True)
class Alert:
    code: str
    severity: Severity
    message: str
    hint: str
    account_id: str
    rule_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["severity"] = self.severity.value
        return out


def _when(moment: dt.datetime) -> str:
    return moment.strftime("%d %b %Y %H:%M UTC")


def _hours(delta: dt.timedelta) -> int:
    return max(1, int(delta.total_seconds() // 3600))


def account_alerts(
    *, session: Session, account: Account, quota: Quota | None = None, now: dt.datetime | None = None
) -> list[Alert]:
    """Everything an operator should know about ``account`` right now, most severe first."""
    if account.disconnected_at is not None:
        return []
    now = now or clock.now()
    quota = quota or _configured_quota()
    alerts = [*_token_alerts(account, now), *_webhook_alerts(session, account, now)]
    alerts += _rule_alerts(session, account, now)
    alerts += _quota_alerts(session, account, quota, now)
    return sorted(alerts, key=lambda alert: (_ORDER[alert.severity], alert.code, alert.rule_id or ""))


def workspace_alerts(
    *, session: Session, workspace_id: str, account_id: str | None = None, quota: Quota | None = None
) -> list[Alert]:
    query = select(Account).where(Account.workspace_id == workspace_id, Account.disconnected_at.is_(None))
    if account_id:
        query = query.where(Account.id == account_id)
    alerts: list[Alert] = []
    for account in session.scalars(query.order_by(Account.id)):
        alerts += account_alerts(session=session, account=account, quota=quota)
    return alerts


def _configured_quota() -> Quota:
    from replyflow import runtime

    try:
        return runtime.current().settings.private_reply_quota
    except RuntimeError:
        from replyflow.config import get_settings

        return get_settings().private_reply_quota


# -- token ----------------------------------------------------------------------------------------------------


def _token_alerts(account: Account, now: dt.datetime) -> list[Alert]:
    who = f"@{account.username}" if account.username else "This account"
    status = account.token_status
    expires = account.token_expires_at
    if status == TokenStatus.MISSING_PERMISSIONS.value:
        missing = ", ".join(account.missing_permissions or []) or "some permissions"
        return [
            Alert(
                "token_missing_permissions",
                Severity.CRITICAL,
                f"{who}'s token lacks {missing}; automation is paused.",
                "Reconnect and grant every permission replyflow asks for in the Facebook dialog.",
                account.id,
                data={"missing_permissions": list(account.missing_permissions or [])},
            )
        ]
    if status == TokenStatus.INVALID.value or account.reauthorization_required or (expires and expires <= now):
        reason = account.token_status_reason or (
            f"it expired on {_when(expires)}" if expires and expires <= now else "Meta no longer accepts it"
        )
        return [
            Alert(
                "token_invalid",
                Severity.CRITICAL,
                f"Instagram stopped accepting {who}'s token ({reason}); no comment is answered until it is fixed.",
                reconnect_hint(account.login),
                account.id,
            )
        ]
    if status == TokenStatus.EXPIRING.value or (expires is not None and expires - now <= TOKEN_EXPIRY_WARNING):
        when = f" on {_when(expires)}" if expires else " soon"
        return [
            Alert(
                "token_expiring",
                Severity.WARNING,
                f"{who}'s token expires{when}; automation stops then.",
                _expiring_hint(account),
                account.id,
                data={"expires_at": expires.isoformat() if expires else None},
            )
        ]
    return []


def _expiring_hint(account: Account) -> str:
    if account.is_instagram_login:
        why = f" The last refresh failed: {account.token_status_reason}" if account.token_status_reason else ""
        return (
            "replyflow refreshes Instagram tokens by itself 10 days before they expire and retries every hour."
            f"{why} Run `replyflow accounts refresh` to try now. If it keeps failing: " + reconnect_hint(account.login)
        )
    return RECONNECT_HINT + " A Page token made from a long-lived User token does not expire."


# -- webhooks -------------------------------------------------------------------------------------------------


def event_id_floor(moment: dt.datetime) -> str:
    """The smallest event id created at ``moment`` or later (ids start with their creation time)."""
    return f"evt_{_b32(int(moment.timestamp() * 1000), 10)}"


def _webhook_alerts(session: Session, account: Account, now: dt.datetime) -> list[Alert]:
    who = f"@{account.username}" if account.username else "this account"
    if not account.webhooks_subscribed:
        return [
            Alert(
                "webhooks_not_subscribed",
                Severity.WARNING,
                f"The Page of {who} is not subscribed to replyflow's webhooks; new comments arrive only by polling "
                "(every REPLYFLOW_RECONCILE_INTERVAL seconds).",
                "Reconnect the account (saving the Page subscribes it), then run 'replyflow accounts doctor'.",
                account.id,
            )
        ]
    since = account.last_webhook_at or account.created_at
    silence = now - since
    if silence < WEBHOOK_SILENCE:
        return []
    polled = session.scalar(
        select(func.count())
        .select_from(WebhookEvent)
        .where(
            WebhookEvent.field == "comments",
            WebhookEvent.id >= event_id_floor(since),
            WebhookEvent.account_id == account.id,
            WebhookEvent.source == EventSource.RECONCILER.value,
        )
    )
    hint = (
        "Check the Webhooks page of your Meta app (Meta turns a subscription off after about an hour of failed "
        "deliveries) and that /webhooks/instagram is reachable from the internet; reconnecting the account "
        "subscribes the Page again."
    )
    last = f"since {_when(account.last_webhook_at)}" if account.last_webhook_at else "since it was connected"
    if polled:
        return [
            Alert(
                "webhooks_not_arriving",
                Severity.CRITICAL,
                f"No webhook has arrived for {who} {last}, yet polling found {polled} new comment(s): Meta is not "
                "delivering them.",
                hint,
                account.id,
                data={"silent_hours": _hours(silence), "polled_comments": int(polled)},
            )
        ]
    return [
        Alert(
            "webhooks_silent",
            Severity.WARNING,
            f"No webhook has arrived for {who} for {_hours(silence)} hours ({last}). That is fine if nobody "
            "commented; otherwise Meta may have disabled the subscription.",
            hint,
            account.id,
            data={"silent_hours": _hours(silence)},
        )
    ]


# -- rules ----------------------------------------------------------------------------------------------------


def _rule_alerts(session: Session, account: Account, now: dt.datetime) -> list[Alert]:
    rules = session.scalars(
        select(Rule).where(Rule.account_id == account.id, Rule.deleted_at.is_(None), Rule.enabled.is_(True))
    ).all()
    alerts: list[Alert] = []
    for rule in rules:
        last_success = session.scalar(
            select(func.max(Run.finished_at)).where(Run.rule_id == rule.id, Run.status == RunStatus.DONE.value)
        )
        floor = now - RULE_FAILURE_WINDOW
        if last_success is not None and last_success > floor:
            floor = last_success
        reasons = Counter(
            reason or "unknown"
            for reason in session.scalars(
                select(Run.reason).where(
                    Run.rule_id == rule.id, Run.status == RunStatus.FAILED.value, Run.finished_at > floor
                )
            )
        )
        failures = sum(reasons.values())
        if failures < RULE_FAILURE_STREAK:
            continue
        reason, _count = reasons.most_common(1)[0]
        alerts.append(
            Alert(
                "rule_failing",
                Severity.CRITICAL if reason in _SYSTEMIC_FAILURES else Severity.WARNING,
                f"Rule '{rule.name}' failed {failures} times in a row (mostly: {reason.replace('_', ' ')}).",
                "Open the activity log (GET /api/runs?rule_id=…&status=failed) for Meta's answer; "
                "'permission denied' usually means the account must be reconnected with all permissions.",
                account.id,
                rule_id=rule.id,
                data={"failures": failures, "reasons": dict(reasons)},
            )
        )
    return alerts


# -- quota and Meta's throttling -----------------------------------------------------------------------------------


def quota_used(*, session: Session, account_id: str, quota: Quota, now: dt.datetime) -> int:
    """Private replies sent for the account inside the current sliding window."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(PrivateReplySlot)
            .where(
                PrivateReplySlot.account_id == account_id,
                PrivateReplySlot.at > now - dt.timedelta(seconds=quota.seconds),
                PrivateReplySlot.at <= now,
                PrivateReplySlot.kind == "sent",
            )
        )
        or 0
    )


def _quota_alerts(session: Session, account: Account, quota: Quota, now: dt.datetime) -> list[Alert]:
    who = f"@{account.username}" if account.username else "this account"
    alerts: list[Alert] = []
    used = quota_used(session=session, account_id=account.id, quota=quota, now=now)
    waiting = int(
        session.scalar(
            select(func.count())
            .select_from(Run)
            .where(Run.account_id == account.id, Run.status == RunStatus.WAITING_QUOTA.value)
        )
        or 0
    )
    if waiting or used >= quota.count * QUOTA_WARNING_SHARE:
        queued = f" {waiting} DM(s) are queued and go out as the budget frees up." if waiting else ""
        alerts.append(
            Alert(
                "quota_saturated",
                Severity.WARNING,
                f"{who} used {used} of its {quota.count} private replies per {quota.seconds} s.{queued}",
                "Nothing to fix: replyflow spreads DMs to stay inside Meta's limit. Expect DMs to arrive later "
                "than usual while a post is this busy.",
                account.id,
                data={"used": used, "limit": quota.count, "window_seconds": quota.seconds, "waiting": waiting},
            )
        )
    state = session.get(AccountAutomationState, account.id)
    if state is not None and state.throttled_until is not None and state.throttled_until > now:
        alerts.append(
            Alert(
                "meta_rate_limited",
                Severity.WARNING,
                f"Meta asked replyflow to slow down for {who}; calls resume at {_when(state.throttled_until)}.",
                "Nothing to fix: replyflow waits and continues by itself.",
                account.id,
                data={"throttled_until": state.throttled_until.isoformat(), "usage_percent": state.usage_percent},
            )
        )
    elif (
        state is not None
        and state.usage_percent is not None
        and state.usage_percent >= META_USAGE_WARNING_PERCENT
        and state.usage_at is not None
        and now - state.usage_at < dt.timedelta(hours=1)
    ):
        alerts.append(
            Alert(
                "meta_usage_high",
                Severity.INFO,
                f"{who} is at {state.usage_percent:.0f}% of one of Meta's rate limits.",
                "Nothing to fix: replyflow spaces calls out above 80% so Meta does not have to refuse them.",
                account.id,
                data={"usage_percent": state.usage_percent},
            )
        )
    return alerts
