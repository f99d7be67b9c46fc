"""Shoppers: registration, consent, devices, social events, profile, export and erasure.

Registration is open (it is how the app gets its key); everything else about a shopper is the
shopper's own business and is signed with their app key (``app_auth``).
"""

from __future__ import annotations

import time
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Request, status

from cloud_api.api.schemas import (
    ConsentOut,
    ConsentUpdate,
    ShopperCreate,
    ShopperCreated,
    ShopperOut,
)
from cloud_api.auth.app_auth import parse_body, raw_body, verify_app_request
from cloud_api.auth.auth import authenticate_staff, bearer_token
from cloud_api.commerce.carts import abandoned_carts
from cloud_api.deps import CloudContext, ContextDep, SessionDep
from cloud_api.fleet.gateway_irks import republish
from cloud_api.ingest.directory import record_change
from cloud_api.offers.codes import new_app_key, new_shopper_id
from cloud_api.shoppers.consent import (
    Purpose,
    current_consent,
    link_identities,
    set_consent,
)
from cloud_api.shoppers.devices import DeviceKind, key_fob_ref, new_wearable_ref, wearable_stores
from cloud_api.shoppers.loyalty_store import loyalty_rules, value_of
from cloud_api.shoppers.personal_data import erase_shopper, export_shopper
from cloud_api.shoppers.shopper_schemas import (
    AbandonedCartOut,
    DeviceIn,
    DeviceOut,
    ErasureReceipt,
    IdentityLink,
    ProfileOut,
    PurposeState,
    ShopperEventAccepted,
    ShopperEventIn,
    ShopperExport,
    WearableIn,
)
from cloud_api.store.models import Shopper, ShopperDevice, ShopperEvent
from storelink.wire import notification_topic, utc_now

router = APIRouter(prefix="/shoppers", tags=["shoppers"])


RawBody = Annotated[bytes, Depends(raw_body)]


def _signed(
    context: CloudContext, session: SessionDep, shopper_id: str, request: Request, body: bytes
) -> Shopper:
    return verify_app_request(
        session, shopper_id, request, body, time.time(), context.settings.app_signature_max_skew_s
    )


def _shopper_or_admin(
    context: CloudContext, session: SessionDep, shopper_id: str, request: Request
) -> None:
    """The shopper's app (signed, no body), or the administrator (bearer admin token): a
    retailer answers access and erasure requests that reach it by other means too."""
    authorization = request.headers.get("Authorization")
    if authorization is None:
        _signed(context, session, shopper_id, request, b"")
        return
    principal = authenticate_staff(bearer_token(authorization), context)
    if not principal.is_admin:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "only the shopper's app or the administrator may do this"
        )
    if session.get(Shopper, shopper_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no shopper {shopper_id!r}")


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


def _refuse_taken(taken: list[tuple[object, str]]) -> None:
    if taken:
        kinds = ", ".join(str(kind) for kind, _ in taken)
        raise HTTPException(status.HTTP_409_CONFLICT, f"already linked to another shopper: {kinds}")


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
        consent_personal_offers=False,
        consent_footfall_analytics=False,
        consent_text_version=body.consent_text_version,
        consent_at=now,
        created_at=now,
    )
    session.add(shopper)
    session.flush()
    answers = {
        Purpose.PERSONAL_OFFERS: body.consent.personal_offers,
        Purpose.FOOTFALL_ANALYTICS: body.consent.footfall_analytics,
    }
    set_consent(session, shopper, answers, body.consent_text_version, now)
    _refuse_taken(list(link_identities(session, shopper.id, body.email, body.shopify_customer_id)))
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
def read_shopper(
    shopper_id: str, request: Request, session: SessionDep, context: ContextDep
) -> ShopperOut:
    """The shopper's name and consent: for their own app (signed) or the administrator."""
    _shopper_or_admin(context, session, shopper_id, request)
    return _out(_get(session, shopper_id))


