"""Queries and small writes for rules, runs, steps, known media and once-per-user claims."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, func, select, update
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
    session.add(
        RunStep(
            run_id=run.id,
            at=at,
            step=step,
            status=run.status,
            reason=reason,
            detail=detail,
            rule_id=rule_id,
            data=data,
        )
    )


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
