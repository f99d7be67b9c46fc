"""``POST /v1/presence/checkins``: the shopper app reports entering or leaving a store's region."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status

from cloud_api.auth.app_auth import parse_body, raw_body, verify_app_request
from cloud_api.deps import ContextDep, SessionDep
from cloud_api.ingest.checkins import (
    beacon_place,
    checkin_event,
    checkin_ref,
    exit_presence,
)
from cloud_api.ingest.presence_service import PresenceService, Resolved
from cloud_api.ingest.resolve import ConsentingShopper
from cloud_api.match.offer_policy import offer_policy
from cloud_api.shoppers.shopper_schemas import CheckinAccepted, CheckinIn
from cloud_api.store.db import begin_write
from cloud_api.store.models import APP_CHECKIN_SOURCE
from storelink.wire import PresenceKind, canonical_beacon_id, utc_now

router = APIRouter(prefix="/presence", tags=["presence"])


@router.post("/checkins", status_code=status.HTTP_202_ACCEPTED)
def check_in(
    request: Request,
    body: Annotated[bytes, Depends(raw_body)],
    session: SessionDep,
    context: ContextDep,
) -> CheckinAccepted:
    """Signed with the app key; joins the shopper's visit to the store, with source ``app``."""
    checkin = parse_body(CheckinIn, body)
    shopper = verify_app_request(
        session,
        checkin.shopper_id,
        request,
        body,
        time.time(),
        context.settings.app_signature_max_skew_s,
    )
    beacon = checkin.beacon
    beacon_id = canonical_beacon_id(f"{beacon.uuid}:{beacon.major}:{beacon.minor}")
    place = beacon_place(session, beacon_id)
    if place is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"beacon {beacon_id} is none of the stores' own beacons (store_beacons)",
        )
    kind = PresenceKind(checkin.kind)
    if kind == PresenceKind.EXIT:
        ref, dwell_s = exit_presence(session, place, shopper.app_key, checkin.at)
    else:
        ref, dwell_s = checkin_ref(shopper.app_key, checkin.at), 0.0
    event = checkin_event(shopper.id, ref, beacon_id, place, kind, checkin.at, dwell_s)
    # The reads above ran in a transaction of their own: end it, and read the consent again
    # as a writer, so that a withdrawal committed meanwhile is seen.
    session.rollback()
    service = PresenceService(context.sessions, context.directory, offer_policy(context.settings))
    with session.begin():
        begin_write(session)
        session.refresh(shopper)
        consenting = None
        if shopper.consent_personal_offers or shopper.consent_footfall_analytics:
            consenting = ConsentingShopper(
                shopper.id,
                shopper.app_key,
                shopper.consent_personal_offers,
                shopper.consent_footfall_analytics,
            )
        outcome = service.apply(
            session, [Resolved.of(event, consenting, APP_CHECKIN_SOURCE)], utc_now()
        )[0]
    return CheckinAccepted(
        event_id=event.event_id,
        store_id=place[0],
        zone_id=place[1],
        duplicate=outcome.duplicate,
        visit_id=outcome.visit_id,
        identified=outcome.shopper_id is not None,
        offer=outcome.notification,
    )
