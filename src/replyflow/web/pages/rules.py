"""``/app/rules``: the list with on/off switches and counts, the builder with its post picker, and the dry run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session
from starlette.responses import Response

from replyflow.accounts import repository as accounts_repository
from replyflow.accounts import service as accounts_service
from replyflow.accounts.crypto import cipher_for
from replyflow.accounts.models import Account
from replyflow.automation import repository as rules_repository
from replyflow.automation import service as rules_service
from replyflow.automation.models import Rule, Run
from replyflow.automation.reasons import SkipReason
from replyflow.automation.run_schemas import RuleTestIn, RuleTestOut
from replyflow.automation.schemas import RuleCreate, RuleUpdate, validation_failed
from replyflow.errors import NotFound, ReplyflowError, ValidationFailed
from replyflow.graph.client import GraphClient
from replyflow.graph.errors import GraphError
from replyflow.graph.types import Media
from replyflow.web.pages.rule_form import (
    MATCH_CHOICES,
    MAX_BUTTONS,
    MAX_REPLY_VARIANTS,
    MESSAGE_TRIGGERS,
    POSTS_CHOICES,
    TRIGGER_CHOICES,
    RuleForm,
    field_errors,
)
from replyflow.web.rendering import (
    CurrentUser,
    PageDb,
    PageRoute,
    SubmittedForm,
    graph_for,
    is_htmx,
    page_allowed,
    redirect,
    render,
    settings_of,
)
from replyflow.web.sessions import SignedIn
from replyflow.workspaces.roles import Permission

router = APIRouter(route_class=PageRoute)

PATH = "/app/rules"
MEDIA_PAGE_SIZE = 24
# How far back the "is this post really yours" check looks when the post is not among the newest.
MEDIA_CHECK_PAGES = 8
SAMPLE_USERNAME = "alex.rivera"


# -- posts ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Post:
    id: str
    caption: str
    kind: str
    thumbnail_url: str | None
    permalink: str | None

    @classmethod
    def of(cls, media: Media) -> Post:
        thumbnail = media.thumbnail_url or (
            media.media_url if media.media_type in ("IMAGE", "CAROUSEL_ALBUM", None) else None
        )
        kind = "Reel" if media.media_product_type == "REELS" else ("Video" if media.media_type == "VIDEO" else "Post")
        return cls(media.id, media.caption or "", kind, thumbnail, media.permalink)


@dataclass(frozen=True)
class PostPage:
    posts: list[Post]
    next_cursor: str | None
    error: ReplyflowError | None = None


async def load_posts(
    request: Request, db: Session, account: Account, *, cursor: str | None = None, graph: GraphClient | None = None
) -> PostPage:
    """One page of the account's posts from Meta; a failure becomes a message, the builder still works."""

    async def fetch(client: GraphClient) -> PostPage:
        found = await accounts_service.list_media(
            session=db,
            account=account,
            graph=client,
            cipher=cipher_for(settings_of(request)),
            cursor=cursor,
            limit=MEDIA_PAGE_SIZE,
        )
        return PostPage([Post.of(m) for m in found.items], found.next_cursor)

    try:
        if graph is not None:
            return await fetch(graph)
        async with graph_for(request) as client:
            return await fetch(client)
    except GraphError as exc:
        from replyflow.accounts import errors as account_errors

        return PostPage([], None, account_errors.translate_graph_error(exc, during="reading your posts"))
    except ReplyflowError as exc:
        return PostPage([], None, exc)


def media_checker(request: Request, db: Session) -> rules_service.MediaChecker:
    """The rules service's "which of these posts are not the account's?" question, answered from Meta."""

    async def check(account: Account, media_ids: Sequence[str]) -> set[str]:
        missing = set(media_ids)
        cursor: str | None = None
        async with graph_for(request) as graph:
            for _ in range(MEDIA_CHECK_PAGES):
                page = await accounts_service.list_media(
                    session=db,
                    account=account,
                    graph=graph,
                    cipher=cipher_for(settings_of(request)),
                    cursor=cursor,
                    limit=100,
                )
                missing -= {m.id for m in page.items}
                cursor = page.next_cursor
                if not missing or cursor is None:
                    break
        return missing

    return check


