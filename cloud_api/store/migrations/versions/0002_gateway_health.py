"""Gateway health from the heartbeat: uptime, advert rate, CPU temperature, scanner restarts and
the remote configuration in use (or the reason the last one was refused).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _columns() -> tuple[sa.Column[object], ...]:
    """Fresh Column objects each time: a Column belongs to the one table it is added to."""
    return (
        sa.Column("uptime_s", sa.Double(), nullable=True),
        sa.Column("adverts_per_s", sa.Double(), nullable=True),
        sa.Column("cpu_temp_c", sa.Double(), nullable=True),
        sa.Column("scanner_restarts", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("config_version", sa.BigInteger(), nullable=True),
        sa.Column("config_error", sa.Text(), nullable=True),
    )


def upgrade() -> None:
    # batch mode: SQLite cannot add a NOT NULL column with ALTER TABLE otherwise.
    with op.batch_alter_table("gateway_status") as batch:
        for column in _columns():
            batch.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("gateway_status") as batch:
        for column in reversed(_columns()):
            batch.drop_column(column.name)
