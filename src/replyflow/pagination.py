"""Cursor pagination for every list: ``{"items": [...], "next_cursor": "<opaque or null>"}``.

Ids are time-ordered (replyflow.ids), so the cursor is the last id seen, wrapped so clients treat it as opaque.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from replyflow.errors import ValidationFailed

T = TypeVar("T")
MAX_LIMIT = 200


class ListPage(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(f"after:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    if not raw.startswith("after:") or len(raw) > 200:
        raise ValidationFailed(
            "This cursor is not valid.",
            field="cursor",
            hint="Use the next_cursor value from the previous page as it is.",
        )
    return raw.removeprefix("after:")


def paginate(
    session: Session,
    query: Select[Any],
    *,
    id_column: InstrumentedAttribute[str],
    cursor: str | None,
    limit: int,
    descending: bool = True,
) -> tuple[list[Any], str | None]:
    """Rows of one page (newest first by default) and the cursor of the next page, if any."""
    if limit < 1 or limit > MAX_LIMIT:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIMIT}.", field="limit")
    if cursor:
        after = decode_cursor(cursor)
        query = query.where(id_column < after if descending else id_column > after)
    query = query.order_by(id_column.desc() if descending else id_column.asc()).limit(limit + 1)
    rows = list(session.scalars(query))
    next_cursor = encode_cursor(getattr(rows[limit - 1], id_column.key)) if len(rows) > limit else None
    return rows[:limit], next_cursor
