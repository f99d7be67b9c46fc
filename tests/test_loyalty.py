"""Loyalty segments and a shopper's value: the pure rules, then from a real database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from cloud_api.config import CloudSettings
from cloud_api.shoppers.loyalty import (
    LoyaltyRules,
    OrderFact,
    Segment,
    ShopperFacts,
    VisitFact,
    segment,
    segment_movement,
    value,
)
from cloud_api.shoppers.loyalty_store import loyalty_rules, segment_counts, segment_of, segments_of
from cloud_api.store.models import Order, Visit
from tests.shopper_app import Cloud, register, running_cloud

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
RULES = LoyaltyRules()


def visits(*days_ago: float, dwell_s: float = 600) -> tuple[VisitFact, ...]:
    return tuple(VisitFact(NOW - timedelta(days=d), dwell_s) for d in days_ago)


def orders(*days_ago: float, total: str = "50.00") -> tuple[OrderFact, ...]:
    return tuple(OrderFact(NOW - timedelta(days=d), Decimal(total), "EUR") for d in days_ago)


def test_the_rules_default_to_the_settings_defaults() -> None:
    assert loyalty_rules(CloudSettings()) == LoyaltyRules()


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (ShopperFacts(), Segment.NEW),
        (ShopperFacts(visits=visits(1, 2)), Segment.NEW),
        (ShopperFacts(visits=visits(1, 20, 40)), Segment.REGULAR),
        (ShopperFacts(orders=orders(3, 30)), Segment.REGULAR),
        (ShopperFacts(visits=visits(*range(1, 80, 10))), Segment.LOYAL),
        (ShopperFacts(orders=orders(1, 2, 3, 4, 5)), Segment.LOYAL),
        # Regular once, nothing for 45 days: lapsed.
        (ShopperFacts(visits=visits(46, 50, 60)), Segment.AT_RISK),
        (ShopperFacts(visits=visits(*range(46, 126, 10))), Segment.AT_RISK),
        # An order 44 days ago keeps a regular from lapsing.
        (ShopperFacts(visits=visits(46, 50, 60), orders=orders(44)), Segment.REGULAR),
        # Two visits long ago were never a habit: not at risk, new again.
        (ShopperFacts(visits=visits(200, 210)), Segment.NEW),
        # Outside the window no longer counts towards regular.
        (ShopperFacts(visits=visits(1, 95, 100)), Segment.NEW),
    ],
    ids=[
        "nothing",
        "two-visits",
        "three-visits",
        "two-orders",
        "eight-visits",
        "five-orders",
        "lapsed-regular",
        "lapsed-loyal",
        "recent-order",
        "two-old-visits",
        "window",
    ],
)
def test_segments(facts: ShopperFacts, expected: Segment) -> None:
    assert segment(facts, NOW, RULES) == expected


def test_thresholds_come_from_the_rules() -> None:
    strict = LoyaltyRules(regular_visits=4, at_risk_after_days=10)
    facts = ShopperFacts(visits=visits(11, 12, 13))
    assert segment(facts, NOW, RULES) == Segment.REGULAR
    assert segment(facts, NOW, strict) == Segment.NEW
    assert segment(ShopperFacts(visits=visits(11, 12, 13, 14)), NOW, strict) == Segment.AT_RISK


def test_future_events_do_not_count() -> None:
    assert segment(ShopperFacts(visits=visits(-1, -2, -3)), NOW, RULES) == Segment.NEW


def test_movement_counts_each_shopper_once_from_their_old_to_their_new_segment() -> None:
    month_ago = NOW - timedelta(days=30)
    lapsing = ShopperFacts(visits=visits(46, 50, 60))  # regular a month ago, at risk now
    settling = ShopperFacts(visits=visits(1, 10, 20))  # new a month ago, regular now
    steady = ShopperFacts()
    moves = segment_movement([lapsing, settling, steady, steady], month_ago, NOW, RULES)
    assert moves == {
        (Segment.REGULAR, Segment.AT_RISK): 1,
        (Segment.NEW, Segment.REGULAR): 1,
        (Segment.NEW, Segment.NEW): 2,
    }


def test_value_figures() -> None:
    facts = ShopperFacts(
        visits=visits(1, 10, 100, dwell_s=300) + visits(5, dwell_s=900),
        orders=(
            *orders(2, total="80.91"),
            OrderFact(NOW - timedelta(days=7), Decimal("20"), "GBP"),
        ),
        referrals=2,
        shares=5,
        offers_received=3,
        offers_redeemed=1,
    )
    figures = value(facts, NOW, RULES)
    assert figures.visits_total == 4
    assert figures.visits_in_window == 3
    assert figures.visits_per_30_days == 1.0
    assert figures.last_visit_at == NOW - timedelta(days=1)
    assert figures.days_since_last_visit == 1.0
    assert figures.average_dwell_s == 450.0
    assert figures.orders_total == 2
    assert figures.spend_by_currency == {"EUR": Decimal("80.91"), "GBP": Decimal("20")}
    assert (figures.referrals, figures.shares) == (2, 5)
    assert (figures.offers_received, figures.offers_redeemed) == (3, 1)
    assert figures.segment == Segment.REGULAR


# --- from the database --------------------------------------------------------------------------


@pytest.fixture
def cloud(database_url: str) -> Iterator[Cloud]:
    yield from running_cloud(database_url)


def add_visits(cloud: Cloud, shopper_id: str, now: datetime, *days_ago: float) -> None:
    with cloud.context.sessions() as session:
        for days in days_ago:
            started = now - timedelta(days=days)
            session.add(
                Visit(
                    store_id="store-1",
                    subject_type="app",
                    subject_ref="0000abcd",
                    shopper_id=shopper_id,
                    started_at=started,
                    last_seen_at=started + timedelta(minutes=12),
                    ended_at=started + timedelta(minutes=12),
                    zones=["entrance"],
                    presence={},
                    dwell_s=720.0,
                )
            )
        session.commit()


def test_segments_and_profile_from_the_database(cloud: Cloud) -> None:
    now = datetime.now(UTC)
    loyal, regular, lapsed, new = (register(cloud.client) for _ in range(4))
    add_visits(cloud, loyal.shopper_id, now, *range(1, 80, 9))
    add_visits(cloud, regular.shopper_id, now, 2, 9, 30)
    add_visits(cloud, lapsed.shopper_id, now, 50, 60, 70)
    with cloud.context.sessions() as session:
        session.add(
            Order(
                order_ref="pos-1",
                shopper_id=regular.shopper_id,
                cart_id=None,
                store_id="store-1",
                channel="pos",
                items=[],
                total=Decimal("42.50"),
                currency="EUR",
                discount_codes=[],
                ordered_at=now - timedelta(days=1),
                received_at=now,
            )
        )
        session.commit()
    share = {"event_id": "e-1", "kind": "referral", "at": now.isoformat()}
    path = f"/v1/shoppers/{regular.shopper_id}/events"
    assert regular.request(cloud.client, "POST", path, share).json()["applied"] is True
    assert regular.request(cloud.client, "POST", path, share).json()["applied"] is False

    with cloud.context.sessions() as session:
        assert segment_of(session, loyal.shopper_id, now) == Segment.LOYAL
        ids = [s.shopper_id for s in (loyal, regular, lapsed, new)]
        assert segments_of(session, ids, now) == dict(
            zip(ids, [Segment.LOYAL, Segment.REGULAR, Segment.AT_RISK, Segment.NEW], strict=True)
        )
        assert segment_counts(session, now) == {
            Segment.NEW: 1,
            Segment.REGULAR: 1,
            Segment.LOYAL: 1,
            Segment.AT_RISK: 1,
        }

    profile = regular.request(cloud.client, "GET", f"/v1/shoppers/{regular.shopper_id}/profile")
    assert profile.status_code == 200, profile.text
    body = profile.json()
    assert body["segment"] == "regular"
    assert body["visits_total"] == 3
    assert body["average_dwell_s"] == 720.0
    assert body["orders_total"] == 1
    assert body["spend_by_currency"] == {"EUR": "42.50"}
    assert body["referrals"] == 1
    assert body["consent"]["personal_offers"]["granted"] is True
