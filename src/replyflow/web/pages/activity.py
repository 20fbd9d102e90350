"""``/app/activity``: every comment received and what replyflow did about it, refreshed live (htmx polling)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from replyflow.accounts import repository as accounts_repository
from replyflow.automation import service as rules_service
from replyflow.automation.models import RunFailure, RunStatus
from replyflow.automation.reasons import SkipReason
from replyflow.automation.run_schemas import RunOut, RunStepOut
from replyflow.web.pages.labels import RuleLabel, newest_posts, post_previews, rule_labels
from replyflow.web.pages.rules import Post
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
    "retried": "Retried by hand",
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
    rule: RuleLabel | None
    username: str | None
    steps: list[RunStepOut]
    post: Post | None = None

    @property
    def rule_name(self) -> str | None:
        return self.rule.name if self.rule else None


# Comments the account wrote itself (its own public replies, mostly) are hidden unless asked for.
OWN_REASONS = (SkipReason.OWN_COMMENT.value,)


@dataclass(frozen=True)
class Filters:
    account_id: str = ""
    rule_id: str = ""
    status: str = ""
    media_id: str = ""
    q: str = ""
    since: str = ""  # YYYY-MM-DD, inclusive
    until: str = ""  # YYYY-MM-DD, inclusive
    show_own: bool = False
    problems: dict[str, str] = field(default_factory=dict, compare=False)

    def query(self) -> str:
        values = {
            "account_id": self.account_id,
            "rule_id": self.rule_id,
            "status": self.status,
            "media_id": self.media_id,
            "q": self.q,
            "since": self.since,
            "until": self.until,
            "own": "show" if self.show_own else "",
        }
        return urlencode({k: v for k, v in values.items() if v})

    def narrowing(self) -> bool:
        """Whether anything but the "show my own replies" switch is set."""
        narrowed = (self.account_id, self.rule_id, self.status, self.media_id, self.q, self.since, self.until)
        return any(narrowed)

    def day(self, value: str) -> dt.datetime | None:
        try:
            return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), tzinfo=dt.UTC) if value else None
        except ValueError:
            return None


def _filters(
    account_id: str | None = None,
    rule_id: str | None = None,
    status: str | None = None,
    media_id: str | None = None,
    q: str | None = None,
    since: str | None = None,
    until: str | None = None,
    own: str | None = None,
) -> Filters:
    problems: dict[str, str] = {}
    days = {"since": (since or "").strip()[:10], "until": (until or "").strip()[:10]}
    for name, value in days.items():
        if value and Filters().day(value) is None:
            problems[name] = "Use a date like 2026-12-04."
            days[name] = ""
    if days["since"] and days["until"] and days["since"] > days["until"]:
        problems["until"] = "“To” is before “From”: swap them."
        days["until"] = ""
    return Filters(
        (account_id or "")[:64],
        (rule_id or "")[:64],
        status if status in STATUSES else "",
        (media_id or "").strip()[:128],
        " ".join((q or "").split())[:100],
        days["since"],
        days["until"],
        own == "show",
        problems,
    )


# The query string of the page and of its polling: ?q=…&since=…&media_id=… (bad values are explained, not 422).
FeedFilters = Annotated[Filters, Depends(_filters)]


async def feed_items(
    request: Request, db: Session, signed_in: SignedIn, filters: Filters, *, cursor: str | None, limit: int = PAGE_SIZE
) -> tuple[list[FeedItem], str | None]:
    until = filters.day(filters.until)
    runs, next_cursor = rules_service.list_runs(
        session=db,
        workspace_id=signed_in.workspace.id,
        account_id=filters.account_id or None,
        rule_id=filters.rule_id or None,
        status=filters.status or None,
        cursor=cursor,
        limit=limit,
        media_id=filters.media_id or None,
        search=filters.q or None,
        received_from=filters.day(filters.since),
        received_before=until + dt.timedelta(days=1) if until else None,
        hide_reasons=() if filters.show_own else OWN_REASONS,
    )
    rules = rule_labels(db, signed_in.workspace.id, (run.rule_id for run in runs))
    account_rows = accounts_repository.list_accounts(session=db, workspace_id=signed_in.workspace.id)
    accounts = {a.id: a.username for a in account_rows}
    posts = await post_previews(request, db, account_rows, ((run.account_id, run.media_id) for run in runs))
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
                rule=rules.get(run.rule_id or ""),
                username=accounts.get(run.account_id),
                steps=[s for s in run.steps if s.step not in _QUIET_STEPS],
                post=posts.get(run.media_id),
            )
        )
    return items, next_cursor


def _all_rules(db: Session, signed_in: SignedIn) -> list[Any]:
    rules, _ = rules_service.list_rules(
        session=db, workspace_id=signed_in.workspace.id, account_id=None, cursor=None, limit=200
    )
    return rules


async def _values(
    request: Request, db: Session, signed_in: SignedIn, filters: Filters, cursor: str | None
) -> dict[str, Any]:
    items, next_cursor = await feed_items(request, db, signed_in, filters, cursor=cursor)
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
async def activity_page(
    request: Request, db: PageDb, signed_in: CurrentUser, filters: FeedFilters, cursor: str | None = None
) -> Response:
    accounts = accounts_repository.list_accounts(session=db, workspace_id=signed_in.workspace.id)
    rules = _all_rules(db, signed_in)
    values = await _values(request, db, signed_in, filters, cursor[:512] if cursor else None)
    chosen = [a for a in accounts if a.id == filters.account_id] or accounts
    values.update(
        accounts=accounts,
        rules=rules,
        statuses=STATUSES,
        posts=await _post_choices(request, db, chosen, filters.media_id),
    )
    return render(request, "activity.html", values, signed_in=signed_in)


async def _post_choices(request: Request, db: Session, accounts: list[Any], media_id: str) -> list[Post]:
    """The posts the filter offers: each account's newest (as the picker lists them), plus the chosen one."""
    found: list[Post] = []
    for account in accounts[:5]:
        found.extend(await newest_posts(request, db, account))
    if media_id and all(p.id != media_id for p in found):
        found.append(Post(media_id, "", "Post", None, None))
    return found


@router.get(PATH + "/feed")
async def activity_feed(request: Request, db: PageDb, signed_in: CurrentUser, filters: FeedFilters) -> Response:
    """The newest runs, for the page's polling."""
    values = await _values(request, db, signed_in, filters, None)
    return render(request, "partials/activity_feed.html", values, signed_in=signed_in)
