"""The engagement funnel and uplift of a campaign: pure arithmetic over decided facts.

Funnel: eligible (offered or held out) -> held out -> sent -> delivered -> opened -> redeemed.

Uplift: did the offer make people buy? The holdout got nothing, so the purchase rate of the
treated (offered) minus that of the holdout is the campaign's effect, and chance alone gives a
difference of some size: the 95 % confidence interval is Newcombe's hybrid score interval
(method 10 of Newcombe 1998), built from each group's Wilson interval. It stays within [-1, 1]
and behaves with small groups and rates near 0 or 1, where the Wald interval does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Uplift:
    treated_rate: float | None
    holdout_rate: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class DecisionFacts:
    """One eligible decision and what followed it."""

    campaign_id: str
    held_out: bool
    sent: bool = False
    delivered: bool = False
    opened: bool = False
    redeemed: bool = False
    revenue: Decimal = Decimal(0)
    purchased: bool = False
    entry_to_notification_s: float | None = None


@dataclass(frozen=True)
class Funnel:
    campaign_id: str
    eligible: int
    held_out: int
    sent: int
    delivered: int
    opened: int
    redeemed: int
    revenue: Decimal
    entry_to_notification_p50_s: float | None
    uplift: Uplift


def wilson(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def uplift(treated: int, treated_n: int, holdout: int, holdout_n: int) -> Uplift:
    """Treated rate minus holdout rate, with Newcombe's 95 % interval; None where undefined."""
    if treated_n == 0 or holdout_n == 0:
        rate_t = treated / treated_n if treated_n else None
        rate_h = holdout / holdout_n if holdout_n else None
        return Uplift(rate_t, rate_h, None, None, None)
    p1 = treated / treated_n
    p2 = holdout / holdout_n
    l1, u1 = wilson(treated, treated_n)
    l2, u2 = wilson(holdout, holdout_n)
    difference = p1 - p2
    low = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Uplift(p1, p2, difference, low, high)


def median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def funnel(campaign_id: str, facts: Sequence[DecisionFacts]) -> Funnel:
    treated = [f for f in facts if not f.held_out]
    held = [f for f in facts if f.held_out]
    return Funnel(
        campaign_id=campaign_id,
        eligible=len(facts),
        held_out=len(held),
        sent=sum(f.sent for f in treated),
        delivered=sum(f.delivered for f in treated),
        opened=sum(f.opened for f in treated),
        redeemed=sum(f.redeemed for f in treated),
        revenue=sum((f.revenue for f in treated if f.redeemed), Decimal(0)),
        entry_to_notification_p50_s=median(
            [f.entry_to_notification_s for f in treated if f.entry_to_notification_s is not None]
        ),
        uplift=uplift(
            sum(f.purchased for f in treated),
            len(treated),
            sum(f.purchased for f in held),
            len(held),
        ),
    )


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()
