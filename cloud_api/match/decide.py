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
from dataclasses import dataclass
from datetime import datetime, time, timedelta
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


class _Plan:
    """A campaign's constant parts, worked out once: the decision runs for every presence event
    of a batch against the same campaigns, and building reasons and windows per event was most
    of its time."""

    __slots__ = (
        "active",
        "age_high",
        "age_low",
        "age_window",
        "budget",
        "cooldown",
        "cooldown_delta",
        "holdout",
        "matching_items",
        "needs_cart",
        "order",
        "quiet",
        "quiet_suffix",
        "segment_checks",
        "spec",
        "store_checks",
        "value_high",
        "value_low",
        "value_span",
        "weekly_cap",
    )

    def __init__(self, spec: CampaignSpec) -> None:
        conditions, limits = spec.conditions, spec.limits
        self.spec = spec
        self.order = (-spec.priority, spec.id)
        self.active = _check_active_fixed(spec)
        self.store_checks: dict[str, Check] = {}
        self.needs_cart = conditions.needs_cart
        self.age_low: timedelta | None = None
        self.age_high: timedelta | None = None
        self.age_window = ""
        if conditions.cart_min_age_s is not None or conditions.cart_max_age_s is not None:
            low = timedelta(seconds=conditions.cart_min_age_s or 0.0)
            high = (
                timedelta(seconds=conditions.cart_max_age_s)
                if conditions.cart_max_age_s is not None
                else None
            )
            self.age_low, self.age_high = low, high
            self.age_window = (
                f"{low.total_seconds():g} s to {high.total_seconds():g} s"
                if high
                else f">= {low.total_seconds():g} s"
            )
        self.value_low: Decimal | None = None
        self.value_high = conditions.cart_max_value
        self.value_span = ""
        if conditions.cart_min_value is not None or conditions.cart_max_value is not None:
            self.value_low = conditions.cart_min_value or Decimal(0)
            self.value_span = (
                f"{self.value_low}..{self.value_high}"
                if self.value_high is not None
                else f">= {self.value_low}"
            )
        self.cooldown = limits.cart_cooldown_s
        self.cooldown_delta = (
            timedelta(seconds=self.cooldown) if self.cooldown is not None else None
        )
        self.matching_items = spec.reward.applies_to == "matching_items"
        self.weekly_cap = limits.per_shopper_per_week
        self.quiet = limits.quiet_hours()
        self.quiet_suffix = (
            f" {limits.timezone}, quiet {limits.quiet_start}-{limits.quiet_end}"
            if self.quiet is not None
            else ""
        )
        self.budget = limits.budget_offers
        self.segment_checks: dict[Segment | None, Check] = {}
        self.holdout = Check(
            "holdout", True, f"in the {spec.holdout_share:.0%} holdout: recorded, not sent"
        )

    def store_check(self, store_id: str) -> Check:
        check = self.store_checks.get(store_id)
        if check is None:
            check = _check_store(self.spec, store_id)
            self.store_checks[store_id] = check
        return check

    def segment_check(self, segment: Segment | None) -> Check:
        check = self.segment_checks.get(segment)
        if check is None:
            check = _check_segment(self.spec, segment)
            self.segment_checks[segment] = check
        return check


# Plans by the identity of their spec (kept alive in the entry, so the id is not reused). The
# campaigns are loaded once per batch, so this stays small; it is emptied when it is not.
_PLANS: dict[int, _Plan] = {}
_PLANS_KEPT = 4096


def _plan(spec: CampaignSpec) -> _Plan:
    plan = _PLANS.get(id(spec))
    if plan is None or plan.spec is not spec:
        if len(_PLANS) >= _PLANS_KEPT:
            _PLANS.clear()
        plan = _PLANS[id(spec)] = _Plan(spec)
    return plan


_CONSENTED = Check("consent", True, "agreed to personal offers")
_NOT_CONSENTED = Check("consent", False, "has not agreed to personal offers")
_FIRST = Check("one_per_event", True, "first")
_ALREADY = Check("one_per_event", False, "an earlier campaign already decided this event")


