"""DM threads started by a rule's private reply: their messages, follow-ups, tracked links and per-run engagement."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from replyflow.db import Base, UTCDateTime, utcnow
from replyflow.ids import new_id

_SerialId = BigInteger().with_variant(Integer(), "sqlite")

#: Meta opens a standard messaging window of 24 hours with each message (or tap) of the person.
MESSAGING_WINDOW = dt.timedelta(hours=24)


class Direction(enum.StrEnum):
    INBOUND = "in"  # from the person
    OUTBOUND = "out"  # from the account (replyflow, or a human in the Instagram app)


class MessageKind(enum.StrEnum):
    PUBLIC_REPLY = "public_reply"  # our reply under the comment (shown for context; not a DM)
    PRIVATE_REPLY = "private_reply"  # the rule's DM (Meta's Private Reply)
    USER_TEXT = "user_text"  # the person wrote (text or attachments)
    QUICK_REPLY = "quick_reply"  # the person tapped a quick reply
    POSTBACK = "postback"  # the person tapped a postback button
    FOLLOW_UP = "follow_up"  # the rule's follow-up, sent inside the 24-hour window
    ECHO = "echo"  # a message the account sent outside replyflow (e.g. by hand in the Instagram app)


#: Kinds the person sent; they open Meta's 24-hour window and may trigger the follow-up.
INBOUND_KINDS = frozenset({MessageKind.USER_TEXT, MessageKind.QUICK_REPLY, MessageKind.POSTBACK})
TAP_KINDS = frozenset({MessageKind.QUICK_REPLY, MessageKind.POSTBACK})


class FollowUpStatus(enum.StrEnum):
    PENDING = "pending"  # triggered; the job sends it
    SENDING = "sending"  # written just before the call; seen later it means the outcome is unknown
    SENT = "sent"
    UNKNOWN = "unknown"  # the call may have reached Meta; never resent (an echo may still confirm it)
    SKIPPED = "skipped"  # not sent on purpose; ``reason`` says why (e.g. ``outside_window``)
    FAILED = "failed"  # Meta refused it; ``reason`` says why


#: States that hold the run's single follow-up claim (``claim_key``): at most one of these per run.
CLAIMING_STATUSES = frozenset(
    {FollowUpStatus.PENDING, FollowUpStatus.SENDING, FollowUpStatus.SENT, FollowUpStatus.UNKNOWN}
)


class FollowUpSkip(enum.StrEnum):
    OUTSIDE_WINDOW = "outside_window"
    RULE_REMOVED = "rule_removed"
    RULE_DISABLED = "rule_disabled"
    NO_FOLLOW_UP = "no_follow_up"
    ACCOUNT_PAUSED = "account_paused"
    ALREADY_SENT = "already_sent"


class Thread(Base):
    """One conversation between a connected account and a person a rule sent a DM to.

    Instagram keeps one thread per (account, person), so a person answered by several rules has one thread
    whose origin is the latest private reply; every private reply stays in the thread's messages with its run.
    """

    __tablename__ = "conversation_threads"
    __table_args__ = (
        UniqueConstraint("account_id", "igsid"),
        Index("ix_conversation_threads_workspace_id_id", "workspace_id", "id"),
        Index("ix_conversation_threads_rule_id", "rule_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("thr"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # The person's Instagram-scoped id (IGSID) and their username when the comment carried it.
    igsid: Mapped[str] = mapped_column(String(128))
    username: Mapped[str | None] = mapped_column(String(255))

    # Where it started: the run of the latest private reply, its rule, comment and post.
    run_id: Mapped[str | None] = mapped_column(String(40))
    rule_id: Mapped[str | None] = mapped_column(String(40))
    comment_id: Mapped[str | None] = mapped_column(String(128))
    comment_text: Mapped[str | None] = mapped_column(Text)
    media_id: Mapped[str | None] = mapped_column(String(128))
    commented_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    public_reply_id: Mapped[str | None] = mapped_column(String(128))
    public_reply_text: Mapped[str | None] = mapped_column(Text)
    dm_mid: Mapped[str | None] = mapped_column(String(255))
    dm_text: Mapped[str | None] = mapped_column(Text)
    dm_sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    # Meta's standard window: open for 24 hours after the person's last message or tap.
    last_user_message_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    window_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_message_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Read state from ``messaging_seen``: when the person last read, and up to which moment.
    seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    seen_up_to: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    reply_count: Mapped[int] = mapped_column(Integer, default=0)
    tap_count: Mapped[int] = mapped_column(Integer, default=0)
    click_count: Mapped[int] = mapped_column(Integer, default=0)

    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    def window_open(self, now: dt.datetime) -> bool:
        return self.window_expires_at is not None and now < self.window_expires_at


class ThreadMessage(Base):
    """One message of a thread, either way. ``dedupe_key`` (Meta's mid when there is one) makes intake idempotent."""

    __tablename__ = "conversation_messages"
    __table_args__ = (
        UniqueConstraint("account_id", "dedupe_key"),
        Index("ix_conversation_messages_thread_id_created_at", "thread_id", "created_at"),
        Index("ix_conversation_messages_account_id_mid", "account_id", "mid"),
        Index("ix_conversation_messages_run_id_kind", "run_id", "kind"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("msg"))
    thread_id: Mapped[str] = mapped_column(ForeignKey("conversation_threads.id", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # The run this message belongs to (our sends) or is attributed to (the person's answers), for analytics.
    run_id: Mapped[str | None] = mapped_column(String(40))
    direction: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16))
    mid: Mapped[str | None] = mapped_column(String(512))
    dedupe_key: Mapped[str] = mapped_column(String(320))
    text: Mapped[str | None] = mapped_column(Text)
    # Quick-reply or postback payload, attachment types, or the message object we sent.
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    echoed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # ours: Meta echoed it back
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # ours: the person has seen it
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # theirs: unsent by the person


class FollowUp(Base):
    """The rule's follow-up for one trigger (a reply or a tap): at most one per trigger, at most one sent per run."""

    __tablename__ = "conversation_follow_ups"
    __table_args__ = (
        UniqueConstraint("trigger_message_id"),
        # Holds the run id while the follow-up is pending, in flight or sent: a second one cannot exist.
        UniqueConstraint("claim_key"),
        Index("ix_conversation_follow_ups_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_conversation_follow_ups_thread_id", "thread_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("fu"))
    thread_id: Mapped[str] = mapped_column(ForeignKey("conversation_threads.id", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(String(40))
    rule_id: Mapped[str | None] = mapped_column(String(40))
    trigger_message_id: Mapped[str] = mapped_column(String(40))
    claim_key: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16), default=FollowUpStatus.PENDING.value)
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    message: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    mid: Mapped[str | None] = mapped_column(String(512))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class TrackedLink(Base):
    """A button URL replaced by ``{public_url}/r/{code}``; the code is random (128 bits) and maps to one URL."""

    __tablename__ = "tracked_links"
    __table_args__ = (
        UniqueConstraint("code"),
        # tracked_url() is idempotent per (run, where it is used, URL): a retried send reuses the code.
        UniqueConstraint("run_id", "source", "url_hash"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("lnk"))
    code: Mapped[str] = mapped_column(String(64))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[str | None] = mapped_column(String(40))
    thread_id: Mapped[str | None] = mapped_column(String(40), index=True)
    source: Mapped[str] = mapped_column(String(16))  # private_reply | follow_up
    url: Mapped[str] = mapped_column(Text)
    url_hash: Mapped[str] = mapped_column(String(64))
    click_count: Mapped[int] = mapped_column(Integer, default=0)
    first_clicked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_clicked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LinkClick(Base):
    """One request to ``/r/{code}``. Nothing about the visitor is kept: no IP, no user agent, no cookie."""

    __tablename__ = "link_clicks"
    __table_args__ = (Index("ix_link_clicks_account_id_clicked_at", "account_id", "clicked_at"),)

    id: Mapped[int] = mapped_column(_SerialId, primary_key=True, autoincrement=True)
    link_id: Mapped[str] = mapped_column(ForeignKey("tracked_links.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    run_id: Mapped[str | None] = mapped_column(String(40))
    clicked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Link-preview fetchers (Meta's crawler and the like) are recorded but never counted as clicks.
    is_preview: Mapped[bool] = mapped_column(Boolean, default=False)


class RunEngagement(Base):
    """What happened after one run's DM: the counts analytics folds into its rollup (``updated_at`` drives it)."""

    __tablename__ = "run_engagement"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    replies: Mapped[int] = mapped_column(Integer, default=0)
    taps: Mapped[int] = mapped_column(Integer, default=0)
    clicks: Mapped[int] = mapped_column(Integer, default=0)
    links: Mapped[int] = mapped_column(Integer, default=0)
    follow_ups: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class SyncCursor(Base):
    """How far the periodic sync has looked for DMs the engine sent but no thread recorded (by ``runs.updated_at``)."""

    __tablename__ = "conversation_sync_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
