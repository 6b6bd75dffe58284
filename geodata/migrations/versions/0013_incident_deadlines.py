"""incident deadlines: the city's table per category and stage, due times on open cases

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 22:50:00
"""

from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The seeded table, frozen here as it was at this revision (geodata.deadlines holds the
# defaults the code documents; a later change of them is a later migration's).
_DEFAULT_DEADLINES: list[tuple[str, str, float, str]] = [
    ("*", "dispatch", 2, "working_hours"),
    ("*", "handle", 3, "working_days"),
    ("*", "verify", 1, "working_days"),
    ("emergency", "dispatch", 0.5, "hours"),
    ("emergency", "handle", 2, "hours"),
    ("emergency", "verify", 2, "hours"),
    ("public_facilities.manhole_cover", "dispatch", 1, "hours"),
    ("public_facilities.manhole_cover", "handle", 4, "hours"),
    ("street_order", "handle", 4, "working_hours"),
    ("advertising.illegal_small_ads", "handle", 1, "working_days"),
]
# The reference city's simulated autumn: National Day and Mid-Autumn 2020 (1-8 October
# off, Sunday 27 September and Saturday 10 October worked).
_DEFAULT_DAYS: list[tuple[str, str, str]] = [
    *((f"2020-10-0{day}", "holiday", "国庆节、中秋节") for day in range(1, 9)),
    ("2020-09-27", "workday", "国庆节调休"),
    ("2020-10-10", "workday", "国庆节调休"),
]


def upgrade() -> None:
    """The deadline table and the calendar's exceptions, seeded; due time and flag on incidents."""
    deadlines = op.create_table(
        "incident_deadlines",
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("unit", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "stage IN ('dispatch', 'handle', 'verify')",
            name=op.f("ck_incident_deadlines_stage_kind"),
        ),
        sa.CheckConstraint(
            "unit IN ('hours', 'working_hours', 'working_days')",
            name=op.f("ck_incident_deadlines_unit_kind"),
        ),
        sa.CheckConstraint(
            "amount > 0 AND amount <= 1000", name=op.f("ck_incident_deadlines_amount_range")
        ),
        sa.PrimaryKeyConstraint("category", "stage", name=op.f("pk_incident_deadlines")),
    )
    days = op.create_table(
        "calendar_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('holiday', 'workday')", name=op.f("ck_calendar_days_holiday_or_workday")
        ),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_calendar_days")),
    )
    op.bulk_insert(
        deadlines,
        [{"category": c, "stage": s, "amount": a, "unit": u} for c, s, a, u in _DEFAULT_DEADLINES],
    )
    op.bulk_insert(
        days,
        [{"day": date.fromisoformat(d), "kind": k, "name": n} for d, k, n in _DEFAULT_DAYS],
    )
    op.add_column("incidents", sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "incidents",
        sa.Column("overdue", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    # The deadline engine loads the open cases with a due time at start.
    op.create_index(
        "ix_incidents_due_at",
        "incidents",
        ["due_at"],
        unique=False,
        postgresql_where=sa.text("due_at IS NOT NULL"),
    )


def downgrade() -> None:
    """Drop due times, the flag, the table and the calendar: what they said is lost."""
    op.drop_index(
        "ix_incidents_due_at",
        table_name="incidents",
        postgresql_where=sa.text("due_at IS NOT NULL"),
    )
    op.drop_column("incidents", "overdue")
    op.drop_column("incidents", "due_at")
    op.drop_table("calendar_days")
    op.drop_table("incident_deadlines")
