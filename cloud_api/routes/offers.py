"""Offers made to shoppers, and their redemption at the till."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, status

from cloud_api.codes import normalise_code
from cloud_api.deps import Limit, SessionDep
from cloud_api.models import Offer
from cloud_api.schemas import OfferOut
from storelink.wire import utc_now

router = APIRouter(prefix="/offers", tags=["offers"])


@router.get("")
def list_offers(shopper_id: str, session: SessionDep, limit: Limit = 100) -> list[OfferOut]:
    offers = session.scalars(
        sa.select(Offer)
        .where(Offer.shopper_id == shopper_id)
        .order_by(Offer.created_at.desc(), Offer.id.desc())
        .limit(limit)
    )
    return [OfferOut.model_validate(offer) for offer in offers]


@router.post(
    "/{code}/redeem",
    responses={
        404: {"description": "no such offer"},
        409: {"description": "already redeemed"},
        410: {"description": "expired"},
    },
)
def redeem_offer(code: str, session: SessionDep) -> OfferOut:
    """Redeem a code once: of two tills trying at the same moment, exactly one succeeds."""
    canonical = normalise_code(code)
    if canonical is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{code!r} is not an offer code")
    now = utc_now()
    # One conditional UPDATE: the check and the redemption cannot be separated by another till.
    redeemed = session.execute(
        sa.update(Offer)
        .where(Offer.code == canonical, Offer.redeemed_at.is_(None), Offer.expires_at > now)
        .values(redeemed_at=now)
        .returning(Offer.id)
    ).first()
    session.commit()
    offer = session.scalars(sa.select(Offer).where(Offer.code == canonical)).one_or_none()
    if offer is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no offer with code {canonical}")
    if redeemed is not None:
        return OfferOut.model_validate(offer)
    if offer.redeemed_at is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"offer {canonical} was already redeemed at {offer.redeemed_at.isoformat()}",
        )
    raise HTTPException(
        status.HTTP_410_GONE, f"offer {canonical} expired at {offer.expires_at.isoformat()}"
    )
