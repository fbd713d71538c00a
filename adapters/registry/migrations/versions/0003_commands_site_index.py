"""an index for a site's commands, newest first (GET /commands?site_id=)

Revision ID: 0003_commands_site_index
Revises: 0002_alert_rules
Create Date: 2026-11-28 12:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0003_commands_site_index"
down_revision = "0002_alert_rules"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_commands_site_id_id", "commands", ["site_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_commands_site_id_id", table_name="commands")
