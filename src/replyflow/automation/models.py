"""Rules, runs (one per comment, a persisted state machine) and their steps, plus the records quotas and dedupe need."""

from __future__ import annotations

import datetime as dt
import enum
import json
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.expression import false

from replyflow.automation.matching import PostsMode
from replyflow.automation.schemas import RuleSpec
from replyflow.db import Base, UTCDateTime, utcnow
from replyflow.ids import new_id

# SQLite only auto-increments an ``INTEGER PRIMARY KEY``; PostgreSQL gets a bigint identity.
_SerialId = BigInteger().with_variant(Integer(), "sqlite")


class RunStatus(enum.StrEnum):
    """Where a run is. Steps move it forward; ``skipped``, ``done`` and ``failed`` are final."""

    RECEIVED = "received"  # stored; rules not evaluated yet (deferred, or resumed after re-authorisation)
    MATCHED = "matched"  # a rule took the comment; nothing sent yet
    SKIPPED = "skipped"  # no rule handles it; ``reason`` says why
    PUBLIC_REPLIED = "public_replied"  # the public reply is out (or was not wanted); the DM is next
    DM_SENT = "dm_sent"  # the private reply is out; closing steps remain
    DONE = "done"
    FAILED = "failed"  # gave up; ``reason`` says why
    WAITING_QUOTA = "waiting_quota"  # the account's private-reply budget is spent; ``next_attempt_at`` says when
    PAUSED = "paused"  # the account must be re-authorised; resumes by itself afterwards
    GATED = "gated"  # a follow gate is out; waiting for the person to tap its button (``follow_gates``)
    UNLOCKING = "unlocking"  # the person tapped the gate: ask Meta whether they follow, then unlock or gate again


#: Runs the engine still has to work on.
ACTIVE_STATUSES = frozenset(
    {
        RunStatus.RECEIVED,
        RunStatus.MATCHED,
        RunStatus.PUBLIC_REPLIED,
        RunStatus.DM_SENT,
        RunStatus.WAITING_QUOTA,
        RunStatus.UNLOCKING,
    }
)
FINAL_STATUSES = frozenset({RunStatus.SKIPPED, RunStatus.DONE, RunStatus.FAILED})


class SendState(enum.StrEnum):
    """What we know about one side effect (public reply, private reply); written before and after each attempt."""

    NONE = "none"  # not attempted (or refused outright, so not delivered)
    ATTEMPTING = "attempting"  # recorded just before the call; seen on restart it means "outcome unknown"
    SENT = "sent"
    UNKNOWN = "unknown"  # the call may have reached Meta; reconcile before anything else
    FAILED = "failed"  # Meta refused it for good (public reply only: the DM still goes)
    SKIPPED = "skipped"  # not wanted by the rule, or not possible (public replies on live videos)


class RunFailure(enum.StrEnum):
    """Reasons a matched run ends ``failed`` (skip reasons live in ``replyflow.automation.reasons``)."""

    OUTSIDE_WINDOW = "outside_window"
    PERMISSION_DENIED = "permission_denied"
    COMMENT_REJECTED = "comment_rejected"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    RULE_REMOVED = "rule_removed"
    ACCOUNT_REMOVED = "account_removed"
    INVALID_REQUEST = "invalid_request"
    GRAPH_ERROR = "graph_error"


