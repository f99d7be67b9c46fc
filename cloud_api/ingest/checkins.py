"""The shopper app's own presence reports: region monitoring of the store's beacons.

A backgrounded iPhone cannot advertise the app's iBeacon, but iOS still wakes the app when the
phone enters or leaves the region of a beacon it monitors. The app reports that (``POST
/v1/presence/checkins``) and the check-in becomes a presence event like a gateway's, with source
``app``: it joins the shopper's visit in that store whichever of the two saw them first.

The event's subject is the app, under a ref that the app key derives for the UTC day (not the
15-minute token: an exit must name the same presence as its enter an hour before). An exit
names the presence of the app's latest enter at that place, under the day's ref or the day
before's: a shopper who walked in before midnight and leaves after it leaves the presence they
entered. Whose ref it is, only the cloud can tell; without consent the event is anonymous, like
a gateway's.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloud_api.offers.codes import crockford
from cloud_api.store.models import APP_CHECKINS, PresenceEventRow, Store
from storelink.wire import (
    PresenceEvent,
    PresenceKind,
    Subject,
    SubjectType,
    canonical_beacon_id,
)

CHECKIN_GATEWAY_ID = "app"
# A region covers the store, not one of its zones: the check-in's zone is the store itself.
STORE_ZONE_ID = "store"


def checkin_ref(app_key: bytes, at: datetime) -> str:
    """``chk-`` and 16 hex digits of HMAC-SHA256(app key, ``checkin/YYYY-MM-DD``), UTC date."""
    day = at.astimezone(UTC).date().isoformat()
    digest = hmac.new(app_key, f"checkin/{day}".encode(), hashlib.sha256).hexdigest()
    return "chk-" + digest[:16]


def checkin_event_id(shopper_id: str, beacon_id: str, kind: PresenceKind, at: datetime) -> str:
    """A ULID-shaped id fixed by the check-in itself, so that the app's retries change nothing."""
    millis = int(at.timestamp() * 1000)
    digest = hashlib.sha256(f"{shopper_id}|{beacon_id}|{kind.value}|{millis}".encode()).digest()
    return crockford(millis.to_bytes(6, "big") + digest[:10])


def beacon_place(session: Session, beacon_id: str) -> tuple[str, str] | None:
    """The store whose own beacons (``stores.store_beacons``) include this one, and its zone."""
    for store_id, beacons in session.execute(sa.select(Store.id, Store.store_beacons)):
        if beacon_id in {canonical_beacon_id(b) for b in beacons}:
            return store_id, STORE_ZONE_ID
    return None


def exit_presence(
    session: Session, place: tuple[str, str], app_key: bytes, at: datetime
) -> tuple[str, float]:
    """The ref an exit at ``at`` names, and how long before it the app entered; the day's ref
    and 0 if it did not enter (today or the day before).

    An exit carries the time since its enter as its dwell, as a gateway's exit does, so that it
    closes the visit its enter opened even when it arrives first or the visit went idle
    meanwhile (iOS sends no dwell events in between).
    """
    today = checkin_ref(app_key, at)
    store_id, zone_id = place
    entered = session.execute(
        sa.select(PresenceEventRow.subject_ref, PresenceEventRow.ts)
        .where(
            PresenceEventRow.subject_ref.in_([today, checkin_ref(app_key, at - timedelta(days=1))]),
            APP_CHECKINS,  # the check-ins' own index (models.partial_index)
            PresenceEventRow.store_id == store_id,
            PresenceEventRow.zone_id == zone_id,
            PresenceEventRow.kind == PresenceKind.ENTER.value,
            PresenceEventRow.ts <= at,
        )
        .order_by(PresenceEventRow.ts.desc())
        .limit(1)
    ).first()
    if entered is None:
        return today, 0.0
    return entered.subject_ref, (at - entered.ts).total_seconds()


def checkin_event(
    shopper_id: str,
    ref: str,
    beacon_id: str,
    place: tuple[str, str],
    kind: PresenceKind,
    at: datetime,
    dwell_s: float,
) -> PresenceEvent:
    store_id, zone_id = place
    return PresenceEvent(
        event_id=checkin_event_id(shopper_id, beacon_id, kind, at),
        store_id=store_id,
        gateway_id=CHECKIN_GATEWAY_ID,
        zone_id=zone_id,
        kind=kind,
        subject=Subject(type=SubjectType.APP, ref=ref),
        ts=at,
        dwell_s=dwell_s,
        # Region monitoring says in or out, not how far: the weakest plausible signal.
        rssi=-127.0,
        distance_m=None,
    )
