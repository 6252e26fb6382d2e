"""Reserved revision: roll-ups (owned by the history work).

Revision: 0006. Empty until its tables land, so that the chain is fixed in advance.
"""

from __future__ import annotations

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
