"""evaluation: the incidents reported and the history entries made in a period, indexed

Revision ID: 0015
Revises: 0019
Create Date: 2026-12-04 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Index the times an evaluation selects a period's cases by (docs/EVALUATION.md)."""
    op.create_index("ix_incidents_reported_at", "incidents", ["reported_at"], unique=False)
    op.create_index("ix_incident_events_at", "incident_events", ["at"], unique=False)


def downgrade() -> None:
    """Drop them: an evaluation then scans both tables."""
    op.drop_index("ix_incident_events_at", table_name="incident_events")
    op.drop_index("ix_incidents_reported_at", table_name="incidents")
