"""The patrols by the moment they became valid

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-04 12:30:00

A week's stored status is as of the engine's watermark, and a patrol counts from the
moment it became valid (docs/PATROL_RULE.md). A walk folded while another partition's
backlog holds the watermark before it is valid only later; when the watermark passes
that moment the engine evaluates the walk's week again, and finds those weeks by this
index: the patrols that became valid between the old watermark and the new one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_patrols_valid_at",
        "patrols",
        ["valid_at"],
        postgresql_where=sa.text("valid_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_patrols_valid_at", table_name="patrols")
