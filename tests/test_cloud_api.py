"""The HTTP API on a real database (SQLite file and PostgreSQL), without the MQTT consumer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cloud_api.app import create_app
from cloud_api.auth.signing import sign_body
from cloud_api.config import CloudSettings
from cloud_api.ingest.presence_service import PresenceOutcome, PresenceService
from cloud_api.match.offer_policy import offer_policy
from cloud_api.store.models import Base, Cart, Shopper
from storelink.wire import notification_topic
from tests import shopper_app
from tests.helpers import ADMIN_HEADERS, ADMIN_TOKEN
from tests.shopper_app import App, cart_body, post_cart

SECRET = "api-test-secret"
CONSENT = {"personal_offers": True, "footfall_analytics": True}


@dataclass
class Cloud(shopper_app.Cloud):
    def count(self, model: type[Base]) -> int:
        with self.context.sessions() as session:
            return session.scalar(sa.select(sa.func.count()).select_from(model)) or 0


def running_cloud(database_url: str, **overrides: Any) -> Iterator[Cloud]:
    settings = CloudSettings(
        database_url=database_url,
        mqtt_enabled=False,
        webhook_secret=SECRET,
        admin_token=ADMIN_TOKEN,
        **overrides,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        yield Cloud(app, client)


@pytest.fixture
def cloud(database_url: str) -> Iterator[Cloud]:
    yield from running_cloud(database_url)


def register(client: TestClient, personal_offers: bool = True) -> dict[str, Any]:
    response = client.post(
        "/v1/shoppers",
        json={
            "display_name": "Alice",
            "consent": {"personal_offers": personal_offers, "footfall_analytics": True},
            "consent_text_version": "2030-01",
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def post_signed(client: TestClient, body: bytes, signature: str | None = None) -> Any:
    return post_cart(client, SECRET, body, signature)


def walk_in(cloud: Cloud, shopper: dict[str, Any], ts: datetime) -> PresenceOutcome:
    """The shopper's phone is seen entering store-1, as the MQTT consumer would hand it on."""
    context = cloud.context
    service = PresenceService(context.sessions, context.directory, offer_policy(context.settings))
    event = App(shopper["shopper_id"], bytes.fromhex(shopper["app_key"])).seen(ts)
    return service.handle(event, datetime.now(UTC))


def offer_for(cloud: Cloud, ts: datetime) -> str:
    shopper = register(cloud.client)
    assert (
        post_signed(
            cloud.client, cart_body(shopper["shopper_id"], ts - timedelta(hours=3))
        ).status_code
        == 202
    )
    outcome = walk_in(cloud, shopper, ts)
    assert outcome.notification is not None, outcome.decision
    return outcome.notification.offer_code


# --- shoppers -----------------------------------------------------------------------------------


def test_registration_returns_the_app_key_once(cloud: Cloud) -> None:
    created = register(cloud.client)
    shopper_id = created["shopper_id"]
    assert shopper_id.startswith("shp_")
    assert len(bytes.fromhex(created["app_key"])) == 32
    assert created["notification_topic"] == notification_topic(shopper_id)
    assert created["consent"]["personal_offers"] is True
    assert created["consent"]["text_version"] == "2030-01"

    assert cloud.client.get(f"/v1/shoppers/{shopper_id}").status_code == 401
    read = cloud.client.get(f"/v1/shoppers/{shopper_id}", headers=ADMIN_HEADERS)
    assert read.status_code == 200
    assert "app_key" not in read.json()
    assert created["app_key"] not in read.text
    assert read.json()["display_name"] == "Alice"
    assert read.json()["consent"] == created["consent"]


