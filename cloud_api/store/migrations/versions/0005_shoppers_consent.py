"""Shopper consent purposes, devices, check-ins, carts and orders from commerce webhooks.

Consent history per purpose (existing shoppers get one record per purpose from their current
answers), wearables and key fobs, commerce identities (Shopify customer, e-mail hash), webhook
deliveries for dedup, orders, social events, the source of each presence event (gateway or app
check-in) and the checkout URL of a cart.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Utc = sa.DateTime(timezone=True)


def _shopper_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["shopper_id"], ["shoppers.id"], name=f"fk_{table}_shopper_id_shoppers"
    )


def upgrade() -> None:
    op.create_table(
        "consent_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shopper_id", sa.String(40), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("text_version", sa.String(64), nullable=False),
        sa.Column("at", Utc, nullable=False),
        _shopper_fk("consent_records"),
        sa.PrimaryKeyConstraint("id", name="pk_consent_records"),
    )
    op.create_index("ix_consent_records_shopper_id", "consent_records", ["shopper_id"])
    # The shoppers registered before this revision: their current answers become the first
    # record of each purpose, given when they last changed their consent.
    shoppers = sa.table(
        "shoppers",
        sa.column("id"),
        sa.column("consent_personal_offers"),
        sa.column("consent_footfall_analytics"),
        sa.column("consent_text_version"),
        sa.column("consent_at"),
    )
    records = sa.table(
        "consent_records",
        sa.column("shopper_id"),
        sa.column("purpose"),
        sa.column("granted"),
        sa.column("text_version"),
        sa.column("at"),
    )
    for purpose, granted in (
        ("personal_offers", shoppers.c.consent_personal_offers),
        ("footfall_analytics", shoppers.c.consent_footfall_analytics),
    ):
        op.execute(
            records.insert().from_select(
                ["shopper_id", "purpose", "granted", "text_version", "at"],
                sa.select(
                    shoppers.c.id,
                    sa.literal(purpose),
                    granted,
                    shoppers.c.consent_text_version,
                    shoppers.c.consent_at,
                ),
            )
        )

    op.create_table(
        "shopper_devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shopper_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(128), nullable=False),
        sa.Column("irk", sa.LargeBinary(16), nullable=True),
        sa.Column("store_id", sa.String(64), nullable=True),
        sa.Column("label", sa.String(100), nullable=True),
        sa.Column("created_at", Utc, nullable=False),
        _shopper_fk("shopper_devices"),
        sa.PrimaryKeyConstraint("id", name="pk_shopper_devices"),
        sa.UniqueConstraint("ref", name="uq_shopper_devices_ref"),
    )
    op.create_index("ix_shopper_devices_shopper_id", "shopper_devices", ["shopper_id"])

    op.create_table(
        "shopper_identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shopper_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("value", sa.String(128), nullable=False),
        _shopper_fk("shopper_identities"),
        sa.PrimaryKeyConstraint("id", name="pk_shopper_identities"),
        sa.UniqueConstraint("kind", "value", name="uq_shopper_identities_kind"),
    )
    op.create_index("ix_shopper_identities_shopper_id", "shopper_identities", ["shopper_id"])

    op.create_table(
        "webhook_deliveries",
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("delivery_id", sa.String(128), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("received_at", Utc, nullable=False),
        sa.PrimaryKeyConstraint("source", "delivery_id", name="pk_webhook_deliveries"),
    )

    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_ref", sa.String(128), nullable=False),
        sa.Column("shopper_id", sa.String(40), nullable=True),
        sa.Column("cart_id", sa.String(128), nullable=True),
        sa.Column("store_id", sa.String(64), nullable=True),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("total", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("discount_codes", sa.JSON(), nullable=False),
        sa.Column("ordered_at", Utc, nullable=False),
        sa.Column("received_at", Utc, nullable=False),
        _shopper_fk("orders"),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.UniqueConstraint("order_ref", name="uq_orders_order_ref"),
    )
    op.create_index("ix_orders_shopper_id", "orders", ["shopper_id"])

    op.create_table(
        "shopper_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("shopper_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", Utc, nullable=False),
        sa.Column("received_at", Utc, nullable=False),
        _shopper_fk("shopper_events"),
        sa.PrimaryKeyConstraint("id", name="pk_shopper_events"),
        sa.UniqueConstraint("event_id", name="uq_shopper_events_event_id"),
    )
    op.create_index("ix_shopper_events_shopper_id", "shopper_events", ["shopper_id"])

    # batch mode: SQLite cannot add a NOT NULL column with ALTER TABLE otherwise.
    with op.batch_alter_table("presence_events") as batch:
        batch.add_column(
            sa.Column("source", sa.String(8), nullable=False, server_default="gateway")
        )
    with op.batch_alter_table("carts") as batch:
        batch.add_column(sa.Column("checkout_url", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("carts") as batch:
        batch.drop_column("checkout_url")
    with op.batch_alter_table("presence_events") as batch:
        batch.drop_column("source")
    for table in (
        "shopper_events",
        "orders",
        "webhook_deliveries",
        "shopper_identities",
        "shopper_devices",
        "consent_records",
    ):
        op.drop_table(table)
