"""Roll-ups: hourly and daily aggregates per series (endpoint x location x workload profile),
the roll-up job's progress, and an index on probe_result.started_at for retention.

Revision: 0006, hand-written. Tables: `rollup_series`, `rollup_hourly`, `rollup_daily`
(identical shape, keyed by (series_id, bucket_start UTC)), `rollup_state` (one row). Existing
probes are not rolled up here: the roll-up job absorbs them on its first run (its watermark
starts at 0).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COUNTS = (
    "ok", "config_error", "dns_error", "connect_error", "tls_error", "timeout", "auth_error",
    "not_found", "rate_limited", "http_error", "stream_error", "empty_response",
    "maintenance", "unscheduled", "cold_starts", "suspect", "ttft_count", "tps_count",
)
_QUANTILES = ("ttft_ms_p5", "ttft_ms_p50", "ttft_ms_p95", "tps_p5", "tps_p50", "tps_p95")
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamp() -> sa.types.TypeEngine:
    return sa.DateTime(timezone=True)


def _rollup_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("series_id", sa.BigInteger(), sa.ForeignKey("rollup_series.id"), nullable=False),
        sa.Column("bucket_start", _timestamp(), nullable=False),
        *(sa.Column(column, sa.Integer(), nullable=False) for column in _COUNTS),
        sa.Column("ttft_sketch", sa.LargeBinary(), nullable=True),
        sa.Column("tps_sketch", sa.LargeBinary(), nullable=True),
        *(sa.Column(column, sa.Double(), nullable=True) for column in _QUANTILES),
        sa.PrimaryKeyConstraint("series_id", "bucket_start"),
        sqlite_with_rowid=False,
    )
    op.create_index(f"ix_{name}_bucket_start", name, ["bucket_start"])


def upgrade() -> None:
    op.create_table(
        "rollup_series",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("location", sa.String(32), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.UniqueConstraint("model_id", "provider", "location", "input_tokens", name="uq_rollup_series_key"),
    )
    _rollup_table("rollup_hourly")
    _rollup_table("rollup_daily")
    op.create_table(
        "rollup_state",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("absorbed_id", sa.BigInteger(), nullable=False),
        sa.Column("gaps", sa.Text(), nullable=False),
        sa.Column("raw_complete_since", _timestamp(), nullable=True),
        sa.Column("updated_at", _timestamp(), nullable=True),
    )
    op.create_index("ix_probe_result_started_at", "probe_result", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_probe_result_started_at", table_name="probe_result")
    op.drop_table("rollup_state")
    op.drop_table("rollup_daily")
    op.drop_table("rollup_hourly")
    op.drop_table("rollup_series")
