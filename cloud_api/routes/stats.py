"""Headline numbers, as the demo prints them."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter

from cloud_api.api.schemas import StatsSummary
from cloud_api.auth.auth import AdminDep
from cloud_api.deps import ConsumerDep, SessionDep
from cloud_api.store.models import Base, Notification, Offer, PresenceEventRow, Visit

router = APIRouter(prefix="/stats", tags=["stats"])


def _count(session: SessionDep, model: type[Base]) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model)) or 0


@router.get("/summary")
def summary(_admin: AdminDep, session: SessionDep, consumer: ConsumerDep) -> StatsSummary:
    """Counts from the database, and the refused messages counted by this process's consumer:
    the whole chain's, so for the admin only."""
    return StatsSummary(
        visits=_count(session, Visit),
        offers=_count(session, Offer),
        notifications=_count(session, Notification),
        presence_events=_count(session, PresenceEventRow),
        invalid_payloads=consumer.counters.invalid_payloads if consumer else 0,
    )