class Rule(Base):
    """A saved rule of one account. Deleting is soft so runs keep pointing at the rule that handled them."""

    __tablename__ = "rules"
    __table_args__ = (Index("ix_rules_account_id_enabled", "account_id", "enabled"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("rule"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # What starts the rule (``replyflow.automation.triggers.Trigger``).
    trigger: Mapped[str] = mapped_column(String(16), default="comment", server_default="comment")

    posts_mode: Mapped[str] = mapped_column(String(16))
    # ``specific``: the chosen media; ``next``: empty (the bound post is ``bound_media_id``); ``any``: empty.
    media_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    # ``next``: posts published after this moment count; set when the rule is saved in mode ``next``.
    next_armed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    bound_media_id: Mapped[str | None] = mapped_column(String(64))
    bound_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    match: Mapped[str] = mapped_column(String(16))
    exclude_keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    public_reply: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    private_reply: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    follow_up: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    follow_gate: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Added to the contact of everyone the rule answers; ``collect_email``: their reply may carry an email address.
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    collect_email: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    once_per_user: Mapped[bool] = mapped_column(Boolean, default=True)
    include_replies: Mapped[bool] = mapped_column(Boolean, default=False)

    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    @property
    def target_media_ids(self) -> list[str]:
        """The posts this rule listens to right now (empty for ``any`` and for an unbound ``next``)."""
        if self.posts_mode == PostsMode.NEXT.value:
            return [self.bound_media_id] if self.bound_media_id else []
        return list(self.media_ids or [])

    @property
    def waits_for_next_post(self) -> bool:
        return self.posts_mode == PostsMode.NEXT.value and self.bound_media_id is None

    def spec_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "enabled": self.enabled,
            "trigger": self.trigger or "comment",
            "posts": {"mode": self.posts_mode, "media_ids": self.target_media_ids},
            "keywords": list(self.keywords or []),
            "match": self.match,
            "exclude_keywords": list(self.exclude_keywords or []),
            "public_reply": self.public_reply,
            "private_reply": self.private_reply,
            "follow_up": self.follow_up,
            "follow_gate": self.follow_gate,
            "tags": list(self.tags or []),
            "collect_email": bool(self.collect_email),
            "once_per_user": self.once_per_user,
            "include_replies": self.include_replies,
            "priority": self.priority,
        }

    def spec(self) -> RuleSpec:
        """The rule as the matcher sees it (validated again: what is stored was valid when saved).

        Every comment asks for its account's rules' specs: the validated spec is cached by the stored content, so
        an edit (or a bound ``next`` post) is a new key and an unchanged rule is validated once per process."""
        data = self.spec_dict()
        key = json.dumps(data, sort_keys=True, default=str)
        spec = _SPECS.get(key)
        if spec is None:
            spec = RuleSpec.model_validate(data)
            if len(_SPECS) >= _SPECS_MAX:
                _SPECS.clear()
            _SPECS[key] = spec
        return spec

    def apply_spec(self, spec: RuleSpec) -> None:
        data = spec.model_dump(mode="json")
        self.name = spec.name
        self.enabled = spec.enabled
        self.priority = spec.priority
        self.posts_mode = spec.posts.mode.value
        self.media_ids = list(spec.posts.media_ids) if spec.posts.mode is PostsMode.SPECIFIC else []
        self.keywords = list(spec.keywords)
        self.match = spec.match.value
        self.exclude_keywords = list(spec.exclude_keywords)
        self.public_reply = data["public_reply"]
        self.private_reply = data["private_reply"]
        self.follow_up = data["follow_up"]
        self.follow_gate = data["follow_gate"]
        self.tags = list(spec.tags)
        self.collect_email = spec.collect_email
        self.trigger = spec.trigger.value
        self.once_per_user = spec.once_per_user
        self.include_replies = spec.include_replies


class Run(Base):
    """One comment received for a connected account, and everything replyflow did about it.

    Exactly one per (account, comment id): a redelivered webhook or a polled copy of the same comment finds
    the existing row. Side effects are written before (``attempting``) and after (``sent``) each call, so a
    process that dies mid-call leaves a state the next worker reconciles instead of repeating.
    """

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("account_id", "comment_id"),
        # The sweeper looks for due runs; the API lists by account and status.
        Index("ix_runs_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_runs_account_id_status", "account_id", "status"),
        Index("ix_runs_rule_id_status", "rule_id", "status"),
        # Analytics and the conversations sync read changes in order of updated_at (every write stamps it);
        # alerts look for a rule's latest success and its failures since.
        Index("ix_runs_updated_at", "updated_at"),
        Index("ix_runs_rule_id_status_finished_at", "rule_id", "status", "finished_at"),
        # Analytics per trigger reads the (few) runs that did not start from a comment.
        Index("ix_runs_trigger_created_at", "trigger", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("run"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16), default="webhook")  # webhook | reconciler
    # What started the run (``Trigger``). Message triggers keep the message's mid in ``comment_id`` (one run per
    # message), the story id (or "") in ``media_id`` and the message's time in ``comment_created_at``.
    trigger: Mapped[str] = mapped_column(String(16), default="comment", server_default="comment")

    # The comment, as the webhook (or the reconciler) reported it.
    comment_id: Mapped[str] = mapped_column(String(128))
    media_id: Mapped[str] = mapped_column(String(128))
    media_product_type: Mapped[str | None] = mapped_column(String(32))
    parent_id: Mapped[str | None] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text, default="")
    # The commenter's Instagram-scoped id (IGSID) and username.
    from_id: Mapped[str | None] = mapped_column(String(128), index=True)
    username: Mapped[str | None] = mapped_column(String(255))
    is_live: Mapped[bool] = mapped_column(Boolean, default=False)
    comment_created_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    status: Mapped[str] = mapped_column(String(16), default=RunStatus.RECEIVED.value)
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    rule_id: Mapped[str | None] = mapped_column(ForeignKey("rules.id", ondelete="SET NULL"))
    matched_keyword: Mapped[str | None] = mapped_column(String(255))
    # The status to go back to when a paused run resumes.
    resume_status: Mapped[str | None] = mapped_column(String(16))

    # Scheduling: failed attempts so far (for back-off), when to look again, and who holds the run.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    public_reply_state: Mapped[str] = mapped_column(String(16), default=SendState.NONE.value)
    public_reply_text: Mapped[str | None] = mapped_column(Text)
    public_reply_id: Mapped[str | None] = mapped_column(String(128))
    public_reply_attempts: Mapped[int] = mapped_column(Integer, default=0)
    public_replied_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    hide_state: Mapped[str] = mapped_column(String(16), default=SendState.NONE.value)

    dm_state: Mapped[str] = mapped_column(String(16), default=SendState.NONE.value)
    dm_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Not before this moment (the rule's delay, clamped to Meta's window).
    dm_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    dm_text: Mapped[str | None] = mapped_column(Text)
    dm_message: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Meta's ``message_id`` (null when the send was established by Meta's "already sent" answer) and the
    # recipient Meta reported (the commenter's IGSID).
    dm_message_id: Mapped[str | None] = mapped_column(String(255), index=True)
    dm_recipient_id: Mapped[str | None] = mapped_column(String(128))
    dm_sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    dm_reconciled: Mapped[bool] = mapped_column(Boolean, default=False)

    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    matched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    @property
    def run_status(self) -> RunStatus:
        return RunStatus(self.status)


