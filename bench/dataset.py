"""The synthetic catalog and probe history the API, history and capacity benchmarks run against.

One generator for SQLite and PostgreSQL (an INSERT ... SELECT in SQL, no Python per row, into
a database migrated with the project's own migrations), so a 10k and a 1M history differ only
in size. Generated SQLite files are cached under /tmp between runs.

Synthetic history: endpoint e = k mod E for probe k (E = models x providers), so endpoints are
interleaved in time as a live monitor writes them; each endpoint gets one probe per
`interval_s` (30 min) ending at `newest`, ~5 % failures, TTFT 150-650 ms, 30-120 tok/s.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_CACHE_DIR = Path("/tmp/llm-monitor-bench-cache")
PROVIDERS = ("Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot")
HISTORY_INTERVAL_S = 1800
# A cached database older than this is regenerated: its newest probes would have left the 24 h
# window (or the 2-interval "active" horizon), changing what the API computes.
CACHE_MAX_AGE_S = 6 * 3600
GENERATOR_VERSION = 3
# Probes per roll-up transaction while generating (larger than the service's: fewer rewrites).
ROLL_UP_BATCH = 50_000
# The probe_result column holding ProbeResult's count of token-bearing stream events.
TOKEN_CHUNKS_COLUMN = "token_chunks"


# --------------------------------------------------------------------------- synthetic catalog

def model_id_of(index: int) -> str:
    return f"bench-org-{index % 50}/model-{index}"


def catalog_yaml(models: int, providers: int, *, base_url: str, interval: str = "30m",
                 name_prefix: str = "m") -> str:
    """A catalog of `models` x `providers` openai endpoints at `base_url` (no API keys)."""
    lines = [f"defaults: {{interval: {interval}, timeout: 60s, max_tokens: 128}}", "models:"]
    for m in range(models):
        lines.append(f"  - id: {model_id_of(m)}")
        lines.append(f'    name: "Bench model {m}"')
        lines.append("    endpoints:")
        for p in range(providers):
            lines.append(f"      - provider: {PROVIDERS[p]}")
            lines.append("        protocol: openai")
            lines.append(f"        base_url: {base_url}")
            lines.append(f"        model: {name_prefix}-{m}-{p}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- synthetic history

@dataclass(frozen=True)
class HistoryShape:
    rows: int
    models: int
    providers: int = 3
    interval_s: int = HISTORY_INTERVAL_S

    @property
    def endpoints(self) -> int:
        return self.models * self.providers

    @property
    def rounds(self) -> int:
        return math.ceil(self.rows / self.endpoints)

    def key(self) -> str:
        return f"r{self.rows}-m{self.models}-p{self.providers}-i{self.interval_s}-g{GENERATOR_VERSION}"


_COLUMNS = (
    "model_id, provider, protocol, model, ok, error_kind, error, http_status, started_at, ttft_s, "
    "total_s, output_tokens, token_count_source, tokens_per_second, first_answer_s, last_token_s, "
    f"headers_s, {TOKEN_CHUNKS_COLUMN}, usage_tokens, first_read_tokens, finish_reason, http_version, "
    "connection_reused, stream_bytes, methodology"
)


def _fill_select(dialect: str, shape: HistoryShape, newest: datetime) -> str:
    """INSERT ... SELECT generating `shape.rows` probes in SQL (no Python per row)."""
    endpoints, providers = shape.endpoints, shape.providers
    provider_case = "CASE " + " ".join(
        f"WHEN (k % {endpoints}) % {providers} = {p} THEN '{PROVIDERS[p]}'" for p in range(providers)
    ) + " END"
    model_index = f"((k % {endpoints}) / {providers})"
    failed = "((k * 2654435761) % 100 < 5)"
    # Seconds before `newest`: whole rounds back, plus a per-endpoint offset within the interval.
    age_s = (f"(({shape.rounds - 1} - k / {endpoints}) * {shape.interval_s} "
             f"+ ((k % {endpoints}) * 37) % {shape.interval_s})")
    ttft = "(0.15 + ((k * 7919) % 1000) / 2000.0)"
    tps = "(30.0 + ((k * 104729) % 900) / 10.0)"
    if dialect == "postgresql":
        true, false = "TRUE", "FALSE"
        started_at = f"TIMESTAMPTZ '{newest.isoformat()}' - make_interval(secs => {age_s})"
        source = f"generate_series(0::bigint, {shape.rows - 1}) AS g(k)"  # k * 104729 overflows int4
        prefix = ""
        concat_model = f"'bench-org-' || ({model_index} % 50) || '/model-' || {model_index}"
    else:
        true, false = "1", "0"
        epoch = int(newest.timestamp())
        started_at = f"datetime({epoch} - {age_s}, 'unixepoch') || '.000000'"
        source = "g"
        prefix = (f"WITH RECURSIVE g(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM g "
                  f"WHERE k < {shape.rows - 1}) ")
        concat_model = f"'bench-org-' || ({model_index} % 50) || '/model-' || {model_index}"
    return f"""
