"""Time series kept in SQL when no InfluxDB is configured.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "timeseries_points",
        sa.Column("id", BigId, nullable=False),
        sa.Column("measurement", sa.String(32), nullable=False),
        sa.Column("series", sa.String(512), nullable=False),
        sa.Column("time_ns", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timeseries_points")),
        sa.UniqueConstraint(
            "measurement",
            "series",
            "time_ns",
            name=op.f("uq_timeseries_points_measurement"),
        ),
    )
    op.create_index(
        "ix_timeseries_points_measurement_ts", "timeseries_points", ["measurement", "ts"]
    )


def downgrade() -> None:
    op.drop_index("ix_timeseries_points_measurement_ts", table_name="timeseries_points")
    op.drop_table("timeseries_points")
