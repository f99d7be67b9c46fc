"""The facts behind ``loyalty`` from the database: visits, orders, social events, offers.

Visits count only while the shopper's footfall consent holds (only then are visits recorded under
their id); orders count when the commerce platform's customer is linked to the shopper.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloud_api.config import CloudSettings
from cloud_api.shoppers.loyalty import (
    LoyaltyRules,
    OrderFact,
    Segment,
    ShopperFacts,
    ShopperValue,
    VisitFact,
    segment,
    segment_movement,
    value,
)
from cloud_api.store.models import Notification, Offer, Order, Shopper, ShopperEvent, Visit


def loyalty_rules(settings: CloudSettings) -> LoyaltyRules:
    return LoyaltyRules(
        window_days=settings.loyalty_window_days,
        regular_visits=settings.loyalty_regular_visits,
        regular_orders=settings.loyalty_regular_orders,
        loyal_visits=settings.loyalty_loyal_visits,
        loyal_orders=settings.loyalty_loyal_orders,
        at_risk_after_days=settings.loyalty_at_risk_after_days,
    )


def load_facts(session: Session, shopper_ids: Collection[str]) -> dict[str, ShopperFacts]:
    """Each shopper's facts, in a handful of queries whatever the number of shoppers."""
    ids = sorted(set(shopper_ids))
    visits: dict[str, list[VisitFact]] = defaultdict(list)
    orders: dict[str, list[OrderFact]] = defaultdict(list)
    social: Counter[tuple[str, str]] = Counter()
    offers: Counter[tuple[str, str]] = Counter()
    if ids:
        for sid, started_at, dwell_s in session.execute(
            sa.select(Visit.shopper_id, Visit.started_at, Visit.dwell_s).where(
                Visit.shopper_id.in_(ids)
            )
        ):
            assert sid is not None
            visits[sid].append(VisitFact(started_at, dwell_s))
        for sid, ordered_at, total, currency in session.execute(
            sa.select(Order.shopper_id, Order.ordered_at, Order.total, Order.currency).where(
                Order.shopper_id.in_(ids)
            )
        ):
            assert sid is not None
            orders[sid].append(OrderFact(ordered_at, total, currency))
        for sid, kind, count in session.execute(
            sa.select(ShopperEvent.shopper_id, ShopperEvent.kind, sa.func.count())
            .where(ShopperEvent.shopper_id.in_(ids))
            .group_by(ShopperEvent.shopper_id, ShopperEvent.kind)
        ):
            social[sid, kind] = count
        for sid, received, redeemed in session.execute(
            sa.select(Offer.shopper_id, sa.func.count(), sa.func.count(Offer.redeemed_at))
            .where(Offer.shopper_id.in_(ids))
            .group_by(Offer.shopper_id)
        ):
            offers[sid, "received"] = received
            offers[sid, "redeemed"] = redeemed
        for sid, opened in session.execute(
            sa.select(Notification.shopper_id, sa.func.count())
            .where(Notification.shopper_id.in_(ids), Notification.opened_at.is_not(None))
            .group_by(Notification.shopper_id)
        ):
            offers[sid, "opened"] = opened
    return {
        sid: ShopperFacts(
            visits=visits[sid],
            orders=orders[sid],
            referrals=social[sid, "referral"],
            shares=social[sid, "share"],
            offers_received=offers[sid, "received"],
            offers_opened=offers[sid, "opened"],
            offers_redeemed=offers[sid, "redeemed"],
        )
        for sid in ids
    }


def value_of(
    session: Session, shopper_id: str, now: datetime, rules: LoyaltyRules | None = None
) -> ShopperValue:
    return value(load_facts(session, [shopper_id])[shopper_id], now, rules or LoyaltyRules())


def segments_of(
    session: Session, shopper_ids: Collection[str], now: datetime, rules: LoyaltyRules | None = None
) -> dict[str, Segment]:
    """The segment of each shopper at ``now``, for campaign conditions."""
    rules = rules or LoyaltyRules()
    return {sid: segment(f, now, rules) for sid, f in load_facts(session, shopper_ids).items()}


def segment_of(
    session: Session, shopper_id: str, now: datetime, rules: LoyaltyRules | None = None
) -> Segment:
    """One shopper's segment; ``rules`` default to ``CloudSettings``' defaults."""
    return segments_of(session, [shopper_id], now, rules)[shopper_id]


def segment_counts(
    session: Session, now: datetime, rules: LoyaltyRules | None = None
) -> dict[Segment, int]:
    """How many registered shoppers each segment holds, for the dashboard."""
    ids = list(session.scalars(sa.select(Shopper.id)))
    counts = Counter(segments_of(session, ids, now, rules).values())
    return {member: counts[member] for member in Segment}


def segment_moves(
    session: Session, since: datetime, until: datetime, rules: LoyaltyRules | None = None
) -> Counter[tuple[Segment, Segment]]:
    """Registered shoppers' movement between segments from ``since`` to ``until``."""
    ids = list(session.scalars(sa.select(Shopper.id)))
    facts = load_facts(session, ids).values()
    return segment_movement(facts, since, until, rules or LoyaltyRules())
