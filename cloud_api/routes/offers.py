"""Offers made to shoppers, and their redemption at the till."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, status

from cloud_api.api.pagination import Cursor, PageLimit, paginate
from cloud_api.api.schemas import OfferOut
from cloud_api.auth.auth import CallerDep, StaffDep, check_store
from cloud_api.deps import SessionDep
from cloud_api.fleet.store_schemas import Page
from cloud_api.offers.codes import normalise_code
from cloud_api.offers.redemption import RedeemStatus, redeem_code
from cloud_api.store.models import Offer
from storelink.wire import utc_now

router = APIRouter(prefix="/offers", tags=["offers"])


@router.get("")
def list_offers(
    shopper_id: str,
    caller: StaffDep,
    session: SessionDep,
    limit: PageLimit = 100,
    cursor: Cursor = None,
) -> Page[OfferOut]:
    """The shopper's offers in the caller's stores, newest first."""
    query = sa.select(Offer).where(Offer.shopper_id == shopper_id)
    if caller.store_ids is not None:
        query = query.where(Offer.store_id.in_(caller.store_ids))
    offers, next_cursor = paginate(
        session, query, [(Offer.created_at, "desc"), (Offer.id, "desc")], limit, cursor
    )
    return Page[OfferOut](
        items=[OfferOut.model_validate(offer) for offer in offers], next_cursor=next_cursor
    )


@router.post(
    "/{code}/redeem",
    responses={
        403: {"description": "the offer is another store's"},
        404: {"description": "no such offer"},
        409: {"description": "already redeemed"},
        410: {"description": "expired"},
    },
)
def redeem_offer(
    code: str,
    caller: CallerDep,
    session: SessionDep,
    order_ref: Annotated[
        str | None, Query(max_length=128, description="the till's order or receipt number")
    ] = None,
) -> OfferOut:
    """Redeem a code once: of two tills trying at the same moment, exactly one succeeds.

    A till calls with its API key (X-API-Key), or staff with their token; either must have the
    offer's store.
    """
    canonical = normalise_code(code)
    if canonical is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{code!r} is not an offer code")
    store_id = session.scalar(sa.select(Offer.store_id).where(Offer.code == canonical))
    if store_id is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no offer with code {canonical}")
    check_store(caller, store_id)
    # End the reading transaction first: on SQLite a transaction that read and then writes
    # fails at once when another till committed in between, where a fresh one waits its turn.
    session.commit()
    redemption = redeem_code(session, canonical, order_ref, utc_now())
    session.commit()
    if redemption.status == RedeemStatus.ALREADY_REDEEMED:
        raise HTTPException(status.HTTP_409_CONFLICT, redemption.detail)
    if redemption.status == RedeemStatus.EXPIRED:
        raise HTTPException(status.HTTP_410_GONE, redemption.detail)
    if not redemption.redeemed:
        raise HTTPException(status.HTTP_404_NOT_FOUND, redemption.detail)
    return OfferOut.model_validate(
        session.scalars(sa.select(Offer).where(Offer.code == canonical)).one()
    )
