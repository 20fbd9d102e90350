"""Catch-up for webhooks Meta never delivered: poll the comments of targeted posts and feed unseen ones to the inbox.

Meta's delivery is best-effort and a subscription can be disabled after an outage, so every
``REPLYFLOW_RECONCILE_INTERVAL`` seconds each account with enabled rules is checked:

* which posts: ``specific`` media ids, bound ``next`` posts, and for ``any`` (or a ``next`` rule still waiting)
  the account's newest posts — which is also how a ``next`` rule finds the first post published after it was saved;
* which comments: newest first (Meta's order), back to the 7-day private-reply window or to the previous complete
  check, whichever is later;
* what happens to them: exactly what happens to a webhook — ``replyflow.webhooks.service.ingest_synthetic_comment``
  stores the event under the same natural key (so a late webhook is a duplicate) and dispatches it to intake.

Each account's check stays within a budget of Graph calls; when the budget runs out the watermark is not moved,
so the next check covers what this one could not.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from replyflow.accounts.models import Account
from replyflow.automation import clock
from replyflow.automation import repository as repo
from replyflow.automation.graph_calls import AccountGraph
from replyflow.automation.intake import RECONCILING_KEY, next_post_verdict
from replyflow.automation.matching import PostsMode
from replyflow.automation.models import AccountAutomationState, KnownMedia, Rule, Run
from replyflow.automation.sql import insert_ignore
from replyflow.automation.window import PRIVATE_REPLY_WINDOW
from replyflow.graph.client import GraphClient
from replyflow.graph.errors import GraphError, TokenInvalid
from replyflow.graph.types import Comment, Media, Paginated
from replyflow.logging import get_logger
from replyflow.runtime import Runtime
from replyflow.webhooks.events import CommentEvent

log = get_logger("replyflow.automation.reconcile")

#: Graph calls one account's check may make.
CALL_BUDGET = 25
#: For ``any`` rules: how many of the newest posts are polled.
ANY_RECENT_MEDIA = 10
COMMENTS_PAGE = 50


@dataclass
class ReconcileReport:
    account_id: str
    calls: int = 0
    media_checked: list[str] = field(default_factory=list)
    comments_fed: int = 0
    rules_bound: list[str] = field(default_factory=list)
    complete: bool = True
    error: str | None = None


def due_accounts(*, session: Session, now: dt.datetime, interval: dt.timedelta) -> list[str]:
    """Claim the accounts whose check is due (a conditional update, so parallel schedulers don't double up)."""
    account_ids = session.scalars(
        select(Rule.account_id).where(Rule.enabled.is_(True), Rule.deleted_at.is_(None)).distinct()
    ).all()
    claimed: list[str] = []
    for account_id in account_ids:
        insert_ignore(session, AccountAutomationState, {"account_id": account_id, "updated_at": now})
        result = session.execute(
            update(AccountAutomationState)
            .where(
                AccountAutomationState.account_id == account_id,
                or_(
                    AccountAutomationState.reconcile_started_at.is_(None),
                    AccountAutomationState.reconcile_started_at <= now - interval,
                ),
            )
            .values(reconcile_started_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0):
            claimed.append(account_id)
    return claimed


class Reconciler:
    """Polls one account at a time; ``graph`` is how it reaches Meta (the sandbox in tests)."""

    def __init__(self, *, runtime: Runtime, graph: AccountGraph, call_budget: int = CALL_BUDGET) -> None:
        self.runtime = runtime
        self.graph = graph
        self.call_budget = call_budget

    def reconcile_account(self, account_id: str) -> ReconcileReport:
        report = ReconcileReport(account_id=account_id)
        now = clock.now()
        with self.runtime.session() as session:
            account = session.get(Account, account_id)
            if account is None or account.automation_paused:
                report.complete = False
                return report
            rules = repo.rules_in_order(session=session, account_id=account_id)
            state = session.get(AccountAutomationState, account_id)
            watermark = state.last_reconciled_at if state is not None else None
        if not rules:
            return report
        interval = dt.timedelta(seconds=self.runtime.settings.reconcile_interval)
        since = now - PRIVATE_REPLY_WINDOW
        if watermark is not None:
            # Overlap one interval: comments posted while the previous check ran are looked at again.
            since = max(since, watermark - interval)

        try:
            targets = self._targets(account, rules, report, now)
            for media_id in targets:
                if not self._poll_media(account, media_id, since, report):
                    report.complete = False
                    break
        except TokenInvalid as exc:
            from replyflow.accounts.health import mark_token_invalid

            with self.runtime.session() as session:
                fresh = session.get(Account, account_id)
                if fresh is not None:
                    mark_token_invalid(session=session, account=fresh, reason=exc.reason)
            report.complete, report.error = False, exc.error_code
        except GraphError as exc:
            report.complete, report.error = False, exc.error_code
            log.info("reconcile_failed", account_id=account_id, code=exc.error_code)
        if report.complete:
            with self.runtime.session() as session:
                insert_ignore(session, AccountAutomationState, {"account_id": account_id, "updated_at": now})
                session.execute(
                    update(AccountAutomationState)
                    .where(AccountAutomationState.account_id == account_id)
                    .values(last_reconciled_at=now)
                )
        log.info(
            "account_reconciled",
            account_id=account_id,
            calls=report.calls,
            media=len(report.media_checked),
            fed=report.comments_fed,
            bound=report.rules_bound,
            complete=report.complete,
        )
        return report

    # -- which posts ---------------------------------------------------------------------------------------

    def _targets(self, account: Account, rules: list[Rule], report: ReconcileReport, now: dt.datetime) -> list[str]:
        targets: dict[str, None] = {}
        wants_recent = any(r.posts_mode == PostsMode.ANY.value for r in rules)
        waiting = [r for r in rules if r.waits_for_next_post]
        if wants_recent or waiting:
            recent = self._recent_media(account, report, now)
            if waiting:
                self._bind_next_rules(account, waiting, report, now)
            if wants_recent:
                for media in recent[:ANY_RECENT_MEDIA]:
                    targets[media.id] = None
        with self.runtime.session() as session:
            for rule in repo.rules_in_order(session=session, account_id=account.id):
                for media_id in rule.target_media_ids:
                    targets[media_id] = None
        return list(targets)

    def _recent_media(self, account: Account, report: ReconcileReport, now: dt.datetime) -> list[Media]:
        async def work(client: GraphClient, token: Any) -> Paginated[Media]:
            return await client.list_media(ig_id=account.instagram_id, token=token, limit=25)

        report.calls += 1
        page, _ = self.graph.call(account, work)
        with self.runtime.session() as session:
            for media in page.items:
                repo.remember_media(
                    session=session,
                    account_id=account.id,
                    media_id=media.id,
                    published_at=media.timestamp,
                    media_product_type=media.media_product_type,
                    now=now,
                )
        return list(page.items)

    def _bind_next_rules(
        self, account: Account, waiting: list[Rule], report: ReconcileReport, now: dt.datetime
    ) -> None:
        with self.runtime.session() as session:
            for stale in waiting:
                rule = session.get(Rule, stale.id)
                if rule is None or not rule.waits_for_next_post or rule.next_armed_at is None:
                    continue
                first = repo.first_media_after(session=session, account_id=account.id, after=rule.next_armed_at)
                if first is None:
                    continue
                verdict = next_post_verdict(session=session, account_id=account.id, rule=rule, media_id=first.media_id)
                if verdict and repo.bind_next_rule(session=session, rule=rule, media_id=first.media_id, now=now):
                    report.rules_bound.append(rule.id)
                    log.info("next_rule_bound", rule_id=rule.id, media_id=first.media_id, via="reconciler")

    # -- which comments ------------------------------------------------------------------------------------

    def _poll_media(self, account: Account, media_id: str, since: dt.datetime, report: ReconcileReport) -> bool:
        """Feed the unseen comments of one post; False when the budget ran out first."""
        report.media_checked.append(media_id)
        product_type = self._product_type(account.id, media_id)
        after: str | None = None
        while True:
            if report.calls >= self.call_budget:
                return False

            async def work(client: GraphClient, token: Any, cursor: str | None = after) -> Paginated[Comment]:
                return await client.list_comments(media_id=media_id, token=token, after=cursor, limit=COMMENTS_PAGE)

            report.calls += 1
            page, _ = self.graph.call(account, work)
            reached_end = False
            for comment in page.items:
                if comment.timestamp is not None and comment.timestamp < since:
                    reached_end = True  # newest first: everything after this is older
                    break
                if comment.author is not None and comment.author.id == account.instagram_id:
                    continue
                if self._feed(account, media_id, product_type, comment):
                    report.comments_fed += 1
            if reached_end or page.next_cursor is None:
                return True
            after = page.next_cursor

    def _product_type(self, account_id: str, media_id: str) -> str | None:
        with self.runtime.session() as session:
            known = session.get(KnownMedia, (account_id, media_id))
            return known.media_product_type if known is not None else None

    def _feed(self, account: Account, media_id: str, product_type: str | None, comment: Comment) -> bool:
        from replyflow.webhooks.service import comment_seen, ingest_synthetic_comment

        with self.runtime.session() as session:
            if session.scalar(
                select(Run.id).where(Run.account_id == account.id, Run.comment_id == comment.id)
            ) is not None or comment_seen(session=session, account=account, comment_id=comment.id):
                return False
            fresh = session.get(Account, account.id)
            if fresh is None:
                return False
            event = CommentEvent(
                object="instagram",
                entry_id=account.instagram_id,
                field="comments",
                comment_id=comment.id,
                text=comment.text,
                from_id=comment.author.id if comment.author else None,
                from_username=comment.author.username if comment.author else None,
                media_id=media_id,
                media_product_type=product_type,
                parent_id=comment.parent_id,
                entry_time=comment.timestamp,
            )
            session.info[RECONCILING_KEY] = True
            fed = ingest_synthetic_comment(session=session, account=fresh, comment=event, runtime=self.runtime)
        if fed:
            log.info("missed_comment_fed", account_id=account.id, media_id=media_id, comment_id=comment.id)
        return fed
