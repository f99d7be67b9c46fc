"""What valid presence events do to the database: record, resolve, stitch, decide, offer.

Events come in batches (the MQTT consumer commits up to a few hundred at a time), and a batch is
applied in one transaction with a handful of statements whatever its size: one INSERT for the
events, one SELECT for the subjects' latest visits, one INSERT and one UPDATE for the visits,
and, only when a recognised shopper walked in, a few more for carts and offers. Inside the
batch the events take effect one after the other, in order: each is stitched onto the visit as
the previous events left it, and an offer made for one enter counts for the cooldown of the next.

A redelivered event (same ``event_id``, in the same batch or already stored, by this worker or
another one at the same moment) changes nothing: ``INSERT ... ON CONFLICT DO NOTHING`` says
which events are new. On PostgreSQL, workers whose batches touch the same subject or shopper
take turns on advisory locks, so that two of them never stitch the same visit or offer the same
cart at once; on SQLite the database's write lock does that.

Offer notifications are built here but published by the caller after the commit, so a shopper
is never sent a code that a rollback took away.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cloud_api import bulk
from cloud_api.codes import new_offer_code
from cloud_api.db import begin_write, lock_key, lock_keys
from cloud_api.directory import ShopperDirectory
from cloud_api.match import CartFacts, NoOffer, OfferDecision, OfferPolicy, PastOffer, decide_offer
from cloud_api.models import Base, Cart, Notification, Offer, PresenceEventRow, Visit
from cloud_api.resolve import ConsentingShopper
from cloud_api.visits import (
    Sighting,
    VisitState,
    presence_from_json,
    presence_to_json,
    stitch,
)
from storelink.wire import (
    OfferItem,
    OfferNotification,
    PresenceEvent,
    PresenceKind,
    SubjectType,
    notification_topic,
)

# StrEnum's .value is a descriptor call; the ingest asks for it several times per event.
_VALUE: dict[str, str] = {member: member.value for member in (*PresenceKind, *SubjectType)}
EVENTS = Base.metadata.tables[PresenceEventRow.__tablename__]
VISITS = Base.metadata.tables[Visit.__tablename__]
# The visit a subject's events are stitched onto: a tracked shopper's, whichever token they
# advertise, or else the subject's own. Subject types never read "shopper".
VisitKey = tuple[str, str, str]


@dataclass(frozen=True)
class PresenceOutcome:
    duplicate: bool
    shopper_id: str | None = None
    visit_id: int | None = None
    decision: OfferDecision | NoOffer | None = None
    notification: OfferNotification | None = None


@dataclass(frozen=True)
class Resolved:
    """An event with the consenting shopper behind it, if any, resolved before the transaction."""

    event: PresenceEvent
    shopper: ConsentingShopper | None
    # Recognised for an offer is not consent to have one's visits recorded by name.
    tracked_id: str | None
    visit_key: VisitKey
    may_get_offer: bool

    @classmethod
    def of(cls, event: PresenceEvent, shopper: ConsentingShopper | None) -> Resolved:
        tracked = shopper.shopper_id if shopper and shopper.footfall_analytics else None
        if tracked is not None:
            key = (event.store_id, "shopper", tracked)
        else:
            key = (event.store_id, _VALUE[event.subject.type], event.subject.ref)
        offer = event.kind == PresenceKind.ENTER and shopper is not None and shopper.personal_offers
        return cls(event, shopper, tracked, key, offer)


@dataclass
class _WorkingVisit:
    """A visit as the batch changes it; written once, at the end of the batch."""

    id: int | None
    store_id: str
    subject_type: str
    subject_ref: str
    shopper_id: str | None
    state: VisitState


class PresenceService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        directory: ShopperDirectory,
        policy: OfferPolicy,
    ) -> None:
        self._sessions = sessions
        self._directory = directory
        self._policy = policy

    def handle(self, event: PresenceEvent, now: datetime) -> PresenceOutcome:
        """Apply one event in a transaction of its own."""
        return self.handle_batch([event], now)[0]

    def handle_batch(self, events: Sequence[PresenceEvent], now: datetime) -> list[PresenceOutcome]:
        """Apply ``events`` in order, in one transaction; one outcome per event."""
        resolved = self.resolve(events)
        with self._sessions.begin() as session:
            begin_write(session)
            return self.apply(session, resolved, now)

    def resolve(self, events: Sequence[PresenceEvent]) -> list[Resolved]:
        """Whose app token each event saw; in memory, so before the transaction begins."""
        if any(event.subject.type == SubjectType.APP for event in events):
            self._directory.refresh()
        resolved = []
        for event in events:
            shopper = None
            if event.subject.type == SubjectType.APP:
                shopper = self._directory.resolve(event.subject.ref, event.ts)
            resolved.append(Resolved.of(event, shopper))
        return resolved

    def apply(
        self, session: Session, batch: Sequence[Resolved], now: datetime
    ) -> list[PresenceOutcome]:
        """Apply a resolved batch inside the caller's write transaction (see ``begin_write``)."""
        if not batch:
            return []
        lock_keys(session, _lock_keys(batch))
        new = _insert_new_events(session, batch, now)
        fresh = [batch[i] for i in new]
        visits = _stitch_visits(session, fresh)
        decisions, notifications = self._decide_offers(session, fresh, visits, now)

        outcomes = [PresenceOutcome(duplicate=True)] * len(batch)
        for position, index in enumerate(new):
            item = batch[index]
            outcomes[index] = PresenceOutcome(
                duplicate=False,
                shopper_id=item.shopper.shopper_id if item.shopper else None,
                visit_id=visits[position].id,
                decision=decisions[position],
                notification=notifications.get(position),
            )
        return outcomes

    def _decide_offers(
        self,
        session: Session,
        fresh: Sequence[Resolved],
        visits: Sequence[_WorkingVisit],
        now: datetime,
    ) -> tuple[list[OfferDecision | NoOffer], dict[int, OfferNotification]]:
        policy = self._policy
        candidates = [item for item in fresh if item.may_get_offer]
        carts: dict[str, list[CartFacts]] = {}
        past: dict[str, list[PastOffer]] = defaultdict(list)
        if candidates:
            shopper_ids = {item.shopper.shopper_id for item in candidates if item.shopper}
            earliest = min(item.event.ts for item in candidates)
            carts = _carts(session, shopper_ids)
            past.update(_recent_offers(session, shopper_ids, earliest, policy))

        decisions: list[OfferDecision | NoOffer] = []
        notifications: dict[int, OfferNotification] = {}
        offers: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        for position, item in enumerate(fresh):
            shopper = item.shopper
            sid = shopper.shopper_id if shopper else ""
            decision = decide_offer(
                item.event,
                shopper,
                carts.get(sid, []) if item.may_get_offer else [],
                past[sid] if item.may_get_offer else [],
                policy,
            )
            decisions.append(decision)
            if isinstance(decision, OfferDecision) and shopper is not None:
                # Made now, it counts for the cooldown of the batch's later enters.
                past[sid].append(PastOffer(decision.cart_id, decision.created_at))
                notification, offer, row = _offer(
                    item.event, shopper, decision, visits[position].id, now
                )
                notifications[position] = notification
                offers.append(offer)
                rows.append(row)
        if offers:
            session.execute(sa.insert(Offer), offers)
            session.execute(sa.insert(Notification), rows)
        return decisions, notifications


