"""Webhook bodies in Meta's exact shapes (``changes[]`` for comments, ``messaging[]`` for DMs) and their signature."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from replyflow.sandbox.models import Comment, Media


def comment_value(comment: Comment, media: Media) -> dict[str, Any]:
    value: dict[str, Any] = {
        "from": {"id": comment.from_id, "username": comment.from_username},
        "media": {"id": media.id, "media_product_type": media.media_product_type},
        "id": comment.id,
    }
    if comment.parent_id is not None:
        value["parent_id"] = comment.parent_id
    value["text"] = comment.text
    return value


def changes_payload(*, ig_account_id: str, at: datetime, field: str, value: dict[str, Any]) -> dict[str, Any]:
    """``object: instagram`` with one entry whose ``time`` is in seconds, as comment webhooks are."""
    return {
        "object": "instagram",
        "entry": [{"id": ig_account_id, "time": int(at.timestamp()), "changes": [{"field": field, "value": value}]}],
    }


def messaging_payload(*, ig_account_id: str, at: datetime, item: dict[str, Any]) -> dict[str, Any]:
    """Messaging webhooks carry millisecond times, both on the entry and on the item."""
    return {
        "object": "instagram",
        "entry": [{"time": epoch_ms(at), "id": ig_account_id, "messaging": [item]}],
    }


def merge_payloads(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """Meta batches several updates into one delivery; the receiver must loop over ``entry[]``."""
    entries: list[Any] = []
    for payload in payloads:
        entries.extend(payload["entry"])
    return {"object": "instagram", "entry": entries}


def epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def encode_body(payload: dict[str, Any]) -> bytes:
    """Serialise like Meta: non-ASCII as ``\\uXXXX`` and ``/`` escaped, so receivers must sign the raw bytes."""
    text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
    # "/" only ever occurs inside JSON strings, so escaping it everywhere is safe.
    return text.replace("/", "\\/").encode("ascii")


def signature_256(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_sha1(body: bytes, secret: str) -> str:
    # Meta still sends the legacy header next to the SHA-256 one.
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
