"""cloud lockers: the registry, the drop-offs, and the deadlines of a locker's task

Revision ID: 0016
Revises: 0017
Create Date: 2026-12-04 04:30:00
"""

from collections.abc import Sequence

import geoalchemy2
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A locker's task (category locker.documents, docs/LOCKERS.md): picked up within 4 working
# hours of the drop-off, the result back in the locker within 2 working days of pick-up.
_LOCKER_DEADLINES: list[tuple[str, str, float, str]] = [
    ("locker.documents", "dispatch", 4, "working_hours"),
    ("locker.documents", "handle", 2, "working_days"),
]


def upgrade() -> None:
    """The locker registry, each drop-off by its event id, and the task's deadline rows."""
    op.create_table(
        "lockers",
        sa.Column("locker_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("poi_id", sa.String(length=16), nullable=True),
        sa.Column("compartments", sa.Integer(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column(
            "geom",
            geoalchemy2.types.Geometry(
                geometry_type="POINT", srid=4326, spatial_index=False, from_text="ST_GeomFromEWKT"
            ),
            nullable=False,
        ),
        sa.Column("grid_code", sa.String(length=15), nullable=True),
        sa.Column(
            "added_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint(
            "compartments BETWEEN 1 AND 200", name=op.f("ck_lockers_compartments_range")
        ),
        sa.PrimaryKeyConstraint("locker_id", name=op.f("pk_lockers")),
    )
    op.create_table(
        "locker_dropoffs",
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("locker_id", sa.Text(), nullable=False),
        sa.Column("compartment", sa.Integer(), nullable=False),
        sa.Column("document_kind", sa.Text(), nullable=False),
        sa.Column("dropped_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["locker_id"], ["lockers.locker_id"], name=op.f("fk_locker_dropoffs_locker_id_lockers")
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_locker_dropoffs")),
    )
    op.create_index(
        "ix_locker_dropoffs_locker_dropped", "locker_dropoffs", ["locker_id", "dropped_at"]
    )
    deadlines = sa.table(
        "incident_deadlines",
        sa.column("category", sa.Text()),
        sa.column("stage", sa.Text()),
        sa.column("amount", sa.Float()),
        sa.column("unit", sa.Text()),
    )
    op.bulk_insert(
        deadlines,
        [{"category": c, "stage": s, "amount": a, "unit": u} for c, s, a, u in _LOCKER_DEADLINES],
    )


def downgrade() -> None:
    """Drop the drop-offs, the registry and the task's deadline rows."""
    op.execute("DELETE FROM incident_deadlines WHERE category = 'locker.documents'")
    op.drop_index("ix_locker_dropoffs_locker_dropped", table_name="locker_dropoffs")
    op.drop_table("locker_dropoffs")
    op.drop_table("lockers")
