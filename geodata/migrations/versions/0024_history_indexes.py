"""Indexes that keep the engine's and the reads' work a week's, whatever the history

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04 09:00:00

Measured with a year of weeks loaded (`wangge bench history`, docs/HISTORY.md), three
statements read every week of the history to find one week's rows:

- the engine's `mark_final` (every batch) found the open weeks of `patrol_weeks` by a
  scan of the whole table: a partial index holds the open rows only, a week or two;
- the engine's replacement of a day's or a week's patrols, and a worker's patrols of a
  week, found them by (worker, grid) and read the worker's whole history: an index
  leading on (worker, week) finds a week's;
- a worker's track and its stamp read the worker's every patrol: an index on
  (worker, end) finds those ending in or after the interval asked.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_patrol_weeks_open_week",
        "patrol_weeks",
        ["week"],
        postgresql_where=sa.text("NOT final"),
    )
    op.create_index(
        "ix_patrols_worker_week", "patrols", ["worker_id", "week", "grid_code", "local_day"]
    )
    op.create_index("ix_patrols_worker_end", "patrols", ["worker_id", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_patrols_worker_end", table_name="patrols")
    op.drop_index("ix_patrols_worker_week", table_name="patrols")
    op.drop_index("ix_patrol_weeks_open_week", table_name="patrol_weeks")