@pytest.mark.parametrize(
    "body",
    [
        {"display_name": "x", "consent_text_version": "v1"},
        {"consent": {"personal_offers": True}, "consent_text_version": "v1"},
        {"consent": {"footfall_analytics": False}, "consent_text_version": "v1"},
        {
            "consent": {"personal_offers": "yes", "footfall_analytics": True},
            "consent_text_version": "v1",
        },
        {"consent": {"personal_offers": 1, "footfall_analytics": 0}, "consent_text_version": "v1"},
        {"consent": {"personal_offers": True, "footfall_analytics": True}},
        {
            "consent": {"personal_offers": True, "footfall_analytics": True},
            "consent_text_version": "",
        },
        {"consent": CONSENT, "consent_text_version": "v1", "marketing_emails": True},
    ],
    ids=[
        "no-consent",
        "no-footfall",
        "no-offers",
        "string",
        "integers",
        "no-version",
        "empty-version",
        "extra",
    ],
)
def test_consent_must_be_explicit(cloud: Cloud, body: dict[str, Any]) -> None:
    response = cloud.client.post("/v1/shoppers", json=body)
    assert response.status_code == 422, response.text
    assert cloud.count(Shopper) == 0


def test_unknown_shopper_is_404(cloud: Cloud) -> None:
    response = cloud.client.get("/v1/shoppers/shp_nobody", headers=ADMIN_HEADERS)
    assert response.status_code == 404
    assert "shp_nobody" in response.json()["detail"]


def test_consent_can_be_withdrawn(cloud: Cloud) -> None:
    shopper = register(cloud.client)
    ts = datetime.now(UTC)
    post_signed(cloud.client, cart_body(shopper["shopper_id"], ts - timedelta(hours=3)))
    app = App(shopper["shopper_id"], bytes.fromhex(shopper["app_key"]))
    response = app.request(
        cloud.client,
        "PUT",
        f"/v1/shoppers/{shopper['shopper_id']}/consent",
        {
            "consent": {"personal_offers": False, "footfall_analytics": False},
            "consent_text_version": "2030-02",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["consent"]["personal_offers"] is False
    assert response.json()["consent"]["text_version"] == "2030-02"
    # No longer recognised at all: no offer, and the visit is anonymous.
    outcome = walk_in(cloud, shopper, ts)
    assert outcome.shopper_id is None
    assert outcome.notification is None
    visits = cloud.client.get(
        "/v1/visits", params={"store_id": "store-1"}, headers=ADMIN_HEADERS
    ).json()["items"]
    assert [v["shopper_id"] for v in visits] == [None]


# --- cart webhooks ------------------------------------------------------------------------------


def test_webhook_without_signature_is_refused_and_nothing_stored(cloud: Cloud) -> None:
    shopper = register(cloud.client)
    response = cloud.client.post(
        "/v1/webhooks/carts", content=cart_body(shopper["shopper_id"], datetime.now(UTC))
    )
    assert response.status_code == 401
    assert "missing X-Storelink-Signature" in response.json()["detail"]
    assert cloud.count(Cart) == 0


@pytest.mark.parametrize(
    "forge",
    [
        lambda body: sign_body("not-the-secret", body),
        lambda body: sign_body(SECRET, body + b" "),
        lambda body: sign_body(SECRET, body).removeprefix("sha256="),
        lambda body: "sha256=" + "0" * 64,
    ],
    ids=["wrong-secret", "other-body", "no-scheme", "zeros"],
)
def test_webhook_with_forged_signature_is_refused_and_nothing_stored(
    cloud: Cloud, forge: Any
) -> None:
    shopper = register(cloud.client)
    body = cart_body(shopper["shopper_id"], datetime.now(UTC))
    response = post_signed(cloud.client, body, forge(body))
    assert response.status_code == 401
    assert "does not match the body" in response.json()["detail"]
    assert cloud.count(Cart) == 0


def test_signature_is_checked_before_the_body_is_parsed(cloud: Cloud) -> None:
    response = post_signed(cloud.client, b"{not json", sign_body("wrong", b"{not json"))
    assert response.status_code == 401


def test_webhooks_answer_503_until_a_secret_is_configured(database_url: str) -> None:
    settings = CloudSettings(database_url=database_url, mqtt_enabled=False)
    with TestClient(create_app(settings)) as client:
        body = cart_body("shp_x", datetime.now(UTC))
        response = client.post(
            "/v1/webhooks/carts",
            content=body,
            headers={"X-Storelink-Signature": sign_body("", body)},
        )
    assert response.status_code == 503
    assert "STORELINK_WEBHOOK_SECRET" in response.json()["detail"]


def test_signed_cart_is_stored(cloud: Cloud) -> None:
    shopper = register(cloud.client)
    updated = datetime(2030, 5, 1, 12, 30, tzinfo=UTC)
    response = post_signed(cloud.client, cart_body(shopper["shopper_id"], updated))
    assert response.status_code == 202, response.text
    assert response.json() == {"cart_id": "cart-1", "status": "open", "applied": True}
    with cloud.context.sessions() as session:
        cart = session.get_one(Cart, "cart-1")
        assert cart.shopper_id == shopper["shopper_id"]
        assert cart.total == Decimal("114.90")
        assert cart.updated_at == updated
        assert cart.updated_at.tzinfo is not None
        assert [item["sku"] for item in cart.items] == ["SHOE-042", "SOCK-007"]


def test_an_older_cart_update_is_ignored_and_a_newer_one_applied(cloud: Cloud) -> None:
    shopper_id = register(cloud.client)["shopper_id"]
    t = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    assert post_signed(cloud.client, cart_body(shopper_id, t)).json()["applied"] is True

    stale = post_signed(
        cloud.client, cart_body(shopper_id, t - timedelta(minutes=1), status="ordered")
    )
    assert stale.status_code == 202
    assert stale.json() == {"cart_id": "cart-1", "status": "open", "applied": False}

    newer = post_signed(
        cloud.client, cart_body(shopper_id, t + timedelta(minutes=1), status="ordered")
    )
    assert newer.json() == {"cart_id": "cart-1", "status": "ordered", "applied": True}
    with cloud.context.sessions() as session:
        assert session.get_one(Cart, "cart-1").updated_at == t + timedelta(minutes=1)


def test_cart_for_an_unknown_shopper_is_refused(cloud: Cloud) -> None:
    response = post_signed(cloud.client, cart_body("shp_nobody", datetime.now(UTC)))
    assert response.status_code == 422
    assert "shp_nobody" in response.json()["detail"]
    assert cloud.count(Cart) == 0


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "lost"},
        {"currency": "euro"},
        {"updated_at": "2030-05-01T12:00:00"},
        {
            "items": [
                {"sku": "X", "name": "x", "category": "c", "unit_price": "1.00", "quantity": 0}
            ]
        },
        {"total": "-1"},
    ],
    ids=["status", "currency", "naive-time", "zero-quantity", "negative-total"],
)
def test_signed_but_invalid_cart_is_422(cloud: Cloud, changes: dict[str, Any]) -> None:
    shopper_id = register(cloud.client)["shopper_id"]
    body = json.loads(cart_body(shopper_id, datetime.now(UTC))) | changes
    response = post_signed(cloud.client, json.dumps(body).encode())
    assert response.status_code == 422, response.text
    field = next(iter(changes))
    assert any(error["loc"][:2] == ["body", field] for error in response.json()["errors"])
    assert cloud.count(Cart) == 0


