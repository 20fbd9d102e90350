"""``/app``: the overview, a short checklist that always says what to do next."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from sqlalchemy import func, or_, select
from starlette.responses import Response

from replyflow.accounts import repository as accounts_repository
from replyflow.automation import service as rules_service
from replyflow.automation.attention import stuck_by_account
from replyflow.automation.models import Run
from replyflow.web.pages.activity import OWN_REASONS
from replyflow.web.rendering import CurrentUser, PageDb, PageRoute, render, settings_of

router = APIRouter(route_class=PageRoute)


@dataclass(frozen=True)
class Step:
    title: str
    done: bool
    text: str
    href: str
    action: str


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@router.get("/app")
def overview(request: Request, db: PageDb, signed_in: CurrentUser) -> Response:
    workspace_id = signed_in.workspace.id
    accounts = accounts_repository.list_accounts(session=db, workspace_id=workspace_id)
    rules, _ = rules_service.list_rules(session=db, workspace_id=workspace_id, account_id=None, cursor=None, limit=200)
    enabled = sum(1 for r in rules if r.enabled)
    # The account's own replies come back as comments too; they are not what people wrote.
    comments = (
        db.scalar(
            select(func.count())
            .select_from(Run)
            .where(Run.workspace_id == workspace_id, or_(Run.reason.is_(None), Run.reason.not_in(OWN_REASONS)))
        )
        or 0
    )
    dms = (
        db.scalar(select(func.count()).select_from(Run).where(Run.workspace_id == workspace_id, Run.dm_state == "sent"))
        or 0
    )
    paused = [a for a in accounts if a.automation_paused]
    stuck = stuck_by_account(session=db, workspace_id=workspace_id)
    sandbox = settings_of(request).is_sandbox
    steps = [
        Step(
            "Connect your Instagram account",
            bool(accounts),
            f"{_plural(len(accounts), 'account')} connected."
            if accounts
            else "replyflow reaches your Instagram professional account through the Facebook Page it is linked to.",
            "/app/integrations",
            "Connect another" if accounts else "Connect an account",
        ),
        Step(
            "Create a rule",
            enabled > 0,
            f"{_plural(enabled, 'rule')} on."
            if enabled
            else "Say which comments to answer (for example the word LINK on your latest reel) and what to send by DM.",
            "/app/rules/new" if not rules else "/app/rules",
            "See your rules" if rules else "Create a rule",
        ),
        Step(
            "Watch it work",
            comments > 0,
            f"{_plural(comments, 'comment')} received, {_plural(dms, 'DM')} sent."
            if comments
            else (
                "Simulate a comment in the sandbox and watch the reply and the DM go out."
                if sandbox
                else "When someone comments, it appears in Activity within seconds, with what replyflow did."
            ),
            "/app/sandbox" if sandbox and not comments else "/app/activity",
            "Open the sandbox" if sandbox and not comments else "Open Activity",
        ),
    ]
    next_step = next((index for index, step in enumerate(steps) if not step.done), None)
    stuck_accounts = [(a, stuck[a.id]) for a in accounts if a.id in stuck]
    values = {"steps": steps, "paused": paused, "next_step": next_step, "stuck": stuck_accounts}
    return render(request, "overview.html", values, signed_in=signed_in)
