"""One engine: one once-only store with leases, the decisions store, the inbox.

- `side_effect_claims` replaces `side_effects_done`. Its claims carry a lease that
  the holder renews; a claim whose lease ran out is taken again, never counted as
  done. Rows are carried over: done stays done; a failed row stays failed; a claimed
  row (its holder may have died before the call) becomes failed, so the next run
  sends it again under the same key instead of skipping it.
- `lead_decisions` replaces `done_leads`: the decision itself, the lead and its CRM
  match are kept, not only the tier and rep. `done_leads` rows are dropped: a lead
  found there is run again, and its side effects, found done in the once-only store
  or by the adapters' own keys, are not repeated.
- `lead_inbox`: leads accepted in real time, kept until finished.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    op.create_table(
        "side_effect_claims",
        sa.Column("effect", sa.String(), nullable=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("token", sa.String(), nullable=False),
        sa.Column("lease_until", _WHEN, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("effect", "scope", "key"),
        if_not_exists=True,
    )
    if "side_effects_done" in existing:
        op.execute(
            "INSERT INTO side_effect_claims "
            "(effect, scope, key, status, token, lease_until, attempts, updated_at, detail) "
            "SELECT effect, scope, lead_id, "
            "CASE WHEN status = 'done' THEN 'done' ELSE 'failed' END, "
            "claim, updated_at, 1, updated_at, "
            "CASE WHEN status = 'claimed' THEN 'claimed by an earlier leadflow; sent again' "
            "ELSE detail END "
            "FROM side_effects_done"
        )
        op.drop_table("side_effects_done")
    if "done_leads" in existing:
        op.drop_table("done_leads")
    op.create_table(
        "lead_decisions",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("lead", sa.Text(), nullable=False),
        sa.Column("match", sa.Text(), nullable=True),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("decided_at", _WHEN, nullable=False),
        sa.Column("done_at", _WHEN, nullable=True),
        sa.PrimaryKeyConstraint("key"),
        if_not_exists=True,
    )
    for column in ("lead_id", "email", "decided_at"):
        op.create_index(
            f"ix_lead_decisions_{column}", "lead_decisions", [column], if_not_exists=True
        )
    op.create_table(
        "lead_inbox",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("origin", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=True),
        sa.Column("lease_until", _WHEN, nullable=True),
        sa.Column("accepted_at", _WHEN, nullable=False),
        sa.Column("finished_at", _WHEN, nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index("ix_lead_inbox_status", "lead_inbox", ["status"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_lead_inbox_status", table_name="lead_inbox")
    op.drop_table("lead_inbox")
    for column in ("lead_id", "email", "decided_at"):
        op.drop_index(f"ix_lead_decisions_{column}", table_name="lead_decisions")
    op.drop_table("lead_decisions")
    op.create_table(
        "done_leads",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("tier", sa.String(), nullable=False),
        sa.Column("rep", sa.String(), nullable=False),
        sa.Column("done_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("key"),
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
    )
    op.execute(
        "INSERT INTO side_effects_done (effect, scope, lead_id, status, claim, updated_at, detail) "
        "SELECT effect, scope, key, status, token, updated_at, detail FROM side_effect_claims"
    )
    op.drop_table("side_effect_claims")
