"""Bodies of the order webhook and the answers of the commerce webhooks."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cloud_api.api.schemas import CartItemIn, Currency


class OrderWebhook(BaseModel):
    """An order from the till (POS) or an online shop that is not Shopify."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "order_ref": "pos-store-1-000482",
                    "channel": "pos",
                    "store_id": "store-1",
                    "shopper_id": "shp_hybxv1wjpwe0t6gfcc2ha1wwm4",
                    "cart_id": "cart-8841",
                    "items": [
                        {
                            "sku": "SCARF-RED-M",
                            "name": "Wool scarf, red",
                            "category": "accessories",
                            "unit_price": "24.90",
                            "quantity": 1,
                        }
                    ],
                    "total": "22.41",
                    "currency": "EUR",
                    "discount_codes": ["7KQ2-M9XD"],
                    "ordered_at": "2026-11-24T16:05:31+01:00",
                }
            ]
        },
    )

    order_ref: str = Field(
        min_length=1, max_length=128, description="unique per order; retries dedup on it"
    )
    channel: Literal["pos", "online"]
    store_id: str | None = Field(
        default=None, max_length=64, description="the store, for POS orders"
    )
    shopper_id: str | None = Field(default=None, max_length=64)
    cart_id: str | None = Field(default=None, max_length=128, description="the cart it converts")
    items: list[CartItemIn]
    total: Decimal = Field(ge=0, max_digits=12, decimal_places=2)
    currency: Currency
    discount_codes: list[str] = Field(default_factory=list, max_length=20)
    ordered_at: AwareDatetime


class OrderAccepted(BaseModel):
    order_ref: str
    applied: bool = Field(description="false for an order already recorded")
    cart_converted: bool
    redeemed: list[str] = Field(description="offer codes redeemed by this order")
    refused: dict[str, str] = Field(description="codes not redeemed, and why")


class ShopifyAccepted(BaseModel):
    topic: str
    webhook_id: str
    duplicate: bool = Field(description="this webhook id was processed before")
    shopper_linked: bool = Field(description="false: no shopper linked this customer; nothing kept")
    applied: bool
    order: OrderAccepted | None = None
