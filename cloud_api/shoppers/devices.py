"""Shoppers' devices besides the app: wearables resolved by their IRK, loyalty key-fob beacons.

A wearable's IRK (identity resolving key) lets a gateway recognise the watch or band through its
rotating private address. It goes into the retained config of the store's gateways only while the
shopper's consent holds (any purpose: both need recognition); ``consented_wearables`` is what the
stores' config publisher puts there, published again after every change to a device or a consent.
"""

from __future__ import annotations

import secrets
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloud_api.ingest.resolve import ConsentingShopper
from cloud_api.offers.codes import crockford
from cloud_api.store.models import Shopper, ShopperDevice
from storelink.wire import canonical_beacon_id

WEARABLE_REF_PREFIX = "wear-"
WEARABLE_REF_BYTES = 10
IRK_BYTES = 16


class DeviceKind(StrEnum):
    WEARABLE = "wearable"
    KEY_FOB = "key_fob"


def _consenting() -> sa.ColumnElement[bool]:
    return sa.or_(Shopper.consent_personal_offers, Shopper.consent_footfall_analytics)


def consented_wearables(session: Session, store_id: str) -> dict[str, bytes]:
    """``{wearable ref: IRK}`` for the gateways of ``store_id``: consent holds, store matches."""
    rows = session.execute(
        sa.select(ShopperDevice.ref, ShopperDevice.irk)
        .join(Shopper, Shopper.id == ShopperDevice.shopper_id)
        .where(
            ShopperDevice.kind == DeviceKind.WEARABLE.value,
            ShopperDevice.irk.is_not(None),
            sa.or_(ShopperDevice.store_id.is_(None), ShopperDevice.store_id == store_id),
            _consenting(),
        )
        .order_by(ShopperDevice.ref)
    )
    return {ref: irk for ref, irk in rows if irk is not None}


def consented_irks(session: Session, store_id: str) -> list[bytes]:
    """The IRKs of the consenting shoppers' wearables that ``store_id``'s gateways may resolve."""
    return list(consented_wearables(session, store_id).values())


def new_wearable_ref() -> str:
    """Random, not derived from the IRK or the shopper: the ref is all a gateway publishes."""
    return WEARABLE_REF_PREFIX + crockford(secrets.token_bytes(WEARABLE_REF_BYTES)).lower()


def key_fob_ref(uuid: str, major: int, minor: int) -> str:
    """The subject ref a gateway publishes for an iBeacon that is not the store's own."""
    beacon_id = canonical_beacon_id(f"{uuid}:{major}:{minor}")
    return beacon_id.replace(":", ".")


def load_device_owners(session: Session) -> dict[str, ConsentingShopper]:
    """``{device ref: owner}`` for every device whose owner consents to something."""
    rows = session.execute(
        sa.select(
            ShopperDevice.ref,
            Shopper.id,
            Shopper.app_key,
            Shopper.consent_personal_offers,
            Shopper.consent_footfall_analytics,
        )
        .join(Shopper, Shopper.id == ShopperDevice.shopper_id)
        .where(_consenting())
    )
    return {
        ref: ConsentingShopper(shopper_id, app_key, offers, footfall)
        for ref, shopper_id, app_key, offers, footfall in rows
    }


def wearable_stores(session: Session, shopper_id: str) -> set[str | None]:
    """The stores whose gateway configs carry this shopper's wearables; None stands for all."""
    return set(
        session.scalars(
            sa.select(ShopperDevice.store_id).where(
                ShopperDevice.shopper_id == shopper_id,
                ShopperDevice.kind == DeviceKind.WEARABLE.value,
            )
        )
    )
