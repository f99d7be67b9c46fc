"""The initial schema: shoppers, carts, presence events, visits, offers, notifications, gateways.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Written out in full rather than imported from ``cloud_api.store.models``: a revision is a fixed
point in the schema's history, and must not change when the models do.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As the models' UtcDateTime stores them: timestamp with time zone on PostgreSQL.
Utc = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "shoppers",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=True),
        sa.Column("app_key", sa.LargeBinary(32), nullable=False),
        sa.Column("consent_personal_offers", sa.Boolean(), nullable=False),
        sa.Column("consent_footfall_analytics", sa.Boolean(), nullable=False),
        sa.Column("consent_text_version", sa.String(64), nullable=False),
        sa.Column("consent_at", Utc, nullable=False),
        sa.Column("created_at", Utc, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_shoppers"),
    )
    directory_version = op.create_table(
        "directory_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_directory_version"),
    )
    op.bulk_insert(directory_version, [{"id": 1, "version": 0}])
    op.create_table(
        "carts",
        sa.Column("cart_id", sa.String(128), nullable=False),
        sa.Column("shopper_id", sa.String(40), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("total", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("updated_at", Utc, nullable=False),
        sa.ForeignKeyConstraint(
            ["shopper_id"], ["shoppers.id"], name="fk_carts_shopper_id_shoppers"
        ),
        sa.PrimaryKeyConstraint("cart_id", name="pk_carts"),
    )
    op.create_index("ix_carts_shopper_id", "carts", ["shopper_id"])

    op.create_table(
        "presence_events",
        sa.Column("id", BigId, nullable=False),
        sa.Column("event_id", sa.String(26), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("zone_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("subject_type", sa.String(16), nullable=False),
        sa.Column("subject_ref", sa.String(128), nullable=False),
        sa.Column("shopper_id", sa.String(40), nullable=True),
        sa.Column("ts", Utc, nullable=False),
        sa.Column("dwell_s", sa.Double(), nullable=False),
        sa.Column("rssi", sa.Double(), nullable=False),
        sa.Column("distance_m", sa.Double(), nullable=True),
        sa.Column("received_at", Utc, nullable=False),
        sa.ForeignKeyConstraint(
            ["shopper_id"], ["shoppers.id"], name="fk_presence_events_shopper_id_shoppers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_presence_events"),
        # The idempotency key: a redelivered event is an INSERT ... ON CONFLICT DO NOTHING.
        sa.UniqueConstraint("event_id", name="uq_presence_events_event_id"),
    )
    op.create_index("ix_presence_events_shopper_id", "presence_events", ["shopper_id"])
    op.create_index("ix_presence_events_store_ts", "presence_events", ["store_id", "ts"])

    op.create_table(
        "visits",
        sa.Column("id", BigId, nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("subject_type", sa.String(16), nullable=False),
        sa.Column("subject_ref", sa.String(128), nullable=False),
        sa.Column("shopper_id", sa.String(40), nullable=True),
        sa.Column("started_at", Utc, nullable=False),
        sa.Column("last_seen_at", Utc, nullable=False),
        sa.Column("ended_at", Utc, nullable=True),
        sa.Column("zones", sa.JSON(), nullable=False),
        sa.Column("presence", sa.JSON(), nullable=False),
        sa.Column("dwell_s", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["shopper_id"], ["shoppers.id"], name="fk_visits_shopper_id_shoppers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_visits"),
    )
    op.create_index(
        "ix_visits_subject", "visits", ["subject_ref", "store_id", "subject_type", "ended_at"]
    )
    op.create_index("ix_visits_shopper", "visits", ["shopper_id", "store_id", "ended_at"])
    op.create_index("ix_visits_store_started", "visits", ["store_id", "started_at"])

    op.create_table(
        "offers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("shopper_id", sa.String(40), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("cart_id", sa.String(128), nullable=False),
        sa.Column("visit_id", BigId, nullable=True),
        sa.Column("percent_off", sa.Numeric(5, 2), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", Utc, nullable=False),
        sa.Column("expires_at", Utc, nullable=False),
        sa.Column("redeemed_at", Utc, nullable=True),
        sa.ForeignKeyConstraint(["cart_id"], ["carts.cart_id"], name="fk_offers_cart_id_carts"),
        sa.ForeignKeyConstraint(
            ["shopper_id"], ["shoppers.id"], name="fk_offers_shopper_id_shoppers"
        ),
        sa.ForeignKeyConstraint(["visit_id"], ["visits.id"], name="fk_offers_visit_id_visits"),
        sa.PrimaryKeyConstraint("id", name="pk_offers"),
        sa.UniqueConstraint("code", name="uq_offers_code"),
    )
    op.create_index("ix_offers_shopper_id", "offers", ["shopper_id"])

    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.String(26), nullable=False),
        sa.Column("shopper_id", sa.String(40), nullable=False),
        sa.Column("offer_code", sa.String(32), nullable=False),
        sa.Column("topic", sa.String(256), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("published_at", Utc, nullable=False),
        sa.ForeignKeyConstraint(
            ["offer_code"], ["offers.code"], name="fk_notifications_offer_code_offers"
        ),
        sa.ForeignKeyConstraint(
            ["shopper_id"], ["shoppers.id"], name="fk_notifications_shopper_id_shoppers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.UniqueConstraint("notification_id", name="uq_notifications_notification_id"),
    )
    op.create_index("ix_notifications_shopper_id", "notifications", ["shopper_id"])

    op.create_table(
        "gateway_status",
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("ts", Utc, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("adverts_seen", sa.BigInteger(), nullable=False),
        sa.Column("events_published", sa.BigInteger(), nullable=False),
        sa.Column("decode_errors", sa.BigInteger(), nullable=False),
        sa.Column("outbox_depth", sa.BigInteger(), nullable=False),
        sa.Column("outbox_dropped", sa.BigInteger(), nullable=False),
        sa.Column("received_at", Utc, nullable=False),
        sa.PrimaryKeyConstraint("store_id", "gateway_id", name="pk_gateway_status"),
    )


def downgrade() -> None:
    for table in (
        "gateway_status",
        "notifications",
        "offers",
        "visits",
        "presence_events",
        "carts",
        "directory_version",
        "shoppers",
    ):
        op.drop_table(table)
