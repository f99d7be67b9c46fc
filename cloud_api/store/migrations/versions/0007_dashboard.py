"""Dashboard: passers-by from the gateway heartbeat (capture rate) and store beacon health.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Utc = sa.DateTime(timezone=True)


def upgrade() -> None:
    # batch mode: SQLite cannot add a NOT NULL column with ALTER TABLE otherwise.
    with op.batch_alter_table("gateway_status") as batch:
        batch.add_column(
            sa.Column("passers_by", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_table(
        "gateway_traffic",
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("hour", Utc, nullable=False),
        sa.Column("passers_by", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "gateway_id", "hour", name="pk_gateway_traffic"),
    )
    op.create_table(
        "beacon_health",
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("beacon_id", sa.String(64), nullable=False),
        sa.Column("ts", Utc, nullable=False),
        sa.Column("missing", sa.Boolean(), nullable=False),
        sa.Column("last_seen", Utc, nullable=True),
        sa.Column("rssi", sa.Double(), nullable=True),
        sa.Column("battery_mv", sa.Integer(), nullable=True),
        sa.Column("temperature_c", sa.Double(), nullable=True),
        sa.Column("telemetry_at", Utc, nullable=True),
        sa.PrimaryKeyConstraint("store_id", "gateway_id", "beacon_id", name="pk_beacon_health"),
    )


def downgrade() -> None:
    op.drop_table("beacon_health")
    op.drop_table("gateway_traffic")
    with op.batch_alter_table("gateway_status") as batch:
        batch.drop_column("passers_by")