@router.put("/{shopper_id}/consent")
def update_consent(
    shopper_id: str,
    request: Request,
    body: RawBody,
    session: SessionDep,
    context: ContextDep,
    background: BackgroundTasks,
) -> ShopperOut:
    """Give or withdraw consent (app-signed); a withdrawal applies to the very next event."""
    shopper = _signed(context, session, shopper_id, request, body)
    update = parse_body(ConsentUpdate, body)
    answers = {
        Purpose.PERSONAL_OFFERS: update.consent.personal_offers,
        Purpose.FOOTFALL_ANALYTICS: update.consent.footfall_analytics,
    }
    changed = set_consent(session, shopper, answers, update.consent_text_version, utc_now())
    session.commit()
    if changed:
        context.directory.invalidate()
        background.add_task(republish, context, wearable_stores(session, shopper_id))
    return _out(shopper)


@router.get("/{shopper_id}/consent")
def read_consent(
    shopper_id: str, request: Request, session: SessionDep, context: ContextDep
) -> dict[str, PurposeState]:
    """Each purpose's current answer, when it was given and for which text version."""
    _shopper_or_admin(context, session, shopper_id, request)
    return {
        purpose.value: PurposeState(granted=a.granted, text_version=a.text_version, at=a.at)
        for purpose, a in current_consent(session, shopper_id).items()
    }


@router.post("/{shopper_id}/identities", status_code=status.HTTP_204_NO_CONTENT)
def link_identity(
    shopper_id: str, request: Request, body: RawBody, session: SessionDep, context: ContextDep
) -> None:
    """Link the shop's customer id or e-mail, so that carts and orders reach this shopper."""
    _signed(context, session, shopper_id, request, body)
    link = parse_body(IdentityLink, body)
    _refuse_taken(list(link_identities(session, shopper_id, link.email, link.shopify_customer_id)))
    session.commit()


@router.post("/{shopper_id}/devices", status_code=status.HTTP_201_CREATED)
def register_device(
    shopper_id: str,
    request: Request,
    body: RawBody,
    session: SessionDep,
    context: ContextDep,
    background: BackgroundTasks,
) -> DeviceOut:
    """A wearable (with its IRK) or a loyalty key fob (its iBeacon id) for this shopper."""
    _signed(context, session, shopper_id, request, body)
    device = parse_body(DeviceIn, body).device
    if isinstance(device, WearableIn):
        row = ShopperDevice(
            shopper_id=shopper_id,
            kind=DeviceKind.WEARABLE.value,
            ref=new_wearable_ref(),
            irk=bytes.fromhex(device.irk),
            store_id=device.store_id,
            label=device.label,
            created_at=utc_now(),
        )
    else:
        ref = key_fob_ref(device.uuid, device.major, device.minor)
        if session.scalar(sa.select(ShopperDevice.id).where(ShopperDevice.ref == ref)):
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"key fob {ref} is already linked to a shopper"
            )
        row = ShopperDevice(
            shopper_id=shopper_id,
            kind=DeviceKind.KEY_FOB.value,
            ref=ref,
            irk=None,
            store_id=None,
            label=device.label,
            created_at=utc_now(),
        )
    session.add(row)
    record_change(session)
    session.commit()
    context.directory.invalidate()
    if row.kind == DeviceKind.WEARABLE.value:
        background.add_task(republish, context, {row.store_id})
    return DeviceOut.model_validate(row)


@router.get("/{shopper_id}/devices")
def list_devices(
    shopper_id: str, request: Request, session: SessionDep, context: ContextDep
) -> list[DeviceOut]:
    """The key fobs and phones linked to the shopper."""
    _shopper_or_admin(context, session, shopper_id, request)
    rows = session.scalars(
        sa.select(ShopperDevice)
        .where(ShopperDevice.shopper_id == shopper_id)
        .order_by(ShopperDevice.id)
    )
    return [DeviceOut.model_validate(row) for row in rows]


