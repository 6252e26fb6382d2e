"""SQLModel tables: one row per probe (`probe_result`) and one pointer row per endpoint
(`endpoint_latest`). Table rows only; API response models live in `api/`.

The schema itself is owned by alembic (`monitor/migrations/versions/`): these classes describe it
for queries, and `tests/store` checks that the migrations and these tables agree.

Why `endpoint_latest` exists: "the latest probe of each of 6,000 endpoints" over a 1,000,000-row
history would need a skip scan (no portable SQL for it) or a `DISTINCT ON`/window scan of the whole
index. Instead the store updates one small pointer row per endpoint in the SAME transaction as the
insert, so restoring metrics after a restart reads 6,000 rows plus 6,000 primary-key lookups.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class UTCDateTime(sa.types.TypeDecorator):
    """Timezone-aware UTC datetimes in and out, on every backend.

    PostgreSQL stores `timestamptz`. SQLite has no time zones: SQLAlchemy writes a fixed-width
    text form and drops the offset, so values are converted to UTC first (text order = time order)
    and labelled UTC again when read. Naive datetimes are refused: their zone is a guess.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: timestamps must be timezone-aware (UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# 64-bit ids on PostgreSQL; on SQLite the id must be exactly INTEGER to alias the rowid.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


# The columns the window figures read (monitor/store/figures.py), carried by the endpoint index.
WINDOW_INDEX_CARRIED = ("trigger", "input_tokens", "ok", "error_kind", "ttft_s", "tokens_per_second", "cold_start",
                        "answer_ok", "location")


class ProbeResultRow(SQLModel, table=True):
    """One probe: every `ProbeResult` field under the same name, plus the endpoint it measured."""

    __tablename__ = "probe_result"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    # The endpoint: catalog model id + provider name. `protocol` and `model` (the provider's own
    # model name) are ProbeResult fields and are stored as such.
    model_id: str = Field(sa_type=sa.String(), nullable=False)
    provider: str = Field(sa_type=sa.String(), nullable=False)
    protocol: str = Field(sa_type=sa.String(), nullable=False)
    model: str = Field(sa_type=sa.String(), nullable=False)

    # --- contract fields ---
    ok: bool = Field(sa_type=sa.Boolean(), nullable=False)
    error_kind: str | None = Field(default=None, sa_type=sa.String(32))  # ErrorKind value
    error: str | None = Field(default=None, sa_type=sa.Text())
    http_status: int | None = Field(default=None, sa_type=sa.Integer())
    started_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    ttft_s: float | None = Field(default=None, sa_type=sa.Double())
    connect_s: float | None = Field(default=None, sa_type=sa.Double())
    total_s: float | None = Field(default=None, sa_type=sa.Double())
    output_tokens: int | None = Field(default=None, sa_type=sa.Integer())
    token_count_source: str | None = Field(default=None, sa_type=sa.String(16))  # TokenCountSource value
    tokens_per_second: float | None = Field(default=None, sa_type=sa.Double())

    # --- audit record ---
    first_answer_s: float | None = Field(default=None, sa_type=sa.Double())
    first_reasoning_s: float | None = Field(default=None, sa_type=sa.Double())
    last_token_s: float | None = Field(default=None, sa_type=sa.Double())
    headers_s: float | None = Field(default=None, sa_type=sa.Double())
    dns_s: float | None = Field(default=None, sa_type=sa.Double())
    tcp_s: float | None = Field(default=None, sa_type=sa.Double())
    tls_s: float | None = Field(default=None, sa_type=sa.Double())
    token_chunks: int = Field(sa_type=sa.Integer(), nullable=False)
    usage_tokens: int | None = Field(default=None, sa_type=sa.Integer())
    first_read_tokens: int = Field(sa_type=sa.Integer(), nullable=False)
    finish_reason: str | None = Field(default=None, sa_type=sa.String())
    http_version: str | None = Field(default=None, sa_type=sa.String(16))
    connection_reused: bool | None = Field(default=None, sa_type=sa.Boolean())
    loop_lag_s: float | None = Field(default=None, sa_type=sa.Double())
    cpu_s: float | None = Field(default=None, sa_type=sa.Double())
    stream_bytes: int = Field(sa_type=sa.BigInteger(), nullable=False)
    retry_after_s: float | None = Field(default=None, sa_type=sa.Double())
    methodology: str = Field(sa_type=sa.String(32), nullable=False)
    # --- where, why and how well ---
    location: str = Field(sa_type=sa.String(32), nullable=False)
    trigger: str = Field(sa_type=sa.String(16), nullable=False)  # Trigger value
    answer_ok: bool | None = Field(default=None, sa_type=sa.Boolean())
    tool_call_ok: bool | None = Field(default=None, sa_type=sa.Boolean())
    tool_call_error: str | None = Field(default=None, sa_type=sa.String(32))  # ToolCallError value
    input_tokens: int = Field(sa_type=sa.Integer(), nullable=False)
    prompt_tokens: int | None = Field(default=None, sa_type=sa.Integer())
    cost_usd: float | None = Field(default=None, sa_type=sa.Double())
    cold_start: bool = Field(sa_type=sa.Boolean(), nullable=False)
    server_load_s: float | None = Field(default=None, sa_type=sa.Double())
    server_prompt_eval_s: float | None = Field(default=None, sa_type=sa.Double())
    server_eval_s: float | None = Field(default=None, sa_type=sa.Double())
    server_eval_tokens: int | None = Field(default=None, sa_type=sa.Integer())
    suspect: bool = Field(sa_type=sa.Boolean(), nullable=False)
    # --- canary (migration 0007) ---
    tool_call_input_tokens: int | None = Field(default=None, sa_type=sa.Integer())
    tool_call_output_tokens: int | None = Field(default=None, sa_type=sa.Integer())

    __table_args__ = (
        # History, live windows and the consecutive-failure look-back all read one endpoint's
        # newest rows: a range of this index, already in the order they are returned. `id` breaks
        # ties between probes started in the same microsecond. The columns the window figures
        # read ride along (INCLUDE on PostgreSQL, trailing key columns on SQLite: migration 0008)
        # so a 30-day window is read from the index alone.
        sa.Index(
            "ix_probe_result_endpoint_recent",
            "model_id",
            "provider",
            sa.text("started_at DESC"),
            sa.text("id DESC"),
            postgresql_include=list(WINDOW_INDEX_CARRIED),
        ),
        # Retention deletes the oldest probes in small batches (migration 0006).
        sa.Index("ix_probe_result_started_at", "started_at"),
    )


class EndpointLatestRow(SQLModel, table=True):
    """Pointers to the newest probe and the newest ok probe of one endpoint.

    Written in the same transaction as the probes it points to, and only moved forward in
    (started_at, id) order, so a late insert of an older (buffered) result never hides a newer one.
    """

    __tablename__ = "endpoint_latest"

    model_id: str = Field(primary_key=True, sa_type=sa.String())
    provider: str = Field(primary_key=True, sa_type=sa.String())
    latest_probe_id: int = Field(
        sa_type=BigId, foreign_key="probe_result.id", ondelete="CASCADE", nullable=False
    )
    latest_started_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    latest_ok_probe_id: int | None = Field(
        default=None, sa_type=BigId, foreign_key="probe_result.id", ondelete="SET NULL"
    )
    latest_ok_started_at: datetime | None = Field(default=None, sa_type=UTCDateTime())

    __table_args__ = (
        # Without these, deleting old probes (a retention job) would make PostgreSQL scan this
        # table once per deleted row to enforce the foreign keys.
        sa.Index("ix_endpoint_latest_latest_probe_id", "latest_probe_id"),
        sa.Index("ix_endpoint_latest_latest_ok_probe_id", "latest_ok_probe_id"),
    )


def probe_table() -> sa.Table:
    return ProbeResultRow.__table__  # type: ignore[attr-defined, return-value]


def endpoint_latest_table() -> sa.Table:
    return EndpointLatestRow.__table__  # type: ignore[attr-defined, return-value]


# --- incidents -------------------------------------------------------------------------------


class IncidentRow(SQLModel, table=True):
    """One outage of one endpoint, from its declaration by quorum to its first success by quorum.

    `error_kinds` ({"timeout": 3, ...}) and `locations` (["a", "b"]) are JSON text, recounted from
    the stored probes at each evaluation (never incremented), so any number of processes can
    refresh them and agree. At most one open row per endpoint: `ux_incident_open` is a partial
    unique index (`WHERE resolved_at IS NULL`), which both PostgreSQL and SQLite enforce, and
    openers use INSERT ... ON CONFLICT DO NOTHING against it."""

    __tablename__ = "incident"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    model_id: str = Field(sa_type=sa.String(), nullable=False)
    provider: str = Field(sa_type=sa.String(), nullable=False)
    started_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    detected_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime())
    error_kinds: str = Field(sa_type=sa.Text(), nullable=False)
    locations: str = Field(sa_type=sa.Text(), nullable=False)

    __table_args__ = (
        sa.Index(
            "ux_incident_open",
            "model_id",
            "provider",
            unique=True,
            postgresql_where=sa.text("resolved_at IS NULL"),
            sqlite_where=sa.text("resolved_at IS NULL"),
        ),
        sa.Index("ix_incident_started", "started_at"),  # newest first: read backwards
    )


