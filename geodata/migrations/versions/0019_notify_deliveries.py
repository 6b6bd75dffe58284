"""notify deliveries: a supervisor's call to a worker, sent to a webhook with retries

Revision ID: 0019
Revises: 0014
Create Date: 2026-12-04 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The calls to deliver (pending ones indexed by when they are due) and every attempt."""
    op.create_table(
        "notify_deliveries",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", postgresql.JSON(astext_type=sa.Text()), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'failed')",
            name=op.f("ck_notify_deliveries_state_kind"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_notify_deliveries_attempts_count")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_deliveries")),
        sa.UniqueConstraint("delivery_id", name=op.f("uq_notify_deliveries_delivery_id")),
    )
    op.create_index(
        op.f("ix_notify_deliveries_worker_id"), "notify_deliveries", ["worker_id"], unique=False
    )
    op.create_index(
        "ix_notify_deliveries_due",
        "notify_deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_table(
        "notify_attempts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["notify_deliveries.id"],
            name=op.f("fk_notify_attempts_delivery_id_notify_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_attempts")),
    )
    op.create_index(
        op.f("ix_notify_attempts_delivery_id"), "notify_attempts", ["delivery_id"], unique=False
    )


def downgrade() -> None:
    """Drop the calls and their attempts: who was called when is lost."""
    op.drop_index(op.f("ix_notify_attempts_delivery_id"), table_name="notify_attempts")
    op.drop_table("notify_attempts")
    op.drop_index(
        "ix_notify_deliveries_due",
        table_name="notify_deliveries",
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.drop_index(op.f("ix_notify_deliveries_worker_id"), table_name="notify_deliveries")
    op.drop_table("notify_deliveries")