@router.delete("/{shopper_id}/devices/{ref}", status_code=status.HTTP_204_NO_CONTENT)
def remove_device(
    shopper_id: str,
    ref: str,
    request: Request,
    session: SessionDep,
    context: ContextDep,
    background: BackgroundTasks,
) -> None:
    """Unlink a key fob or phone; a key fob's store stops recognising it."""
    _signed(context, session, shopper_id, request, b"")
    deleted = session.execute(
        sa.delete(ShopperDevice)
        .where(ShopperDevice.shopper_id == shopper_id, ShopperDevice.ref == ref)
        .returning(ShopperDevice.kind, ShopperDevice.store_id)
    ).first()
    if deleted is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"shopper has no device {ref!r}")
    record_change(session)
    session.commit()
    context.directory.invalidate()
    if deleted.kind == DeviceKind.WEARABLE.value:
        background.add_task(republish, context, {deleted.store_id})


@router.post("/{shopper_id}/events", status_code=status.HTTP_202_ACCEPTED)
def record_event(
    shopper_id: str, request: Request, body: RawBody, session: SessionDep, context: ContextDep
) -> ShopperEventAccepted:
    """A referral or a share the app reports: the social side of the shopper's value."""
    _signed(context, session, shopper_id, request, body)
    event = parse_body(ShopperEventIn, body)
    known = session.scalar(
        sa.select(ShopperEvent.shopper_id).where(ShopperEvent.event_id == event.event_id)
    )
    if known is not None:
        if known != shopper_id:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"event_id {event.event_id!r} belongs to another shopper"
            )
        return ShopperEventAccepted(event_id=event.event_id, applied=False)
    session.add(
        ShopperEvent(
            event_id=event.event_id,
            shopper_id=shopper_id,
            kind=event.kind,
            at=event.at,
            received_at=utc_now(),
        )
    )
    session.commit()
    return ShopperEventAccepted(event_id=event.event_id, applied=True)


@router.get("/{shopper_id}/profile")
def read_profile(
    shopper_id: str, request: Request, session: SessionDep, context: ContextDep
) -> ProfileOut:
    """Visits, orders, social acts and offers, and the loyalty segment they put the shopper in."""
    _shopper_or_admin(context, session, shopper_id, request)
    figures = value_of(session, shopper_id, utc_now(), loyalty_rules(context.settings))
    consent = {
        purpose.value: PurposeState(granted=a.granted, text_version=a.text_version, at=a.at)
        for purpose, a in current_consent(session, shopper_id).items()
    }
    now = utc_now()
    abandoned = abandoned_carts(session, shopper_id, now, context.settings.cart_abandon_after_s)
    return ProfileOut(
        shopper_id=shopper_id,
        consent=consent,
        abandoned_carts=[AbandonedCartOut.model_validate(cart) for cart in abandoned],
        **dict(figures),
    )


@router.get("/{shopper_id}/export")
def export(
    shopper_id: str, request: Request, session: SessionDep, context: ContextDep
) -> ShopperExport:
    """Everything held about the shopper, every table, as JSON (right of access)."""
    _shopper_or_admin(context, session, shopper_id, request)
    return ShopperExport(
        shopper_id=shopper_id, exported_at=utc_now(), tables=export_shopper(session, shopper_id)
    )


@router.delete("/{shopper_id}")
def erase(
    shopper_id: str,
    request: Request,
    session: SessionDep,
    context: ContextDep,
    background: BackgroundTasks,
) -> ErasureReceipt:
    """Erase the shopper: every row, key, device, visit, cart and order that names them."""
    _shopper_or_admin(context, session, shopper_id, request)
    stores = wearable_stores(session, shopper_id)
    erased = erase_shopper(session, shopper_id)
    record_change(session)
    session.commit()
    context.directory.invalidate()
    background.add_task(republish, context, stores)
    return ErasureReceipt(shopper_id=shopper_id, erased_rows=erased)
