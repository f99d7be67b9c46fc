"""The HTTP API's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StringConstraints

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


class _Request(BaseModel):
    # A misspelt field would otherwise be dropped silently, and a consent with it.
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- shoppers -----------------------------------------------------------------------------------


class ConsentIn(_Request):
    """Both answers are required and must be JSON booleans: consent is never implied."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"personal_offers": True, "footfall_analytics": False}]}
    )

    personal_offers: StrictBool = Field(
        description="offers based on the shopper's carts, sent when they walk into a store"
    )
    footfall_analytics: StrictBool = Field(
        description="the shopper's visits recorded under their id for store analytics"
    )


class ShopperCreate(_Request):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "display_name": "Giulia",
                    "consent": {"personal_offers": True, "footfall_analytics": False},
                    "consent_text_version": "2026-10",
                    "email": "giulia@example.com",
                }
            ]
        }
    )

    display_name: str | None = Field(default=None, max_length=100)
    consent: ConsentIn
    consent_text_version: str = Field(
        min_length=1, max_length=64, description="version of the consent text the shopper saw"
    )
    email: str | None = Field(
        default=None,
        pattern=r"^[^@\s]+@[^@\s]+$",
        max_length=254,
        description="links the shop's carts and orders to the shopper; kept as its SHA-256 only",
    )
    shopify_customer_id: int | None = Field(
        default=None, ge=1, description="the shopper's Shopify customer id, for the same purpose"
    )


class ConsentUpdate(_Request):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "consent": {"personal_offers": False, "footfall_analytics": False},
                    "consent_text_version": "2026-10",
                }
            ]
        }
    )

    consent: ConsentIn
    consent_text_version: str = Field(min_length=1, max_length=64)


class ConsentOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "personal_offers": True,
                    "footfall_analytics": False,
                    "text_version": "2026-10",
                    "given_at": "2026-11-24T15:42:07Z",
                }
            ]
        }
    )

    personal_offers: bool
    footfall_analytics: bool
    text_version: str
    given_at: datetime


_CONSENT_EXAMPLE: dict[str, Any] = {
    "personal_offers": True,
    "footfall_analytics": False,
    "text_version": "2026-10",
    "given_at": "2026-11-24T15:42:07Z",
}


class ShopperOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "shopper_id": "shp_hybxv1wjpwe0t6gfcc2ha1wwm4",
                    "display_name": "Giulia",
                    "notification_topic": "storelink/v1/shoppers/shp_hybxv1wjpwe0t6gfcc2ha1wwm4"
                    "/notifications",
                    "consent": _CONSENT_EXAMPLE,
                    "created_at": "2026-11-24T15:42:07Z",
                }
            ]
        }
    )

    shopper_id: str
    display_name: str | None
    notification_topic: str
    consent: ConsentOut
    created_at: datetime


class ShopperCreated(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "shopper_id": "shp_hybxv1wjpwe0t6gfcc2ha1wwm4",
                    "app_key": "9f2c4e1a7b3d5f6081a2b3c4d5e6f708",
                    "notification_topic": "storelink/v1/shoppers/shp_hybxv1wjpwe0t6gfcc2ha1wwm4"
                    "/notifications",
                    "consent": _CONSENT_EXAMPLE,
                }
            ]
        }
    )

    shopper_id: str
    app_key: str = Field(description="hex; the app's token key, returned at registration only")
    notification_topic: str
    consent: ConsentOut


# --- carts --------------------------------------------------------------------------------------


class CartItemIn(_Request):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sku": "SCARF-RED-M",
                    "name": "Wool scarf, red",
                    "category": "accessories",
                    "unit_price": "24.90",
                    "quantity": 1,
                }
            ]
        }
    )

    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    category: str = Field(max_length=64)
    unit_price: Decimal = Field(ge=0, max_digits=12, decimal_places=2)
    quantity: int = Field(ge=1)