class _Running:
    """One event's decision so far: what earlier campaigns did, and the facts every campaign
    reads, worked out once."""

    __slots__ = (
        "budget_used",
        "daily_cap",
        "daily_check",
        "decided",
        "local_times",
        "moment",
        "open_carts",
        "open_check",
        "past",
        "shopper",
        "today",
        "week",
    )

    def __init__(
        self,
        moment: Moment,
        shopper: ShopperFacts,
        budget_used: Mapping[str, int],
        daily_cap: int | None,
    ) -> None:
        at = moment.at
        self.moment = moment
        self.shopper = shopper
        self.past = list(shopper.past)
        self.budget_used = dict(budget_used)
        self.decided = False
        # An offer dated after ``at`` (events out of order) counts too.
        day_ago, week_ago = at - DAY, at - WEEK
        self.today = sum(1 for p in self.past if p.at > day_ago)
        self.week: dict[str, int] = {}
        for p in self.past:
            if p.at > week_ago:
                self.week[p.campaign_id] = self.week.get(p.campaign_id, 0) + 1
        self.daily_cap = daily_cap
        self.daily_check: Check | None = None
        self.open_carts: list[CartFacts] | None = None
        self.open_check: Check | None = None
        self.local_times: dict[str, tuple[time, str]] = {}

    def record(self, campaign_id: str, cart_id: str | None, offer: bool) -> None:
        """An offer or holdout just decided: it counts for the caps of the campaigns after."""
        self.decided = True
        self.past.append(PastDecision(campaign_id, self.moment.at, cart_id))
        self.today += 1
        self.daily_check = None
        self.week[campaign_id] = self.week.get(campaign_id, 0) + 1
        if offer:
            self.budget_used[campaign_id] = self.budget_used.get(campaign_id, 0) + 1

    def carts(self) -> tuple[list[CartFacts], Check]:
        if self.open_carts is None or self.open_check is None:
            now = self.moment.at
            self.open_carts = [
                c
                for c in self.shopper.carts
                if c.items and c.status != ORDERED and c.updated_at <= now
            ]
            count = len(self.open_carts)
            self.open_check = Check("cart", bool(count), f"{count} carts with items and no order")
        return self.open_carts, self.open_check

    def daily(self, cap: int) -> Check:
        if self.daily_check is None:
            today = self.today
            self.daily_check = Check("daily_cap", today < cap, f"{today} offers in 24 h, cap {cap}")
        return self.daily_check

    def local_time(self, timezone: str) -> tuple[time, str]:
        local = self.local_times.get(timezone)
        if local is None:
            clock = self.moment.at.astimezone(ZoneInfo(timezone)).time()
            local = self.local_times[timezone] = (clock, f"{clock.hour:02d}:{clock.minute:02d}")
        return local


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
    running = _Running(moment, shopper, budget_used, daily_cap)
    verdicts = []
    for plan in sorted(map(_plan, campaigns), key=_order):
        verdict = _verdict(plan, running)
        if verdict.outcome is not Outcome.INELIGIBLE:
            running.record(plan.spec.id, verdict.cart_id, verdict.outcome is Outcome.OFFERED)
        verdicts.append(verdict)
    return verdicts


def _order(plan: _Plan) -> tuple[int, str]:
    return plan.order


def offered(verdicts: Sequence[Verdict]) -> Verdict | None:
    return next((v for v in verdicts if v.outcome == Outcome.OFFERED), None)


def _verdict(plan: _Plan, running: _Running) -> Verdict:
    spec, moment, shopper = plan.spec, running.moment, running.shopper
    active = plan.active or _check_schedule(spec, moment.at)
    checks = [
        active,
        plan.store_check(moment.store_id),
        _check_trigger(spec, moment, shopper.visit_starts),
        _CONSENTED if shopper.personal_offers else _NOT_CONSENTED,
        plan.segment_check(shopper.segment),
    ]
    cart: CartFacts | None = None
    items: tuple[CartLine, ...] = ()
    if plan.needs_cart:
        cart, items = _cart_checks(plan, running, checks)
    _limit_checks(plan, running, checks)
    cart_id = cart.cart_id if cart else None
    for check in checks:
        if not check.passed:
            return Verdict(spec.id, Outcome.INELIGIBLE, tuple(checks), cart_id)
    if is_held_out(shopper.shopper_id, spec.id, spec.holdout_share):
        checks.append(plan.holdout)
        return Verdict(spec.id, Outcome.HELD_OUT, tuple(checks), cart_id)
    return Verdict(
        spec.id, Outcome.OFFERED, tuple(checks), cart_id, _terms(spec, moment.at, cart, items)
    )


