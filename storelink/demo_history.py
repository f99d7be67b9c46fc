"""Four weeks of made-up store history, so that a fresh demo's dashboard has something to compare.

The history goes in through the cloud's real code paths: presence events through the same
``PresenceService`` the MQTT consumer hands them to (visits stitched as for live traffic), and
gateway status messages through the same recorder (passers-by for the capture rate). Regulars
wear an IRK-resolved wearable, so they are recognised across days; everyone else is an
anonymous daily pseudonym.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from cloud_api.ingest.gateway_status import record_gateway_status
from cloud_api.ingest.presence_service import PresenceService
from cloud_api.store.db import begin_write
from storelink.wire import GatewayState, GatewayStatus, PresenceEvent, PresenceKind, Subject

# Arrivals per hour of the (UTC) day while the store is open; busier late afternoon.
ARRIVALS_PER_HOUR = {9: 2, 10: 3, 11: 4, 12: 6, 13: 5, 14: 4, 15: 4, 16: 6, 17: 8, 18: 6}
# Saturday busiest, Sunday quiet (Monday 0).
WEEKDAY_FACTOR = (0.8, 0.9, 0.9, 1.0, 1.2, 1.6, 0.5)
PASSERS_PER_ARRIVAL = 4.0
REGULARS = 15
REGULAR_SHARE = 0.3
BATCH = 500


@dataclass(frozen=True)
class HistoryShape:
    store_id: str
    gateway_id: str
    zones: Sequence[str]
    days: int = 28
    # Arrivals per hour times this: 1 is a boutique, 50 a busy supermarket (benchmarks).
    busyness: float = 1.0


def _stay_s(rng: random.Random) -> float:
    # Mostly a few minutes, some long browses; a few step in and out (not visits).
    if rng.random() < 0.12:
        return rng.uniform(10.0, 50.0)
    return min(3600.0, rng.lognormvariate(6.0, 0.7))


def _visit_events(
    shape: HistoryShape, subject: Subject, arrive: datetime, stay_s: float, rng: random.Random
) -> list[PresenceEvent]:
    """Through the entrance, then a zone or two, each an enter and an exit with its dwell."""
    entrance, inner = shape.zones[0], list(shape.zones[1:])
    path = [entrance]
    if inner and stay_s > 60:
        path += rng.sample(inner, k=rng.randint(1, len(inner)))
    entrance_s = min(stay_s, rng.uniform(20.0, 60.0))
    rest = (stay_s - entrance_s) / max(1, len(path) - 1)
    events: list[PresenceEvent] = []
    at = arrive
    for index, zone in enumerate(path):
        length = entrance_s if index == 0 else rest
        common = {
            "store_id": shape.store_id,
            "gateway_id": shape.gateway_id,
            "zone_id": zone,
            "subject": subject,
            "rssi": -60.0,
        }
        events.append(PresenceEvent(kind=PresenceKind.ENTER, ts=at, dwell_s=0.0, **common))
        at += timedelta(seconds=length)
        events.append(PresenceEvent(kind=PresenceKind.EXIT, ts=at, dwell_s=length, **common))
    return events


def history(
    shape: HistoryShape, end: datetime, seed: int = 0
) -> tuple[list[PresenceEvent], list[GatewayStatus]]:
    """The presence events of visits over ``shape.days`` days before ``end`` (those finished by
    then), and hourly gateway statuses counting passers-by, both oldest first."""
    rng = random.Random(f"{seed}/history")
    regulars = [Subject(type="wearable", ref=f"wear-demo-{n:02d}") for n in range(REGULARS)]
    first_day = (end - timedelta(days=shape.days)).date()
    events: list[PresenceEvent] = []
    statuses: list[GatewayStatus] = []
    passers = 0
    uptime_start = datetime.combine(first_day, datetime.min.time(), UTC)
    for offset in range(shape.days + 1):
        day = first_day + timedelta(days=offset)
        factor = WEEKDAY_FACTOR[day.weekday()]
        for hour, rate in ARRIVALS_PER_HOUR.items():
            hour_start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
            if hour_start >= end:
                break
            expected = rate * factor * shape.busyness
            arrivals = sum(1 for _ in range(round(expected * 2)) if rng.random() < 0.5)
            for _ in range(arrivals):
                arrive = hour_start + timedelta(seconds=rng.uniform(0, 3600))
                stay = _stay_s(rng)
                if arrive + timedelta(seconds=stay) >= end:
                    continue
                if rng.random() < REGULAR_SHARE:
                    subject = rng.choice(regulars)
                else:
                    subject = Subject(type="anonymous", ref=f"anon-{rng.getrandbits(48):012x}")
                events.extend(_visit_events(shape, subject, arrive, stay, rng))
            passers += round(arrivals * PASSERS_PER_ARRIVAL * rng.uniform(0.7, 1.3))
            sent = hour_start + timedelta(minutes=59)
            if sent < end:
                statuses.append(
                    GatewayStatus(
                        store_id=shape.store_id,
                        gateway_id=shape.gateway_id,
                        state=GatewayState.ONLINE,
                        ts=sent,
                        uptime_s=(sent - uptime_start).total_seconds(),
                        passers_by=passers,
                    )
                )
    events.sort(key=lambda event: event.ts)
    return events, statuses


def seed_history(
    service: PresenceService,
    sessions: sessionmaker[Session],
    shape: HistoryShape,
    end: datetime,
    seed: int = 0,
) -> int:
    """Store the history as the ingest would; the number of presence events."""
    events, statuses = history(shape, end, seed)
    now = datetime.now(UTC)
    for start in range(0, len(events), BATCH):
        service.handle_batch(events[start : start + BATCH], now)
    with sessions.begin() as session:
        begin_write(session)
        for status in statuses:
            record_gateway_status(session, status, now)
    return len(events)
