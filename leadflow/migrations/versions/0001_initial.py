"""leadflow's tables as they were before migrations.

Each table and index is created only when missing (IF NOT EXISTS): a database made by
an earlier leadflow, which created its tables on first use (all of them, or only the
few a shadow database needed), is adopted as it is, rows and all; a new database gets
every table.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "quarantine",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("origin", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("lead_ref", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("quarantined_at", _WHEN, nullable=False),
        sa.Column("replayed_at", _WHEN, nullable=True),
        sa.PrimaryKeyConstraint("key"),
        if_not_exists=True,
    )
    op.create_table(
        "processed_files",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("claimed_at", _WHEN, nullable=False),
        sa.Column("finished_at", _WHEN, nullable=True),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("detail", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("sha256"),
        if_not_exists=True,
    )
    op.create_table(
        "done_leads",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("tier", sa.String(), nullable=False),
        sa.Column("rep", sa.String(), nullable=False),
        sa.Column("done_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("key"),
        if_not_exists=True,
    )
    op.create_table(
        "side_effects_done",
        sa.Column("effect", sa.String(), nullable=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("claim", sa.String(), nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("detail", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("effect", "scope", "lead_id"),
        if_not_exists=True,
    )
    op.create_table(
        "round_robin_credit",
        sa.Column("team", sa.String(), nullable=False),
        sa.Column("rep", sa.String(), nullable=False),
        sa.Column("credit", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("team", "rep"),
        if_not_exists=True,
    )
    op.create_table(
        "assignments",
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("rep", sa.String(), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("assigned_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("lead_id"),
        if_not_exists=True,
    )
    op.create_table(
        "shadow_comparisons",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("legacy", sa.String(), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("compared_at", _WHEN, nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("control", sa.JSON(), nullable=True),
        sa.Column("candidate", sa.JSON(), nullable=True),
        sa.Column("control_error", sa.Text(), nullable=True),
        sa.Column("candidate_error", sa.Text(), nullable=True),
        sa.Column("control_ms", sa.Float(), nullable=True),
        sa.Column("candidate_ms", sa.Float(), nullable=True),
        sa.Column("control_steps", sa.JSON(), nullable=True),
        sa.Column("candidate_steps", sa.JSON(), nullable=True),
        sa.Column("intended", sa.JSON(), nullable=True),
        sa.Column("record", sa.JSON(), nullable=True),
        sa.Column("fallback", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    for column in ("compared_at", "lead_id", "run_id"):
        op.create_index(
            f"ix_shadow_comparisons_{column}",
            "shadow_comparisons",
            [column],
            unique=False,
            if_not_exists=True,
        )


def downgrade() -> None:
    for column in ("compared_at", "lead_id", "run_id"):
        op.drop_index(f"ix_shadow_comparisons_{column}", table_name="shadow_comparisons")
    for table in (
        "shadow_comparisons",
        "assignments",
        "round_robin_credit",
        "side_effects_done",
        "done_leads",
        "processed_files",
        "quarantine",
    ):
        op.drop_table(table)
