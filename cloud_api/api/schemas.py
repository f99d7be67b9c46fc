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

    personal_offers: StrictBool = Field(
        description="offers based on the shopper's carts, sent when they walk into a store"
    )
    footfall_analytics: StrictBool = Field(
        description="the shopper's visits recorded under their id for store analytics"
    )


class ShopperCreate(_Request):
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
    consent: ConsentIn
    consent_text_version: str = Field(min_length=1, max_length=64)


class ConsentOut(BaseModel):
    personal_offers: bool
    footfall_analytics: bool
    text_version: str
    given_at: datetime


class ShopperOut(BaseModel):
    shopper_id: str
    display_name: str | None
    notification_topic: str
    consent: ConsentOut
    created_at: datetime


class ShopperCreated(BaseModel):
    shopper_id: str
    app_key: str = Field(description="hex; the app's token key, returned at registration only")
    notification_topic: str
    consent: ConsentOut


# --- carts --------------------------------------------------------------------------------------


class CartItemIn(_Request):
    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    category: str = Field(max_length=64)
    unit_price: Decimal = Field(ge=0, max_digits=12, decimal_places=2)
    quantity: int = Field(ge=1)


class CartWebhook(_Request):
    cart_id: str = Field(min_length=1, max_length=128)
    shopper_id: str = Field(min_length=1, max_length=64)
    items: list[CartItemIn]
    total: Decimal = Field(ge=0, max_digits=12, decimal_places=2)
    currency: Currency
    status: Literal["open", "ordered"]
    updated_at: AwareDatetime


class CartAccepted(BaseModel):
    cart_id: str
    status: str = Field(description="the cart's status as stored after this update")
    applied: bool = Field(description="false when the update was older than the stored cart")


# --- offers, visits, gateways, stats ------------------------------------------------------------


class OfferOut(_Response):
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
    visits: int
    offers: int
    notifications: int
    presence_events: int
    invalid_payloads: int = Field(description="MQTT messages refused since this process started")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: str
    mqtt: Literal["connected", "disconnected", "disabled"]
