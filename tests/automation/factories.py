"""Small builders for rule specs and comments used across the automation tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from replyflow.automation.matching import CommentContext
from replyflow.automation.schemas import RuleSpec

NOW = datetime(2025, 11, 3, 12, 0, tzinfo=UTC)
ACCOUNT_IG_ID = "17841400000000001"
MEDIA_ID = "17900000000000001"


def rule(**overrides: Any) -> RuleSpec:
    """A valid rule on MEDIA_ID matching "link"; overrides replace top-level fields."""
    data: dict[str, Any] = {
        "name": "Test rule",
        "posts": {"mode": "specific", "media_ids": [MEDIA_ID]},
        "keywords": ["link"],
        "match": "contains_any",
        "private_reply": {"text": "Here you go, {first_name}"},
    }
    data.update(overrides)
    return RuleSpec.model_validate(data)


def comment(text: str, **overrides: Any) -> CommentContext:
    values: dict[str, Any] = {
        "text": text,
        "media_id": MEDIA_ID,
        "from_id": "1790000000000099",
        "username": "ana.cafe",
        "comment_id": "17800000000000042",
        "created_at": NOW,
    }
    values.update(overrides)
    return CommentContext(**values)
