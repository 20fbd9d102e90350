"""Queries and small writes for rules, runs, steps, known media and once-per-user claims."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, delete, exists, func, insert, literal, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from replyflow.automation.models import FollowGateState, KnownMedia, Rule, RuleUserClaim, Run, RunStep
from replyflow.automation.sql import insert_ignore
from replyflow.errors import NotFound


def get_rule(*, session: Session, workspace_id: str, rule_id: str) -> Rule:
    """A live rule of the workspace, or 404 (also for another workspace's rule and for deleted ones)."""
    rule = session.get(Rule, rule_id)
    if rule is None or rule.workspace_id != workspace_id or rule.deleted_at is not None:
        raise NotFound("No rule with this id.", hint="List your rules with GET /api/rules.")
    return rule


def rules_in_order(*, session: Session, account_id: str, enabled_only: bool = True) -> list[Rule]:
    """The account's rules in the order they are tried: priority (lower first), then oldest first."""
    query = select(Rule).where(Rule.account_id == account_id, Rule.deleted_at.is_(None))
    if enabled_only:
        query = query.where(Rule.enabled.is_(True))
    return list(session.scalars(query.order_by(Rule.priority, Rule.created_at, Rule.id)))


_STEP_BUFFER = "replyflow.automation.step_buffer"


def rules_for_post(*, session: Session, account_id: str, media_id: str, triggers: Collection[str]) -> list[Rule]:
    """The account's enabled rules with one of ``triggers`` worth trying for a comment on ``media_id``, in the order
    they are tried.

    Rules for other posts only are left out but the first of them: every check before the post's is the same for
    all enabled rules, so they would all stop at the same check with the same reason, and the first stands for them
    all. So the decision and its reason are what trying every rule gives, and an account with rules for many posts
    reads and tries this post's rules only (the post is looked up in the rule's list by the database).
    """
    query = select(Rule).where(
        Rule.account_id == account_id,
        Rule.deleted_at.is_(None),
        Rule.enabled.is_(True),
        Rule.trigger.in_(sorted(triggers)),
    )
    order = (Rule.priority, Rule.created_at, Rule.id)
    on_post = _lists_media(session, media_id)
    specific = Rule.posts_mode == "specific"
    rules = list(session.scalars(query.where(~specific | on_post).order_by(*order)))
    stand_in = session.scalar(query.where(specific, ~on_post).order_by(*order).limit(1))
    if stand_in is not None:
        rules.append(stand_in)
        rules.sort(key=lambda rule: (rule.priority, rule.created_at, rule.id))
    return rules


def _lists_media(session: Session, media_id: str) -> ColumnElement[bool]:
    """SQL: the rule's ``media_ids`` (a JSON list) holds ``media_id``."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(ColumnElement[bool], sql_cast(Rule.media_ids, JSONB).has_key(media_id))
    items = func.json_each(Rule.media_ids).table_valued("value")
    return exists(select(literal(1)).select_from(items).where(items.c.value == media_id))


def add_step(
    *,
    session: Session,
    run: Run,
    step: str,
    at: dt.datetime,
    reason: str | None = None,
    detail: str | None = None,
    rule_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    row = step_row(run_id=run.id, at=at, step=step, status=run.status, reason=reason, detail=detail, rule_id=rule_id,
                   data=data)  # fmt: skip
    buffer: list[dict[str, Any]] | None = session.info.get(_STEP_BUFFER)
    if buffer is not None:
        buffer.append(row)
    else:
        session.add(RunStep(**row))


def step_row(
    *,
    run_id: str,
    at: dt.datetime,
    step: str,
    status: str,
    reason: str | None = None,
    detail: str | None = None,
    rule_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The columns of one ``run_steps`` row (for the ORM object or a Core insert)."""
    return {
        "run_id": run_id,
        "at": at,
        "step": step,
        "status": status,
        "reason": reason,
        "detail": detail,
        "rule_id": rule_id,
        "data": data,
    }


@contextmanager
def steps_in_one_insert(session: Session) -> Iterator[None]:
    """Steps added inside the block are written by one multi-row INSERT when it ends (not one ORM INSERT each:
    SQLite cannot batch inserts whose new ids the ORM must read back). Nothing inside may read them back."""
    buffer: list[dict[str, Any]] = []
    outer = session.info.get(_STEP_BUFFER)
    session.info[_STEP_BUFFER] = buffer
    try:
        yield
    finally:
        session.info[_STEP_BUFFER] = outer
    if buffer:
        session.execute(insert(cast(Table, RunStep.__table__)), buffer)


def steps_of(*, session: Session, run_ids: list[str]) -> dict[str, list[RunStep]]:
    found: dict[str, list[RunStep]] = {run_id: [] for run_id in run_ids}
    if not run_ids:
        return found
    for step in session.scalars(select(RunStep).where(RunStep.run_id.in_(run_ids)).order_by(RunStep.id)):
        found[step.run_id].append(step)
    return found


# -- once per user ----------------------------------------------------------------------------------------


def claim_user(*, session: Session, rule_id: str, media_id: str, from_id: str, run_id: str, now: dt.datetime) -> bool:
    """Claim (rule, post, person) for ``run_id``; False when another run already holds it.

    An insert, not a lookup, so two comments of one person processed at the same moment cannot both win.
    """
    if insert_ignore(
        session,
        RuleUserClaim,
        {"rule_id": rule_id, "media_id": media_id, "from_id": from_id, "run_id": run_id, "created_at": now},
    ):
        return True
    holder = session.scalar(
        select(RuleUserClaim.run_id).where(
            RuleUserClaim.rule_id == rule_id, RuleUserClaim.media_id == media_id, RuleUserClaim.from_id == from_id
        )
    )
    return holder == run_id


def release_user_claim(*, session: Session, run: Run) -> None:
    """A run that ended without reaching the person gives the person back to the rule."""
    if run.rule_id is None or run.from_id is None:
        return
    session.execute(
        delete(RuleUserClaim).where(
            RuleUserClaim.rule_id == run.rule_id,
            RuleUserClaim.media_id == run.media_id,
            RuleUserClaim.from_id == run.from_id,
            RuleUserClaim.run_id == run.id,
        )
    )


# -- media the account published --------------------------------------------------------------------------


def remember_media(
    *,
    session: Session,
    account_id: str,
    media_id: str,
    published_at: dt.datetime | None,
    media_product_type: str | None,
    now: dt.datetime,
) -> None:
    """Record a post (or learn its publication time); never forgets a time already known."""
    inserted = insert_ignore(
        session,
        KnownMedia,
        {
            "account_id": account_id,
            "media_id": media_id,
            "published_at": published_at,
            "media_product_type": media_product_type,
            "seen_at": now,
        },
    )
    if not inserted and published_at is not None:
        session.execute(
            update(KnownMedia)
            .where(
                KnownMedia.account_id == account_id,
                KnownMedia.media_id == media_id,
                KnownMedia.published_at.is_(None),
            )
            .values(published_at=published_at, media_product_type=media_product_type)
        )


def first_media_after(*, session: Session, account_id: str, after: dt.datetime) -> KnownMedia | None:
    """The first post published after ``after`` that replyflow knows of."""
    return session.scalars(
        select(KnownMedia)
        .where(KnownMedia.account_id == account_id, KnownMedia.published_at > after)
        .order_by(KnownMedia.published_at, KnownMedia.media_id)
        .limit(1)
    ).first()


def bind_next_rule(*, session: Session, rule: Rule, media_id: str, now: dt.datetime) -> bool:
    """Bind a ``next`` rule to its post, once: a conditional update, so concurrent binders agree."""
    result = session.execute(
        update(Rule)
        .where(Rule.id == rule.id, Rule.bound_media_id.is_(None))
        .values(bound_media_id=media_id, bound_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(rule)
    return bool(getattr(result, "rowcount", 0))


def gates_sent(*, session: Session, rule_id: str | None, igsid: str) -> int:
    """Follow gates (first ones and reminders) this rule sent this person, over all their runs."""
    if rule_id is None:
        return 0
    total = session.scalar(
        select(func.coalesce(func.sum(FollowGateState.gates_sent), 0)).where(
            FollowGateState.rule_id == rule_id, FollowGateState.igsid == igsid
        )
    )
    return int(total or 0)
