"""The figures of ``GET /v1/stats/engagement``: decided facts from the database, then ``funnel``.

A decision is counted in the window it was made in (its event's time). What followed it is
joined on: the offer's notification and its deliveries and receipts, the offer's redemption and
the order that redeemed it, and any order the shopper placed within ``PURCHASE_WINDOW`` after it
(the purchase rate that uplift compares, since a held-out shopper has nothing to redeem).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloud_api.match.decide import Outcome
from cloud_api.notify.outbox import SENT
from cloud_api.stats.funnel import DecisionFacts, Funnel, funnel, seconds_between
from cloud_api.store.models import (
    CampaignDecision,
    CampaignRow,
    Notification,
    NotificationDelivery,
    Offer,
    Order,
)

PURCHASE_WINDOW = timedelta(days=7)


def decision_facts(
    session: Session,
    store_ids: Collection[str] | None,
    since: datetime,
    until: datetime,
) -> list[DecisionFacts]:
    query = sa.select(
        CampaignDecision.campaign_id,
        CampaignDecision.shopper_id,
        CampaignDecision.outcome,
        CampaignDecision.decided_at,
        CampaignDecision.visit_started_at,
        CampaignDecision.offer_code,
    ).where(
        CampaignDecision.outcome.in_((Outcome.OFFERED.value, Outcome.HELD_OUT.value)),
        CampaignDecision.decided_at >= since,
        CampaignDecision.decided_at < until,
    )
    if store_ids is not None:
        query = query.where(CampaignDecision.store_id.in_(sorted(store_ids)))
    decisions = session.execute(query).all()
    codes = sorted({d.offer_code for d in decisions if d.offer_code})
    offers = _offers(session, codes)
    orders = _orders(session, sorted({d.shopper_id for d in decisions}), since)
    revenue = {ref: total for _, ref, total in (o for os in orders.values() for o in os)}
    facts = []
    for d in decisions:
        offer = offers.get(d.offer_code or "", {})
        sent_at = offer.get("sent_at")
        to_decision = seconds_between(d.visit_started_at, d.decided_at)
        to_send = seconds_between(offer.get("published_at"), sent_at)
        order_ref = offer.get("order_ref")
        end = d.decided_at + PURCHASE_WINDOW
        facts.append(
            DecisionFacts(
                campaign_id=d.campaign_id,
                held_out=d.outcome == Outcome.HELD_OUT.value,
                sent=sent_at is not None,
                delivered=offer.get("delivered_at") is not None,
                opened=offer.get("opened_at") is not None,
                redeemed=offer.get("redeemed_at") is not None,
                revenue=revenue.get(order_ref, Decimal(0)) if order_ref else Decimal(0),
                purchased=any(d.decided_at <= at <= end for at, _, _ in orders[d.shopper_id]),
                entry_to_notification_s=(
                    to_decision + to_send
                    if to_decision is not None and to_send is not None
                    else None
                ),
            )
        )
    return facts


def _offers(session: Session, codes: list[str]) -> dict[str, dict[str, Any]]:
    if not codes:
        return {}
    first_sent = (
        sa.select(
            NotificationDelivery.notification_id,
            sa.func.min(NotificationDelivery.sent_at).label("sent_at"),
        )
        .where(NotificationDelivery.status == SENT)
        .group_by(NotificationDelivery.notification_id)
        .subquery()
    )
    rows = session.execute(
        sa.select(
            Offer.code,
            Offer.redeemed_at,
            Offer.order_ref,
            Notification.published_at,
            Notification.delivered_at,
            Notification.opened_at,
            first_sent.c.sent_at,
        )
        .outerjoin(Notification, Notification.offer_code == Offer.code)
        .outerjoin(first_sent, first_sent.c.notification_id == Notification.notification_id)
        .where(Offer.code.in_(codes))
    ).mappings()
    return {row["code"]: dict(row) for row in rows}


def _orders(
    session: Session, shopper_ids: list[str], since: datetime
) -> dict[str, list[tuple[datetime, str, Decimal]]]:
    orders: dict[str, list[tuple[datetime, str, Decimal]]] = defaultdict(list)
    if not shopper_ids:
        return orders
    rows = session.execute(
        sa.select(Order.shopper_id, Order.ordered_at, Order.order_ref, Order.total).where(
            Order.shopper_id.in_(shopper_ids), Order.ordered_at >= since
        )
    )
    for shopper_id, ordered_at, order_ref, total in rows:
        if shopper_id is not None:
            orders[shopper_id].append((ordered_at, order_ref, total))
    return orders


def campaign_funnels(
    session: Session,
    store_ids: Collection[str] | None,
    since: datetime,
    until: datetime,
    default_names: dict[str, str],
) -> list[tuple[str, Funnel]]:
    """(name, funnel) of every campaign with a decision in the window, by campaign id."""
    by_campaign: dict[str, list[DecisionFacts]] = defaultdict(list)
    for fact in decision_facts(session, store_ids, since, until):
        by_campaign[fact.campaign_id].append(fact)
    names = dict(default_names)
    for campaign_id, name in session.execute(sa.select(CampaignRow.id, CampaignRow.name)):
        names[campaign_id] = name
    return [
        (names.get(campaign_id, campaign_id), funnel(campaign_id, facts))
        for campaign_id, facts in sorted(by_campaign.items())
    ]
