"""Response shapes of ``GET /api/conversations``: the thread, where it started, and everything said since."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

from replyflow.conversations.models import Direction, MessageKind
from replyflow.conversations.service import ThreadView


class PersonOut(BaseModel):
    id: str = Field(description="The person's Instagram-scoped id (IGSID).")
    username: str | None = None


class RuleRef(BaseModel):
    id: str
    name: str | None = Field(default=None, description="null when the rule was deleted.")


class OriginOut(BaseModel):
    run_id: str | None
    comment_id: str | None
    comment_text: str | None
    media_id: str | None
    commented_at: dt.datetime | None


class PublicReplyOut(BaseModel):
    id: str | None
    text: str


class DirectMessageOut(BaseModel):
    mid: str | None = Field(description="Meta's message id (null when Meta only told us it was already sent).")
    text: str | None
    sent_at: dt.datetime | None
    read: bool
    read_at: dt.datetime | None


class WindowOut(BaseModel):
    open: bool = Field(description="Whether Meta's 24-hour window (opened by the person's last message) is open.")
    expires_at: dt.datetime | None


class ReadStateOut(BaseModel):
    seen_at: dt.datetime | None = Field(description="When the person last read the conversation.")
    seen_up_to: dt.datetime | None
    dm_read: bool


class MessageOut(BaseModel):
    id: str
    direction: Direction
    kind: MessageKind
    mid: str | None
    run_id: str | None
    text: str | None
    payload: dict[str, Any] | None
    created_at: dt.datetime
    echoed_at: dt.datetime | None = None
    read_at: dt.datetime | None = None
    deleted: bool = False


class FollowUpOut(BaseModel):
    id: str
    run_id: str
    trigger_message_id: str
    status: str
    reason: str | None
    detail: str | None
    text: str | None
    mid: str | None
    attempts: int
    created_at: dt.datetime
    sent_at: dt.datetime | None


class LinkOut(BaseModel):
    url: str = Field(description="Where the tracked link leads.")
    source: str
    run_id: str | None
    clicks: int
    first_clicked_at: dt.datetime | None
    last_clicked_at: dt.datetime | None


class ConversationOut(BaseModel):
    id: str
    account_id: str
    person: PersonOut
    rule: RuleRef | None
    origin: OriginOut
    public_reply: PublicReplyOut | None
    dm: DirectMessageOut | None
    window: WindowOut
    read_state: ReadStateOut
    replies: int
    taps: int
    clicks: int
    messages: list[MessageOut]
    follow_ups: list[FollowUpOut]
    links: list[LinkOut]
    last_message_at: dt.datetime | None
    created_at: dt.datetime

    @classmethod
    def of(cls, view: ThreadView, *, now: dt.datetime) -> ConversationOut:
        t = view.thread
        dm_message = next(
            (m for m in view.messages if m.kind == MessageKind.PRIVATE_REPLY.value and m.run_id == t.run_id), None
        )
        dm_read = t.dm_sent_at is not None and t.seen_up_to is not None and t.seen_up_to >= t.dm_sent_at
        return cls(
            id=t.id,
            account_id=t.account_id,
            person=PersonOut(id=t.igsid, username=t.username),
            rule=RuleRef(id=t.rule_id, name=view.rule.name if view.rule is not None else None) if t.rule_id else None,
            origin=OriginOut(
                run_id=t.run_id,
                comment_id=t.comment_id,
                comment_text=t.comment_text,
                media_id=t.media_id,
                commented_at=t.commented_at,
            ),
            public_reply=PublicReplyOut(id=t.public_reply_id, text=t.public_reply_text)
            if t.public_reply_text
            else None,
            dm=DirectMessageOut(
                mid=t.dm_mid,
                text=t.dm_text,
                sent_at=t.dm_sent_at,
                read=dm_read,
                read_at=dm_message.read_at if dm_message is not None else None,
            )
            if t.dm_sent_at is not None
            else None,
            window=WindowOut(open=t.window_open(now), expires_at=t.window_expires_at),
            read_state=ReadStateOut(seen_at=t.seen_at, seen_up_to=t.seen_up_to, dm_read=dm_read),
            replies=t.reply_count,
            taps=t.tap_count,
            clicks=t.click_count,
            messages=[
                MessageOut(
                    id=m.id,
                    direction=Direction(m.direction),
                    kind=MessageKind(m.kind),
                    mid=m.mid,
                    run_id=m.run_id,
                    text=m.text,
                    payload=m.payload,
                    created_at=m.created_at,
                    echoed_at=m.echoed_at,
                    read_at=m.read_at,
                    deleted=m.deleted_at is not None,
                )
                for m in view.messages
            ],
            follow_ups=[
                FollowUpOut(
                    id=f.id,
                    run_id=f.run_id,
                    trigger_message_id=f.trigger_message_id,
                    status=f.status,
                    reason=f.reason,
                    detail=f.detail,
                    text=f.text,
                    mid=f.mid,
                    attempts=f.attempts,
                    created_at=f.created_at,
                    sent_at=f.sent_at,
                )
                for f in view.follow_ups
            ],
            links=[
                LinkOut(
                    url=link.url,
                    source=link.source,
                    run_id=link.run_id,
                    clicks=link.click_count,
                    first_clicked_at=link.first_clicked_at,
                    last_clicked_at=link.last_clicked_at,
                )
                for link in view.links
            ],
            last_message_at=t.last_message_at,
            created_at=t.created_at,
        )
