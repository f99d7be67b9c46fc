"""Stores, zones, gateways and their MQTT credentials; API keys and staff accounts; the gateways'
status history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Utc = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "stores",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("app_uuid", sa.String(36), nullable=True),
        sa.Column("calibration", sa.JSON(), nullable=False),
        sa.Column("staff_beacons", sa.JSON(), nullable=False),
        sa.Column("store_beacons", sa.JSON(), nullable=False),
        sa.Column("created_at", Utc, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stores"),
    )
    op.create_table(
        "zones",
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("zone_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("polygon", sa.JSON(), nullable=False),
        sa.Column("created_at", Utc, nullable=False),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name="fk_zones_store_id_stores"),
        sa.PrimaryKeyConstraint("store_id", "zone_id", name="pk_zones"),
    )
    op.create_table(
        "gateways",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("zones", sa.JSON(), nullable=False),
        sa.Column("mqtt_password_hash", sa.String(256), nullable=False),
        sa.Column("config_version", sa.BigInteger(), nullable=False),
        sa.Column("created_at", Utc, nullable=False),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name="fk_gateways_store_id_stores"),
        sa.PrimaryKeyConstraint("id", name="pk_gateways"),
    )
    op.create_index("ix_gateways_store_id", "gateways", ["store_id"])
    op.create_table(
        "gateway_status_history",
        sa.Column("id", BigId, nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("transition", sa.Boolean(), nullable=False),
        sa.Column("ts", Utc, nullable=False),
        sa.Column("adverts_seen", sa.BigInteger(), nullable=False),
        sa.Column("events_published", sa.BigInteger(), nullable=False),
        sa.Column("decode_errors", sa.BigInteger(), nullable=False),
        sa.Column("outbox_depth", sa.BigInteger(), nullable=False),
        sa.Column("outbox_dropped", sa.BigInteger(), nullable=False),
        sa.Column("scanner_restarts", sa.BigInteger(), nullable=False),
        sa.Column("uptime_s", sa.Double(), nullable=True),
        sa.Column("adverts_per_s", sa.Double(), nullable=True),
        sa.Column("cpu_temp_c", sa.Double(), nullable=True),
        sa.Column("received_at", Utc, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gateway_status_history"),
    )
    op.create_index(
        "ix_gateway_status_history_gateway_ts",
        "gateway_status_history",
        ["store_id", "gateway_id", "ts"],
    )
    op.create_table(
        "staff_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("created_at", Utc, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_staff_accounts"),
        sa.UniqueConstraint("email", name="uq_staff_accounts_email"),
    )
    op.create_table(
        "staff_stores",
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff_accounts.id"], name="fk_staff_stores_staff_id_staff_accounts"
        ),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name="fk_staff_stores_store_id_stores"
        ),
        sa.PrimaryKeyConstraint("staff_id", "store_id", name="pk_staff_stores"),
    )
    op.create_table(
        "staff_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("created_at", Utc, nullable=False),
        sa.Column("expires_at", Utc, nullable=False),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff_accounts.id"], name="fk_staff_tokens_staff_id_staff_accounts"
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_staff_tokens"),
    )
    op.create_index("ix_staff_tokens_staff_id", "staff_tokens", ["staff_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", Utc, nullable=False),
        sa.Column("revoked_at", Utc, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_table(
        "api_key_stores",
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name="fk_api_key_stores_api_key_id_api_keys"
        ),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name="fk_api_key_stores_store_id_stores"
        ),
        sa.PrimaryKeyConstraint("api_key_id", "store_id", name="pk_api_key_stores"),
    )


def downgrade() -> None:
    op.drop_table("api_key_stores")
    op.drop_table("api_keys")
    op.drop_index("ix_staff_tokens_staff_id", table_name="staff_tokens")
    op.drop_table("staff_tokens")
    op.drop_table("staff_stores")
    op.drop_table("staff_accounts")
    op.drop_index("ix_gateway_status_history_gateway_ts", table_name="gateway_status_history")
    op.drop_table("gateway_status_history")
    op.drop_index("ix_gateways_store_id", table_name="gateways")
    op.drop_table("gateways")
    op.drop_table("zones")
    op.drop_table("stores")
