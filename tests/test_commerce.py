"""Shopify webhooks (signature, dedup, real payload shapes) and orders from the till."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cloud_api.auth.auth import create_api_key
from cloud_api.commerce.carts import is_abandoned
from cloud_api.commerce.shopify import (
    Checkout,
    ShopifyOrder,
    cart_record,
    order_record,
    shopify_signature,
)
from cloud_api.store.models import Cart, Offer, Order, WebhookDelivery
from tests.shopper_app import SHOPIFY_SECRET, Cloud, register, running_cloud

FIXTURES = Path(__file__).parent / "fixtures" / "shopify"
ALICE_CUSTOMER = 7165291282491


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture
def cloud(database_url: str) -> Iterator[Cloud]:
    yield from running_cloud(database_url)


def post_shopify(
    client: TestClient, topic: str, body: bytes, webhook_id: str, secret: str = SHOPIFY_SECRET
) -> httpx.Response:
    return client.post(
        "/v1/webhooks/shopify",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Shopify-Hmac-Sha256": shopify_signature(secret, body),
            "X-Shopify-Topic": topic,
            "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Shop-Domain": "northwind-outdoor.myshopify.com",
            "X-Shopify-API-Version": "2025-10",
        },
    )


# --- payload parsing (pure) ---------------------------------------------------------------------


def test_the_fixtures_parse_as_shopify_sends_them() -> None:
    created = Checkout.model_validate_json(fixture("checkouts_create.json"))
    cart = cart_record(created, "shp_x")
    assert cart.cart_id == "shopify:9c0b5e5e8d6f4c3b7a2e1d0f9a8b7c6d"
    assert cart.status == "open"
    assert cart.total == Decimal("114.90") and cart.currency == "EUR"
    assert cart.items == [
        {
            "sku": "SHOE-042",
            "name": "Trail runners",
            "category": "",
            "unit_price": "89.90",
            "quantity": 1,
        },
        {
            "sku": "SOCK-007",
            "name": "Merino socks",
            "category": "",
            "unit_price": "12.50",
            "quantity": 2,
        },
    ]
    assert cart.checkout_url is not None and "/recover?" in cart.checkout_url
    assert cart.updated_at == datetime(2026, 11, 24, 8, 12, 31, tzinfo=UTC)

    updated = Checkout.model_validate_json(fixture("checkouts_update.json"))
    assert cart_record(updated, "shp_x").updated_at > cart.updated_at

    order = ShopifyOrder.model_validate_json(fixture("orders_create.json"))
    record = order_record(order, None)
    assert record.order_ref == "shopify:5842991186301"
    assert record.cart_id == cart.cart_id
    assert record.discount_codes == ["SL-7F3K-9QX2-M4TD-8RVA"]
    assert record.channel == "online"
    assert record.total == Decimal("80.91")
    assert order.customer is not None and order.customer.id == ALICE_CUSTOMER


def test_a_cart_is_abandoned_with_items_no_order_and_no_recent_update() -> None:
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    line = {"sku": "S", "name": "n", "category": "", "unit_price": "1", "quantity": 1}

    def cart(items: list[dict[str, Any]], status: str, age: timedelta) -> Cart:
        return Cart(
            cart_id="c",
            shopper_id="shp_x",
            items=items,
            total=Decimal("1"),
            currency="EUR",
            status=status,
            updated_at=now - age,
        )

    assert is_abandoned(cart([line], "open", timedelta(hours=2)), now, 3600)
    assert not is_abandoned(cart([line], "open", timedelta(minutes=59)), now, 3600)
    assert not is_abandoned(cart([], "open", timedelta(hours=2)), now, 3600)
    assert not is_abandoned(cart([line], "ordered", timedelta(hours=2)), now, 3600)


# --- the webhook --------------------------------------------------------------------------------


def test_shopify_signature_is_checked_on_the_raw_body(cloud: Cloud) -> None:
    register(cloud.client, shopify_customer_id=ALICE_CUSTOMER)
    body = fixture("checkouts_create.json")
    forged = post_shopify(cloud.client, "checkouts/create", body, "w-1", secret="not-the-secret")
    assert forged.status_code == 401
    assert "X-Shopify-Hmac-Sha256" in forged.json()["detail"]
    # Re-serialised JSON is not the signed body.
    reformatted = json.dumps(json.loads(body)).encode()
    response = cloud.client.post(
        "/v1/webhooks/shopify",
        content=reformatted,
        headers={
            "X-Shopify-Hmac-Sha256": shopify_signature(SHOPIFY_SECRET, body),
            "X-Shopify-Topic": "checkouts/create",
            "X-Shopify-Webhook-Id": "w-1",
        },
    )
    assert response.status_code == 401
    assert cloud.rows(Cart) == [] and cloud.rows(WebhookDelivery) == []


def test_unhandled_topics_and_missing_ids_are_refused(cloud: Cloud) -> None:
    body = fixture("checkouts_create.json")
    assert post_shopify(cloud.client, "customers/create", body, "w-1").status_code == 422
    assert post_shopify(cloud.client, "checkouts/create", body, "").status_code == 422


def test_checkouts_become_the_linked_shoppers_cart_and_retries_are_ignored(cloud: Cloud) -> None:
    alice = register(cloud.client, shopify_customer_id=ALICE_CUSTOMER)
    created = post_shopify(
        cloud.client, "checkouts/create", fixture("checkouts_create.json"), "w-1"
    )
    assert created.status_code == 200, created.text
    assert created.json() | {"order": None} == {
        "topic": "checkouts/create",
        "webhook_id": "w-1",
        "duplicate": False,
        "shopper_linked": True,
        "applied": True,
        "order": None,
    }
    updated = post_shopify(
        cloud.client, "checkouts/update", fixture("checkouts_update.json"), "w-2"
    )
    assert updated.json()["applied"] is True
    # Shopify retries the first delivery after the second: same webhook id, nothing changes.
    retry = post_shopify(cloud.client, "checkouts/create", fixture("checkouts_create.json"), "w-1")
    assert retry.json()["duplicate"] is True
    # A late create under a new id is older than the stored update: acknowledged, not applied.
    late = post_shopify(cloud.client, "checkouts/create", fixture("checkouts_create.json"), "w-3")
    assert late.json()["applied"] is False

    [cart] = cloud.rows(Cart)
    assert cart.shopper_id == alice.shopper_id
    assert cart.total == Decimal("89.90")
    assert [item["sku"] for item in cart.items] == ["SHOE-042"]


def test_a_customer_is_found_by_email_hash_and_strangers_are_not_kept(cloud: Cloud) -> None:
    alice = register(cloud.client, email="Alice@Example.com")
    linked = post_shopify(cloud.client, "checkouts/create", fixture("checkouts_create.json"), "w-1")
    assert linked.json()["shopper_linked"] is True
    assert [c.shopper_id for c in cloud.rows(Cart)] == [alice.shopper_id]

    stranger = json.loads(fixture("checkouts_create.json"))
    stranger |= {"token": "ffff", "email": "carol@example.com"}
    stranger["customer"] |= {"id": 1, "email": "carol@example.com"}
    response = post_shopify(cloud.client, "checkouts/create", json.dumps(stranger).encode(), "w-2")
    assert response.json()["shopper_linked"] is False
    assert response.json()["applied"] is False
    assert len(cloud.rows(Cart)) == 1


def offer(cloud: Cloud, shopper_id: str, code: str, expires_in: timedelta) -> None:
    now = datetime.now(UTC)
    with cloud.context.sessions() as session:
        session.add(
            Cart(
                cart_id=f"cart-{code}",
                shopper_id=shopper_id,
                items=[],
                total=Decimal("0"),
                currency="EUR",
                status="open",
                updated_at=now,
            )
        )
        session.flush()
        session.add(
            Offer(
                code=code,
                shopper_id=shopper_id,
                store_id="store-1",
                cart_id=f"cart-{code}",
                visit_id=None,
                percent_off=Decimal("10"),
                items=[],
                currency="EUR",
                created_at=now - timedelta(hours=1),
                expires_at=now + expires_in,
                redeemed_at=None,
            )
        )
        session.commit()


def test_an_order_converts_the_cart_and_redeems_its_code_once(cloud: Cloud) -> None:
    alice = register(cloud.client, shopify_customer_id=ALICE_CUSTOMER)
    post_shopify(cloud.client, "checkouts/create", fixture("checkouts_create.json"), "w-1")
    order = json.loads(fixture("orders_create.json"))
    # The fixture's code, issued to Alice and still valid at the order's time.
    offer(cloud, alice.shopper_id, "SL-7F3K-9QX2-M4TD-8RVA", timedelta(days=30))
    order["created_at"] = datetime.now(UTC).isoformat()
    body = json.dumps(order).encode()

    response = post_shopify(cloud.client, "orders/create", body, "w-2")
    assert response.status_code == 200, response.text
    assert response.json()["order"] == {
        "order_ref": "shopify:5842991186301",
        "applied": True,
        "cart_converted": True,
        "redeemed": ["SL-7F3K-9QX2-M4TD-8RVA"],
        "refused": {},
    }

    def shopify_cart() -> Cart:
        [cart] = [c for c in cloud.rows(Cart) if c.cart_id.startswith("shopify:")]
        return cart

    assert shopify_cart().status == "ordered"
    # The checkout's update that follows the order does not reopen the cart.
    again = post_shopify(cloud.client, "checkouts/update", fixture("checkouts_update.json"), "w-3")
    assert again.json()["applied"] is False
    assert shopify_cart().status == "ordered"

    [stored] = cloud.rows(Order)
    assert stored.shopper_id == alice.shopper_id
    assert stored.discount_codes == ["SL-7F3K-9QX2-M4TD-8RVA"]
    # The same order again under a new webhook id: recorded once, the code not redeemed twice.
    repeat = post_shopify(cloud.client, "orders/create", body, "w-4")
    assert repeat.json()["applied"] is False
    assert len(cloud.rows(Order)) == 1


def pos_headers(cloud: Cloud, stores: list[str]) -> dict[str, str]:
    with cloud.context.sessions() as session:
        key, _ = create_api_key(session, "till", stores, datetime.now(UTC))
        session.commit()
    return {"X-API-Key": key}


def pos_order(**changes: Any) -> dict[str, Any]:
    return {
        "order_ref": "pos-store-1-000123",
        "channel": "online",
        "items": [
            {
                "sku": "SHOE-042",
                "name": "Trail runners",
                "category": "shoes",
                "unit_price": "89.90",
                "quantity": 1,
            }
        ],
        "total": "80.91",
        "currency": "EUR",
        "discount_codes": [],
        "ordered_at": datetime.now(UTC).isoformat(),
    } | changes


def test_orders_need_an_integration_key(cloud: Cloud) -> None:
    assert cloud.client.post("/v1/webhooks/orders", json=pos_order()).status_code == 401
    bad = cloud.client.post("/v1/webhooks/orders", json=pos_order(), headers={"X-API-Key": "nope"})
    assert bad.status_code == 401
    assert cloud.rows(Order) == []


def test_a_till_order_redeems_codes_and_says_why_not(cloud: Cloud) -> None:
    alice = register(cloud.client)
    offer(cloud, alice.shopper_id, "SL-AAAA-AAAA-AAAA-AAAA", timedelta(hours=1))
    offer(cloud, alice.shopper_id, "SL-BBBB-BBBB-BBBB-BBBB", timedelta(hours=-1))
    headers = pos_headers(cloud, [])
    codes = [
        "sl-aaaa-aaaa-aaaa-aaaa",
        "SL-BBBB-BBBB-BBBB-BBBB",
        "SL-CCCC-CCCC-CCCC-CCCC",
        "SUMMER10",
    ]
    body = pos_order(cart_id="cart-SL-AAAA-AAAA-AAAA-AAAA", discount_codes=codes)
    response = cloud.client.post("/v1/webhooks/orders", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "order_ref": "pos-store-1-000123",
        "applied": True,
        "cart_converted": True,
        "redeemed": ["sl-aaaa-aaaa-aaaa-aaaa"],
        "refused": {
            "SL-BBBB-BBBB-BBBB-BBBB": "expired",
            "SL-CCCC-CCCC-CCCC-CCCC": "unknown",
            "SUMMER10": "not_a_code",
        },
    }
    # The cart named the shopper.
    assert cloud.rows(Order)[0].shopper_id == alice.shopper_id
    second = pos_order(order_ref="pos-store-1-000124", discount_codes=["SL-AAAA-AAAA-AAAA-AAAA"])
    response = cloud.client.post("/v1/webhooks/orders", json=second, headers=headers)
    assert response.json()["refused"] == {"SL-AAAA-AAAA-AAAA-AAAA": "already_redeemed"}
