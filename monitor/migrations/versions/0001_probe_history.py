"""Probe history and per-endpoint latest pointers.

Revision: 0001 (first), hand-written.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# 64-bit ids on PostgreSQL; exactly INTEGER on SQLite so the id aliases the rowid.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "probe_result",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("protocol", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error_kind", sa.String(32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("started_at", _UTC, nullable=False),
        sa.Column("ttft_s", sa.Double(), nullable=True),
        sa.Column("connect_s", sa.Double(), nullable=True),
        sa.Column("total_s", sa.Double(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("token_count_source", sa.String(16), nullable=True),
        sa.Column("tokens_per_second", sa.Double(), nullable=True),
        sa.Column("first_answer_s", sa.Double(), nullable=True),
        sa.Column("first_reasoning_s", sa.Double(), nullable=True),
        sa.Column("last_token_s", sa.Double(), nullable=True),
        sa.Column("headers_s", sa.Double(), nullable=True),
        sa.Column("dns_s", sa.Double(), nullable=True),
        sa.Column("tcp_s", sa.Double(), nullable=True),
        sa.Column("tls_s", sa.Double(), nullable=True),
        sa.Column("content_chunks", sa.Integer(), nullable=False),
        sa.Column("usage_tokens", sa.Integer(), nullable=True),
        sa.Column("first_read_tokens", sa.Integer(), nullable=False),
        sa.Column("finish_reason", sa.String(), nullable=True),
        sa.Column("http_version", sa.String(16), nullable=True),
        sa.Column("connection_reused", sa.Boolean(), nullable=True),
        sa.Column("loop_lag_s", sa.Double(), nullable=True),
        sa.Column("cpu_s", sa.Double(), nullable=True),
        sa.Column("stream_bytes", sa.BigInteger(), nullable=False),
        sa.Column("retry_after_s", sa.Double(), nullable=True),
        sa.Column("methodology", sa.String(32), nullable=False),
    )
    op.create_index(
        "ix_probe_result_endpoint_recent",
        "probe_result",
        ["model_id", "provider", sa.text("started_at DESC"), sa.text("id DESC")],
        postgresql_include=["ok", "error_kind", "ttft_s", "tokens_per_second"],
    )
    op.create_table(
        "endpoint_latest",
        sa.Column("model_id", sa.String(), primary_key=True),
        sa.Column("provider", sa.String(), primary_key=True),
        sa.Column(
            "latest_probe_id",
            _ID,
            sa.ForeignKey("probe_result.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("latest_started_at", _UTC, nullable=False),
        sa.Column(
            "latest_ok_probe_id",
            _ID,
            sa.ForeignKey("probe_result.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("latest_ok_started_at", _UTC, nullable=True),
    )
    op.create_index("ix_endpoint_latest_latest_probe_id", "endpoint_latest", ["latest_probe_id"])
    op.create_index("ix_endpoint_latest_latest_ok_probe_id", "endpoint_latest", ["latest_ok_probe_id"])


def downgrade() -> None:
    op.drop_table("endpoint_latest")
    op.drop_index("ix_probe_result_endpoint_recent", table_name="probe_result")
    op.drop_table("probe_result")
