"""Small portable SQL helpers (SQLite and PostgreSQL) the automation code needs for atomic inserts."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from replyflow.db import Base

M = TypeVar("M", bound=Base)


def insert_ignore(session: Session, model: type[Base], values: dict[str, Any]) -> bool:
    """``INSERT … ON CONFLICT DO NOTHING``; True when the row was inserted (False: it already existed)."""
    statement: Insert
    if session.get_bind().dialect.name == "postgresql":
        statement = postgresql.insert(model).values(**values).on_conflict_do_nothing()
    else:
        statement = sqlite.insert(model).values(**values).on_conflict_do_nothing()
    result = session.execute(statement)
    return bool(getattr(result, "rowcount", 0))


def insert_ignore_returning(session: Session, model: type[M], values: dict[str, Any]) -> M | None:
    """``insert_ignore`` that returns the new row as a loaded object in ``session`` (None: it already existed),
    so the caller needs no SELECT to work on what it just inserted."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(model).values(**values).on_conflict_do_nothing().returning(model)
    return session.scalars(statement).first()


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"
