"""Typed events and the pure parser that turns a delivery's raw bytes into them without ever raising.

Meta's shapes (../shared/meta-graph-api-notes.md §3): ``{"object": "instagram"|"page", "entry": [{"id", "time",
"changes": [{"field", "value"}]} | {"id", "time", "messaging": [{sender, recipient, timestamp, message|postback|
read}]}]}``. Every item that cannot be understood is reported as a problem with its path; the good ones around
it are still extracted, because one odd update must not cost the comments batched with it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

MAX_ITEMS = 1000  # Meta batches at most 1000 updates per delivery; more is not Meta.
MAX_ID_LENGTH = 512  # message ids are long base64 strings; anything past this is not an id.
MAX_PROBLEMS = 50  # a hostile delivery must not grow an unbounded list of reasons
_MAX_KEY_LENGTH = 200
_MILLIS_THRESHOLD = 100_000_000_000  # later than 5138 in seconds; earlier than 1973 in milliseconds

KNOWN_OBJECTS = ("instagram", "page")
COMMENT_FIELDS = ("comments", "live_comments")
MESSAGING_FIELDS = ("messages", "messaging_postbacks", "messaging_seen")
# Messaging items replyflow does not act on keep a recognisable field name.
_OTHER_MESSAGING_FIELDS = {
    "reaction": "message_reactions",
    "referral": "messaging_referral",
    "optin": "messaging_optins",
    "message_edit": "message_edit",
    "handover": "messaging_handover",
}


def natural_key(kind: str, *parts: str) -> str:
    """``kind:part[:part]``; hashed when long so it always fits the column and the unique index."""
    raw = ":".join((kind, *parts))
    if len(raw) <= _MAX_KEY_LENGTH:
        return raw
    return f"{kind}:sha256:{hashlib.sha256(raw.encode()).hexdigest()}"


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    object: str = "instagram"
    entry_id: str


class CommentEvent(_Event):
    """A comment (or a live comment) on one of the account's media."""

    kind: Literal["comment"] = "comment"
    field: Literal["comments", "live_comments"] = "comments"
    comment_id: str
    text: str = ""
    from_id: str | None = None
    from_username: str | None = None
    media_id: str
    media_product_type: str | None = None
    parent_id: str | None = None
    ad_id: str | None = None
    ad_title: str | None = None
    original_media_id: str | None = None
    entry_time: dt.datetime | None = None

    @property
    def natural_key(self) -> str:
        # comments and live_comments share the key: the same comment id is the same comment.
        return natural_key("comment", self.comment_id)

    @property
    def occurred_at(self) -> dt.datetime | None:
        return self.entry_time

    @property
    def is_reply(self) -> bool:
        return self.parent_id is not None

    @property
    def is_live(self) -> bool:
        return self.field == "live_comments"


class Attachment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    url: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class MessageEvent(_Event):
    """A direct message to the account (or, with ``is_echo``, one the account sent)."""

    kind: Literal["message"] = "message"
    field: Literal["messages"] = "messages"
    sender_id: str
    recipient_id: str
    mid: str
    text: str | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    quick_reply_payload: str | None = None
    is_echo: bool = False
    is_deleted: bool = False
    reply_to_mid: str | None = None
    reply_to_story_id: str | None = None
    timestamp: dt.datetime | None = None

    @property
    def natural_key(self) -> str:
        # An unsend comes as an update with the original mid: it is news, not a redelivery of that message.
        if self.is_deleted:
            return natural_key("message", self.mid, "deleted")
        return natural_key("message", self.mid)

    @property
    def occurred_at(self) -> dt.datetime | None:
        return self.timestamp


class PostbackEvent(_Event):
    """A tap on a postback button the account sent."""

    kind: Literal["postback"] = "postback"
    field: Literal["messaging_postbacks"] = "messaging_postbacks"
    sender_id: str
    recipient_id: str
    mid: str | None = None
    title: str | None = None
    payload: str | None = None
    timestamp: dt.datetime | None = None

    @property
    def natural_key(self) -> str:
        if self.mid:
            return natural_key("postback", self.mid)
        stamp = self.timestamp.isoformat() if self.timestamp else ""
        digest = hashlib.sha256(f"{self.sender_id}\x00{stamp}\x00{self.payload or ''}".encode()).hexdigest()
        return natural_key("postback", "h", digest[:40])

    @property
    def occurred_at(self) -> dt.datetime | None:
        return self.timestamp


