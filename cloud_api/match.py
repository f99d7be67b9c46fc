"""The offer decision: does this shopper, walking in now, get a discount on their abandoned cart?

Pure: everything it needs is passed in, and "now" is the event's own time, so a simulated store
running at any speed decides exactly as a real one would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from cloud_api.codes import offer_expiry
from cloud_api.resolve import ConsentingShopper
from storelink.wire import OfferItem, PresenceEvent, PresenceKind

ORDERED = "ordered"


@dataclass(frozen=True)
class CartFacts:
    cart_id: str
    items: tuple[OfferItem, ...]
    currency: str
    status: str
    updated_at: datetime


@dataclass(frozen=True)
class PastOffer:
    cart_id: str
    created_at: datetime


@dataclass(frozen=True)
class OfferPolicy:
    abandon_after_s: float
    percent_off: Decimal
    ttl_s: float
    cooldown_s: float


@dataclass(frozen=True)
class OfferDecision:
    cart_id: str
    percent_off: Decimal
    items: tuple[OfferItem, ...]
    currency: str
    created_at: datetime
    expires_at: datetime
    message: str


class NoOfferReason(StrEnum):
    NOT_AN_ENTER = "only entering a zone triggers an offer"
    UNKNOWN_SHOPPER = "the subject is not a recognised shopper"
    NO_CONSENT = "the shopper has not agreed to personal offers"
    NO_ABANDONED_CART = "the shopper has no abandoned cart"
    COOLDOWN = "every abandoned cart had an offer within the cooldown"


@dataclass(frozen=True)
class NoOffer:
    reason: NoOfferReason


def is_abandoned(cart: CartFacts, now: datetime, abandon_after_s: float) -> bool:
    """Has items, was not ordered, and nobody touched it for ``abandon_after_s`` before ``now``."""
    return (
        bool(cart.items)
        and cart.status != ORDERED
        and now - cart.updated_at >= timedelta(seconds=abandon_after_s)
    )


def _in_cooldown(cart: CartFacts, offers: Sequence[PastOffer], now: datetime, s: float) -> bool:
    # Out-of-order delivery can make an offer look newer than "now": it still counts.
    since = now - timedelta(seconds=s)
    return any(o.cart_id == cart.cart_id and o.created_at > since for o in offers)


def offer_message(percent_off: Decimal, items: Sequence[OfferItem]) -> str:
    count = sum(item.quantity for item in items)
    things = "item" if count == 1 else "items"
    return f"Welcome back! {percent_off.normalize():f}% off the {count} {things} in your cart."


def decide_offer(
    event: PresenceEvent,
    shopper: ConsentingShopper | None,
    carts: Sequence[CartFacts],
    recent_offers: Sequence[PastOffer],
    policy: OfferPolicy,
) -> OfferDecision | NoOffer:
    """An offer on the shopper's most recently abandoned cart that had none lately, or why not."""
    if event.kind != PresenceKind.ENTER:
        return NoOffer(NoOfferReason.NOT_AN_ENTER)
    if shopper is None:
        return NoOffer(NoOfferReason.UNKNOWN_SHOPPER)
    if not shopper.personal_offers:
        return NoOffer(NoOfferReason.NO_CONSENT)
    now = event.ts
    abandoned = [c for c in carts if is_abandoned(c, now, policy.abandon_after_s)]
    if not abandoned:
        return NoOffer(NoOfferReason.NO_ABANDONED_CART)
    eligible = [c for c in abandoned if not _in_cooldown(c, recent_offers, now, policy.cooldown_s)]
    if not eligible:
        return NoOffer(NoOfferReason.COOLDOWN)
    cart = max(eligible, key=lambda c: c.updated_at)
    return OfferDecision(
        cart_id=cart.cart_id,
        percent_off=policy.percent_off,
        items=cart.items,
        currency=cart.currency,
        created_at=now,
        expires_at=offer_expiry(now, policy.ttl_s),
        message=offer_message(policy.percent_off, cart.items),
    )
