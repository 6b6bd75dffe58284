"""coverage: covered lattice cells per grid version and local day

Revision ID: 0018
Revises: 0015
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Each grid version's lattice size, each (version, day)'s covered cells as a bit
    string, and an index that finds a grid's last counted patrol."""
    op.create_table(
        "coverage_lattices",
        sa.Column("grid_code", sa.String(length=15), nullable=False),
        sa.Column("grid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cells_inside", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("grid_code", "grid_from", name=op.f("pk_coverage_lattices")),
    )
    op.create_table(
        "coverage_days",
        sa.Column("grid_code", sa.String(length=15), nullable=False),
        sa.Column("grid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("local_day", sa.Date(), nullable=False),
        sa.Column("cells", postgresql.BIT(varying=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "grid_code", "grid_from", "local_day", name=op.f("pk_coverage_days")
        ),
    )
    op.create_index("ix_coverage_days_day_grid", "coverage_days", ["local_day", "grid_code"])
    op.create_index(
        "ix_patrols_counted_grid_start",
        "patrols",
        ["grid_code", "started_at"],
        postgresql_where=sa.text("counted"),
    )


def downgrade() -> None:
    op.drop_index("ix_patrols_counted_grid_start", table_name="patrols")
    op.drop_index("ix_coverage_days_day_grid", table_name="coverage_days")
    op.drop_table("coverage_days")
    op.drop_table("coverage_lattices")