# -- the list -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleCounts:
    comments: int = 0
    dms: int = 0


def rule_counts(db: Session, rule_ids: list[str]) -> dict[str, RuleCounts]:
    """Comments each rule took and DMs it sent (all time)."""
    if not rule_ids:
        return {}
    rows = db.execute(
        select(Run.rule_id, func.count(), func.sum(case((Run.dm_state == "sent", 1), else_=0)))
        .where(Run.rule_id.in_(rule_ids), Run.status != "skipped")
        .group_by(Run.rule_id)
    ).all()
    return {str(rule_id): RuleCounts(int(total), int(dms or 0)) for rule_id, total, dms in rows}


def _accounts(db: Session, signed_in: SignedIn) -> list[Account]:
    return accounts_repository.list_accounts(session=db, workspace_id=signed_in.workspace.id)


def _rules(db: Session, signed_in: SignedIn, account_id: str | None) -> list[Rule]:
    rules: list[Rule] = []
    cursor: str | None = None
    while True:
        page, cursor = rules_service.list_rules(
            session=db, workspace_id=signed_in.workspace.id, account_id=account_id, cursor=cursor, limit=200
        )
        rules.extend(page)
        if cursor is None or len(rules) >= 1000:
            return rules


@router.get(PATH)
def rules_page(request: Request, db: PageDb, signed_in: CurrentUser, account_id: str | None = None) -> Response:
    accounts = _accounts(db, signed_in)
    by_id = {a.id: a for a in accounts}
    rules = [r for r in _rules(db, signed_in, account_id or None) if r.account_id in by_id]
    values = {
        "accounts": accounts,
        "accounts_by_id": by_id,
        "rules": rules,
        "counts": rule_counts(db, [r.id for r in rules]),
        "account_filter": account_id or "",
    }
    return render(request, "rules.html", values, signed_in=signed_in)


@router.post(PATH + "/{rule_id}/toggle", dependencies=page_allowed(Permission.MANAGE_RULES))
async def toggle_rule(
    request: Request, rule_id: str, db: PageDb, signed_in: CurrentUser, form: SubmittedForm
) -> Response:
    enabled = form.get("enabled") is not None
    rule = await rules_service.update_rule(
        session=db,
        workspace_id=signed_in.workspace.id,
        rule_id=rule_id,
        body=RuleUpdate(enabled=enabled),
        check_media=media_checker(request, db),
        end_read=lambda: accounts_service.end_read(db),
    )
    if is_htmx(request):
        return render(request, "partials/rule_toggle.html", {"rule": rule}, signed_in=signed_in)
    state = "on" if rule.enabled else "off"
    return redirect(request, PATH, flash=("success", f"“{rule.name}” is {state}."))


# -- the builder ----------------------------------------------------------------------------------------------


def _builder_values(
    *,
    accounts: list[Account],
    form: RuleForm,
    errors: dict[str, str] | None = None,
    rule: Rule | None = None,
    posts: PostPage | None = None,
) -> dict[str, Any]:
    account = next((a for a in accounts if a.id == form.account_id), None)
    return {
        "accounts": accounts,
        "account": account,
        "form": form,
        "errors": errors or {},
        "rule": rule,
        "posts": posts or PostPage([], None),
        "match_choices": MATCH_CHOICES,
        "posts_choices": POSTS_CHOICES,
        "trigger_choices": TRIGGER_CHOICES,
        "message_triggers": sorted(MESSAGE_TRIGGERS),
        "max_variants": MAX_REPLY_VARIANTS,
        "max_buttons": MAX_BUTTONS,
        "sample_username": SAMPLE_USERNAME,
    }


def _builder(request: Request, signed_in: SignedIn, values: dict[str, Any], *, status: int = 200) -> Response:
    return render(request, "rule_builder.html", values, signed_in=signed_in, status=status)


@router.get(PATH + "/new", dependencies=page_allowed(Permission.MANAGE_RULES))
async def new_rule(request: Request, db: PageDb, signed_in: CurrentUser, account_id: str | None = None) -> Response:
    accounts = _accounts(db, signed_in)
    if not accounts:
        return render(request, "rule_builder.html", _builder_values(accounts=[], form=RuleForm()), signed_in=signed_in)
    chosen = next((a for a in accounts if a.id == account_id), accounts[0])
    form = RuleForm(account_id=chosen.id, name="", public_replies=["Sent you a DM, @{username}! 📬"])
    posts = await load_posts(request, db, chosen)
    return _builder(request, signed_in, _builder_values(accounts=accounts, form=form, posts=posts))


