"""Shopper registration and consent."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from cloud_api.codes import new_app_key, new_shopper_id
from cloud_api.deps import ContextDep, SessionDep
from cloud_api.directory import record_change
from cloud_api.models import Shopper
from cloud_api.schemas import ConsentOut, ConsentUpdate, ShopperCreate, ShopperCreated, ShopperOut
from storelink.wire import notification_topic, utc_now

router = APIRouter(prefix="/shoppers", tags=["shoppers"])


def _consent(shopper: Shopper) -> ConsentOut:
    return ConsentOut(
        personal_offers=shopper.consent_personal_offers,
        footfall_analytics=shopper.consent_footfall_analytics,
        text_version=shopper.consent_text_version,
        given_at=shopper.consent_at,
    )


def _out(shopper: Shopper) -> ShopperOut:
    return ShopperOut(
        shopper_id=shopper.id,
        display_name=shopper.display_name,
        notification_topic=notification_topic(shopper.id),
        consent=_consent(shopper),
        created_at=shopper.created_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
def register_shopper(
    body: ShopperCreate, session: SessionDep, context: ContextDep
) -> ShopperCreated:
    """Register a shopper; the response carries the app key, which is never shown again."""
    now = utc_now()
    shopper = Shopper(
        id=new_shopper_id(),
        display_name=body.display_name,
        app_key=new_app_key(),
        consent_personal_offers=body.consent.personal_offers,
        consent_footfall_analytics=body.consent.footfall_analytics,
        consent_text_version=body.consent_text_version,
        consent_at=now,
        created_at=now,
    )
    session.add(shopper)
    record_change(session)
    session.commit()
    context.directory.invalidate()
    return ShopperCreated(
        shopper_id=shopper.id,
        app_key=shopper.app_key.hex(),
        notification_topic=notification_topic(shopper.id),
        consent=_consent(shopper),
    )


def _get(session: SessionDep, shopper_id: str) -> Shopper:
    shopper = session.get(Shopper, shopper_id)
    if shopper is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no shopper {shopper_id!r}")
    return shopper


@router.get("/{shopper_id}")
def read_shopper(shopper_id: str, session: SessionDep) -> ShopperOut:
    return _out(_get(session, shopper_id))


@router.put("/{shopper_id}/consent")
def update_consent(
    shopper_id: str, body: ConsentUpdate, session: SessionDep, context: ContextDep
) -> ShopperOut:
    """Give or withdraw consent; a withdrawal applies to the very next presence event."""
    shopper = _get(session, shopper_id)
    shopper.consent_personal_offers = body.consent.personal_offers
    shopper.consent_footfall_analytics = body.consent.footfall_analytics
    shopper.consent_text_version = body.consent_text_version
    shopper.consent_at = utc_now()
    record_change(session)
    session.commit()
    context.directory.invalidate()
    return _out(shopper)
