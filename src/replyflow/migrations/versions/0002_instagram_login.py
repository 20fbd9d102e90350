"""Instagram Login: accounts with no Facebook Page, their login kind, app-scoped id and token issue time

Revision ID: 0002_instagram_login
Revises: 0001_initial
Create Date: 2026-12-04 20:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import replyflow.db

revision: str = "0002_instagram_login"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("login", sa.String(length=16), server_default="facebook", nullable=False))
        batch_op.add_column(sa.Column("instagram_user_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("token_issued_at", replyflow.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.alter_column("page_id", existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.alter_column("page_id", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_column("token_issued_at")
        batch_op.drop_column("instagram_user_id")
        batch_op.drop_column("login")
