"""Reserved revision: incidents (owned by the incident work).

Revision: 0005. Empty until its tables land, so that the chain is fixed in advance.
"""

from __future__ import annotations

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
