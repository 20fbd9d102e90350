"""Rules (create, change, delete, list), the dry run that shares live matching, and the runs activity log."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Awaitable, Callable, Sequence

from pydantic import ValidationError
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from replyflow.accounts.models import Account
from replyflow.accounts.repository import get_account
from replyflow.automation import clock
from replyflow.automation import repository as repo
from replyflow.automation.intake import next_post_verdict
from replyflow.automation.matching import CommentContext, PostsMode, choose_rule
from replyflow.automation.models import Rule, RuleUserClaim, Run, RunStatus
from replyflow.automation.run_schemas import RuleTestIn, RuleTestOut, RunOut
from replyflow.automation.schemas import RuleCreate, RuleOut, RuleSpec, RuleUpdate, validation_failed
from replyflow.automation.templates import template_variables
from replyflow.errors import NotFound, ValidationFailed
from replyflow.pagination import paginate

#: Returns the subset of ``media_ids`` the account does *not* have (asks Meta).
MediaChecker = Callable[[Account, Sequence[str]], Awaitable[set[str]]]


def rule_out(rule: Rule) -> RuleOut:
    data = rule.spec_dict()
    data.update(id=rule.id, account_id=rule.account_id, created_at=rule.created_at, updated_at=rule.updated_at)
    return RuleOut.model_validate(data)


async def _check_media(*, account: Account, spec: RuleSpec, check: MediaChecker) -> None:
    if spec.posts.mode is not PostsMode.SPECIFIC:
        return
    unknown = await check(account, spec.posts.media_ids)
    for index, media_id in enumerate(spec.posts.media_ids):
        if media_id in unknown:
            raise ValidationFailed(
                f"posts.media_ids[{index}]: {media_id} is not a post or reel of @{account.username or account.id}.",
                field=f"posts.media_ids[{index}]",
                hint="Pick posts from GET /api/accounts/{id}/media.",
            )


def _refuse_next_media(spec: RuleSpec) -> None:
    if spec.posts.mode is PostsMode.NEXT and spec.posts.media_ids:
        raise ValidationFailed(
            "posts.media_ids: mode 'next' binds to the next new post by itself; leave media_ids empty.",
            field="posts.media_ids",
        )


async def create_rule(
    *, session: Session, workspace_id: str, body: RuleCreate, check_media: MediaChecker, end_read: Callable[[], None]
) -> Rule:
    """Save a rule for one of the workspace's accounts; ``specific`` posts must be the account's own."""
    account = get_account(session=session, workspace_id=workspace_id, account_id=body.account_id)
    spec = RuleSpec.model_validate(body.model_dump(exclude={"account_id"}))
    _refuse_next_media(spec)
    end_read()  # never hold the database while Meta answers
    await _check_media(account=account, spec=spec, check=check_media)
    now = clock.now()
    rule = Rule(workspace_id=workspace_id, account_id=account.id, created_at=now, updated_at=now)
    rule.apply_spec(spec)
    if spec.posts.mode is PostsMode.NEXT:
        rule.next_armed_at = now
    session.add(rule)
    session.flush()
    return rule


async def update_rule(
    *,
    session: Session,
    workspace_id: str,
    rule_id: str,
    body: RuleUpdate,
    check_media: MediaChecker,
    end_read: Callable[[], None],
) -> Rule:
    """Apply the fields sent; the merged rule is validated as a whole (422 naming the field at fault)."""
    rule = repo.get_rule(session=session, workspace_id=workspace_id, rule_id=rule_id)
    current = rule.spec()
    try:
        spec = body.apply_to(current)
    except ValidationError as exc:
        raise validation_failed(exc) from None
    rearm = False
    if body.posts is not None and spec.posts.mode is PostsMode.NEXT:
        if not spec.posts.media_ids:
            rearm = True  # "wait for the next post" again, counting from now
        elif rule.posts_mode != PostsMode.NEXT.value or spec.posts.media_ids != rule.target_media_ids:
            _refuse_next_media(spec)
    account = session.get(Account, rule.account_id)
    assert account is not None
    if body.posts is not None and spec.posts.media_ids != current.posts.media_ids:
        end_read()
        await _check_media(account=account, spec=spec, check=check_media)
        rule = repo.get_rule(session=session, workspace_id=workspace_id, rule_id=rule_id)
    now = clock.now()
    was_next_bound = (rule.bound_media_id, rule.bound_at, rule.next_armed_at)
    rule.apply_spec(spec)
    if spec.posts.mode is PostsMode.NEXT:
        if rearm or rule.next_armed_at is None:
            rule.next_armed_at, rule.bound_media_id, rule.bound_at = now, None, None
        else:
            rule.bound_media_id, rule.bound_at, rule.next_armed_at = was_next_bound
    else:
        rule.next_armed_at, rule.bound_media_id, rule.bound_at = None, None, None
    rule.updated_at = now
    session.flush()
    return rule


def delete_rule(*, session: Session, workspace_id: str, rule_id: str) -> None:
    """Soft delete: the rule stops matching, and runs keep showing which rule handled them."""
    rule = repo.get_rule(session=session, workspace_id=workspace_id, rule_id=rule_id)
    now = clock.now()
    rule.deleted_at = now
    rule.enabled = False
    rule.updated_at = now


def list_rules(
    *, session: Session, workspace_id: str, account_id: str | None, cursor: str | None, limit: int
) -> tuple[list[Rule], str | None]:
    query = select(Rule).where(Rule.workspace_id == workspace_id, Rule.deleted_at.is_(None))
    if account_id:
        query = query.where(Rule.account_id == account_id)
    rows, next_cursor = paginate(session, query, id_column=Rule.id, cursor=cursor, limit=limit, descending=False)
    return list(rows), next_cursor


# -- the dry run ----------------------------------------------------------------------------------------------


def test_rule(*, session: Session, workspace_id: str, body: RuleTestIn) -> RuleTestOut:
    """Would this rule handle this comment, and if not, why? The live matcher's own code, nothing sent or stored."""
    raw = body.rule
    saved: Rule | None = None
    account: Account | None = None
    if set(raw) == {"id"}:
        saved = repo.get_rule(session=session, workspace_id=workspace_id, rule_id=str(raw["id"]))
        account = session.get(Account, saved.account_id)
        spec = saved.spec()
    else:
        try:
            if "account_id" in raw:
                created = RuleCreate.model_validate(raw)
                account = get_account(session=session, workspace_id=workspace_id, account_id=created.account_id)
                spec = RuleSpec.model_validate(created.model_dump(exclude={"account_id"}))
            else:
                spec = RuleSpec.model_validate(raw)
        except ValidationError as exc:
            error = validation_failed(exc)
            if error.field:
                error.field = f"rule.{error.field}"
                error.message = f"rule.{error.message}"
            raise error from None
    sample = body.comment
    now = clock.now()

    def handled_before() -> bool:
        if saved is None or sample.from_id is None:
            return False
        found = session.get(RuleUserClaim, (saved.id, sample.media_id, sample.from_id))
        return found is not None

    binds = False
    if saved is not None and saved.waits_for_next_post and account is not None:
        binds = bool(next_post_verdict(session=session, account_id=account.id, rule=saved, media_id=sample.media_id))
    context = CommentContext(
        text=sample.text,
        media_id=sample.media_id,
        from_id=sample.from_id,
        username=sample.username,
        parent_id=sample.parent_id,
        created_at=now,
        binds_next_post=binds,
        already_handled_user=handled_before,
    )
    key = saved.id if saved is not None else "rule"
    decision = choose_rule([(key, spec, context)], now=now, account_ig_id=account.own_ids if account else "")
    result = decision.result
    public_text: str | None = None
    private_text: str | None = None
    if result.match:
        variables = template_variables(username=sample.username, first_name=None, keyword=result.keyword)
        if spec.public_reply is not None:
            public_text = spec.public_reply.render(variables, rng=random.SystemRandom())
        if spec.private_reply is not None:
            private_text = spec.private_reply.render_text(variables)
    return RuleTestOut(
        match=result.match,
        reason=result.reason.value if result.reason else None,
        public_reply=public_text,
        private_reply=private_text,
        detail=result.detail,
        keyword=result.keyword,
        rule_id=saved.id if saved is not None else None,
    )


