"""rule triggers and the follow gate

Revision ID: 0004_triggers_follow_gate
Revises: 0003_team
Create Date: 2026-12-04 20:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import replyflow.db

revision: str = "0004_triggers_follow_gate"
down_revision: str | None = "0003_team"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rules") as batch:
        batch.add_column(sa.Column("trigger", sa.String(length=16), server_default="comment", nullable=False))
        batch.add_column(sa.Column("follow_gate", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("tags", sa.JSON(), server_default="[]", nullable=False))
        batch.add_column(sa.Column("collect_email", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("trigger", sa.String(length=16), server_default="comment", nullable=False))
    op.create_index("ix_runs_trigger_created_at", "runs", ["trigger", "created_at"], unique=False)
    op.create_table(
        "follow_gates",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("rule_id", sa.String(length=40), nullable=True),
        sa.Column("igsid", sa.String(length=128), nullable=False),
        sa.Column("gates_sent", sa.Integer(), nullable=False),
        sa.Column("regate_state", sa.String(length=16), nullable=False),
        sa.Column("taps", sa.Integer(), nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("follows", sa.Boolean(), nullable=True),
        sa.Column("unlock_state", sa.String(length=16), nullable=False),
        sa.Column("unlock_text", sa.Text(), nullable=True),
        sa.Column("unlock_message", sa.JSON(), nullable=True),
        sa.Column("unlock_message_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", replyflow.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", replyflow.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("first_tap_at", replyflow.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_tap_at", replyflow.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("followed_at", replyflow.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("unlocked_at", replyflow.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["rule_id"], ["rules.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_index("ix_follow_gates_account_id", "follow_gates", ["account_id"], unique=False)
    op.create_index("ix_follow_gates_workspace_id", "follow_gates", ["workspace_id"], unique=False)
    op.create_index("ix_follow_gates_rule_id_igsid", "follow_gates", ["rule_id", "igsid"], unique=False)
    op.create_table(
        "contacts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("igsid", sa.String(length=128), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=True),
        sa.Column("first_seen_at", replyflow.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", replyflow.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("rule_ids", sa.JSON(), nullable=False),
        sa.Column("follows", sa.Boolean(), nullable=True),
        sa.Column("follows_checked_at", replyflow.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("email_at", replyflow.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("email_rule_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", replyflow.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", replyflow.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "igsid"),
    )
    op.create_index("ix_contacts_workspace_id_last_seen_at", "contacts", ["workspace_id", "last_seen_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_contacts_workspace_id_last_seen_at", table_name="contacts")
    op.drop_table("contacts")
    op.drop_index("ix_follow_gates_rule_id_igsid", table_name="follow_gates")
    op.drop_index("ix_follow_gates_workspace_id", table_name="follow_gates")
    op.drop_index("ix_follow_gates_account_id", table_name="follow_gates")
    op.drop_table("follow_gates")
    op.drop_index("ix_runs_trigger_created_at", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("trigger")
    with op.batch_alter_table("rules") as batch:
        batch.drop_column("collect_email")
        batch.drop_column("tags")
        batch.drop_column("follow_gate")
        batch.drop_column("trigger")
