"""Reserved revision: scheduling claims (owned by the HA scheduler work).

Revision: 0004. Empty until its tables land, so that the chain is fixed in advance.
"""

from __future__ import annotations

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
