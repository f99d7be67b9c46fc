"""Storing what the e-commerce platforms report about carts and orders, newest report wins.

A cart is abandoned when it has items, was not ordered and nobody touched it for
``cart_abandon_after_s`` (the default campaign's cart age condition). An order, online or at
the till, converts its cart and redeems the offer codes it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloud_api.api.schemas import CartWebhook
from cloud_api.offers.redemption import redeem_code
from cloud_api.store.db import upsert
from cloud_api.store.models import Cart, Order, WebhookDelivery


@dataclass(frozen=True)
class CartRecord:
    cart_id: str
    shopper_id: str
    items: list[dict[str, Any]]
    total: Decimal
    currency: str
    status: str
    updated_at: datetime
    checkout_url: str | None = None


@dataclass(frozen=True)
class OrderRecord:
    order_ref: str
    shopper_id: str | None
    cart_id: str | None
    store_id: str | None
    channel: str
    items: list[dict[str, Any]]
    total: Decimal
    currency: str
    discount_codes: list[str]
    ordered_at: datetime


@dataclass(frozen=True)
class OrderOutcome:
    applied: bool
    cart_converted: bool
    redeemed: list[str]
    refused: dict[str, str]


def store_cart(session: Session, cart: CartRecord) -> bool:
    """Insert or update the cart; False when the stored one is as new or newer.

    Webhooks are retried and may arrive out of order; comparing ``updated_at`` inside the one
    statement keeps a late, older report from overwriting a newer one, even under concurrency.
    """
    values = {
        "shopper_id": cart.shopper_id,
        "items": cart.items,
        "total": cart.total,
        "currency": cart.currency,
        "status": cart.status,
        "updated_at": cart.updated_at,
        "checkout_url": cart.checkout_url,
    }
    statement = upsert(session, Cart).values(cart_id=cart.cart_id, **values)
    statement = statement.on_conflict_do_update(
        index_elements=[Cart.cart_id],
        set_={name: statement.excluded[name] for name in values},
        # An ordered cart stays ordered: a late checkout update must not reopen it.
        where=sa.and_(Cart.updated_at < statement.excluded.updated_at, Cart.status != "ordered"),
    )
    return session.execute(statement.returning(Cart.cart_id)).first() is not None


def upsert_cart(session: Session, cart: CartWebhook) -> bool:
    return store_cart(
        session,
        CartRecord(
            cart_id=cart.cart_id,
            shopper_id=cart.shopper_id,
            items=[item.model_dump(mode="json") for item in cart.items],
            total=cart.total,
            currency=cart.currency,
            status=cart.status,
            updated_at=cart.updated_at,
        ),
    )


def stored_status(session: Session, cart_id: str) -> str:
    return session.scalars(sa.select(Cart.status).where(Cart.cart_id == cart_id)).one()


def first_delivery(
    session: Session, source: str, delivery_id: str, topic: str, now: datetime
) -> bool:
    """Record a webhook delivery id; False if it was processed already (a platform retry)."""
    statement = upsert(session, WebhookDelivery).values(
        source=source, delivery_id=delivery_id, topic=topic, received_at=now
    )
    statement = statement.on_conflict_do_nothing(
        index_elements=[WebhookDelivery.source, WebhookDelivery.delivery_id]
    )
    return session.execute(statement.returning(WebhookDelivery.delivery_id)).first() is not None


def is_abandoned(cart: Cart, now: datetime, abandon_after_s: float) -> bool:
    """Has items, was not ordered, and nobody touched it for ``abandon_after_s`` before ``now``."""
    return (
        bool(cart.items)
        and cart.status != "ordered"
        and now - cart.updated_at >= timedelta(seconds=abandon_after_s)
    )


def abandoned_carts(
    session: Session, shopper_id: str, now: datetime, abandon_after_s: float
) -> list[Cart]:
    carts = session.scalars(
        sa.select(Cart).where(Cart.shopper_id == shopper_id).order_by(Cart.updated_at.desc())
    )
    return [cart for cart in carts if is_abandoned(cart, now, abandon_after_s)]


def record_order(session: Session, order: OrderRecord, now: datetime) -> OrderOutcome:
    """Store the order once (by ``order_ref``), convert its cart and redeem its codes."""
    statement = upsert(session, Order).values(
        order_ref=order.order_ref,
        shopper_id=order.shopper_id,
        cart_id=order.cart_id,
        store_id=order.store_id,
        channel=order.channel,
        items=order.items,
        total=order.total,
        currency=order.currency,
        discount_codes=order.discount_codes,
        ordered_at=order.ordered_at,
        received_at=now,
    )
    statement = statement.on_conflict_do_nothing(index_elements=[Order.order_ref])
    if session.execute(statement.returning(Order.id)).first() is None:
        return OrderOutcome(applied=False, cart_converted=False, redeemed=[], refused={})
    converted = False
    if order.cart_id is not None:
        converted = (
            session.execute(
                sa.update(Cart)
                .where(Cart.cart_id == order.cart_id)
                .values(status="ordered")
                .returning(Cart.cart_id)
            ).first()
            is not None
        )
    redeemed, refused = [], {}
    for code in order.discount_codes:
        redemption = redeem_code(session, code, order.order_ref, order.ordered_at)
        if redemption.redeemed:
            redeemed.append(code)
        else:
            refused[code] = redemption.status.value
    return OrderOutcome(True, converted, redeemed, refused)