INSERT INTO probe_result ({_COLUMNS})
{prefix}SELECT {concat_model}, {provider_case}, 'openai', 'm',
  CASE WHEN {failed} THEN {false} ELSE {true} END,
  CASE WHEN {failed} THEN (CASE WHEN k % 2 = 0 THEN 'timeout' ELSE 'http_error' END) END,
  CASE WHEN {failed} THEN 'synthetic failure' END,
  CASE WHEN {failed} THEN (CASE WHEN k % 2 = 0 THEN NULL ELSE 503 END) ELSE 200 END,
  {started_at},
  CASE WHEN {failed} THEN NULL ELSE {ttft} END,
  CASE WHEN {failed} THEN 60.0 ELSE {ttft} + 64 / {tps} END,
  CASE WHEN {failed} THEN NULL ELSE 64 END,
  CASE WHEN {failed} THEN NULL ELSE 'usage' END,
  CASE WHEN {failed} THEN NULL ELSE {tps} END,
  CASE WHEN {failed} THEN NULL ELSE {ttft} END,
  CASE WHEN {failed} THEN NULL ELSE {ttft} + 64 / {tps} END,
  {ttft} * 0.8,
  CASE WHEN {failed} THEN 0 ELSE 64 END,
  CASE WHEN {failed} THEN NULL ELSE 64 END,
  CASE WHEN {failed} THEN 0 ELSE 1 END,
  CASE WHEN {failed} THEN NULL ELSE 'stop' END,
  'HTTP/1.1', {true}, 9000, '2026.11-1'
FROM {source}
ORDER BY k
"""


_POINTERS_SQL = """
INSERT INTO endpoint_latest (model_id, provider, latest_probe_id, latest_started_at,
    latest_ok_probe_id, latest_ok_started_at)
SELECT l.model_id, l.provider, l.id, p.started_at, o.id, po.started_at
FROM (SELECT model_id, provider, MAX(id) AS id FROM probe_result GROUP BY model_id, provider) l
JOIN probe_result p ON p.id = l.id
LEFT JOIN (SELECT model_id, provider, MAX(id) AS id FROM probe_result WHERE {ok}
           GROUP BY model_id, provider) o ON o.model_id = l.model_id AND o.provider = l.provider
LEFT JOIN probe_result po ON po.id = o.id
"""


async def fill_history(database_url: str, shape: HistoryShape, newest: datetime, *, roll_up: bool = False) -> float:
    """Migrate a fresh database with the project's own migrations and fill it; returns seconds.
    `roll_up`: then build its roll-ups with the real job, as a running service keeps them."""
    from monitor.rollups import RollupRules
    from monitor.store import open_store

    started = time.perf_counter()
    store = await open_store(database_url)
    try:
        dialect = store.dialect_name
        async with store.engine.begin() as connection:
            await connection.exec_driver_sql(_fill_select(dialect, shape, newest))
            ok = "ok" if dialect == "postgresql" else "ok = 1"
            await connection.exec_driver_sql(_POINTERS_SQL.format(ok=ok))
        async with store.engine.connect() as connection:
            if dialect == "postgresql":
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.exec_driver_sql("VACUUM ANALYZE")
            else:
                await connection.exec_driver_sql("ANALYZE")
                await connection.commit()
        count = await store.count_results()
        if count != shape.rows:
            raise RuntimeError(f"generated {count} rows, expected {shape.rows}")
        if roll_up:
            await store.rollup(RollupRules(), batch=ROLL_UP_BATCH)
    finally:
        await store.close()
    return time.perf_counter() - started


def cache_directory() -> Path:
    """Where generated SQLite histories are kept between runs ($LLM_MONITOR_BENCH_CACHE overrides)."""
    override = os.environ.get("LLM_MONITOR_BENCH_CACHE")
    return Path(override) if override else DEFAULT_CACHE_DIR


def cached_sqlite_history(shape: HistoryShape, *, log=print, rolled_up: bool = False) -> tuple[Path, datetime, float | None]:
    """(path, newest, seconds spent generating or None when reused) of a cached SQLite history;
    `rolled_up`: with its roll-ups built, so a service started on it has no backlog to absorb."""
    cache_dir = cache_directory()
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"history-{shape.key()}{'-rolled' if rolled_up else ''}.db"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        newest = datetime.fromisoformat(meta["newest"])
        age_s = (datetime.now(UTC) - newest).total_seconds()
        if meta.get("key") == shape.key() and age_s < CACHE_MAX_AGE_S:
            log(f"reusing cached SQLite history {path} ({shape.rows:,} probes, {age_s / 60:.0f} min old)")
            return path, newest, None
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"), meta_path):
        stale.unlink(missing_ok=True)
    newest = datetime.now(UTC).replace(microsecond=0)
    tmp = path.with_name(path.name + f".tmp-{uuid.uuid4().hex[:6]}")
    log(f"generating SQLite history {path} ({shape.rows:,} probes, {shape.endpoints:,} endpoints) ...")
    seconds = asyncio.run(fill_history(f"sqlite:///{tmp}", shape, newest, roll_up=rolled_up))
    _checkpoint_sqlite(tmp)
    tmp.rename(path)
    meta_path.write_text(json.dumps({"key": shape.key(), "newest": newest.isoformat(), "rows": shape.rows}))
    log(f"  generated in {seconds:.1f} s")
    return path, newest, seconds


def _checkpoint_sqlite(path: Path) -> None:
    """Fold the WAL into the main file so the cached database is one self-contained file."""
    import sqlite3

    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute("PRAGMA journal_mode=DELETE")
    finally:
        connection.close()
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def copy_sqlite(source: Path, destination: Path) -> Path:
    shutil.copyfile(source, destination)
    return destination
