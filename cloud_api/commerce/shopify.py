"""Shopify webhooks: checkouts become carts, orders convert them and redeem their codes.

Shopify signs each webhook with the app's client secret: ``X-Shopify-Hmac-Sha256`` is the base64
HMAC-SHA256 of the raw body. It retries a delivery until it gets a 2xx within five seconds, with
the same ``X-Shopify-Webhook-Id``, which is therefore the dedup key. Payloads carry far more than
storelink needs (addresses, phone numbers, browser details); only what is read below is kept, and
only for shoppers who linked their Shopify customer id or e-mail address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cloud_api.commerce.carts import CartRecord, OrderRecord

HMAC_HEADER = "X-Shopify-Hmac-Sha256"
TOPIC_HEADER = "X-Shopify-Topic"
WEBHOOK_ID_HEADER = "X-Shopify-Webhook-Id"
CART_PREFIX = "shopify:"


class Topic(StrEnum):
    CHECKOUTS_CREATE = "checkouts/create"
    CHECKOUTS_UPDATE = "checkouts/update"
    ORDERS_CREATE = "orders/create"


def shopify_signature(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify_shopify(secret: str, body: bytes, header: str) -> bool:
    """Constant-time comparison of the base64 digests."""
    return hmac.compare_digest(shopify_signature(secret, body).encode(), header.strip().encode())


class _Payload(BaseModel):
    # Shopify adds fields between API versions; what storelink does not read is ignored.
    model_config = ConfigDict(extra="ignore")


class Customer(_Payload):
    id: int
    email: str | None = None


class LineItem(_Payload):
    sku: str | None = None
    title: str
    quantity: int = Field(ge=0)
    price: Decimal = Field(ge=0)
    variant_id: int | None = None
    product_type: str | None = None


class DiscountCode(_Payload):
    code: str


_CUSTOMER_EXAMPLE: dict[str, Any] = {"id": 6120384520001, "email": "giulia@example.com"}
_LINE_ITEM_EXAMPLE: dict[str, Any] = {
    "sku": "SCARF-RED-M",
    "title": "Wool scarf, red",
    "quantity": 1,
    "price": "24.90",
    "variant_id": 40211533000001,
    "product_type": "accessories",
}


class Checkout(_Payload):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "token": "8f3c2b7e1d9a4c6f",
                    "cart_token": "c1-7b9e2a4d",
                    "email": "giulia@example.com",
                    "customer": _CUSTOMER_EXAMPLE,
                    "line_items": [_LINE_ITEM_EXAMPLE],
                    "total_price": "24.90",
                    "currency": "EUR",
                    "abandoned_checkout_url": "https://shop.example.com/checkouts/8f3c2b7e1d9a4c6f/recover",
                    "updated_at": "2026-11-24T15:42:07+01:00",
                    "completed_at": None,
                }
            ]
        }
    )

    token: str = Field(min_length=1, max_length=100)
    cart_token: str | None = None
    email: str | None = None
    customer: Customer | None = None
    line_items: list[LineItem] = Field(default_factory=list)
    total_price: Decimal = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    abandoned_checkout_url: str | None = None
    updated_at: AwareDatetime
    completed_at: AwareDatetime | None = None


class ShopifyOrder(_Payload):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 5301948270001,
                    "checkout_token": "8f3c2b7e1d9a4c6f",
                    "cart_token": "c1-7b9e2a4d",
                    "email": "giulia@example.com",
                    "customer": _CUSTOMER_EXAMPLE,
                    "line_items": [_LINE_ITEM_EXAMPLE],
                    "total_price": "22.41",
                    "currency": "EUR",
                    "discount_codes": [{"code": "7KQ2-M9XD"}],
                    "source_name": "web",
                    "created_at": "2026-11-24T16:05:31+01:00",
                }
            ]
        }
    )

    id: int
    checkout_token: str | None = None
    cart_token: str | None = None
    email: str | None = None
    customer: Customer | None = None
    line_items: list[LineItem] = Field(default_factory=list)
    total_price: Decimal = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    discount_codes: list[DiscountCode] = Field(default_factory=list)
    source_name: str | None = None
    created_at: AwareDatetime


def customer_keys(payload: Checkout | ShopifyOrder) -> tuple[int | None, str | None]:
    """The customer id and the e-mail address a payload names, to find the shopper by."""
    customer_id = payload.customer.id if payload.customer else None
    email = payload.email or (payload.customer.email if payload.customer else None)
    return customer_id, email


def _items(line_items: list[LineItem]) -> list[dict[str, Any]]:
    return [
        {
            # A product without a SKU is still the same variant every time.
            "sku": item.sku or f"variant-{item.variant_id}",
            "name": item.title,
            "category": item.product_type or "",
            "unit_price": str(item.price),
            "quantity": item.quantity,
        }
        for item in line_items
        if item.quantity > 0
    ]


def cart_id(checkout_token: str) -> str:
    return CART_PREFIX + checkout_token


def cart_record(checkout: Checkout, shopper_id: str) -> CartRecord:
    return CartRecord(
        cart_id=cart_id(checkout.token),
        shopper_id=shopper_id,
        items=_items(checkout.line_items),
        total=checkout.total_price,
        currency=checkout.currency,
        status="ordered" if checkout.completed_at is not None else "open",
        updated_at=checkout.updated_at,
        checkout_url=checkout.abandoned_checkout_url,
    )


def order_record(order: ShopifyOrder, shopper_id: str | None) -> OrderRecord:
    return OrderRecord(
        order_ref=f"{CART_PREFIX}{order.id}",
        shopper_id=shopper_id,
        cart_id=cart_id(order.checkout_token) if order.checkout_token else None,
        store_id=None,
        channel="pos" if order.source_name == "pos" else "online",
        items=_items(order.line_items),
        total=order.total_price,
        currency=order.currency,
        discount_codes=[discount.code for discount in order.discount_codes],
        ordered_at=order.created_at,
    )
