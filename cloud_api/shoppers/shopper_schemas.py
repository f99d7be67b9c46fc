"""Request and response bodies of the shopper app's endpoints: consent, devices, events, profile."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from cloud_api.shoppers.loyalty import ShopperValue
from storelink.wire import OfferNotification

IrkHex = Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f]{32}$")]
BeaconUuid = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}$"
    ),
]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PurposeState(BaseModel):
    granted: bool
    text_version: str
    at: datetime


class ConsentRecordOut(BaseModel):
    purpose: str
    granted: bool
    text_version: str
    at: datetime


class WearableIn(_Request):
    kind: Literal["wearable"]
    irk: IrkHex = Field(description="the watch's or band's identity resolving key, 32 hex digits")
    store_id: str | None = Field(
        default=None, max_length=64, description="resolve it in this store only; null: every store"
    )
    label: str | None = Field(default=None, max_length=100)


class KeyFobIn(_Request):
    kind: Literal["key_fob"]
    uuid: BeaconUuid
    major: int = Field(ge=0, le=0xFFFF)
    minor: int = Field(ge=0, le=0xFFFF)
    label: str | None = Field(default=None, max_length=100)


class DeviceIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "device": {
                        "kind": "wearable",
                        "irk": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                        "store_id": None,
                        "label": "Giulia's watch",
                    }
                },
                {
                    "device": {
                        "kind": "key_fob",
                        "uuid": "e2c56db5-dffb-48d2-b060-d0f5a71096e0",
                        "major": 1,
                        "minor": 4207,
                        "label": "loyalty key fob",
                    }
                },
            ]
        }
    )

    device: Annotated[WearableIn | KeyFobIn, Field(discriminator="kind")]


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    ref: str = Field(description="what gateways publish when they see the device")
    kind: str
    store_id: str | None
    label: str | None
    created_at: datetime


class BeaconIn(_Request):
    uuid: BeaconUuid
    major: int = Field(ge=0, le=0xFFFF)
    minor: int = Field(ge=0, le=0xFFFF)


class CheckinIn(_Request):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "shopper_id": "shp_hybxv1wjpwe0t6gfcc2ha1wwm4",
                    "beacon": {
                        "uuid": "e2c56db5-dffb-48d2-b060-d0f5a71096e0",
                        "major": 1,
                        "minor": 1,
                    },
                    "kind": "enter",
                    "at": "2026-11-24T15:42:07Z",
                }
            ]
        }
    )

    shopper_id: str = Field(min_length=1, max_length=64)
    beacon: BeaconIn = Field(description="the store's own beacon whose region the phone crossed")
    kind: Literal["enter", "exit"]
    at: AwareDatetime = Field(description="when iOS reported the region crossing")


class CheckinAccepted(BaseModel):
    event_id: str = Field(description="fixed by the check-in: a retry is a duplicate")
    store_id: str
    zone_id: str
    duplicate: bool
    visit_id: int | None
    identified: bool = Field(description="false without consent: the event is anonymous")
    offer: OfferNotification | None = Field(
        description="an offer the check-in earned, also stored with the shopper's offers"
    )


class IdentityLink(_Request):
    """How the shop knows the shopper, so that its carts and orders reach the right person."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"email": "giulia@example.com", "shopify_customer_id": 6120384520001}]
        }
    )

    email: Email | None = Field(default=None, description="kept as its SHA-256 only")
    shopify_customer_id: Annotated[int, Field(ge=1)] | None = None


class ShopperEventIn(_Request):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"event_id": "evt-3f9a1c07", "kind": "referral", "at": "2026-11-24T15:42:07Z"}
            ]
        }
    )

    event_id: str = Field(
        min_length=1, max_length=64, description="chosen by the app; a retry is ignored"
    )
    kind: Literal["referral", "share"]
    at: AwareDatetime


class ShopperEventAccepted(BaseModel):
    event_id: str
    applied: bool = Field(description="false when the event_id was already recorded")


class AbandonedCartOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    cart_id: str
    total: Decimal
    currency: str
    updated_at: datetime
    checkout_url: str | None


class ProfileOut(ShopperValue):
    shopper_id: str
    abandoned_carts: list[AbandonedCartOut] = Field(
        description="carts with items, not ordered, untouched for cart_abandon_after_s"
    )
    consent: dict[str, PurposeState]


class ErasureReceipt(BaseModel):
    shopper_id: str
    erased_rows: dict[str, int] = Field(description="rows deleted, per table")


class ShopperExport(BaseModel):
    shopper_id: str
    exported_at: datetime
    tables: dict[str, list[dict[str, Any]]] = Field(
        description="every row held about the shopper, per table"
    )
