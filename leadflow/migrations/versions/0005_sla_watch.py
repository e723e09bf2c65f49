"""SLAs that act: the cases the watcher follows, their history, where it has read to.

- `sla_cases`: one row per lead with a deadline, as the `watch-slas` flow sees it
  (who holds the lead, the deadline, where the case stands);
- `sla_steps`: the lead's SLA history, one row per step (watching, reminded,
  reassigned, manager told, escalated, contacted, lapsed), read by `leadflow why`;
- `sla_scans`: how far the watcher has read the decisions, per scope.

Created only when missing (IF NOT EXISTS), as the earlier revisions do.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHEN = sa.DateTime(timezone=True)
_CASE_INDEXES = ("due_at", "email", "status")


def upgrade() -> None:
    op.create_table(
        "sla_cases",
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("decision_key", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("tier", sa.String(), nullable=False),
        sa.Column("rep", sa.String(), nullable=False),
        sa.Column("assigned_at", _WHEN, nullable=False),
        sa.Column("due_at", _WHEN, nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reminded_at", _WHEN, nullable=True),
        sa.Column("escalated_at", _WHEN, nullable=True),
        sa.Column("closed_at", _WHEN, nullable=True),
        sa.PrimaryKeyConstraint("lead_id"),
        if_not_exists=True,
    )
    for column in _CASE_INDEXES:
        op.create_index(
            f"ix_sla_cases_{column}", "sla_cases", [column], unique=False, if_not_exists=True
        )
    op.create_table(
        "sla_steps",
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("step", sa.String(), nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("rep", sa.String(), nullable=True),
        sa.Column("told", sa.String(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("lead_id", "step"),
        if_not_exists=True,
    )
    op.create_table(
        "sla_scans",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("scanned_until", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("scope"),
        if_not_exists=True,
    )


def downgrade() -> None:
    for column in _CASE_INDEXES:
        op.drop_index(f"ix_sla_cases_{column}", table_name="sla_cases")
    for table in ("sla_scans", "sla_steps", "sla_cases"):
        op.drop_table(table)