@router.post(PATH + "/new", dependencies=page_allowed(Permission.MANAGE_RULES))
async def create_rule(request: Request, db: PageDb, signed_in: CurrentUser, form: SubmittedForm) -> Response:
    accounts = _accounts(db, signed_in)
    typed = RuleForm.from_form(form)
    try:
        try:
            body = RuleCreate.model_validate(typed.create_body())
        except ValidationError as exc:
            raise validation_failed(exc) from None
        rule = await rules_service.create_rule(
            session=db,
            workspace_id=signed_in.workspace.id,
            body=body,
            check_media=media_checker(request, db),
            end_read=lambda: accounts_service.end_read(db),
        )
    except ValidationFailed as exc:
        return await _refused(request, db, signed_in, accounts, typed, exc)
    return redirect(
        request, PATH, flash=_saved_flash(rule, f"“{rule.name}” is saved{' and on' if rule.enabled else ''}.")
    )


def _saved_flash(rule: Rule, text: str) -> tuple[str, str]:
    """The notice after saving; a rule that sends no DM says so, since that is rarely what people want."""
    if not rule.private_reply:
        return ("warning", f"{text} It sends no DM: it only replies in public. Edit it to add a message.")
    return ("success", text)


async def _refused(
    request: Request,
    db: Session,
    signed_in: SignedIn,
    accounts: list[Account],
    typed: RuleForm,
    error: ValidationFailed,
    *,
    rule: Rule | None = None,
) -> Response:
    db.rollback()
    account = next((a for a in accounts if a.id == typed.account_id), None)
    posts = await load_posts(request, db, account) if account is not None else None
    values = _builder_values(accounts=accounts, form=typed, errors=field_errors(error), rule=rule, posts=posts)
    return _builder(request, signed_in, values, status=422)


@router.get(PATH + "/posts")
async def post_picker(
    request: Request,
    db: PageDb,
    signed_in: CurrentUser,
    account_id: str,
    cursor: str | None = None,
) -> Response:
    """The picker's grid for an account (htmx: when the account changes, and "show more")."""
    account = accounts_repository.get_account(session=db, workspace_id=signed_in.workspace.id, account_id=account_id)
    posts = await load_posts(request, db, account, cursor=cursor[:512] if cursor else None)
    template = "partials/post_tiles.html" if cursor else "partials/post_picker.html"
    form = RuleForm(account_id=account.id)
    return render(request, template, {"posts": posts, "form": form, "account": account}, signed_in=signed_in)


# -- the dry run ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DryRunOutcome:
    result: RuleTestOut | None
    reason_text: str | None
    errors: dict[str, str]
    sample_text: str


@router.post(PATH + "/test")
def test_rule(request: Request, db: PageDb, signed_in: CurrentUser, form: SubmittedForm) -> Response:
    """ "Test this rule": the form as it is now, against a sample comment. Nothing is saved or sent."""
    typed = RuleForm.from_form(form)
    rule_id = form.get("rule_id")
    if isinstance(rule_id, str) and rule_id:
        saved = rules_repository.get_rule(session=db, workspace_id=signed_in.workspace.id, rule_id=rule_id[:64])
        typed = RuleForm.from_form(form, existing=RuleForm.from_rule(saved))
        typed.account_id = saved.account_id
    sample_text = str(form.get("sample_text") or "")[:2200]
    username = str(form.get("sample_username") or SAMPLE_USERNAME).strip().lstrip("@")[:255] or SAMPLE_USERNAME
    media_id = typed.media_ids[0] if typed.posts_mode == "specific" and typed.media_ids else "sample-post"
    if typed.posts_mode == "next" and typed.bound_media_id:
        media_id = typed.bound_media_id
    outcome: DryRunOutcome
    try:
        body = RuleTestIn(
            rule=typed.create_body(),
            comment={"text": sample_text, "media_id": media_id, "from_id": "sample-commenter", "username": username},
        )
        result = rules_service.test_rule(session=db, workspace_id=signed_in.workspace.id, body=body)
        reason_text = None
        if result.reason:
            try:
                reason_text = SkipReason(result.reason).description
            except ValueError:
                reason_text = result.detail or result.reason
        outcome = DryRunOutcome(result, reason_text, {}, sample_text)
    except ValidationFailed as exc:
        outcome = DryRunOutcome(None, None, field_errors(exc), sample_text)
    except ValidationError:
        outcome = DryRunOutcome(None, None, {"form": "The sample comment is too long."}, sample_text)
    return render(request, "partials/rule_test_result.html", {"outcome": outcome}, signed_in=signed_in)