# --- offers -------------------------------------------------------------------------------------


def test_an_offer_redeems_once(cloud: Cloud) -> None:
    code = offer_for(cloud, datetime.now(UTC))
    first = cloud.client.post(f"/v1/offers/{code}/redeem", headers=ADMIN_HEADERS)
    assert first.status_code == 200, first.text
    assert first.json()["code"] == code
    assert first.json()["redeemed_at"] is not None

    second = cloud.client.post(f"/v1/offers/{code}/redeem", headers=ADMIN_HEADERS)
    assert second.status_code == 409
    assert "already redeemed" in second.json()["detail"]
    # As typed at a till: lower case, no dashes. Still the same code, still redeemed.
    assert (
        cloud.client.post(
            f"/v1/offers/{code.lower().replace('-', '')}/redeem", headers=ADMIN_HEADERS
        ).status_code
        == 409
    )


def test_concurrent_redemptions_of_one_code_succeed_once(cloud: Cloud) -> None:
    code = offer_for(cloud, datetime.now(UTC))
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(
                lambda _: (
                    cloud.client.post(
                        f"/v1/offers/{code}/redeem", headers=ADMIN_HEADERS
                    ).status_code
                ),
                range(8),
            )
        )
    assert sorted(statuses) == [200] + [409] * 7


