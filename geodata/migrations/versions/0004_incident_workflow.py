"""incident workflow: a version per incident and the append-only history of transitions

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 13:40:47.686545
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = (
    "'reported', 'dispatched', 'in_progress', 'resolved', 'closed', 'escalated', 'cancelled'"
)

# History is evidence (who closed what, when): the database refuses to rewrite it.
_APPEND_ONLY = """
CREATE FUNCTION incident_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'incident_events is append-only (% refused)', TG_OP;
END
$$;
CREATE TRIGGER incident_events_append_only
    BEFORE UPDATE OR DELETE ON incident_events
    FOR EACH ROW EXECUTE FUNCTION incident_events_append_only();
"""


def upgrade() -> None:
    op.add_column(
        "incidents", sa.Column("version", sa.Integer(), server_default="1", nullable=False)
    )
    op.add_column(
        "incidents",
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.create_check_constraint(
        op.f("ck_incidents_status_kind"), "incidents", f"status IN ({_STATUSES})"
    )
    op.create_table(
        "incident_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.UUID(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("from_status", sa.Text(), nullable=False),
        sa.Column("to_status", sa.Text(), nullable=False),
        sa.Column("assignee", sa.String(length=6), nullable=True),
        sa.Column("escalated_to", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("actor_role", sa.Text(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.incident_id"],
            name=op.f("fk_incident_events_incident_id_incidents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_events")),
        sa.UniqueConstraint(
            "incident_id", "version", name=op.f("uq_incident_events_incident_id_version")
        ),
    )
    op.execute(_APPEND_ONLY)


def downgrade() -> None:
    op.drop_table("incident_events")  # drops its trigger too
    op.execute("DROP FUNCTION incident_events_append_only()")
    op.drop_constraint(op.f("ck_incidents_status_kind"), "incidents", type_="check")
    op.drop_column("incidents", "updated_at")
    op.drop_column("incidents", "version")