class RunStep(Base):
    """One entry of a run's history: every state change and every side effect attempted (an audit trail)."""

    __tablename__ = "run_steps"

    id: Mapped[int] = mapped_column(_SerialId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    step: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    rule_id: Mapped[str | None] = mapped_column(String(40))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class FollowGateState(Base):
    """A gated run's "follow to unlock" progress: gates sent, taps, what Meta said, and the unlocked DM.

    One row per gated run. The unlocked DM is written down before it is attempted (``unlock_state``
    ``attempting``) and after; one whose outcome is unknown is never sent again (a ``recipient.id`` send has no
    "already sent" answer to reconcile with), so the person never gets it twice.
    """

    __tablename__ = "follow_gates"
    __table_args__ = (Index("ix_follow_gates_rule_id_igsid", "rule_id", "igsid"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    rule_id: Mapped[str | None] = mapped_column(ForeignKey("rules.id", ondelete="SET NULL"))
    igsid: Mapped[str] = mapped_column(String(128))
    gates_sent: Mapped[int] = mapped_column(Integer, default=0)
    # A reminder (the gate again) in flight: its outcome is not re-tried when unknown.
    regate_state: Mapped[str] = mapped_column(String(16), default=SendState.NONE.value)
    taps: Mapped[int] = mapped_column(Integer, default=0)
    checks: Mapped[int] = mapped_column(Integer, default=0)
    # Meta's latest answer: True follows, False does not, None not known (or not asked yet).
    follows: Mapped[bool | None] = mapped_column(Boolean)
    unlock_state: Mapped[str] = mapped_column(String(16), default=SendState.NONE.value)
    unlock_text: Mapped[str | None] = mapped_column(Text)
    unlock_message: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    unlock_message_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    first_tap_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_tap_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    followed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    unlocked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class RuleUserClaim(Base):
    """``once_per_user``: the first matched comment of a person on a post claims (rule, post, person)."""

    __tablename__ = "rule_user_claims"

    rule_id: Mapped[str] = mapped_column(ForeignKey("rules.id", ondelete="CASCADE"), primary_key=True)
    media_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    from_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PrivateReplySlot(Base):
    """The private-reply send log behind the database quota gate: sends made, and places held in the queue.

    ``kind`` is ``sent`` for a private reply about to be (or already) made at ``at``, ``hold`` for a run
    that waits for the budget and was promised a place at ``at``. Only ``sent`` rows count against the budget.
    """

    __tablename__ = "private_reply_slots"
    __table_args__ = (
        UniqueConstraint("account_id", "key"),
        Index("ix_private_reply_slots_account_id_at", "account_id", "at"),
    )

    id: Mapped[int] = mapped_column(_SerialId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(8))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class QuotaLock(Base):
    """One row per account, locked (``SELECT … FOR UPDATE``) to serialise quota decisions on PostgreSQL."""

    __tablename__ = "private_reply_quota_locks"

    account_id: Mapped[str] = mapped_column(String(40), primary_key=True)


class KnownMedia(Base):
    """Posts and reels seen for an account, with when they were published: how ``next`` rules find their post."""

    __tablename__ = "known_media"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    media_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    media_product_type: Mapped[str | None] = mapped_column(String(32))
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AccountAutomationState(Base):
    """Per-account engine state: Meta's throttling (usage headers, rate-limit answers) and the reconciler's clock."""

    __tablename__ = "account_automation_state"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    throttled_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    usage_percent: Mapped[float | None] = mapped_column(Float)
    usage_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The reconciler: when the last check was claimed, and the moment up to which the last complete check saw all.
    reconcile_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_reconciled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


# The stored content of a rule → its validated spec. RuleSpec is only read by the matcher and the engine, so one
# instance may be shared by threads; the dict's get and set are atomic.
_SPECS: dict[str, RuleSpec] = {}
_SPECS_MAX = 4096
