"""Routing that knows who can take a lead, and keeps why it chose.

- `assignments.tier`: the lead's tier when it was assigned, so a rep's open hot leads
  can be counted (the max_open_hot cap);
- `assignments.facts`: the facts the assignment was made from (models.RoutingFacts as
  JSON: territory, team, weights and credits, who was skipped and why, the SLA), read
  by `leadflow why`;
- an index on (rep, assigned_at), which the caps count by.

Rows from before keep NULL in both: they count as leads of no tier, and `leadflow why`
says their facts were not recorded.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-12
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A database made by create_all from these models already has the columns.
    existing = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("assignments")}
    missing = [
        column
        for column in (sa.Column("tier", sa.String()), sa.Column("facts", sa.Text()))
        if column.name not in existing
    ]
    if missing:
        # SQLite: rebuilt, as its ADD COLUMN would leave a table declared unlike a new
        # one; PostgreSQL adds the columns in place
        sqlite = op.get_bind().dialect.name == "sqlite"
        with op.batch_alter_table("assignments", recreate="always" if sqlite else "auto") as batch:
            for column in missing:
                batch.add_column(column)
    op.create_index(
        "ix_assignments_rep_assigned_at", "assignments", ["rep", "assigned_at"], if_not_exists=True
    )


def downgrade() -> None:
    op.drop_index("ix_assignments_rep_assigned_at", table_name="assignments")
    with op.batch_alter_table("assignments", recreate="always") as batch:
        batch.drop_column("facts")
        batch.drop_column("tier")
