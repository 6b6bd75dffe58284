"""incident attachments (photos), content-addressed

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Stored photos (their bytes live in a blob store, named by SHA-256) and which
    incident each is on, with why: the report's photos or the resolution's."""
    op.create_table(
        "attachments",
        sa.Column("content_id", sa.Text(), nullable=False),
        sa.Column("media_type", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("uploaded_by", sa.Text(), nullable=False),
        sa.Column(
            "uploaded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "content_id ~ '^[0-9a-f]{64}$'", name=op.f("ck_attachments_content_id_format")
        ),
        sa.CheckConstraint(
            "media_type IN ('image/jpeg', 'image/png', 'image/webp')",
            name=op.f("ck_attachments_media_type_kind"),
        ),
        sa.PrimaryKeyConstraint("content_id", name=op.f("pk_attachments")),
    )
    op.create_table(
        "incident_attachments",
        sa.Column("incident_id", sa.UUID(), nullable=False),
        sa.Column("content_id", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("added_by", sa.Text(), nullable=True),
        sa.Column(
            "added_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "purpose IN ('report', 'resolution')",
            name=op.f("ck_incident_attachments_purpose_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.incident_id"],
            name=op.f("fk_incident_attachments_incident_id_incidents"),
        ),
        sa.PrimaryKeyConstraint("incident_id", "content_id", name=op.f("pk_incident_attachments")),
    )


def downgrade() -> None:
    """Drop both tables (the blob store's files stay where they are)."""
    op.drop_table("incident_attachments")
    op.drop_table("attachments")
