"""consumer heartbeats: each consumer member's last sign of life and lag, for /healthz

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """One row per (group, member), overwritten at every beat."""
    op.create_table(
        "consumer_heartbeats",
        sa.Column("group_id", sa.Text(), nullable=False),
        sa.Column("member", sa.Text(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("topics", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("lag", sa.BigInteger(), nullable=True),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "stage IN ('intake', 'compliance')", name=op.f("ck_consumer_heartbeats_stage_kind")
        ),
        sa.PrimaryKeyConstraint("group_id", "member", name=op.f("pk_consumer_heartbeats")),
    )


def downgrade() -> None:
    """No heartbeats."""
    op.drop_table("consumer_heartbeats")
