"""Add to probe_result where, why and how well each probe ran: `location`, `trigger`, the answer
and tool-call canaries, the workload profile (`input_tokens`) and the reported prompt size, cost,
cold starts with the provider's own timings, and the self-test's `suspect` flag.

Revision: 0003, hand-written. Existing rows were scheduled probes of the default profile from
the one location `local`, with no canary and no cost: the server defaults say exactly that.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

def _columns() -> tuple[sa.Column, ...]:
    return (
        sa.Column("location", sa.String(32), nullable=False, server_default="local"),
        sa.Column("trigger", sa.String(16), nullable=False, server_default="scheduled"),
        sa.Column("answer_ok", sa.Boolean(), nullable=True),
        sa.Column("tool_call_ok", sa.Boolean(), nullable=True),
        sa.Column("tool_call_error", sa.String(32), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=False, server_default="100"),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("cost_usd", sa.Double(), nullable=True),
        sa.Column("cold_start", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("server_load_s", sa.Double(), nullable=True),
        sa.Column("server_prompt_eval_s", sa.Double(), nullable=True),
        sa.Column("server_eval_s", sa.Double(), nullable=True),
        sa.Column("server_eval_tokens", sa.Integer(), nullable=True),
        sa.Column("suspect", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


# Plain ALTER TABLE on both backends (SQLite 3.35+ drops columns in place): a batch copy of the
# table on SQLite would rebuild its indexes without their DESC order.
def upgrade() -> None:
    for column in _columns():
        op.add_column("probe_result", column)


def downgrade() -> None:
    for column in reversed(_columns()):
        op.drop_column("probe_result", column.name)