class SeenEvent(_Event):
    """The user read the conversation up to a message (``mid``) or a time (``watermark``)."""

    kind: Literal["seen"] = "seen"
    field: Literal["messaging_seen"] = "messaging_seen"
    sender_id: str
    recipient_id: str
    watermark: int | None = None
    mid: str | None = None
    timestamp: dt.datetime | None = None

    @property
    def natural_key(self) -> str:
        if self.watermark is not None:
            mark = str(self.watermark)
        elif self.mid:
            mark = self.mid
        else:
            mark = self.timestamp.isoformat() if self.timestamp else ""
        return natural_key("seen", self.sender_id, mark)

    @property
    def occurred_at(self) -> dt.datetime | None:
        return self.timestamp


class UnknownEvent(_Event):
    """An update of a field replyflow does not act on; kept so operators can see what arrives."""

    kind: Literal["unknown"] = "unknown"
    field: str
    value: Any = None

    @property
    def natural_key(self) -> str:
        canonical = json.dumps([self.object, self.entry_id, self.field, self.value], sort_keys=True, default=str)
        return natural_key("unknown", self.field[:40], hashlib.sha256(canonical.encode()).hexdigest()[:40])

    @property
    def occurred_at(self) -> dt.datetime | None:
        return None


MessagingEvent = MessageEvent | PostbackEvent | SeenEvent
TypedEvent = CommentEvent | MessageEvent | PostbackEvent | SeenEvent | UnknownEvent
_EVENT_ADAPTER: TypeAdapter[TypedEvent] = TypeAdapter(Annotated[TypedEvent, Field(discriminator="kind")])


def load_event(payload: dict[str, Any]) -> TypedEvent:
    """Rebuild a typed event from the JSON stored in ``WebhookEvent.payload``."""
    return _EVENT_ADAPTER.validate_python(payload)


def dump_event(event: TypedEvent) -> dict[str, Any]:
    return event.model_dump(mode="json")


@dataclass(frozen=True)
class ParsedItem:
    path: str  # e.g. ``entry[3].changes[0]``, for reasons and operators
    event: TypedEvent


@dataclass
class ParsedDelivery:
    object: str | None = None
    items: list[ParsedItem] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    entry_count: int = 0
    change_count: int = 0
    skipped_count: int = 0
    # Set when nothing in the body is usable at all (not JSON, unknown object, ...).
    rejected_reason: str | None = None

    def problem(self, message: str) -> None:
        self.skipped_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)
        elif len(self.problems) == MAX_PROBLEMS:
            self.problems.append("… further problems not listed")


class _BadItem(Exception):
    """Internal: one item is unusable; the message says why (never the item's content)."""


def _show(value: Any) -> str:
    """A short, printable rendering of a value for a reason string."""
    text = repr(value) if not isinstance(value, str) else value
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text[:40] + ("…" if len(text) > 40 else "")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _a(value: Any) -> str:
    name = _type_name(value)
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _id(value: Any, what: str) -> str:
    """Meta's ids are numeric strings; an integer is accepted, anything else is a bad item."""
    if isinstance(value, bool) or value is None:
        raise _BadItem(f"missing {what}" if value is None else f"{what} is a boolean, not an id")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise _BadItem(f"{what} is {_a(value)}, not an id")
    text = value.strip()
    if not text:
        raise _BadItem(f"missing {what}")
    if len(text) > MAX_ID_LENGTH or not text.isprintable():
        raise _BadItem(f"{what} is not a valid id")
    return text


def _optional_id(value: Any, what: str) -> str | None:
    return None if value is None else _id(value, what)


