"""proof of presence: the compliance engine's copy of a check-in keeps its two flags

Revision ID: 0017
Revises: 0018
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Whether the phone said the fix was mocked, and whether the intake flagged an
    impossible speed: a walk with either before it is proven is not valid
    (docs/PATROL_RULE.md). Check-ins copied before this are taken as unflagged."""
    for name in ("mock", "implausible_speed"):
        op.add_column(
            "patrol_checkins",
            sa.Column(name, sa.Boolean(), server_default=sa.text("false"), nullable=False),
        )


def downgrade() -> None:
    """Drop the two flags."""
    for name in ("implausible_speed", "mock"):
        op.drop_column("patrol_checkins", name)
