"""Rename probe_result.content_chunks to token_chunks: the count covers every token-bearing
stream event (content, reasoning and tool-call deltas), not content alone.

Revision: 0002, hand-written. `ALTER TABLE ... RENAME COLUMN` works in place on PostgreSQL and on
SQLite (3.25+), keeping the data and the indexes.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE probe_result RENAME COLUMN content_chunks TO token_chunks")


def downgrade() -> None:
    op.execute("ALTER TABLE probe_result RENAME COLUMN token_chunks TO content_chunks")
