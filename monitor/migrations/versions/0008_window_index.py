"""Let the long live windows (`?window=7d|30d|90d`) read one endpoint's probes from its index
alone: `ix_probe_result_endpoint_recent` is rebuilt carrying every column the window rows use
(`monitor/store/figures.py`): trigger, input_tokens, ok, error_kind, ttft_s, tokens_per_second,
cold_start, answer_ok and location.

PostgreSQL takes them as INCLUDE columns. SQLite has no INCLUDE: they become trailing key
columns after `id`, which leaves the index's order (model, provider, newest first) unchanged
for every other reader. Revision: 0008.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INDEX = "ix_probe_result_endpoint_recent"
KEY = ["model_id", "provider", sa.text("started_at DESC"), sa.text("id DESC")]
BEFORE = ["ok", "error_kind", "ttft_s", "tokens_per_second"]
# What the window rows read besides the key (monitor/store/figures.py), filters first. Written
# out here: a migration keeps its own copy of the schema it creates.
CARRIED = ["trigger", "input_tokens", "ok", "error_kind", "ttft_s", "tokens_per_second", "cold_start",
           "answer_ok", "location"]


def _create(carried: list[str]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(INDEX, "probe_result", KEY, postgresql_include=carried)
    else:
        op.create_index(INDEX, "probe_result", KEY + [sa.text(name) for name in carried])


def upgrade() -> None:
    op.drop_index(INDEX, table_name="probe_result")
    _create(CARRIED)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="probe_result")
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(INDEX, "probe_result", KEY, postgresql_include=BEFORE)
    else:
        op.create_index(INDEX, "probe_result", KEY)