class CartWebhook(_Request):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "cart_id": "cart-8841",
                    "shopper_id": "shp_hybxv1wjpwe0t6gfcc2ha1wwm4",
                    "items": [
                        {
                            "sku": "SCARF-RED-M",
                            "name": "Wool scarf, red",
                            "category": "accessories",
                            "unit_price": "24.90",
                            "quantity": 1,
                        },
                        {
                            "sku": "GLOVES-BLK-S",
                            "name": "Leather gloves",
                            "category": "accessories",
                            "unit_price": "39.00",
                            "quantity": 1,
                        },
                    ],
                    "total": "63.90",
                    "currency": "EUR",
                    "status": "open",
                    "updated_at": "2026-11-24T15:42:07Z",
                }
            ]
        }
    )

    cart_id: str = Field(min_length=1, max_length=128)
    shopper_id: str = Field(min_length=1, max_length=64)
    items: list[CartItemIn]
    total: Decimal = Field(ge=0, max_digits=12, decimal_places=2)
    currency: Currency
    status: Literal["open", "ordered"]
    updated_at: AwareDatetime


class CartAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"cart_id": "cart-8841", "status": "open", "applied": True}]
        }
    )

    cart_id: str
    status: str = Field(description="the cart's status as stored after this update")
    applied: bool = Field(description="false when the update was older than the stored cart")


# --- offers, visits, gateways, stats ------------------------------------------------------------


class OfferOut(_Response):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "7KQ2-M9XD",
                    "shopper_id": "shp_hybxv1wjpwe0t6gfcc2ha1wwm4",
                    "store_id": "store-1",
                    "cart_id": "cart-8841",
                    "visit_id": 1207,
                    "campaign_id": "abandoned-cart",
                    "percent_off": "10",
                    "amount_off": None,
                    "min_spend": None,
                    "online": True,
                    "items": [],
                    "currency": "EUR",
                    "created_at": "2026-11-24T15:42:07Z",
                    "expires_at": "2026-11-24T17:42:07Z",
                    "redeemed_at": None,
                    "order_ref": None,
                }
            ]
        }
    )

    code: str
    shopper_id: str
    store_id: str
    cart_id: str | None
    visit_id: int | None
    campaign_id: str | None
    percent_off: Decimal | None
    amount_off: Decimal | None
    min_spend: Decimal | None
    online: bool
    items: list[dict[str, Any]]
    currency: str
    created_at: datetime
    expires_at: datetime
    redeemed_at: datetime | None
    order_ref: str | None


class VisitOut(_Response):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 1207,
                    "store_id": "store-1",
                    "subject_type": "app",
                    "subject_ref": "shp_hybxv1wjpwe0t6gfcc2ha1wwm4",
                    "shopper_id": "shp_hybxv1wjpwe0t6gfcc2ha1wwm4",
                    "started_at": "2026-11-24T15:30:12Z",
                    "last_seen_at": "2026-11-24T15:42:07Z",
                    "ended_at": None,
                    "zones": ["entrance", "racks"],
                    "dwell_s": 715.0,
                }
            ]
        }
    )

    id: int
    store_id: str
    subject_type: str
    subject_ref: str
    shopper_id: str | None
    started_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None
    zones: list[str]
    dwell_s: float


class GatewayStatusOut(_Response):
    store_id: str
    gateway_id: str
    state: str
    ts: datetime
    version: str
    adverts_seen: int
    events_published: int
    decode_errors: int
    outbox_depth: int
    outbox_dropped: int
    uptime_s: float | None
    adverts_per_s: float | None
    cpu_temp_c: float | None
    scanner_restarts: int
    config_version: int | None
    config_error: str | None
    received_at: datetime


class StatsSummary(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "visits": 1840,
                    "offers": 212,
                    "notifications": 205,
                    "presence_events": 96511,
                    "invalid_payloads": 3,
                }
            ]
        }
    )

    visits: int
    offers: int
    notifications: int
    presence_events: int
    invalid_payloads: int = Field(description="MQTT messages refused since this process started")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: str
    mqtt: Literal["connected", "disconnected", "disabled"]
