"""the fleet's version (raised by each change to sites or devices; processes reload on it)

Revision ID: 0004_fleet_state
Revises: 0003_commands_site_index
Create Date: 2026-12-04 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_fleet_state"
down_revision = "0003_commands_site_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleet_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("changed_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("fleet_state")
