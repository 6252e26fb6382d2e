"""Incidents: one row per outage of an endpoint (`incident`), with at most one open per endpoint.

Revision: 0005, hand-written. `ux_incident_open` is a partial unique index on (model_id, provider)
WHERE resolved_at IS NULL: both PostgreSQL and SQLite (3.8+) enforce it, so concurrent evaluators
opening the same incident with INSERT ... ON CONFLICT DO NOTHING leave exactly one open row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "incident",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_kinds", sa.Text(), nullable=False),
        sa.Column("locations", sa.Text(), nullable=False),
    )
    op.create_index(
        "ux_incident_open", "incident", ["model_id", "provider"], unique=True,
        postgresql_where=sa.text("resolved_at IS NULL"), sqlite_where=sa.text("resolved_at IS NULL"),
    )
    op.create_index("ix_incident_started", "incident", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_incident_started", table_name="incident")
    op.drop_index("ux_incident_open", table_name="incident")
    op.drop_table("incident")