# -- the activity log -----------------------------------------------------------------------------------------


def list_runs(
    *,
    session: Session,
    workspace_id: str,
    account_id: str | None,
    rule_id: str | None,
    status: str | None,
    cursor: str | None,
    limit: int,
    media_id: str | None = None,
    search: str | None = None,
    received_from: dt.datetime | None = None,
    received_before: dt.datetime | None = None,
    hide_reasons: Sequence[str] = (),
) -> tuple[list[RunOut], str | None]:
    """Newest first; every comment received for the workspace's accounts, skipped ones included.

    ``search`` finds the words in the comment or the commenter's username (``@name`` looks at usernames only);
    ``received_from``/``received_before`` bound when the comment arrived; ``hide_reasons`` leaves out runs
    skipped for these reasons (the dashboard hides the account's own replies by default).
    """
    if status is not None and status not in {s.value for s in RunStatus}:
        raise ValidationFailed(
            f"status: {status!r} is not a run status.",
            field="status",
            hint="Use one of: " + ", ".join(s.value for s in RunStatus) + ".",
        )
    query = select(Run).where(Run.workspace_id == workspace_id)
    if account_id:
        query = query.where(Run.account_id == account_id)
    if rule_id:
        query = query.where(Run.rule_id == rule_id)
    if status:
        query = query.where(Run.status == status)
    if media_id:
        query = query.where(Run.media_id == media_id)
    if search and search.strip():
        query = query.where(_matches_search(search.strip()))
    if received_from is not None:
        query = query.where(Run.created_at >= received_from)
    if received_before is not None:
        query = query.where(Run.created_at < received_before)
    if hide_reasons:
        query = query.where(or_(Run.reason.is_(None), Run.reason.not_in(list(hide_reasons))))
    rows, next_cursor = paginate(session, query, id_column=Run.id, cursor=cursor, limit=limit)
    runs: list[Run] = list(rows)
    steps = repo.steps_of(session=session, run_ids=[run.id for run in runs])
    return [RunOut.of(run, steps[run.id]) for run in runs], next_cursor


def _matches_search(text: str) -> ColumnElement[bool]:
    """Case-insensitive "contains" on the comment and the username; ``@maria`` searches usernames only."""

    def like(value: str) -> str:
        escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"%{escaped.lower()}%"

    if text.startswith("@"):
        return func.lower(Run.username).like(like(text[1:]), escape="\\")
    pattern = like(text)
    return or_(func.lower(Run.text).like(pattern, escape="\\"), func.lower(Run.username).like(pattern, escape="\\"))


def get_run(*, session: Session, workspace_id: str, run_id: str) -> RunOut:
    run = session.get(Run, run_id)
    if run is None or run.workspace_id != workspace_id:
        raise NotFound("No run with this id.", hint="List runs with GET /api/runs.")
    return RunOut.of(run, repo.steps_of(session=session, run_ids=[run.id])[run.id])
