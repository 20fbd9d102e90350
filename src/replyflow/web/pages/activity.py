"""``/app/activity``: every comment received and what replyflow did about it, refreshed live (htmx polling)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from replyflow.accounts import repository as accounts_repository
from replyflow.automation import service as rules_service
from replyflow.automation.models import RunFailure, RunStatus
from replyflow.automation.reasons import SkipReason
from replyflow.automation.run_schemas import RunOut, RunStepOut
from replyflow.web.rendering import CurrentUser, PageDb, PageRoute, render
from replyflow.web.sessions import SignedIn

router = APIRouter(route_class=PageRoute)

PATH = "/app/activity"
PAGE_SIZE = 40
POLL_SECONDS = 3

# (label, badge class, what it means) per run status, in the words people use.
STATUSES: dict[str, tuple[str, str, str]] = {
    RunStatus.RECEIVED.value: ("Received", "badge-neutral", "Waiting to be checked against your rules."),
    RunStatus.MATCHED.value: ("Matched", "badge-info", "A rule matched; replying now."),
    RunStatus.PUBLIC_REPLIED.value: ("Replied", "badge-info", "The public reply is posted; the DM is next."),
    RunStatus.DM_SENT.value: ("DM sent", "badge-ok", "The DM is sent; finishing up."),
    RunStatus.DONE.value: ("Done", "badge-ok", "Everything the rule asked for was done."),
    RunStatus.SKIPPED.value: ("Skipped", "badge-neutral", "No rule answers this comment."),
    RunStatus.FAILED.value: ("Failed", "badge-bad", "replyflow gave up on this comment."),
    RunStatus.WAITING_QUOTA.value: ("Waiting", "badge-warn", "Meta’s DM limit for this hour is reached."),
    RunStatus.PAUSED.value: ("Paused", "badge-warn", "The account must be reconnected; this resumes afterwards."),
    RunStatus.GATED.value: ("Waiting for a tap", "badge-info", "The follow gate is out; the DM unlocks when they tap."),
    RunStatus.UNLOCKING.value: ("Unlocking", "badge-info", "They tapped the gate; checking whether they follow you."),
}

# What started a run, as the feed names it.
TRIGGERS: dict[str, str] = {
    "comment": "Comment",
    "live_comment": "Live comment",
    "story_reply": "Story reply",
    "dm_keyword": "DM",
    "story_mention": "Story mention",
}
# Steps whose own explanation is worth showing (the follow gate's: what Meta said, and why replyflow stopped).
DETAILED_STEPS = frozenset({"follow_checked", "gate_limit_reached", "gate_tap_ignored"})

FAILURES: dict[str, str] = {
    RunFailure.OUTSIDE_WINDOW.value: "Too late: Meta allows a DM only within 7 days of the comment.",
    RunFailure.PERMISSION_DENIED.value: "Meta refused because a permission is missing. Check the account in Accounts.",
    RunFailure.COMMENT_REJECTED.value: (
        "Meta would not accept a DM for this comment (it may have been deleted or already answered)."
    ),
    RunFailure.TOO_MANY_ATTEMPTS.value: "Meta kept failing, so replyflow stopped after several tries.",
    RunFailure.RULE_REMOVED.value: "The rule was deleted before the DM went out.",
    RunFailure.ACCOUNT_REMOVED.value: "The account was disconnected before the DM went out.",
    RunFailure.INVALID_REQUEST.value: "Meta refused the message as invalid: check the rule’s DM text and buttons.",
    RunFailure.GRAPH_ERROR.value: "Meta answered with an error.",
    # Meta's final answers about one comment (replyflow.graph.errors.CommentFinalReason).
    "private_reply_already_sent_or_invalid": "Meta says this comment already got its one DM, or can no longer get one.",
    "user_unavailable": "This person can’t receive messages right now (Meta: “isn’t available”).",
    "invalid_comment": "The comment no longer exists (it may have been deleted).",
    "user_not_found": "Meta could not find this person.",
    "recipient_not_allowed": "Meta does not allow messages to this person.",
    "rejected": "Meta refused the DM for this comment.",
    "dm_outcome_unknown": (
        "The DM may or may not have reached them (Meta’s answer never came); it is not sent twice. Check Instagram."
    ),
    "unlock_outcome_unknown": (
        "The unlocked DM may or may not have reached them (Meta’s answer never came); it is not sent twice."
    ),
}

STEP_LABELS: dict[str, str] = {
    "received": "Comment received",
    "waiting_for_post_info": "Checking the post",
    "matched": "Rule matched",
    "skipped": "Skipped",
    "public_replied": "Public reply posted",
    "public_reply_reconciled": "Public reply confirmed",
    "public_reply_skipped": "No public reply",
    "public_reply_failed": "Public reply failed",
    "comment_hidden": "Comment hidden",
    "hide_failed": "Could not hide the comment",
    "dm_delayed": "DM scheduled",
    "waiting_quota": "Waiting for Meta’s DM limit",
    "dm_sent": "DM sent",
    "retry_scheduled": "Will try again",
    "throttled": "Meta asked to slow down",
    "paused": "Paused",
    "resumed": "Resumed",
    "done": "Done",
    "failed": "Failed",
    "gate_sent": "Follow gate sent",
    "gate_tapped": "Gate tapped",
    "gate_tap_ignored": "Another tap (ignored)",
    "follow_checked": "Asked Instagram: do they follow?",
    "gate_again_attempt": "Sending the gate again",
    "gate_sent_again": "Gate sent again",
    "unlock_attempt": "Unlocking the DM",
    "unlocked": "DM unlocked",
    "gate_limit_reached": "Stopped asking (3 gates)",
}
# Attempts are followed by their outcome; showing both would only add noise.
_QUIET_STEPS = frozenset({"rule_checked", "public_reply_attempt", "dm_attempt", "gate_again_attempt", "unlock_attempt"})


def reason_text(reason: str | None, detail: str | None = None) -> str | None:
    if not reason:
        return None
    try:
        return SkipReason(reason).description
    except ValueError:
        pass
    return FAILURES.get(reason) or detail or reason.replace("_", " ").capitalize() + "."


@dataclass(frozen=True)
class FeedItem:
    run: RunOut
    status_label: str
    status_class: str
    status_help: str
    reason: str | None
    rule_name: str | None
    username: str | None
    steps: list[RunStepOut]


@dataclass(frozen=True)
class Filters:
    account_id: str
    rule_id: str
    status: str

    def query(self) -> str:
        values = {"account_id": self.account_id, "rule_id": self.rule_id, "status": self.status}
        return urlencode({k: v for k, v in values.items() if v})


def _filters(account_id: str | None, rule_id: str | None, status: str | None) -> Filters:
    return Filters((account_id or "")[:64], (rule_id or "")[:64], status if status in STATUSES else "")


def feed_items(
    db: Session, signed_in: SignedIn, filters: Filters, *, cursor: str | None
) -> tuple[list[FeedItem], str | None]:
    runs, next_cursor = rules_service.list_runs(
        session=db,
        workspace_id=signed_in.workspace.id,
        account_id=filters.account_id or None,
        rule_id=filters.rule_id or None,
        status=filters.status or None,
        cursor=cursor,
        limit=PAGE_SIZE,
    )
    rule_names = {r.id: r.name for r in _all_rules(db, signed_in)}
    accounts = {
        a.id: a.username for a in accounts_repository.list_accounts(session=db, workspace_id=signed_in.workspace.id)
    }
    items = []
    for run in runs:
        label, css, help_text = STATUSES.get(run.status, (run.status, "badge-neutral", ""))
        if run.status == RunStatus.WAITING_QUOTA.value and run.next_attempt_at:
            help_text = "Meta’s DM limit is reached; the DM goes out when a slot frees up."
        items.append(
            FeedItem(
                run=run,
                status_label=label,
                status_class=css,
                status_help=help_text,
                reason=reason_text(run.reason, run.detail),
                rule_name=rule_names.get(run.rule_id or ""),
                username=accounts.get(run.account_id),
                steps=[s for s in run.steps if s.step not in _QUIET_STEPS],
            )
        )
    return items, next_cursor


def _all_rules(db: Session, signed_in: SignedIn) -> list[Any]:
    rules, _ = rules_service.list_rules(
        session=db, workspace_id=signed_in.workspace.id, account_id=None, cursor=None, limit=200
    )
    return rules


def _values(db: Session, signed_in: SignedIn, filters: Filters, cursor: str | None) -> dict[str, Any]:
    items, next_cursor = feed_items(db, signed_in, filters, cursor=cursor)
    return {
        "items": items,
        "next_cursor": next_cursor,
        "filters": filters,
        "cursor": cursor,
        "step_labels": STEP_LABELS,
        "triggers": TRIGGERS,
        "detailed_steps": DETAILED_STEPS,
        "poll_seconds": POLL_SECONDS,
    }


@router.get(PATH)
def activity_page(
    request: Request,
    db: PageDb,
    signed_in: CurrentUser,
    account_id: str | None = None,
    rule_id: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
) -> Response:
    filters = _filters(account_id, rule_id, status)
    values = _values(db, signed_in, filters, cursor[:512] if cursor else None)
    values.update(
        accounts=accounts_repository.list_accounts(session=db, workspace_id=signed_in.workspace.id),
        rules=_all_rules(db, signed_in),
        statuses=STATUSES,
    )
    return render(request, "activity.html", values, signed_in=signed_in)


@router.get(PATH + "/feed")
def activity_feed(
    request: Request,
    db: PageDb,
    signed_in: CurrentUser,
    account_id: str | None = None,
    rule_id: str | None = None,
    status: str | None = None,
) -> Response:
    """The newest runs, for the page's polling."""
    values = _values(db, signed_in, _filters(account_id, rule_id, status), None)
    return render(request, "partials/activity_feed.html", values, signed_in=signed_in)