_RUNNING = Check("schedule", True, "running")


def _check_active_fixed(spec: CampaignSpec) -> Check | None:
    """The schedule check when it does not depend on the time: paused, or no dates set."""
    if not spec.active:
        return Check("schedule", False, "the campaign is paused")
    if spec.limits.starts_at is None and spec.limits.ends_at is None:
        return _RUNNING
    return None


def _check_schedule(spec: CampaignSpec, at: datetime) -> Check:
    limits = spec.limits
    if limits.starts_at is not None and at < limits.starts_at:
        return Check("schedule", False, f"starts at {limits.starts_at.isoformat()}")
    if limits.ends_at is not None and at >= limits.ends_at:
        return Check("schedule", False, f"ended at {limits.ends_at.isoformat()}")
    return _RUNNING


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
    plan: _Plan, running: _Running, checks: list[Check]
) -> tuple[CartFacts | None, tuple[CartLine, ...]]:
    """Filter the carts condition by condition; the most recently touched survivor is chosen."""
    spec, moment = plan.spec, running.moment
    now = moment.at
    left, first = running.carts()
    checks.append(first)
    if plan.age_low is not None:
        low, high = plan.age_low, plan.age_high
        left = [
            c
            for c in left
            if now - c.updated_at >= low and (high is None or now - c.updated_at <= high)
        ]
        checks.append(Check("cart_age", bool(left), f"{len(left)} abandoned for {plan.age_window}"))
    if plan.value_low is not None:
        low_value, high_value = plan.value_low, plan.value_high
        left = [
            c
            for c in left
            if c.value >= low_value and (high_value is None or c.value <= high_value)
        ]
        checks.append(Check("cart_value", bool(left), f"{len(left)} worth {plan.value_span}"))
    zone_categories = spec.conditions.zone_categories
    category = zone_categories.get(moment.zone_id)
    if zone_categories:
        if category is None:
            left = []
            checks.append(Check("zone_category", False, f"zone {moment.zone_id} has no category"))
        else:
            left = [c for c in left if any(line.category == category for line in c.items)]
            checks.append(
                Check("zone_category", bool(left), f"{len(left)} hold {category} (the zone's)")
            )
    if plan.cooldown_delta is not None:
        since = now - plan.cooldown_delta
        recent = {p.cart_id for p in running.past if p.campaign_id == spec.id and p.at > since}
        left = [c for c in left if c.cart_id not in recent]
        checks.append(
            Check(
                "cart_cooldown", bool(left), f"{len(left)} without an offer in {plan.cooldown:g} s"
            )
        )
    if not left:
        return None, ()
    cart = max(left, key=_recency)
    items = cart.items
    if plan.matching_items:
        items = tuple(line for line in cart.items if line.category == category)
    return cart, items


def _recency(cart: CartFacts) -> tuple[datetime, str]:
    return cart.updated_at, cart.cart_id


def _limit_checks(plan: _Plan, running: _Running, checks: list[Check]) -> None:
    checks.append(_ALREADY if running.decided else _FIRST)
    if running.daily_cap is not None:
        checks.append(running.daily(running.daily_cap))
    if plan.weekly_cap is not None:
        week = running.week.get(plan.spec.id, 0)
        cap = plan.weekly_cap
        checks.append(
            Check("weekly_cap", week < cap, f"{week} from this campaign in 7 days, cap {cap}")
        )
    if plan.quiet is not None:
        local, clock = running.local_time(plan.spec.limits.timezone)
        start, end = plan.quiet
        silent = start <= local < end if start <= end else (local >= start or local < end)
        checks.append(Check("quiet_hours", not silent, clock + plan.quiet_suffix))
    if plan.budget is not None:
        used = running.budget_used.get(plan.spec.id, 0)
        checks.append(Check("budget", used < plan.budget, f"{used} of {plan.budget} offers made"))


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
