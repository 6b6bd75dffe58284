"""Each compliance partition's newest event time and whether it is read to its end

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05 09:00:00

The event-time watermark is the least newest event time of the partitions with records
still to read (docs/PATROL_RULE.md). Each member of the compliance stage's group knows only
its own partitions, so each stores theirs here and takes the watermark from every row: a
member read to its ends no longer moves it past another member's backlog.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "compliance_partitions",
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("newest", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_to_end", sa.Boolean(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("topic", "partition", name=op.f("pk_compliance_partitions")),
    )


def downgrade() -> None:
    op.drop_table("compliance_partitions")
