"""Response shapes of ``GET /api/runs`` and the dry run ``POST /api/rules/test``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from replyflow.automation.models import Run, RunStep


class RunStepOut(BaseModel):
    """One entry of a run's history."""

    step: str
    status: str
    at: dt.datetime
    reason: str | None = None
    detail: str | None = None
    rule_id: str | None = None

    @classmethod
    def of(cls, step: RunStep) -> RunStepOut:
        return cls(
            step=step.step,
            status=step.status,
            at=step.at,
            reason=step.reason,
            detail=step.detail,
            rule_id=step.rule_id,
        )


class PublicReplyOut(BaseModel):
    state: str
    text: str | None = None
    reply_id: str | None = None
    replied_at: dt.datetime | None = None
    hidden: str


class PrivateReplyOut(BaseModel):
    state: str
    text: str | None = None
    message_id: str | None = None
    recipient_id: str | None = None
    sent_at: dt.datetime | None = None
    due_at: dt.datetime | None = None
    attempts: int
    reconciled: bool


class RunOut(BaseModel):
    """One comment received for a connected account and what replyflow did about it (skips included)."""

    id: str
    account_id: str
    comment_id: str
    media_id: str
    rule_id: str | None
    status: str
    reason: str | None
    detail: str | None
    text: str
    from_id: str | None
    username: str | None
    parent_id: str | None
    is_live: bool
    #: What started the run: comment, live_comment, story_reply, dm_keyword or story_mention.
    trigger: str = "comment"
    source: str
    matched_keyword: str | None
    comment_created_at: dt.datetime | None
    public_reply: PublicReplyOut
    private_reply: PrivateReplyOut
    attempts: int
    next_attempt_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None
    steps: list[RunStepOut]

    @classmethod
    def of(cls, run: Run, steps: list[RunStep]) -> RunOut:
        return cls(
            id=run.id,
            account_id=run.account_id,
            comment_id=run.comment_id,
            media_id=run.media_id,
            rule_id=run.rule_id,
            status=run.status,
            reason=run.reason,
            detail=run.detail,
            text=run.text,
            from_id=run.from_id,
            username=run.username,
            parent_id=run.parent_id,
            is_live=run.is_live,
            trigger=run.trigger or "comment",
            source=run.source,
            matched_keyword=run.matched_keyword,
            comment_created_at=run.comment_created_at,
            public_reply=PublicReplyOut(
                state=run.public_reply_state,
                text=run.public_reply_text,
                reply_id=run.public_reply_id,
                replied_at=run.public_replied_at,
                hidden=run.hide_state,
            ),
            private_reply=PrivateReplyOut(
                state=run.dm_state,
                text=run.dm_text,
                message_id=run.dm_message_id,
                recipient_id=run.dm_recipient_id,
                sent_at=run.dm_sent_at,
                due_at=run.dm_due_at,
                attempts=run.dm_attempts,
                reconciled=run.dm_reconciled,
            ),
            attempts=run.attempts,
            next_attempt_at=run.next_attempt_at,
            created_at=run.created_at,
            updated_at=run.updated_at,
            finished_at=run.finished_at,
            steps=[RunStepOut.of(step) for step in steps],
        )


Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


class SampleComment(BaseModel):
    """A comment to try a rule on; nothing is stored or sent."""

    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, StringConstraints(max_length=2200)]
    media_id: Id
    from_id: Id | None = None
    username: Annotated[str, StringConstraints(max_length=255)] | None = None
    parent_id: Id | None = None


class RuleTestIn(BaseModel):
    """``{"rule": <a rule, or {"id": "..."}>, "comment": {...}}``."""

    model_config = ConfigDict(extra="forbid")

    rule: dict[str, Any]
    comment: SampleComment


class RuleTestOut(BaseModel):
    match: bool
    reason: str | None
    public_reply: str | None
    detail: str
    keyword: str | None = None
    private_reply: str | None = None
    rule_id: str | None = None
    reasons: list[dict[str, Any]] = Field(default_factory=list)
