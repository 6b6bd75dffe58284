"""incident status changes: the outbox that publishes grid.incident-status.v1

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The outbox table; incidents filed before it have no change to publish."""
    op.create_table(
        "incident_status_changes",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("change_id", sa.UUID(), nullable=False),
        sa.Column("incident_id", sa.UUID(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", postgresql.JSON(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.incident_id"],
            name=op.f("fk_incident_status_changes_incident_id_incidents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_status_changes")),
        sa.UniqueConstraint("change_id", name=op.f("uq_incident_status_changes_change_id")),
        sa.UniqueConstraint(
            "incident_id", "version", name=op.f("uq_incident_status_changes_incident_id_version")
        ),
    )
    op.create_index(
        "ix_incident_status_changes_unpublished",
        "incident_status_changes",
        ["id"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    """Drop the outbox (with its index); what it had not published yet is lost."""
    op.drop_table("incident_status_changes")
