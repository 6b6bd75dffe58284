"""probable duplicates: links between a new report and an open case

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 22:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """A report's link to the open case it probably repeats, its distance, and whether a
    supervisor confirmed it; indexed for an original's followers."""
    op.add_column(
        "incidents", sa.Column("duplicate_of", postgresql.UUID(as_uuid=True), nullable=True)
    )
    op.add_column("incidents", sa.Column("duplicate_distance_m", sa.Float(), nullable=True))
    op.add_column(
        "incidents",
        sa.Column(
            "duplicate_confirmed", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )
    op.create_foreign_key(
        op.f("fk_incidents_duplicate_of_incidents"),
        "incidents",
        "incidents",
        ["duplicate_of"],
        ["incident_id"],
    )
    op.create_index(
        "ix_incidents_duplicate_of",
        "incidents",
        ["duplicate_of"],
        unique=False,
        postgresql_where=sa.text("duplicate_of IS NOT NULL"),
    )


def downgrade() -> None:
    """Drop the links: which report repeated which is lost (the cancellations stay)."""
    op.drop_index(
        "ix_incidents_duplicate_of",
        table_name="incidents",
        postgresql_where=sa.text("duplicate_of IS NOT NULL"),
    )
    op.drop_constraint(op.f("fk_incidents_duplicate_of_incidents"), "incidents", type_="foreignkey")
    op.drop_column("incidents", "duplicate_confirmed")
    op.drop_column("incidents", "duplicate_distance_m")
    op.drop_column("incidents", "duplicate_of")
