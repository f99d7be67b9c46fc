"""A shopper's value and loyalty segment, from their visits, orders, social acts and offers.

Pure: the facts come in, the figures come out; ``loyalty_store`` reads the facts from the
database. A customer's value has three sides: visits (frequency, recency, dwell), economic
(orders) and social (referrals, shares); engagement with offers is reported beside them.

Segments, first rule that holds wins (thresholds in ``LoyaltyRules``, from ``CloudSettings``):

1. ``at_risk``: at least a regular's activity in all (visits or orders), and none for
   ``at_risk_after_days``: a lapsed customer worth winning back.
2. ``loyal``: ``loyal_visits`` visits or ``loyal_orders`` orders within the window.
3. ``regular``: ``regular_visits`` visits or ``regular_orders`` orders within the window.
4. ``new``: everyone else, including shoppers never seen yet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Segment(StrEnum):
    NEW = "new"
    REGULAR = "regular"
    LOYAL = "loyal"
    AT_RISK = "at_risk"


@dataclass(frozen=True)
class LoyaltyRules:
    window_days: float = 90.0
    regular_visits: int = 3
    regular_orders: int = 2
    loyal_visits: int = 8
    loyal_orders: int = 5
    at_risk_after_days: float = 45.0


@dataclass(frozen=True)
class VisitFact:
    started_at: datetime
    dwell_s: float


@dataclass(frozen=True)
class OrderFact:
    ordered_at: datetime
    total: Decimal
    currency: str


@dataclass(frozen=True)
class ShopperFacts:
    """Everything the figures are computed from, for one shopper."""

    visits: Sequence[VisitFact] = ()
    orders: Sequence[OrderFact] = ()
    referrals: int = 0
    shares: int = 0
    offers_received: int = 0
    offers_opened: int = 0
    offers_redeemed: int = 0


class ShopperValue(BaseModel):
    """The figures; a pydantic model because the shopper's profile answers them as they are."""

    model_config = ConfigDict(frozen=True)

    segment: Segment
    visits_total: int
    visits_in_window: int
    visits_per_30_days: float
    last_visit_at: datetime | None
    days_since_last_visit: float | None
    average_dwell_s: float | None
    orders_total: int
    orders_in_window: int
    spend_by_currency: dict[str, Decimal]
    last_order_at: datetime | None
    referrals: int
    shares: int
    offers_received: int
    offers_opened: int
    offers_redeemed: int


def _days(delta: timedelta) -> float:
    return delta.total_seconds() / 86400


def segment(facts: ShopperFacts, now: datetime, rules: LoyaltyRules) -> Segment:
    """The shopper's segment at ``now``; events after ``now`` do not count."""
    since = now - timedelta(days=rules.window_days)
    visits = [v.started_at for v in facts.visits if v.started_at <= now]
    orders = [o.ordered_at for o in facts.orders if o.ordered_at <= now]
    activity = visits + orders
    seasoned = len(visits) >= rules.regular_visits or len(orders) >= rules.regular_orders
    if seasoned and _days(now - max(activity)) >= rules.at_risk_after_days:
        return Segment.AT_RISK
    recent_visits = sum(1 for at in visits if at > since)
    recent_orders = sum(1 for at in orders if at > since)
    if recent_visits >= rules.loyal_visits or recent_orders >= rules.loyal_orders:
        return Segment.LOYAL
    if recent_visits >= rules.regular_visits or recent_orders >= rules.regular_orders:
        return Segment.REGULAR
    return Segment.NEW


def segment_movement(
    facts: Iterable[ShopperFacts], since: datetime, until: datetime, rules: LoyaltyRules
) -> Counter[tuple[Segment, Segment]]:
    """How many shoppers went from each segment at ``since`` to each at ``until`` (staying put
    counts too): a loyal shopper lapsing to at-risk shows as (loyal, at_risk)."""
    return Counter((segment(f, since, rules), segment(f, until, rules)) for f in facts)


def value(facts: ShopperFacts, now: datetime, rules: LoyaltyRules) -> ShopperValue:
    since = now - timedelta(days=rules.window_days)
    visits = sorted((v for v in facts.visits if v.started_at <= now), key=lambda v: v.started_at)
    orders = sorted((o for o in facts.orders if o.ordered_at <= now), key=lambda o: o.ordered_at)
    in_window = [v for v in visits if v.started_at > since]
    spend: dict[str, Decimal] = {}
    for order in orders:
        spend[order.currency] = spend.get(order.currency, Decimal(0)) + order.total
    last_visit = visits[-1].started_at if visits else None
    return ShopperValue(
        segment=segment(facts, now, rules),
        visits_total=len(visits),
        visits_in_window=len(in_window),
        visits_per_30_days=round(len(in_window) * 30 / rules.window_days, 3),
        last_visit_at=last_visit,
        days_since_last_visit=round(_days(now - last_visit), 3) if last_visit else None,
        average_dwell_s=(
            round(sum(v.dwell_s for v in visits) / len(visits), 1) if visits else None
        ),
        orders_total=len(orders),
        orders_in_window=sum(1 for o in orders if o.ordered_at > since),
        spend_by_currency=spend,
        last_order_at=orders[-1].ordered_at if orders else None,
        referrals=facts.referrals,
        shares=facts.shares,
        offers_received=facts.offers_received,
        offers_opened=facts.offers_opened,
        offers_redeemed=facts.offers_redeemed,
    )
