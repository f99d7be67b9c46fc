"""The database side of campaign decisions: facts in, decisions, offers and outbox rows out.

Called by ``presence_service`` inside its write transaction, for the events of a batch that may
earn a consenting shopper an offer. A handful of queries per batch whatever its size (campaigns,
carts, past decisions, budgets, and visits or segments only when a campaign asks for them);
inside the batch each decision counts at once for the caps of the next event's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloud_api.ingest import bulk
from cloud_api.match import decide
from cloud_api.match.campaigns import CampaignSpec, TriggerKind
from cloud_api.match.decide import CartFacts, CartLine, Moment, Outcome, PastDecision, ShopperFacts
from cloud_api.match.offer_policy import OfferPolicy
from cloud_api.notify.outbox import DELIVERIES, PENDING
from cloud_api.offers.codes import new_offer_code
from cloud_api.shoppers.loyalty_store import segments_of
from cloud_api.store.db import lock_key, lock_keys
from cloud_api.store.models import (
    VISITS,
    Base,
    CampaignDecision,
    CampaignRow,
    Cart,
    Notification,
    Offer,
)
from storelink.wire import OfferItem, OfferNotification, PresenceEvent, notification_topic

# The worker that made a notification sends it right after its commit; the outbox sender leaves
# it alone this long, and only takes it over if that worker died first.
INLINE_GRACE = timedelta(seconds=5)
DECISIONS = Base.metadata.tables[CampaignDecision.__tablename__]
CARTS = Base.metadata.tables[Cart.__tablename__]
OFFERS = Base.metadata.tables[Offer.__tablename__]
NOTIFICATIONS = Base.metadata.tables[Notification.__tablename__]
CAMPAIGNS = Base.metadata.tables[CampaignRow.__tablename__]

# Every statement of a batch's decisions is built once, here, and run on the batch's connection
# with its parameters: building one, and the ORM session's layers around running it, cost
# several times what the database took to answer it, and a batch runs a few of them whatever
# its size, so under light load (small batches) they were most of the work.
_CAMPAIGNS = sa.select(CAMPAIGNS.c.id, CAMPAIGNS.c.spec)
_CARTS = sa.select(
    CARTS.c.cart_id,
    CARTS.c.shopper_id,
    CARTS.c["items"],
    CARTS.c.currency,
    CARTS.c.status,
    CARTS.c.updated_at,
).where(CARTS.c.shopper_id.in_(bulk.json_array("shoppers")))
_PAST = sa.select(
    DECISIONS.c.shopper_id,
    DECISIONS.c.campaign_id,
    DECISIONS.c.decided_at,
    DECISIONS.c.cart_id,
).where(
    DECISIONS.c.shopper_id.in_(bulk.json_array("shoppers")),
    DECISIONS.c.decided_at > sa.bindparam("since"),
    DECISIONS.c.outcome.in_((Outcome.OFFERED.value, Outcome.HELD_OUT.value)),
)
_BUDGETS = (
    sa.select(OFFERS.c.campaign_id, sa.func.count())
    .where(OFFERS.c.campaign_id.in_(bulk.json_array("campaigns")))
    .group_by(OFFERS.c.campaign_id)
)
_VISIT_STARTS = sa.select(VISITS.c.shopper_id, VISITS.c.store_id, VISITS.c.started_at).where(
    VISITS.c.shopper_id.in_(bulk.json_array("shoppers")),
    VISITS.c.started_at >= sa.bindparam("since"),
)
_INSERT_OFFERS = sa.insert(OFFERS)
_INSERT_NOTIFICATIONS = sa.insert(NOTIFICATIONS)
_INSERT_DELIVERIES = sa.insert(DELIVERIES)


@dataclass(frozen=True)
class Candidate:
    event: PresenceEvent
    shopper_id: str
    visit_id: int | None
    visit_started_at: datetime | None


@dataclass(frozen=True)
class Decided:
    verdicts: tuple[decide.Verdict, ...]
    notification: OfferNotification | None


# Each campaign's specification as last read, validated: the ingest reads the campaigns at every
# batch, and validating them again each time cost more than reading them. A specification that
# reads differently (an update through any worker) is validated again.
_validated: dict[str, tuple[dict[str, Any], CampaignSpec]] = {}


def load_campaigns(session: Session, default: CampaignSpec) -> list[CampaignSpec]:
    """The active campaigns; the default one while no campaign is defined at all."""
    validated: dict[str, tuple[dict[str, Any], CampaignSpec]] = {}
    specs = []
    for campaign_id, raw in session.connection().execute(_CAMPAIGNS):
        cached = _validated.get(campaign_id)
        if cached is None or cached[0] != raw:
            cached = (raw, CampaignSpec.model_validate(raw))
        validated[campaign_id] = cached
        specs.append(cached[1])
    # Deleted campaigns leave; at worst a concurrent batch validates one spec again.
    _validated.clear()
    _validated.update(validated)
    if not specs:
        return [default]
    return [spec for spec in specs if spec.active]


def _cart_lines(items: Sequence[dict[str, Any]]) -> tuple[CartLine, ...]:
    return tuple(
        CartLine(
            sku=item["sku"],
            name=item["name"],
            category=item.get("category") or "",
            unit_price=Decimal(str(item["unit_price"])),
            quantity=int(item["quantity"]),
        )
        for item in items
    )


def decide_batch(
    session: Session, candidates: Sequence[Candidate], policy: OfferPolicy, now: datetime
) -> list[Decided]:
    """Decide each candidate in order, and write the decisions, offers and outbox rows."""
    if not candidates:
        return []
    campaigns = load_campaigns(session, policy.default_campaign)
    if not campaigns:
        return [Decided((), None) for _ in candidates]
    ids = sorted({c.shopper_id for c in candidates})
    earliest = min(c.event.ts for c in candidates)
    carts = _carts(session, ids) if any(c.conditions.needs_cart for c in campaigns) else {}
    past = _past(session, ids, earliest - _lookback(campaigns))
    budgeted = [c.id for c in campaigns if c.limits.budget_offers is not None]
    # Exact budgets: workers deciding for a budgeted campaign take turns. Taken after, and only
    # after, the batch's own locks by every worker, so no two wait for each other in a cycle.
    lock_keys(session, {lock_key("campaign-budget", campaign_id) for campaign_id in budgeted})
    budgets = _budgets(session, budgeted)
    visit_days = [c.trigger.days or 0.0 for c in campaigns if c.trigger.kind == TriggerKind.VISITS]
    visits = (
        _visit_starts(session, ids, earliest - timedelta(days=max(visit_days)))
        if visit_days
        else {}
    )
    segments = (
        segments_of(session, ids, earliest, policy.loyalty)
        if any(c.conditions.segments for c in campaigns)
        else {}
    )

    results: list[Decided] = []
    decisions: list[dict[str, Any]] = []
    offers: list[dict[str, Any]] = []
    notifications: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    for candidate in candidates:
        event = candidate.event
        sid = candidate.shopper_id
        moment = Moment(
            event.event_id,
            event.store_id,
            event.zone_id,
            event.kind,
            event.dwell_s,
            event.ts,
            candidate.visit_started_at,
        )
        facts = ShopperFacts(
            sid,
            personal_offers=True,
            segment=segments.get(sid),
            carts=carts.get(sid, ()),
            past=past[sid],
            visit_starts=visits.get((sid, event.store_id), ()),
        )
        verdicts = tuple(decide.decide(moment, facts, campaigns, budgets, policy.daily_cap))
        notification = None
        code = None
        chosen = decide.offered(verdicts)
        if chosen is not None and chosen.terms is not None:
            code = new_offer_code()
            notification = _notification(event, sid, chosen.campaign_id, chosen.terms, code, now)
            offers.append(_offer_row(event, candidate, chosen, chosen.terms, code))
            notifications.append(_notification_row(notification, now))
            deliveries.extend(
                _delivery_row(notification.notification_id, channel, now)
                for channel in policy.channels
            )
            budgets[chosen.campaign_id] = budgets.get(chosen.campaign_id, 0) + 1
        for verdict in verdicts:
            if verdict.outcome != Outcome.INELIGIBLE:
                past[sid].append(PastDecision(verdict.campaign_id, event.ts, verdict.cart_id))
            decisions.append(_decision_row(candidate, verdict, code if verdict is chosen else None))
        results.append(Decided(verdicts, notification))
    if offers:
        connection = session.connection()
        connection.execute(_INSERT_OFFERS, offers)
        connection.execute(_INSERT_NOTIFICATIONS, notifications)
        if deliveries:
            connection.execute(_INSERT_DELIVERIES, deliveries)
    # One row per campaign and candidate: written the way the events are, not through the ORM.
    bulk.insert(session, DECISIONS, decisions)
    return results


def _lookback(campaigns: Sequence[CampaignSpec]) -> timedelta:
    cooldowns = [c.limits.cart_cooldown_s or 0.0 for c in campaigns]
    return max(decide.WEEK, timedelta(seconds=max(cooldowns, default=0.0)))


def _carts(session: Session, ids: Sequence[str]) -> dict[str, list[CartFacts]]:
    carts: dict[str, list[CartFacts]] = defaultdict(list)
    rows = session.connection().execute(_CARTS, {"shoppers": ids})
    for cart_id, shopper_id, items, currency, status, updated_at in rows:
        carts[shopper_id].append(
            CartFacts(cart_id, _cart_lines(items), currency, status, updated_at)
        )
    return carts


def _past(session: Session, ids: Sequence[str], since: datetime) -> dict[str, list[PastDecision]]:
    rows = session.connection().execute(_PAST, {"shoppers": ids, "since": since})
    past: dict[str, list[PastDecision]] = defaultdict(list)
    for shopper_id, campaign_id, at, cart_id in rows:
        past[shopper_id].append(PastDecision(campaign_id, at, cart_id))
    return past


def _budgets(session: Session, campaign_ids: Sequence[str]) -> dict[str, int]:
    if not campaign_ids:
        return {}
    rows = session.connection().execute(_BUDGETS, {"campaigns": list(campaign_ids)})
    return {campaign_id: count for campaign_id, count in rows if campaign_id is not None}


def _visit_starts(
    session: Session, ids: Sequence[str], since: datetime
) -> dict[tuple[str, str], list[datetime]]:
    rows = session.connection().execute(_VISIT_STARTS, {"shoppers": ids, "since": since})
    starts: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for shopper_id, store_id, started_at in rows:
        if shopper_id is not None:
            starts[shopper_id, store_id].append(started_at)
    return starts


def _offer_items(items: Sequence[CartLine]) -> tuple[OfferItem, ...]:
    return tuple(
        OfferItem(sku=line.sku, name=line.name, unit_price=line.unit_price, quantity=line.quantity)
        for line in items
    )


def _notification(
    event: PresenceEvent,
    shopper_id: str,
    campaign_id: str,
    terms: decide.Terms,
    code: str,
    now: datetime,
) -> OfferNotification:
    return OfferNotification(
        shopper_ref=shopper_id,
        store_id=event.store_id,
        offer_code=code,
        percent_off=terms.percent_off,
        amount_off=terms.amount_off,
        min_spend=terms.min_spend,
        online=terms.online,
        campaign_id=campaign_id,
        items=_offer_items(terms.items),
        currency=terms.currency,
        expires_at=terms.expires_at,
        message=terms.message,
        ts=now,
    )


def _offer_row(
    event: PresenceEvent,
    candidate: Candidate,
    verdict: decide.Verdict,
    terms: decide.Terms,
    code: str,
) -> dict[str, Any]:
    return {
        "code": code,
        "shopper_id": candidate.shopper_id,
        "store_id": event.store_id,
        "cart_id": verdict.cart_id,
        "visit_id": candidate.visit_id,
        "campaign_id": verdict.campaign_id,
        "percent_off": terms.percent_off,
        "amount_off": terms.amount_off,
        "min_spend": terms.min_spend,
        "online": terms.online,
        "items": [item.model_dump(mode="json") for item in _offer_items(terms.items)],
        "currency": terms.currency,
        "created_at": event.ts,
        "expires_at": terms.expires_at,
        "redeemed_at": None,
        "order_ref": None,
    }


def _notification_row(notification: OfferNotification, now: datetime) -> dict[str, Any]:
    return {
        "notification_id": notification.notification_id,
        "shopper_id": notification.shopper_ref,
        "offer_code": notification.offer_code,
        "topic": notification_topic(notification.shopper_ref),
        "payload": notification.model_dump(mode="json"),
        "published_at": now,
        "delivered_at": None,
        "opened_at": None,
    }


def _delivery_row(notification_id: str, channel: str, now: datetime) -> dict[str, Any]:
    return {
        "notification_id": notification_id,
        "channel": channel,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now + INLINE_GRACE,
        "sent_at": None,
        "last_error": None,
    }


def _decision_row(
    candidate: Candidate, verdict: decide.Verdict, code: str | None
) -> dict[str, Any]:
    event = candidate.event
    return {
        "campaign_id": verdict.campaign_id,
        "shopper_id": candidate.shopper_id,
        "store_id": event.store_id,
        "event_id": event.event_id,
        "outcome": verdict.outcome.value,
        "checks": [
            {"name": c.name, "passed": c.passed, "reason": c.reason} for c in verdict.checks
        ],
        "cart_id": verdict.cart_id,
        "offer_code": code,
        "decided_at": event.ts,
        "visit_started_at": candidate.visit_started_at,
    }