def _lock_keys(batch: Sequence[Resolved]) -> set[int]:
    keys = set()
    for item in batch:
        keys.add(lock_key("visit", *item.visit_key))
        if item.may_get_offer and item.shopper is not None:
            keys.add(lock_key("offers", item.shopper.shopper_id))
    return keys


def _insert_new_events(session: Session, batch: Sequence[Resolved], now: datetime) -> list[int]:
    """Store the events not stored yet; the positions in ``batch`` of those that were new."""
    first: dict[str, int] = {}
    for index, item in enumerate(batch):
        first.setdefault(item.event.event_id, index)
    # In event_id order: two workers inserting overlapping batches lock the unique index
    # entries in the same order, so neither waits for the other in a cycle.
    rows = [_event_row(batch[index], now) for _, index in sorted(first.items())]
    inserted = set(
        bulk.insert(session, EVENTS, rows, skip_conflicts_on="event_id", returning="event_id")
    )
    return [index for event_id, index in first.items() if event_id in inserted]


def _event_row(item: Resolved, now: datetime) -> dict[str, Any]:
    event = item.event
    return {
        "event_id": event.event_id,
        "store_id": event.store_id,
        "gateway_id": event.gateway_id,
        "zone_id": event.zone_id,
        "kind": _VALUE[event.kind],
        "subject_type": _VALUE[event.subject.type],
        "subject_ref": event.subject.ref,
        "shopper_id": item.tracked_id,
        "ts": event.ts,
        "dwell_s": event.dwell_s,
        "rssi": event.rssi,
        "distance_m": event.distance_m,
        "received_at": now,
    }