def test_an_expired_offer_is_gone(cloud: Cloud) -> None:
    # Walked in three hours ago; the offer lived two.
    code = offer_for(cloud, datetime.now(UTC) - timedelta(hours=3))
    response = cloud.client.post(f"/v1/offers/{code}/redeem", headers=ADMIN_HEADERS)
    assert response.status_code == 410
    assert "expired" in response.json()["detail"]


@pytest.mark.parametrize("code", ["SL-0000-0000-0000-0000", "not-a-code"])
def test_an_unknown_code_is_404(cloud: Cloud, code: str) -> None:
    assert cloud.client.post(f"/v1/offers/{code}/redeem", headers=ADMIN_HEADERS).status_code == 404


def test_offers_and_visits_are_listed_newest_first(cloud: Cloud) -> None:
    shopper = register(cloud.client)
    shopper_id = shopper["shopper_id"]
    now = datetime.now(UTC)
    for number, hours_ago in enumerate((30, 2), start=1):
        body = cart_body(shopper_id, now - timedelta(hours=hours_ago + 3), cart_id=f"cart-{number}")
        assert post_signed(cloud.client, body).status_code == 202
    walk_in(cloud, shopper, now - timedelta(hours=30))
    walk_in(cloud, shopper, now - timedelta(hours=2))

    offers = cloud.client.get(
        "/v1/offers", params={"shopper_id": shopper_id}, headers=ADMIN_HEADERS
    ).json()["items"]
    assert [o["cart_id"] for o in offers] == ["cart-2", "cart-1"]
    assert Decimal(offers[0]["percent_off"]) == Decimal("10")
    assert offers[0]["items"][0]["sku"] == "SHOE-042"
    assert offers[0]["visit_id"] is not None
    limited = cloud.client.get(
        "/v1/offers", params={"shopper_id": shopper_id, "limit": 1}, headers=ADMIN_HEADERS
    ).json()
    assert [o["cart_id"] for o in limited["items"]] == ["cart-2"]
    rest = cloud.client.get(
        "/v1/offers",
        params={"shopper_id": shopper_id, "limit": 1, "cursor": limited["next_cursor"]},
        headers=ADMIN_HEADERS,
    ).json()
    assert [o["cart_id"] for o in rest["items"]] == ["cart-1"] and rest["next_cursor"] is None
    other = cloud.client.get(
        "/v1/offers", params={"shopper_id": "shp_other"}, headers=ADMIN_HEADERS
    )
    assert other.json() == {"items": [], "next_cursor": None}

    visits = cloud.client.get(
        "/v1/visits", params={"store_id": "store-1"}, headers=ADMIN_HEADERS
    ).json()["items"]
    assert len(visits) == 2
    assert visits[0]["started_at"] > visits[1]["started_at"]
    assert {v["shopper_id"] for v in visits} == {shopper_id}
    assert visits[0]["zones"] == ["entrance"]
    assert (
        cloud.client.get(
            "/v1/visits", params={"store_id": "store-1", "limit": 0}, headers=ADMIN_HEADERS
        ).status_code
        == 422
    )


def test_stats_summary_counts_what_is_stored(cloud: Cloud) -> None:
    assert cloud.client.get("/v1/stats/summary", headers=ADMIN_HEADERS).json() == {
        "visits": 0,
        "offers": 0,
        "notifications": 0,
        "presence_events": 0,
        "invalid_payloads": 0,
    }
    offer_for(cloud, datetime.now(UTC))
    assert cloud.client.get("/v1/stats/summary", headers=ADMIN_HEADERS).json() == {
        "visits": 1,
        "offers": 1,
        "notifications": 1,
        "presence_events": 1,
        "invalid_payloads": 0,
    }


def test_health_reports_the_database_and_the_disabled_consumer(cloud: Cloud) -> None:
    response = cloud.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "mqtt": "disabled"}
