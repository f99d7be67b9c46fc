"""Commerce webhooks: Shopify's checkouts and orders, and orders from the till or another shop."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, HTTPException, status
from sqlalchemy.orm import Session

from cloud_api.auth.app_auth import parse_body, raw_body
from cloud_api.auth.auth import IntegrationDep, check_store
from cloud_api.commerce.carts import (
    OrderOutcome,
    OrderRecord,
    first_delivery,
    record_order,
    store_cart,
)
from cloud_api.commerce.commerce_schemas import OrderAccepted, OrderWebhook, ShopifyAccepted
from cloud_api.commerce.shopify import (
    HMAC_HEADER,
    TOPIC_HEADER,
    WEBHOOK_ID_HEADER,
    Checkout,
    ShopifyOrder,
    Topic,
    cart_record,
    customer_keys,
    order_record,
    verify_shopify,
)
from cloud_api.deps import ContextDep, SessionDep
from cloud_api.shoppers.consent import IdentityKind, email_hash, shopper_by_identity
from cloud_api.store.models import Cart, Shopper
from storelink.wire import utc_now

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def _shopper_of(session: Session, customer_id: int | None, email: str | None) -> str | None:
    if customer_id is not None:
        found = shopper_by_identity(session, IdentityKind.SHOPIFY_CUSTOMER, str(customer_id))
        if found is not None:
            return found
    if email:
        return shopper_by_identity(session, IdentityKind.EMAIL_SHA256, email_hash(email))
    return None


def _accepted(order_ref: str, outcome: OrderOutcome) -> OrderAccepted:
    return OrderAccepted(
        order_ref=order_ref,
        applied=outcome.applied,
        cart_converted=outcome.cart_converted,
        redeemed=outcome.redeemed,
        refused=outcome.refused,
    )


@router.post("/shopify")
def receive_shopify(
    body: Annotated[bytes, Depends(raw_body)],
    session: SessionDep,
    context: ContextDep,
    hmac_header: Annotated[str | None, Header(alias=HMAC_HEADER)] = None,
    topic: Annotated[str | None, Header(alias=TOPIC_HEADER)] = None,
    webhook_id: Annotated[str | None, Header(alias=WEBHOOK_ID_HEADER)] = None,
) -> ShopifyAccepted:
    """``checkouts/create``, ``checkouts/update`` and ``orders/create``, as Shopify sends them."""
    secret = context.settings.shopify_webhook_secret
    if secret is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "Shopify webhooks are disabled: set STORELINK_SHOPIFY_WEBHOOK_SECRET "
            "to the Shopify app's client secret",
        )
    if hmac_header is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"missing {HMAC_HEADER} header")
    if not verify_shopify(secret.get_secret_value(), body, hmac_header):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"{HMAC_HEADER} does not match the body: base64 HMAC-SHA256 of the raw body "
            "with the app's client secret",
        )
    if topic not in set(Topic):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{TOPIC_HEADER} {topic!r} is not handled: subscribe only to "
            + ", ".join(t.value for t in Topic),
        )
    if not webhook_id:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"missing {WEBHOOK_ID_HEADER} header"
        )
    return _apply_shopify(session, Topic(topic), webhook_id, body)


def _apply_shopify(session: Session, topic: Topic, webhook_id: str, body: bytes) -> ShopifyAccepted:
    payload: Checkout | ShopifyOrder
    if topic is Topic.ORDERS_CREATE:
        payload = parse_body(ShopifyOrder, body)
    else:
        payload = parse_body(Checkout, body)
    shopper_id = _shopper_of(session, *customer_keys(payload))
    result = ShopifyAccepted(
        topic=topic.value,
        webhook_id=webhook_id,
        duplicate=False,
        shopper_linked=shopper_id is not None,
        applied=False,
    )
    if not first_delivery(session, "shopify", webhook_id, topic.value, utc_now()):
        return result.model_copy(update={"duplicate": True})
    if isinstance(payload, ShopifyOrder):
        record = order_record(payload, shopper_id)
        outcome = record_order(session, record, utc_now())
        session.commit()
        return result.model_copy(
            update={"applied": outcome.applied, "order": _accepted(record.order_ref, outcome)}
        )
    if shopper_id is None:
        # Nobody consented to being known here: the checkout is not kept at all.
        session.commit()
        return result
    applied = store_cart(session, cart_record(payload, shopper_id))
    session.commit()
    return result.model_copy(update={"applied": applied})


@router.post("/orders")
def receive_order(
    order: OrderWebhook, integration: IntegrationDep, session: SessionDep
) -> OrderAccepted:
    """An order (POS or online; X-API-Key): converts its cart and redeems its offer codes."""
    if order.store_id is not None:
        check_store(integration, order.store_id)
    if order.shopper_id is not None and session.get(Shopper, order.shopper_id) is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown shopper_id {order.shopper_id!r}"
        )
    shopper_id = order.shopper_id
    if shopper_id is None and order.cart_id is not None:
        # A till that scanned the cart's code knows the cart, not the shopper.
        shopper_id = session.scalar(sa.select(Cart.shopper_id).where(Cart.cart_id == order.cart_id))
    record = OrderRecord(
        order_ref=order.order_ref,
        shopper_id=shopper_id,
        cart_id=order.cart_id,
        store_id=order.store_id,
        channel=order.channel,
        items=[item.model_dump(mode="json") for item in order.items],
        total=order.total,
        currency=order.currency,
        discount_codes=order.discount_codes,
        ordered_at=order.ordered_at,
    )
    outcome = record_order(session, record, utc_now())
    session.commit()
    return _accepted(order.order_ref, outcome)
