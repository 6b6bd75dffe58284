"""tracker devices registered to workers (OsmAnd, OwnTracks)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The tracker_devices table: one row per app registered to a worker."""
    op.create_table(
        "tracker_devices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("identifier", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("worker_id", sa.String(length=6), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("registered_by", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('osmand', 'owntracks')", name=op.f("ck_tracker_devices_device_kind")
        ),
        sa.CheckConstraint(
            "secret_hash ~ '^[0-9a-f]{64}$'", name=op.f("ck_tracker_devices_sha256_hex")
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"], ["workers.worker_id"], name=op.f("fk_tracker_devices_worker_id_workers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracker_devices")),
        sa.UniqueConstraint("identifier", name=op.f("uq_tracker_devices_identifier")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_tracker_devices_secret_hash")),
    )
    op.create_index(
        op.f("ix_tracker_devices_worker_id"), "tracker_devices", ["worker_id"], unique=False
    )


def downgrade() -> None:
    """Drop the tracker_devices table."""
    op.drop_index(op.f("ix_tracker_devices_worker_id"), table_name="tracker_devices")
    op.drop_table("tracker_devices")
