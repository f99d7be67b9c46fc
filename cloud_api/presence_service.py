"""What a valid presence event does to the database: record, resolve, stitch, decide, offer.

One transaction per event. The offer's notification is built here but published by the caller
after the commit, so a shopper is never sent a code that a rollback took away.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.codes import new_offer_code
from cloud_api.db import upsert
from cloud_api.directory import ShopperDirectory
from cloud_api.match import CartFacts, NoOffer, OfferDecision, OfferPolicy, PastOffer, decide_offer
from cloud_api.models import Cart, Notification, Offer, PresenceEventRow, Visit
from cloud_api.resolve import ConsentingShopper
from cloud_api.visits import Sighting, VisitState, stitch
from storelink.wire import (
    OfferItem,
    OfferNotification,
    PresenceEvent,
    SubjectType,
    notification_topic,
)


@dataclass(frozen=True)
class PresenceOutcome:
    duplicate: bool
    shopper_id: str | None = None
    visit_id: int | None = None
    decision: OfferDecision | NoOffer | None = None
    notification: OfferNotification | None = None


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
        """Apply ``event``; a redelivered event (same ``event_id``) changes nothing."""
        shopper = None
        if event.subject.type == SubjectType.APP:
            shopper = self._directory.resolve(event.subject.ref, event.ts)
        # Recognised for an offer is not consent to have one's visits recorded by name.
        tracked_id = shopper.shopper_id if shopper and shopper.footfall_analytics else None

        with self._sessions.begin() as session:
            if not _insert_event(session, event, tracked_id, now):
                return PresenceOutcome(duplicate=True)
            visit = _stitch_visit(session, event, tracked_id)
            carts: list[CartFacts] = []
            offers: list[PastOffer] = []
            if shopper is not None:
                carts = _carts(session, shopper.shopper_id)
                offers = _recent_offers(session, shopper.shopper_id, event.ts, self._policy)
            decision = decide_offer(event, shopper, carts, offers, self._policy)
            notification = None
            if isinstance(decision, OfferDecision) and shopper is not None:
                notification = _issue_offer(session, event, shopper, decision, visit.id, now)
        return PresenceOutcome(
            duplicate=False,
            shopper_id=shopper.shopper_id if shopper else None,
            visit_id=visit.id,
            decision=decision,
            notification=notification,
        )


def _insert_event(
    session: Session, event: PresenceEvent, shopper_id: str | None, now: datetime
) -> bool:
    statement = (
        upsert(session, PresenceEventRow)
        .values(
            event_id=event.event_id,
            store_id=event.store_id,
            gateway_id=event.gateway_id,
            zone_id=event.zone_id,
            kind=event.kind.value,
            subject_type=event.subject.type.value,
            subject_ref=event.subject.ref,
            shopper_id=shopper_id,
            ts=event.ts,
            dwell_s=event.dwell_s,
            rssi=event.rssi,
            distance_m=event.distance_m,
            received_at=now,
        )
        .on_conflict_do_nothing(index_elements=[PresenceEventRow.event_id])
    )
    return session.execute(statement.returning(PresenceEventRow.id)).first() is not None


def _open_visit(session: Session, event: PresenceEvent, shopper_id: str | None) -> Visit | None:
    query = sa.select(Visit).where(Visit.store_id == event.store_id, Visit.ended_at.is_(None))
    if shopper_id is not None:
        # A shopper's app token rotates mid-visit; the visit follows the shopper, not the token.
        query = query.where(Visit.shopper_id == shopper_id)
    else:
        query = query.where(
            Visit.shopper_id.is_(None),
            Visit.subject_type == event.subject.type.value,
            Visit.subject_ref == event.subject.ref,
        )
    return session.scalars(query.order_by(Visit.last_seen_at.desc()).limit(1)).first()


def _state(visit: Visit) -> VisitState:
    return VisitState(
        started_at=visit.started_at,
        last_seen_at=visit.last_seen_at,
        ended_at=visit.ended_at,
        zones=tuple(visit.zones),
        present=frozenset(visit.present),
    )


def _store(visit: Visit, state: VisitState) -> None:
    visit.started_at = state.started_at
    visit.last_seen_at = state.last_seen_at
    visit.ended_at = state.ended_at
    visit.zones = list(state.zones)
    visit.present = sorted(state.present)
    visit.dwell_s = state.dwell_s


def _stitch_visit(session: Session, event: PresenceEvent, shopper_id: str | None) -> Visit:
    row = _open_visit(session, event, shopper_id)
    sighting = Sighting(event.kind, event.zone_id, event.subject.ref, event.ts, event.dwell_s)
    stitched = stitch(_state(row) if row else None, sighting)
    if row is not None and stitched.abandoned is not None:
        _store(row, stitched.abandoned)
    if stitched.opened or row is None:
        row = Visit(
            store_id=event.store_id,
            subject_type=event.subject.type.value,
            subject_ref=event.subject.ref,
            shopper_id=shopper_id,
        )
        session.add(row)
    _store(row, stitched.visit)
    session.flush()
    return row


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


def _carts(session: Session, shopper_id: str) -> list[CartFacts]:
    carts = session.scalars(sa.select(Cart).where(Cart.shopper_id == shopper_id))
    return [_cart_facts(cart) for cart in carts]


def _recent_offers(
    session: Session, shopper_id: str, at: datetime, policy: OfferPolicy
) -> list[PastOffer]:
    since = at - timedelta(seconds=policy.cooldown_s)
    rows = session.execute(
        sa.select(Offer.cart_id, Offer.created_at).where(
            Offer.shopper_id == shopper_id, Offer.created_at > since
        )
    )
    return [PastOffer(cart_id, created_at) for cart_id, created_at in rows]


def _issue_offer(
    session: Session,
    event: PresenceEvent,
    shopper: ConsentingShopper,
    decision: OfferDecision,
    visit_id: int,
    now: datetime,
) -> OfferNotification:
    code = new_offer_code()
    session.add(
        Offer(
            code=code,
            shopper_id=shopper.shopper_id,
            store_id=event.store_id,
            cart_id=decision.cart_id,
            visit_id=visit_id,
            percent_off=decision.percent_off,
            items=_items_json(decision.items),
            currency=decision.currency,
            created_at=decision.created_at,
            expires_at=decision.expires_at,
            redeemed_at=None,
        )
    )
    session.flush()
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
    session.add(
        Notification(
            notification_id=notification.notification_id,
            shopper_id=shopper.shopper_id,
            offer_code=code,
            topic=notification_topic(shopper.shopper_id),
            payload=notification.model_dump(mode="json"),
            published_at=now,
        )
    )
    return notification


def _items_json(items: Sequence[OfferItem]) -> list[dict[str, object]]:
    return [item.model_dump(mode="json") for item in items]