def incident_table() -> sa.Table:
    return IncidentRow.__table__  # type: ignore[attr-defined, return-value]


# --- roll-ups (migration 0006; queries in monitor/store/rollups.py) ---------------------------


class RollupSeriesRow(SQLModel, table=True):
    """One roll-up series: an endpoint as seen from one location with one workload profile.
    Roll-up rows refer to it by id, so a year of hourly buckets repeats an integer, not names."""

    __tablename__ = "rollup_series"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    model_id: str = Field(sa_type=sa.String(), nullable=False)
    provider: str = Field(sa_type=sa.String(), nullable=False)
    location: str = Field(sa_type=sa.String(32), nullable=False)
    input_tokens: int = Field(sa_type=sa.Integer(), nullable=False)

    __table_args__ = (
        sa.UniqueConstraint("model_id", "provider", "location", "input_tokens", name="uq_rollup_series_key"),
    )


ROLLUP_COUNT_COLUMNS = (
    "ok", "config_error", "dns_error", "connect_error", "tls_error", "timeout", "auth_error",
    "not_found", "rate_limited", "http_error", "stream_error", "empty_response",
    "maintenance", "unscheduled", "cold_starts", "suspect", "ttft_count", "tps_count",
)
ROLLUP_QUANTILE_COLUMNS = ("ttft_ms_p5", "ttft_ms_p50", "ttft_ms_p95", "tps_p5", "tps_p50", "tps_p95")


