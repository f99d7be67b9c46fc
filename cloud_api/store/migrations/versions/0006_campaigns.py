"""Campaigns, decisions, deliveries, receipts and redemptions.

Campaign definitions; the decision log (why each campaign did or did not make a shopper an
offer); the notification outbox (one delivery row per channel); offers gain their campaign,
amount-off rewards, minimum spend, online validity and the order that redeemed them, and may
have no cart; notifications gain their delivery and opening receipts.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Utc = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Money = sa.Numeric(12, 2)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("created_at", Utc, nullable=False),
        sa.Column("updated_at", Utc, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
    )
    op.create_table(
        "campaign_decisions",
        sa.Column("id", BigId, nullable=False),
        sa.Column("campaign_id", sa.String(64), nullable=False),
        sa.Column("shopper_id", sa.String(40), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(26), nullable=False),
        sa.Column("outcome", sa.String(12), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("cart_id", sa.String(128), nullable=True),
        sa.Column("offer_code", sa.String(32), nullable=True),
        sa.Column("decided_at", Utc, nullable=False),
        sa.Column("visit_started_at", Utc, nullable=True),
        sa.ForeignKeyConstraint(
            ["shopper_id"], ["shoppers.id"], name="fk_campaign_decisions_shopper_id_shoppers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_campaign_decisions"),
    )
    op.create_index(
        "ix_campaign_decisions_shopper", "campaign_decisions", ["shopper_id", "decided_at"]
    )
    op.create_index("ix_campaign_decisions_store", "campaign_decisions", ["store_id", "decided_at"])
    op.create_table(
        "notification_deliveries",
        sa.Column("id", BigId, nullable=False),
        sa.Column("notification_id", sa.String(26), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", Utc, nullable=False),
        sa.Column("sent_at", Utc, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.notification_id"],
            name="fk_notification_deliveries_notification_id_notifications",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_notification_deliveries"),
        sa.UniqueConstraint(
            "notification_id", "channel", name="uq_notification_deliveries_notification_id"
        ),
    )
    op.create_index(
        "ix_notification_deliveries_due",
        "notification_deliveries",
        ["status", "next_attempt_at"],
    )
    with op.batch_alter_table("offers") as batch:
        batch.alter_column("cart_id", existing_type=sa.String(128), nullable=True)
        batch.alter_column("percent_off", existing_type=sa.Numeric(5, 2), nullable=True)
        batch.add_column(sa.Column("campaign_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("amount_off", Money, nullable=True))
        batch.add_column(sa.Column("min_spend", Money, nullable=True))
        batch.add_column(
            sa.Column("online", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("order_ref", sa.String(128), nullable=True))
        batch.create_index("ix_offers_campaign_id", ["campaign_id"])
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("delivered_at", Utc, nullable=True))
        batch.add_column(sa.Column("opened_at", Utc, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("opened_at")
        batch.drop_column("delivered_at")
    # Offers without a cart or a percentage cannot survive the old schema.
    op.execute(
        "DELETE FROM notifications WHERE offer_code IN "
        "(SELECT code FROM offers WHERE cart_id IS NULL OR percent_off IS NULL)"
    )
    op.execute("DELETE FROM offers WHERE cart_id IS NULL OR percent_off IS NULL")
    with op.batch_alter_table("offers") as batch:
        batch.drop_index("ix_offers_campaign_id")
        batch.drop_column("order_ref")
        batch.drop_column("online")
        batch.drop_column("min_spend")
        batch.drop_column("amount_off")
        batch.drop_column("campaign_id")
        batch.alter_column("percent_off", existing_type=sa.Numeric(5, 2), nullable=False)
        batch.alter_column("cart_id", existing_type=sa.String(128), nullable=False)
    op.drop_table("notification_deliveries")
    op.drop_index("ix_campaign_decisions_store", table_name="campaign_decisions")
    op.drop_index("ix_campaign_decisions_shopper", table_name="campaign_decisions")
    op.drop_table("campaign_decisions")
    op.drop_table("campaigns")
