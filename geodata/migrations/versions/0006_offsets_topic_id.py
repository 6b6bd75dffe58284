"""consumer offsets remember which incarnation of the topic they count in

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 15:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """A broker that loses a topic restarts its offsets at 0: the stored ones say where."""
    op.add_column("consumer_offsets", sa.Column("topic_id", sa.Text(), nullable=True))


def downgrade() -> None:
    """Offsets without their topic's id."""
    op.drop_column("consumer_offsets", "topic_id")