def _rule_for_page(db: Session, signed_in: SignedIn, rule_id: str) -> Rule:
    """The live rule, or a 404 that says so plainly when it was deleted (links to it stay in history)."""
    try:
        return rules_repository.get_rule(session=db, workspace_id=signed_in.workspace.id, rule_id=rule_id)
    except NotFound:
        gone = db.get(Rule, rule_id)
        if gone is not None and gone.workspace_id == signed_in.workspace.id and gone.deleted_at is not None:
            raise NotFound(
                f"The rule “{gone.name}” was deleted on {gone.deleted_at:%d %b %Y}. Its past activity stays in "
                "Activity and Analytics."
            ) from None
        raise


@router.get(PATH + "/{rule_id}")
async def edit_rule(request: Request, rule_id: str, db: PageDb, signed_in: CurrentUser) -> Response:
    rule = _rule_for_page(db, signed_in, rule_id)
    accounts = _accounts(db, signed_in)
    account = next((a for a in accounts if a.id == rule.account_id), None)
    posts = await load_posts(request, db, account) if account is not None else None
    values = _builder_values(accounts=accounts, form=RuleForm.from_rule(rule), rule=rule, posts=posts)
    return _builder(request, signed_in, values)


@router.post(PATH + "/{rule_id}", dependencies=page_allowed(Permission.MANAGE_RULES))
async def save_rule(
    request: Request, rule_id: str, db: PageDb, signed_in: CurrentUser, form: SubmittedForm
) -> Response:
    rule = _rule_for_page(db, signed_in, rule_id)
    accounts = _accounts(db, signed_in)
    existing = RuleForm.from_rule(rule)
    typed = RuleForm.from_form(form, existing=existing)
    typed.account_id = rule.account_id  # a rule stays with its account
    before, after = existing.spec(), typed.spec()
    changes = {key: value for key, value in after.items() if before.get(key) != value}
    try:
        try:
            body = RuleUpdate.model_validate(changes)
        except ValidationError as exc:
            raise validation_failed(exc) from None
        saved = await rules_service.update_rule(
            session=db,
            workspace_id=signed_in.workspace.id,
            rule_id=rule.id,
            body=body,
            check_media=media_checker(request, db),
            end_read=lambda: accounts_service.end_read(db),
        )
    except ValidationFailed as exc:
        return await _refused(request, db, signed_in, accounts, typed, exc, rule=rule)
    return redirect(request, PATH, flash=_saved_flash(saved, f"“{saved.name}” is saved."))


@router.get(PATH + "/{rule_id}/delete", dependencies=page_allowed(Permission.MANAGE_RULES))
def confirm_delete(request: Request, rule_id: str, db: PageDb, signed_in: CurrentUser) -> Response:
    rule = _rule_for_page(db, signed_in, rule_id)
    return render(request, "rule_delete.html", {"rule": rule}, signed_in=signed_in)


@router.post(PATH + "/{rule_id}/delete", dependencies=page_allowed(Permission.MANAGE_RULES))
def delete_rule(request: Request, rule_id: str, db: PageDb, signed_in: CurrentUser) -> Response:
    rule = rules_repository.get_rule(session=db, workspace_id=signed_in.workspace.id, rule_id=rule_id)
    rules_service.delete_rule(session=db, workspace_id=signed_in.workspace.id, rule_id=rule.id)
    return redirect(request, PATH, flash=("success", f"“{rule.name}” is deleted. Its past activity stays in Activity."))