def _optional_str(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _BadItem(f"{what} is {_a(value)}, not a string")


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _BadItem(f"{what} is {_a(value)}, not an object")
    return value


def _time(value: Any) -> dt.datetime | None:
    """Entry times are seconds for comments and milliseconds for messaging; accept either."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = value / 1000 if value >= _MILLIS_THRESHOLD else value
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _comment(obj: str, entry_id: str, entry_time: dt.datetime | None, field_name: str, value: Any) -> CommentEvent:
    value = _object(value, "value")
    sender = _object(value.get("from"), "from")
    media = _object(value.get("media"), "media")
    text = _optional_str(value.get("text"), "text")
    return CommentEvent(
        object=obj,
        entry_id=entry_id,
        field="live_comments" if field_name == "live_comments" else "comments",
        comment_id=_id(value.get("id"), "comment id"),
        text=text or "",
        from_id=_optional_id(sender.get("id"), "from.id"),
        from_username=_optional_str(sender.get("username"), "from.username"),
        media_id=_id(media.get("id"), "media id"),
        media_product_type=_optional_str(media.get("media_product_type"), "media.media_product_type"),
        parent_id=_optional_id(value.get("parent_id"), "parent_id"),
        ad_id=_optional_id(media.get("ad_id"), "media.ad_id"),
        ad_title=_optional_str(media.get("ad_title"), "media.ad_title"),
        original_media_id=_optional_id(media.get("original_media_id"), "media.original_media_id"),
        entry_time=entry_time,
    )


def _attachments(value: Any) -> list[Attachment]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _BadItem(f"message.attachments is {_a(value)}, not a list")
    found = []
    for raw in value[:50]:
        item = _object(raw, "attachment")
        payload = _object(item.get("payload"), "attachment.payload")
        url = payload.get("url")
        found.append(
            Attachment(
                type=_optional_str(item.get("type"), "attachment.type") or "unknown",
                url=url if isinstance(url, str) else None,
                payload=payload,
            )
        )
    return found


def _messaging(obj: str, entry_id: str, item: Any, expected_field: str | None) -> TypedEvent:
    item = _object(item, "messaging item")
    if not item:
        raise _BadItem("empty messaging item")
    sender = _id(_object(item.get("sender"), "sender").get("id"), "sender.id")
    recipient = _id(_object(item.get("recipient"), "recipient").get("id"), "recipient.id")
    timestamp = _time(item.get("timestamp"))
    event: MessagingEvent
    if "message" in item:
        message = _object(item["message"], "message")
        quick_reply = _object(message.get("quick_reply"), "message.quick_reply")
        reply_to = _object(message.get("reply_to"), "message.reply_to")
        story = _object(reply_to.get("story"), "message.reply_to.story")
        event = MessageEvent(
            object=obj,
            entry_id=entry_id,
            sender_id=sender,
            recipient_id=recipient,
            mid=_id(message.get("mid"), "message.mid"),
            text=_optional_str(message.get("text"), "message.text"),
            attachments=_attachments(message.get("attachments")),
            quick_reply_payload=_optional_str(quick_reply.get("payload"), "message.quick_reply.payload"),
            is_echo=message.get("is_echo") is True,
            is_deleted=message.get("is_deleted") is True,
            reply_to_mid=_optional_id(reply_to.get("mid"), "message.reply_to.mid"),
            reply_to_story_id=_optional_id(story.get("id"), "message.reply_to.story.id"),
            timestamp=timestamp,
        )
    elif "postback" in item:
        postback = _object(item["postback"], "postback")
        event = PostbackEvent(
            object=obj,
            entry_id=entry_id,
            sender_id=sender,
            recipient_id=recipient,
            mid=_optional_id(postback.get("mid"), "postback.mid"),
            title=_optional_str(postback.get("title"), "postback.title"),
            payload=_optional_str(postback.get("payload"), "postback.payload"),
            timestamp=timestamp,
        )
    elif "read" in item:
        read = _object(item["read"], "read")
        watermark = read.get("watermark")
        if watermark is not None and (isinstance(watermark, bool) or not isinstance(watermark, int)):
            raise _BadItem(f"read.watermark is {_a(watermark)}, not a number")
        event = SeenEvent(
            object=obj,
            entry_id=entry_id,
            sender_id=sender,
            recipient_id=recipient,
            watermark=watermark,
            mid=_optional_id(read.get("mid"), "read.mid"),
            timestamp=timestamp,
        )
    else:
        keys = [k for k in item if k not in ("sender", "recipient", "timestamp")]
        if not keys:
            raise _BadItem("messaging item has no message, postback or read")
        name = _OTHER_MESSAGING_FIELDS.get(keys[0], f"messaging:{keys[0][:40]}")
        return UnknownEvent(object=obj, entry_id=entry_id, field=name, value=item)
    if expected_field is not None and event.field != expected_field:
        raise _BadItem(f"a {expected_field} update carries a {event.kind}")
    return event


def _change(obj: str, entry_id: str, entry_time: dt.datetime | None, change: Any) -> TypedEvent:
    change = _object(change, "change")
    field_name = change.get("field")
    if not isinstance(field_name, str) or not field_name:
        raise _BadItem("change has no field name")
    field_name = field_name[:64]
    if "value" not in change:
        raise _BadItem(f"{_show(field_name)} change has no value")
    value = change["value"]
    if field_name in COMMENT_FIELDS:
        return _comment(obj, entry_id, entry_time, field_name, value)
    if field_name in MESSAGING_FIELDS:
        # The App Dashboard's "Test" button sends messaging updates in the changes[] shape.
        return _messaging(obj, entry_id, value, field_name)
    return UnknownEvent(object=obj, entry_id=entry_id, field=field_name, value=value)


def parse_delivery(body: bytes) -> ParsedDelivery:
    """Everything usable in a delivery, and a reason for everything that is not. Never raises."""
    result = ParsedDelivery()
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        result.rejected_reason = "not_json: the body is not valid UTF-8 JSON"
        return result
    if not isinstance(data, dict):
        result.rejected_reason = f"not_an_object: the body is {_a(data)}, not an object"
        return result
    obj = data.get("object")
    if not isinstance(obj, str) or obj not in KNOWN_OBJECTS:
        shown = "missing" if obj is None else f"{_show(obj)!r}"
        result.rejected_reason = f"unknown_object: object is {shown}; expected 'instagram' or 'page'"
        result.object = obj[:32] if isinstance(obj, str) else None
        return result
    result.object = obj
    entries = data.get("entry")
    if not isinstance(entries, list):
        result.rejected_reason = f"bad_entry: entry is {_a(entries)}, not a list"
        return result
    result.entry_count = len(entries)
    for i, entry in enumerate(entries):
        _parse_entry(result, obj, i, entry)
    if not result.items:
        first = result.problems[0] if result.problems else "the delivery has no entries"
        result.rejected_reason = f"no_usable_update: {first}"
    return result


def _parse_entry(result: ParsedDelivery, obj: str, i: int, entry: Any) -> None:
    if not isinstance(entry, dict):
        result.problem(f"entry[{i}]: is {_a(entry)}, not an object")
        return
    try:
        entry_id = _id(entry.get("id"), "entry id")
    except _BadItem as exc:
        lists = [entry.get("changes"), entry.get("messaging")]
        result.change_count += sum(len(x) for x in lists if isinstance(x, list))
        result.problem(f"entry[{i}]: {exc}")
        return
    entry_time = _time(entry.get("time"))
    found_list = False
    for key in ("changes", "messaging"):
        if key not in entry:
            continue
        items = entry[key]
        if not isinstance(items, list):
            result.problem(f"entry[{i}].{key}: is {_a(items)}, not a list")
            found_list = True
            continue
        found_list = True
        for j, raw in enumerate(items):
            result.change_count += 1
            path = f"entry[{i}].{key}[{j}]"
            if len(result.items) >= MAX_ITEMS:
                result.problem(f"{path}: over the limit of {MAX_ITEMS} updates per delivery")
                continue
            try:
                if key == "changes":
                    event = _change(obj, entry_id, entry_time, raw)
                else:
                    event = _messaging(obj, entry_id, raw, None)
            except _BadItem as exc:
                result.problem(f"{path}: {exc}")
                continue
            except ValueError as exc:  # pydantic rejected a value our checks let through
                result.problem(f"{path}: invalid update ({type(exc).__name__})")
                continue
            result.items.append(ParsedItem(path=path, event=event))
    if not found_list:
        result.problem(f"entry[{i}]: has neither changes nor messaging")
