"""The campaign decision: which offer, if any, one presence event earns a shopper, and why.

Pure and deterministic: everything comes in as arguments and "now" is the event's own time, so
a simulated store at any speed decides as a real one would, and the same facts always give the
same answer. Every check of every campaign is evaluated and reported (passed or not, and why):
the explanation the API gives is exactly what decided.

Campaigns are considered highest priority first. A presence event earns at most one offer; an
offer, or a holdout "would have received", counts at once for the caps of the campaigns after
it. Held-out shoppers are chosen by a hash of shopper and campaign, so a shopper is always held
out of the same campaigns, whichever worker decides.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from zoneinfo import ZoneInfo

from cloud_api.match.campaigns import CampaignSpec, RewardKind, TriggerKind
from cloud_api.shoppers.loyalty import Segment
from storelink.wire import PresenceKind

ORDERED = "ordered"
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
_HASH_SPACE = float(2**64)


@dataclass(frozen=True)
class CartLine:
    sku: str
    name: str
    category: str
    unit_price: Decimal
    quantity: int

    @property
    def amount(self) -> Decimal:
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class CartFacts:
    cart_id: str
    items: tuple[CartLine, ...]
    currency: str
    status: str
    updated_at: datetime

    @cached_property
    def value(self) -> Decimal:
        return sum((line.amount for line in self.items), Decimal(0))


@dataclass(frozen=True)
class PastDecision:
    """An offer made, or held back from a holdout shopper: both count for the caps."""

    campaign_id: str
    at: datetime
    cart_id: str | None = None


@dataclass(frozen=True)
class Moment:
    """The presence event that asks for a decision."""

    event_id: str
    store_id: str
    zone_id: str
    kind: PresenceKind
    dwell_s: float
    at: datetime
    visit_started_at: datetime | None = None


@dataclass(frozen=True)
class ShopperFacts:
    shopper_id: str
    personal_offers: bool
    segment: Segment | None = None
    carts: Sequence[CartFacts] = ()
    past: Sequence[PastDecision] = ()
    # Starts of the shopper's visits to this store, the current one included.
    visit_starts: Sequence[datetime] = ()


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    passed: bool
    reason: str


class Outcome(StrEnum):
    OFFERED = "offered"
    HELD_OUT = "held_out"
    INELIGIBLE = "ineligible"


@dataclass(frozen=True)
class Terms:
    """What the shopper is offered."""

    percent_off: Decimal | None
    amount_off: Decimal | None
    items: tuple[CartLine, ...]
    currency: str
    min_spend: Decimal | None
    online: bool
    expires_at: datetime
    message: str


@dataclass(frozen=True)
class Verdict:
    campaign_id: str
    outcome: Outcome
    checks: tuple[Check, ...]
    cart_id: str | None = None
    terms: Terms | None = None

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.passed)


@dataclass
class _Running:
    """What the decisions of one event already did, for the campaigns after them."""

    past: list[PastDecision]
    budget_used: dict[str, int]
    decided: bool = False
    made: list[Verdict] = field(default_factory=list)


def is_held_out(shopper_id: str, campaign_id: str, share: float) -> bool:
    """Deterministic: the same shopper is always in or out of the same campaign's holdout."""
    if share <= 0:
        return False
    digest = hashlib.sha256(f"{campaign_id}\x00{shopper_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _HASH_SPACE < share


def decide(
    moment: Moment,
    shopper: ShopperFacts,
    campaigns: Sequence[CampaignSpec],
    budget_used: Mapping[str, int],
    daily_cap: int | None,
) -> list[Verdict]:
    """One verdict per campaign, highest priority first; at most one is offered or held out."""
    running = _Running(list(shopper.past), dict(budget_used))
    verdicts = []
    for spec in sorted(campaigns, key=lambda c: (-c.priority, c.id)):
        verdict = _verdict(moment, shopper, spec, running, daily_cap)
        if verdict.outcome != Outcome.INELIGIBLE:
            running.decided = True
            running.past.append(PastDecision(spec.id, moment.at, verdict.cart_id))
            if verdict.outcome == Outcome.OFFERED:
                running.budget_used[spec.id] = running.budget_used.get(spec.id, 0) + 1
        verdicts.append(verdict)
    return verdicts


def offered(verdicts: Sequence[Verdict]) -> Verdict | None:
    return next((v for v in verdicts if v.outcome == Outcome.OFFERED), None)


def _verdict(
    moment: Moment,
    shopper: ShopperFacts,
    spec: CampaignSpec,
    running: _Running,
    daily_cap: int | None,
) -> Verdict:
    checks = [
        _check_active(spec, moment.at),
        _check_store(spec, moment.store_id),
        _check_trigger(spec, moment, shopper.visit_starts),
        Check(
            "consent",
            shopper.personal_offers,
            "agreed to personal offers"
            if shopper.personal_offers
            else "has not agreed to personal offers",
        ),
        _check_segment(spec, shopper.segment),
    ]
    cart_checks, cart, items = _cart_checks(spec, moment, shopper.carts, running.past)
    checks.extend(cart_checks)
    checks.extend(_limit_checks(spec, moment.at, running, daily_cap))
    if not all(check.passed for check in checks):
        return Verdict(spec.id, Outcome.INELIGIBLE, tuple(checks), cart.cart_id if cart else None)
    cart_id = cart.cart_id if cart else None
    if is_held_out(shopper.shopper_id, spec.id, spec.holdout_share):
        checks.append(
            Check("holdout", True, f"in the {spec.holdout_share:.0%} holdout: recorded, not sent")
        )
        return Verdict(spec.id, Outcome.HELD_OUT, tuple(checks), cart_id)
    return Verdict(
        spec.id, Outcome.OFFERED, tuple(checks), cart_id, _terms(spec, moment.at, cart, items)
    )


def _check_active(spec: CampaignSpec, at: datetime) -> Check:
    limits = spec.limits
    if not spec.active:
        return Check("schedule", False, "the campaign is paused")
    if limits.starts_at is not None and at < limits.starts_at:
        return Check("schedule", False, f"starts at {limits.starts_at.isoformat()}")
    if limits.ends_at is not None and at >= limits.ends_at:
        return Check("schedule", False, f"ended at {limits.ends_at.isoformat()}")
    return Check("schedule", True, "running")


def _check_store(spec: CampaignSpec, store_id: str) -> Check:
    if not spec.store_ids or store_id in spec.store_ids:
        return Check("store", True, f"runs in {store_id}")
    return Check("store", False, f"does not run in {store_id}")


def _check_trigger(spec: CampaignSpec, moment: Moment, visit_starts: Sequence[datetime]) -> Check:
    trigger = spec.trigger
    if trigger.zone is not None and moment.zone_id != trigger.zone:
        return Check("trigger", False, f"in zone {moment.zone_id}, not {trigger.zone}")
    if trigger.kind == TriggerKind.DWELL:
        needed = trigger.dwell_s or 0.0
        if moment.kind != PresenceKind.DWELL or moment.dwell_s < needed:
            return Check(
                "trigger",
                False,
                f"{moment.kind} after {moment.dwell_s:.0f} s, needs {needed:.0f} s",
            )
        return Check("trigger", True, f"dwelt {moment.dwell_s:.0f} s >= {needed:.0f} s")
    if moment.kind != PresenceKind.ENTER:
        return Check("trigger", False, f"a {moment.kind} event, not an enter")
    if trigger.kind == TriggerKind.VISITS:
        days = trigger.days or 0.0
        since = moment.at - timedelta(days=days)
        count = sum(1 for start in visit_starts if since <= start <= moment.at)
        needed = trigger.visits or 0
        return Check(
            "trigger",
            count >= needed,
            f"{count} visits in {days:g} days, needs {needed}",
        )
    return Check("trigger", True, "entered")


def _check_segment(spec: CampaignSpec, segment: Segment | None) -> Check:
    wanted = spec.conditions.segments
    if not wanted:
        return Check("segment", True, "any segment")
    if segment in wanted:
        return Check("segment", True, f"segment {segment}")
    return Check("segment", False, f"segment {segment}, wants {', '.join(wanted)}")


def _cart_checks(
    spec: CampaignSpec,
    moment: Moment,
    carts: Sequence[CartFacts],
    past: Sequence[PastDecision],
) -> tuple[list[Check], CartFacts | None, tuple[CartLine, ...]]:
    """Filter the carts condition by condition; the most recently touched survivor is chosen."""
    conditions = spec.conditions
    if not conditions.needs_cart:
        return [], None, ()
    now = moment.at
    checks = []
    left = [c for c in carts if c.items and c.status != ORDERED and c.updated_at <= now]
    checks.append(Check("cart", bool(left), f"{len(left)} carts with items and no order"))
    if conditions.cart_min_age_s is not None or conditions.cart_max_age_s is not None:
        low = timedelta(seconds=conditions.cart_min_age_s or 0.0)
        high = (
            timedelta(seconds=conditions.cart_max_age_s)
            if conditions.cart_max_age_s is not None
            else None
        )
        left = [
            c
            for c in left
            if now - c.updated_at >= low and (high is None or now - c.updated_at <= high)
        ]
        window = (
            f"{low.total_seconds():g} s to {high.total_seconds():g} s"
            if high
            else f">= {low.total_seconds():g} s"
        )
        checks.append(Check("cart_age", bool(left), f"{len(left)} abandoned for {window}"))
    if conditions.cart_min_value is not None or conditions.cart_max_value is not None:
        low_value = conditions.cart_min_value or Decimal(0)
        high_value = conditions.cart_max_value
        left = [
            c
            for c in left
            if c.value >= low_value and (high_value is None or c.value <= high_value)
        ]
        span = f"{low_value}..{high_value}" if high_value is not None else f">= {low_value}"
        checks.append(Check("cart_value", bool(left), f"{len(left)} worth {span}"))
    category = conditions.zone_categories.get(moment.zone_id)
    if conditions.zone_categories:
        if category is None:
            left = []
            checks.append(Check("zone_category", False, f"zone {moment.zone_id} has no category"))
        else:
            left = [c for c in left if any(line.category == category for line in c.items)]
            checks.append(
                Check("zone_category", bool(left), f"{len(left)} hold {category} (the zone's)")
            )
    cooldown = spec.limits.cart_cooldown_s
    if cooldown is not None:
        since = now - timedelta(seconds=cooldown)
        recent = {p.cart_id for p in past if p.campaign_id == spec.id and p.at > since}
        left = [c for c in left if c.cart_id not in recent]
        checks.append(
            Check("cart_cooldown", bool(left), f"{len(left)} without an offer in {cooldown:g} s")
        )
    if not left:
        return checks, None, ()
    cart = max(left, key=lambda c: (c.updated_at, c.cart_id))
    items = cart.items
    if spec.reward.applies_to == "matching_items":
        items = tuple(line for line in cart.items if line.category == category)
    return checks, cart, items


def _limit_checks(
    spec: CampaignSpec, at: datetime, running: _Running, daily_cap: int | None
) -> list[Check]:
    limits = spec.limits
    checks = [
        Check(
            "one_per_event",
            not running.decided,
            "an earlier campaign already decided this event" if running.decided else "first",
        )
    ]
    if daily_cap is not None:
        # An offer dated after ``at`` (events out of order) counts too.
        today = sum(1 for p in running.past if p.at > at - DAY)
        checks.append(
            Check("daily_cap", today < daily_cap, f"{today} offers in 24 h, cap {daily_cap}")
        )
    if limits.per_shopper_per_week is not None:
        week = sum(1 for p in running.past if p.campaign_id == spec.id and p.at > at - WEEK)
        cap = limits.per_shopper_per_week
        checks.append(
            Check("weekly_cap", week < cap, f"{week} from this campaign in 7 days, cap {cap}")
        )
    quiet = limits.quiet_hours()
    if quiet is not None:
        local = at.astimezone(ZoneInfo(limits.timezone)).time()
        start, end = quiet
        silent = start <= local < end if start <= end else (local >= start or local < end)
        checks.append(
            Check(
                "quiet_hours",
                not silent,
                f"{local:%H:%M} {limits.timezone}, quiet {limits.quiet_start}-{limits.quiet_end}",
            )
        )
    if limits.budget_offers is not None:
        used = running.budget_used.get(spec.id, 0)
        checks.append(
            Check(
                "budget",
                used < limits.budget_offers,
                f"{used} of {limits.budget_offers} offers made",
            )
        )
    return checks


def _terms(
    spec: CampaignSpec, at: datetime, cart: CartFacts | None, items: tuple[CartLine, ...]
) -> Terms:
    reward = spec.reward
    percent = reward.value if reward.kind == RewardKind.PERCENT else None
    amount = reward.value if reward.kind == RewardKind.AMOUNT else None
    currency = cart.currency if cart else reward.currency
    return Terms(
        percent_off=percent,
        amount_off=amount,
        items=items,
        currency=currency,
        min_spend=reward.min_spend,
        online=reward.online,
        expires_at=at + timedelta(seconds=reward.ttl_s),
        message=reward.message or _message(percent, amount, currency, items),
    )


def _message(
    percent: Decimal | None, amount: Decimal | None, currency: str, items: Sequence[CartLine]
) -> str:
    off = f"{percent.normalize():f}% off" if percent is not None else f"{amount} {currency} off"
    if not items:
        return f"Welcome! {off} your shopping today."
    count = sum(line.quantity for line in items)
    things = "item" if count == 1 else "items"
    return f"Welcome back! {off} the {count} {things} in your cart."
