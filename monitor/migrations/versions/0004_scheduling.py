"""Slot claims for HA scheduling (`probe_slot`): one row per (endpoint, location, kind, slot)
that some probing process claimed (`monitor.coordination.PostgresClaims`).

Revision: 0004, hand-written. The primary key IS the claim: `INSERT ... ON CONFLICT DO NOTHING`
lets exactly one process win a slot. `ix_probe_slot_expires_at` serves the batched prune (rows
expire two intervals after their slot, so the table stays at about endpoints x locations x 3
rows); the partial `ix_probe_slot_unfinished` serves the take-over sweep, which only looks at
claims whose probe has not finished. Created on SQLite too (unused there: one probing process
per file), so both backends share one schema.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "probe_slot",
        sa.Column("model_id", sa.String(), primary_key=True),
        sa.Column("provider", sa.String(), primary_key=True),
        sa.Column("location", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("slot_start", _UTC, primary_key=True),
        sa.Column("slot_end", _UTC, nullable=False),
        sa.Column("expires_at", _UTC, nullable=False),
        sa.Column("lease_until", _UTC, nullable=False),
        sa.Column("claimed_by", sa.String(80), nullable=False),
        sa.Column("claimed_at", _UTC, nullable=False),
        sa.Column("finished_at", _UTC, nullable=True),
        sa.Column("attempts", sa.SmallInteger(), nullable=False),
    )
    op.create_index("ix_probe_slot_expires_at", "probe_slot", ["expires_at"])
    op.create_index(
        "ix_probe_slot_unfinished", "probe_slot", ["location", "lease_until"],
        postgresql_where=sa.text("finished_at IS NULL"), sqlite_where=sa.text("finished_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_probe_slot_unfinished", table_name="probe_slot")
    op.drop_index("ix_probe_slot_expires_at", table_name="probe_slot")
    op.drop_table("probe_slot")
