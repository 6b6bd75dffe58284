"""account passwords, sign-in sessions and lock-out

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Passwords on accounts, the sessions table, and the per-username failure runs."""
    op.add_column("accounts", sa.Column("password_hash", sa.Text(), nullable=True))
    op.add_column(
        "accounts",
        sa.Column(
            "password_one_time", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )
    op.add_column(
        "accounts", sa.Column("password_set_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_check_constraint(
        op.f("ck_accounts_argon2_hash"),
        "accounts",
        "password_hash IS NULL OR password_hash LIKE '$argon2id$%'",
    )
    op.create_table(
        "account_sessions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "session_hash ~ '^[0-9a-f]{64}$'", name=op.f("ck_account_sessions_sha256_hex")
        ),
        sa.CheckConstraint("expires_at > created_at", name=op.f("ck_account_sessions_lifetime")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_sessions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_sessions")),
        sa.UniqueConstraint("session_hash", name=op.f("uq_account_sessions_session_hash")),
    )
    op.create_index(
        op.f("ix_account_sessions_account_id"), "account_sessions", ["account_id"], unique=False
    )
    op.create_index(
        op.f("ix_account_sessions_expires_at"), "account_sessions", ["expires_at"], unique=False
    )
    op.create_table(
        "sign_in_failures",
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("failures > 0", name=op.f("ck_sign_in_failures_positive")),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_sign_in_failures")),
    )
    op.create_index(
        op.f("ix_sign_in_failures_last_failed_at"),
        "sign_in_failures",
        ["last_failed_at"],
        unique=False,
    )


def downgrade() -> None:
    """Drop the sessions, the failure runs and the password columns."""
    op.drop_index(op.f("ix_sign_in_failures_last_failed_at"), table_name="sign_in_failures")
    op.drop_table("sign_in_failures")
    op.drop_index(op.f("ix_account_sessions_expires_at"), table_name="account_sessions")
    op.drop_index(op.f("ix_account_sessions_account_id"), table_name="account_sessions")
    op.drop_table("account_sessions")
    op.drop_constraint(op.f("ck_accounts_argon2_hash"), "accounts", type_="check")
    op.drop_column("accounts", "password_set_at")
    op.drop_column("accounts", "password_one_time")
    op.drop_column("accounts", "password_hash")