def _state(row: sa.Row[Any]) -> VisitState:
    return VisitState(
        started_at=row.started_at,
        last_seen_at=row.last_seen_at,
        ended_at=row.ended_at,
        zones=tuple(row.zones),
        presence=presence_from_json(row.presence),
    )


def _visit_key(row: sa.Row[Any]) -> VisitKey:
    if row.shopper_id is not None:
        return (row.store_id, "shopper", row.shopper_id)
    return (row.store_id, row.subject_type, row.subject_ref)


def _latest_visits(session: Session, fresh: Sequence[Resolved]) -> dict[VisitKey, _WorkingVisit]:
    """Each subject's latest visit that is open, or ended after the earliest presence began."""
    if not fresh:
        return {}
    wanted = {item.visit_key for item in fresh}
    refs = {ref for _, kind, ref in wanted if kind != "shopper"}
    shoppers = {shopper for _, kind, shopper in wanted if kind == "shopper"}
    # A dwell or exit says since when its subject has been in the zone (see visits.stitch).
    since = min(item.event.ts - timedelta(seconds=item.event.dwell_s) for item in fresh)
    recent = sa.or_(VISITS.c.ended_at.is_(None), VISITS.c.ended_at >= since)
    # By ref or by shopper alone, which the indexes lead with and which are nearly unique;
    # the rest of the key is checked here (a planner offered store or shopper_id IS NULL as
    # well may prefer an index that reads far more rows).
    queries = []
    if refs:
        queries.append(sa.select(VISITS).where(VISITS.c.subject_ref.in_(sorted(refs)), recent))
    if shoppers:
        queries.append(sa.select(VISITS).where(VISITS.c.shopper_id.in_(sorted(shoppers)), recent))
    latest: dict[VisitKey, _WorkingVisit] = {}
    for query in queries:
        for row in session.execute(query):
            key = _visit_key(row)
            if key not in wanted:
                continue
            known = latest.get(key)
            if known is None or (row.last_seen_at, row.id) > (known.state.last_seen_at, known.id):
                latest[key] = _WorkingVisit(
                    row.id,
                    row.store_id,
                    row.subject_type,
                    row.subject_ref,
                    row.shopper_id,
                    _state(row),
                )
    return latest


def _stitch_visits(session: Session, fresh: Sequence[Resolved]) -> list[_WorkingVisit]:
    """Stitch the new events onto visits, in order; the visit of each event."""
    latest = _latest_visits(session, fresh)
    touched: dict[int, _WorkingVisit] = {}
    of_event: list[_WorkingVisit] = []
    for item in fresh:
        event = item.event
        key = item.visit_key
        visit = latest.get(key)
        sighting = Sighting(event.kind, event.zone_id, event.subject.ref, event.ts, event.dwell_s)
        stitched = stitch(visit.state if visit else None, sighting)
        if visit is not None and stitched.abandoned is not None:
            visit.state = stitched.abandoned
            touched[id(visit)] = visit
        if visit is None or stitched.opened:
            visit = _WorkingVisit(
                None,
                event.store_id,
                _VALUE[event.subject.type],
                event.subject.ref,
                item.tracked_id,
                stitched.visit,
            )
            latest[key] = visit
        visit.state = stitched.visit
        touched[id(visit)] = visit
        of_event.append(visit)
    _write_visits(session, list(touched.values()))
    return of_event


