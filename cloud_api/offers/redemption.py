"""Redeeming an offer code, once: at a till, online, or from an order's discount codes.

The redemption is one conditional UPDATE (``... WHERE redeemed_at IS NULL AND expires_at > at``)
and its row count says who won: of two tills racing on one code, the database lets exactly one
change the row. On PostgreSQL the second UPDATE waits for the first transaction and then finds
the row redeemed; on SQLite the write lock serialises them the same way. Nothing is read before
the UPDATE, so no check can be separated from the write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloud_api.offers.codes import normalise_code
from cloud_api.store.models import Offer


class RedeemStatus(StrEnum):
    REDEEMED = "redeemed"
    NOT_A_CODE = "not_a_code"
    UNKNOWN = "unknown"
    ALREADY_REDEEMED = "already_redeemed"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Redemption:
    status: RedeemStatus
    # The canonical code (as stored), None when the text cannot be one.
    code: str | None
    detail: str
    store_id: str | None = None

    @property
    def redeemed(self) -> bool:
        return self.status == RedeemStatus.REDEEMED


def redeem_code(session: Session, code: str, order_ref: str | None, at: datetime) -> Redemption:
    """Redeem ``code`` for ``order_ref`` at ``at``, in the caller's transaction (which commits).

    Safe to race: exactly one of several concurrent calls for one code gets ``REDEEMED``.
    """
    canonical = normalise_code(code)
    if canonical is None:
        return Redemption(RedeemStatus.NOT_A_CODE, None, f"{code!r} is not an offer code")
    result = session.execute(
        sa.update(Offer)
        .where(Offer.code == canonical, Offer.redeemed_at.is_(None), Offer.expires_at > at)
        .values(redeemed_at=at, order_ref=order_ref)
        .execution_options(synchronize_session=False)
    )
    won = isinstance(result, sa.CursorResult) and result.rowcount == 1
    offer = session.execute(
        sa.select(Offer.store_id, Offer.redeemed_at, Offer.expires_at, Offer.order_ref).where(
            Offer.code == canonical
        )
    ).one_or_none()
    if offer is None:
        return Redemption(RedeemStatus.UNKNOWN, canonical, f"no offer with code {canonical}")
    if won:
        return Redemption(
            RedeemStatus.REDEEMED, canonical, f"offer {canonical} redeemed", offer.store_id
        )
    if offer.redeemed_at is not None:
        by = f" by order {offer.order_ref}" if offer.order_ref else ""
        return Redemption(
            RedeemStatus.ALREADY_REDEEMED,
            canonical,
            f"offer {canonical} was already redeemed at {offer.redeemed_at.isoformat()}{by}",
            offer.store_id,
        )
    return Redemption(
        RedeemStatus.EXPIRED,
        canonical,
        f"offer {canonical} expired at {offer.expires_at.isoformat()}",
        offer.store_id,
    )
