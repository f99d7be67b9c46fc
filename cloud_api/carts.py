"""Storing what the e-commerce platform reports about carts, newest report wins."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloud_api.db import upsert
from cloud_api.models import Cart
from cloud_api.schemas import CartWebhook


def upsert_cart(session: Session, cart: CartWebhook) -> bool:
    """Insert or update the cart; False when the stored one is as new or newer.

    Webhooks are retried and may arrive out of order; comparing ``updated_at`` inside the one
    statement keeps a late, older report from overwriting a newer one, even under concurrency.
    """
    values = {
        "shopper_id": cart.shopper_id,
        "items": [item.model_dump(mode="json") for item in cart.items],
        "total": cart.total,
        "currency": cart.currency,
        "status": cart.status,
        "updated_at": cart.updated_at,
    }
    statement = upsert(session, Cart).values(cart_id=cart.cart_id, **values)
    statement = statement.on_conflict_do_update(
        index_elements=[Cart.cart_id],
        set_={name: statement.excluded[name] for name in values},
        where=Cart.updated_at < statement.excluded.updated_at,
    )
    return session.execute(statement.returning(Cart.cart_id)).first() is not None


def stored_status(session: Session, cart_id: str) -> str:
    return session.scalars(sa.select(Cart.status).where(Cart.cart_id == cart_id)).one()
