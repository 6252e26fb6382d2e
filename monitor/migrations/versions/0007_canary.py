"""Add to probe_result the tool-call canary's own token usage (`tool_call_input_tokens`,
`tool_call_output_tokens`), so the cost of that separate request can be accounted with the probe.

Revision: 0007, hand-written (reserved for the canary work). Existing rows ran no tool-call
canary: NULL says exactly that.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _columns() -> tuple[sa.Column, ...]:
    return (
        sa.Column("tool_call_input_tokens", sa.Integer(), nullable=True),
        sa.Column("tool_call_output_tokens", sa.Integer(), nullable=True),
    )


# Plain ALTER TABLE on both backends, as 0003 does (a batch copy on SQLite would rebuild the
# indexes without their DESC order).
def upgrade() -> None:
    for column in _columns():
        op.add_column("probe_result", column)


def downgrade() -> None:
    for column in reversed(_columns()):
        op.drop_column("probe_result", column.name)
