"""The store's side of long-window live figures: one endpoint's published probes of a window as
small figure rows, without building a ProbeSample (or parsing a timestamp) per row.

A row is `(ok, error_kind, ttft_s, tokens_per_second, cold_start, answer_ok, in_maintenance)`,
what `monitor.stats.inputs_from_rows` takes. "Published" is `stats.published` in SQL: scheduled
probes of one workload profile. `in_maintenance` is computed in SQL from the maintenance
windows the caller passes (start inclusive, end exclusive, optionally one location), as
`MaintenanceWindow.covers` decides it. Range of one endpoint's index
(`ix_probe_result_endpoint_recent`), so the cost is the window's rows, not the table's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from monitor.store.tables import probe_table

# (start, end, location or None for every location) of a maintenance window of the endpoint.
MaintenanceSpan = tuple[datetime, datetime, "str | None"]

FIGURE_ROW_COLUMNS = ("ok", "error_kind", "ttft_s", "tokens_per_second", "cold_start", "answer_ok")


def window_figure_rows_statement(
    model_id: str,
    provider: str,
    since: datetime,
    until: datetime,
    input_tokens: int,
    maintenance: Sequence[MaintenanceSpan] = (),
) -> sa.Select:
    probe = probe_table()
    spans = []
    for start, end, location in maintenance:
        span = sa.and_(probe.c.started_at >= start, probe.c.started_at < end)
        if location is not None:
            span = sa.and_(span, probe.c.location == location)
        spans.append(span)
    in_maintenance = (
        sa.case((sa.or_(*spans), sa.true()), else_=sa.false()) if spans else sa.false()
    ).label("in_maintenance")
    return sa.select(*(probe.c[name] for name in FIGURE_ROW_COLUMNS), in_maintenance).where(
        probe.c.model_id == model_id,
        probe.c.provider == provider,
        probe.c.started_at >= since,
        probe.c.started_at <= until,
        probe.c.trigger == "scheduled",
        probe.c.input_tokens == input_tokens,
    )
