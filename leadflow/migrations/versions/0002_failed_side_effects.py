"""Side effects that failed after their retries, kept for `leadflow replay`.

Created only when missing (IF NOT EXISTS): a database where an earlier leadflow made
this table on first use is adopted as it is, rows and all.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "failed_side_effects",
        sa.Column("once_key", sa.String(), nullable=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("branch", sa.String(), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("lead", sa.Text(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failed_at", _WHEN, nullable=False),
        sa.Column("closed_at", _WHEN, nullable=True),
        sa.PrimaryKeyConstraint("once_key", "scope"),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_table("failed_side_effects")
