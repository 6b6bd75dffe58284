"""drop processed_events: idempotency rides on each table's own event_id key

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 16:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing reads or writes the table: check-ins, incidents and patrol check-ins dedupe
    on their own `event_id` keys, in the transaction that stores the offsets."""
    op.drop_table("processed_events")


def downgrade() -> None:
    """The table as 0001 made it (empty: it never held anything)."""
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_processed_events")),
    )
