from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from cloud_api.match import (
    CartFacts,
    NoOffer,
    NoOfferReason,
    OfferDecision,
    OfferPolicy,
    PastOffer,
    decide_offer,
    is_abandoned,
)
from cloud_api.resolve import ConsentingShopper
from storelink.wire import OfferItem, PresenceEvent, PresenceKind, Subject, SubjectType

# Far from the wall clock on purpose: the decision must depend on the event's time only.
TS = datetime(2031, 3, 14, 15, 9, 26, tzinfo=UTC)
POLICY = OfferPolicy(abandon_after_s=3600, percent_off=Decimal("10"), ttl_s=7200, cooldown_s=86400)
ALICE = ConsentingShopper("shp_alice", b"a" * 32, personal_offers=True, footfall_analytics=True)
SHOES = OfferItem(sku="SHOE-042", name="Trail runners", unit_price=Decimal("89.90"), quantity=1)
SOCKS = OfferItem(sku="SOCK-007", name="Merino socks", unit_price=Decimal("12.50"), quantity=2)


def event(kind: PresenceKind = PresenceKind.ENTER, ts: datetime = TS) -> PresenceEvent:
    return PresenceEvent(
        store_id="store-1",
        gateway_id="gw-1",
        zone_id="entrance",
        kind=kind,
        subject=Subject(type=SubjectType.APP, ref="0a1b2c3d"),
        ts=ts,
        dwell_s=0.0 if kind == PresenceKind.ENTER else 30.0,
        rssi=-60,
    )


def cart(
    age: timedelta,
    *,
    cart_id: str = "cart-1",
    items: tuple[OfferItem, ...] = (SHOES, SOCKS),
    status: str = "open",
) -> CartFacts:
    return CartFacts(cart_id, items, "EUR", status, TS - age)


def decide(
    carts: list[CartFacts],
    *,
    shopper: ConsentingShopper | None = ALICE,
    offers: list[PastOffer] | None = None,
    kind: PresenceKind = PresenceKind.ENTER,
) -> OfferDecision | NoOffer:
    return decide_offer(event(kind), shopper, carts, offers or [], POLICY)


def test_abandoned_cart_earns_an_offer_dated_by_the_event() -> None:
    decision = decide([cart(timedelta(hours=3))])
    assert decision == OfferDecision(
        cart_id="cart-1",
        percent_off=Decimal("10"),
        items=(SHOES, SOCKS),
        currency="EUR",
        created_at=TS,
        expires_at=TS + timedelta(hours=2),
        message="Welcome back! 10% off the 3 items in your cart.",
    )


def test_a_cart_touched_within_the_abandon_delay_is_still_being_shopped() -> None:
    assert decide([cart(timedelta(minutes=59))]) == NoOffer(NoOfferReason.NO_ABANDONED_CART)


def test_a_cart_exactly_the_abandon_delay_old_is_abandoned() -> None:
    assert is_abandoned(cart(timedelta(seconds=3600)), TS, 3600)
    assert not is_abandoned(cart(timedelta(seconds=3599)), TS, 3600)


def test_an_ordered_cart_is_not_abandoned() -> None:
    ordered = cart(timedelta(days=2), status="ordered")
    assert decide([ordered]) == NoOffer(NoOfferReason.NO_ABANDONED_CART)


def test_an_empty_cart_is_not_abandoned() -> None:
    assert decide([cart(timedelta(days=2), items=())]) == NoOffer(NoOfferReason.NO_ABANDONED_CART)


def test_no_carts_no_offer() -> None:
    assert decide([]) == NoOffer(NoOfferReason.NO_ABANDONED_CART)


def test_a_cart_updated_after_the_event_is_not_abandoned() -> None:
    # A late event must not be judged against a cart the shopper touched after walking in.
    assert decide([cart(-timedelta(hours=5))]) == NoOffer(NoOfferReason.NO_ABANDONED_CART)


def test_no_offer_without_consent_to_personal_offers() -> None:
    footfall_only = ConsentingShopper(
        "shp_b", b"b" * 32, personal_offers=False, footfall_analytics=True
    )
    assert decide([cart(timedelta(hours=3))], shopper=footfall_only) == NoOffer(
        NoOfferReason.NO_CONSENT
    )


def test_no_offer_for_an_unrecognised_subject() -> None:
    assert decide([cart(timedelta(hours=3))], shopper=None) == NoOffer(
        NoOfferReason.UNKNOWN_SHOPPER
    )


@pytest.mark.parametrize("kind", [PresenceKind.DWELL, PresenceKind.EXIT])
def test_only_an_enter_triggers_an_offer(kind: PresenceKind) -> None:
    assert decide([cart(timedelta(hours=3))], kind=kind) == NoOffer(NoOfferReason.NOT_AN_ENTER)


def test_cooldown_allows_one_offer_per_cart() -> None:
    recent = PastOffer("cart-1", TS - timedelta(hours=23))
    assert decide([cart(timedelta(days=2))], offers=[recent]) == NoOffer(NoOfferReason.COOLDOWN)


def test_cooldown_counts_an_offer_made_for_a_later_event() -> None:
    later = PastOffer("cart-1", TS + timedelta(minutes=5))
    assert decide([cart(timedelta(days=2))], offers=[later]) == NoOffer(NoOfferReason.COOLDOWN)


def test_after_the_cooldown_the_same_cart_earns_an_offer_again() -> None:
    old = PastOffer("cart-1", TS - timedelta(hours=25))
    decision = decide([cart(timedelta(days=2))], offers=[old])
    assert isinstance(decision, OfferDecision)
    assert decision.cart_id == "cart-1"


def test_an_offer_on_one_cart_does_not_block_another_cart() -> None:
    carts = [cart(timedelta(hours=2), cart_id="cart-1"), cart(timedelta(days=3), cart_id="cart-2")]
    decision = decide(carts, offers=[PastOffer("cart-1", TS - timedelta(hours=1))])
    assert isinstance(decision, OfferDecision)
    assert decision.cart_id == "cart-2"


def test_the_most_recently_abandoned_cart_is_chosen() -> None:
    carts = [
        cart(timedelta(days=3), cart_id="old"),
        cart(timedelta(hours=2), cart_id="recent", items=(SHOES,)),
        cart(timedelta(minutes=5), cart_id="fresh"),
    ]
    decision = decide(carts)
    assert isinstance(decision, OfferDecision)
    assert decision.cart_id == "recent"
    assert decision.items == (SHOES,)
    assert decision.message == "Welcome back! 10% off the 1 item in your cart."


def test_policy_sets_percent_and_ttl() -> None:
    policy = OfferPolicy(abandon_after_s=60, percent_off=Decimal("12.5"), ttl_s=600, cooldown_s=0)
    decision = decide_offer(event(), ALICE, [cart(timedelta(minutes=2))], [], policy)
    assert isinstance(decision, OfferDecision)
    assert decision.percent_off == Decimal("12.5")
    assert decision.expires_at == TS + timedelta(minutes=10)
    assert decision.message.startswith("Welcome back! 12.5% off")