def _visit_values(visit: _WorkingVisit) -> dict[str, Any]:
    state = visit.state
    return {
        "started_at": state.started_at,
        "last_seen_at": state.last_seen_at,
        "ended_at": state.ended_at,
        "zones": list(state.zones),
        "presence": presence_to_json(state.presence),
        "dwell_s": state.dwell_s,
    }


def _write_visits(session: Session, touched: Sequence[_WorkingVisit]) -> None:
    # Updates in id order, so that two transactions never wait for each other's rows in a cycle.
    existing = sorted((v for v in touched if v.id is not None), key=lambda v: v.id or 0)
    created = [v for v in touched if v.id is None]
    bulk.update_by_id(session, VISITS, [{"id": v.id, **_visit_values(v)} for v in existing])
    for visit, visit_id in zip(
        created, bulk.allocate_ids(session, VISITS, len(created)), strict=True
    ):
        visit.id = visit_id
    bulk.insert(
        session,
        VISITS,
        [
            {
                "id": visit.id,
                "store_id": visit.store_id,
                "subject_type": visit.subject_type,
                "subject_ref": visit.subject_ref,
                "shopper_id": visit.shopper_id,
                **_visit_values(visit),
            }
            for visit in created
        ],
    )


def _cart_facts(cart: Cart) -> CartFacts:
    items = tuple(
        OfferItem(
            sku=item["sku"],
            name=item["name"],
            unit_price=Decimal(str(item["unit_price"])),
            quantity=item["quantity"],
        )
        for item in cart.items
    )
    return CartFacts(cart.cart_id, items, cart.currency, cart.status, cart.updated_at)


def _carts(session: Session, shopper_ids: set[str]) -> dict[str, list[CartFacts]]:
    carts: dict[str, list[CartFacts]] = defaultdict(list)
    for cart in session.scalars(sa.select(Cart).where(Cart.shopper_id.in_(sorted(shopper_ids)))):
        carts[cart.shopper_id].append(_cart_facts(cart))
    return carts


def _recent_offers(
    session: Session, shopper_ids: set[str], at: datetime, policy: OfferPolicy
) -> dict[str, list[PastOffer]]:
    since = at - timedelta(seconds=policy.cooldown_s)
    rows = session.execute(
        sa.select(Offer.shopper_id, Offer.cart_id, Offer.created_at).where(
            Offer.shopper_id.in_(sorted(shopper_ids)), Offer.created_at > since
        )
    )
    offers: dict[str, list[PastOffer]] = defaultdict(list)
    for shopper_id, cart_id, created_at in rows:
        offers[shopper_id].append(PastOffer(cart_id, created_at))
    return offers


def _offer(
    event: PresenceEvent,
    shopper: ConsentingShopper,
    decision: OfferDecision,
    visit_id: int | None,
    now: datetime,
) -> tuple[OfferNotification, dict[str, Any], dict[str, Any]]:
    """The notification, the offer row and the notification row of an offer decision."""
    code = new_offer_code()
    notification = OfferNotification(
        shopper_ref=shopper.shopper_id,
        store_id=event.store_id,
        offer_code=code,
        percent_off=decision.percent_off,
        items=decision.items,
        currency=decision.currency,
        expires_at=decision.expires_at,
        message=decision.message,
        ts=now,
    )
    offer = {
        "code": code,
        "shopper_id": shopper.shopper_id,
        "store_id": event.store_id,
        "cart_id": decision.cart_id,
        "visit_id": visit_id,
        "percent_off": decision.percent_off,
        "items": _items_json(decision.items),
        "currency": decision.currency,
        "created_at": decision.created_at,
        "expires_at": decision.expires_at,
        "redeemed_at": None,
    }
    row = {
        "notification_id": notification.notification_id,
        "shopper_id": shopper.shopper_id,
        "offer_code": code,
        "topic": notification_topic(shopper.shopper_id),
        "payload": notification.model_dump(mode="json"),
        "published_at": now,
    }
    return notification, offer, row


def _items_json(items: Sequence[OfferItem]) -> list[dict[str, object]]:
    return [item.model_dump(mode="json") for item in items]