def _rollup_columns() -> list[sa.Column]:
    return [
        sa.Column("series_id", sa.BigInteger(), sa.ForeignKey("rollup_series.id"), primary_key=True),
        sa.Column("bucket_start", UTCDateTime(), primary_key=True),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in ROLLUP_COUNT_COLUMNS),
        sa.Column("ttft_sketch", sa.LargeBinary(), nullable=True),
        sa.Column("tps_sketch", sa.LargeBinary(), nullable=True),
        *(sa.Column(name, sa.Double(), nullable=True) for name in ROLLUP_QUANTILE_COLUMNS),
    ]


# Plain tables (not SQLModel classes): two tables of identical shape, built by one function.
rollup_hourly = sa.Table(
    "rollup_hourly", SQLModel.metadata, *_rollup_columns(),
    sa.Index("ix_rollup_hourly_bucket_start", "bucket_start"),
    sqlite_with_rowid=False,
)
rollup_daily = sa.Table(
    "rollup_daily", SQLModel.metadata, *_rollup_columns(),
    sa.Index("ix_rollup_daily_bucket_start", "bucket_start"),
    sqlite_with_rowid=False,
)


class RollupStateRow(SQLModel, table=True):
    """The roll-up job's progress (one row, id 1): every probe with id <= absorbed_id, except
    the ids listed in `gaps` (ids not visible yet when the job passed them: a PostgreSQL
    transaction still in flight), is counted in the roll-ups. `raw_complete_since`: raw probes
    older than this may have been pruned (None: never pruned)."""

    __tablename__ = "rollup_state"

    id: int = Field(primary_key=True, sa_type=sa.Integer())
    absorbed_id: int = Field(sa_type=sa.BigInteger(), nullable=False)
    gaps: str = Field(sa_type=sa.Text(), nullable=False)  # JSON [[id, first seen epoch s], ...]
    raw_complete_since: datetime | None = Field(default=None, sa_type=UTCDateTime())
    updated_at: datetime | None = Field(default=None, sa_type=UTCDateTime())


def rollup_series_table() -> sa.Table:
    return RollupSeriesRow.__table__  # type: ignore[attr-defined, return-value]


def rollup_state_table() -> sa.Table:
    return RollupStateRow.__table__  # type: ignore[attr-defined, return-value]
# --- HA scheduling: slot claims, written only by monitor.coordination.PostgresClaims ---


class ProbeSlotRow(SQLModel, table=True):
    """One claimed (endpoint, location, kind, slot); the primary key is the claim itself."""

    __tablename__ = "probe_slot"

    model_id: str = Field(primary_key=True, sa_type=sa.String())
    provider: str = Field(primary_key=True, sa_type=sa.String())
    location: str = Field(primary_key=True, sa_type=sa.String(32))
    kind: str = Field(primary_key=True, sa_type=sa.String(16))
    slot_start: datetime = Field(primary_key=True, sa_type=UTCDateTime())
    slot_end: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    lease_until: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    claimed_by: str = Field(sa_type=sa.String(80), nullable=False)
    claimed_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime())
    attempts: int = Field(sa_type=sa.SmallInteger(), nullable=False)

    __table_args__ = (
        sa.Index("ix_probe_slot_expires_at", "expires_at"),
        sa.Index(
            "ix_probe_slot_unfinished", "location", "lease_until",
            postgresql_where=sa.text("finished_at IS NULL"), sqlite_where=sa.text("finished_at IS NULL"),
        ),
    )
