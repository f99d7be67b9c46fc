"""The first end-to-end path: shopper app -> gateway -> MQTT -> cloud -> discount -> notification.

Everything is real except the radio: a Mosquitto broker on a free port, the cloud app with its
MQTT consumer and a SQLite file, the gateway pipeline scanning firmware_sim through bleak's
scanner interface, and a separate paho client playing the shopper app.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cloud_api.app import create_app
from cloud_api.config import CloudSettings
from storelink.wire import (
    GatewayStatus,
    OfferNotification,
    PresenceEvent,
    contains_mac_address,
    notification_topic,
)
from tests.helpers import ADMIN_HEADERS, ADMIN_TOKEN, MqttRecorder, wait_for
from tests.services import Mosquitto
from tests.shopper_app import TRAIL_RUNNERS, cart_body, post_cart
from tests.simulated_store import run_simulated_store

SECRET = "e2e-webhook-secret"
SPEED = 10.0


@pytest.fixture
def spy(mosquitto: Mosquitto) -> Iterator[MqttRecorder]:
    spy = MqttRecorder(mosquitto.url, "storelink/#")
    yield spy
    spy.close()


def register(client: TestClient, personal_offers: bool = True) -> dict[str, Any]:
    response = client.post(
        "/v1/shoppers",
        json={
            "display_name": "E2E",
            "consent": {"personal_offers": personal_offers, "footfall_analytics": True},
            "consent_text_version": "test-1",
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def post_abandoned(client: TestClient, shopper_id: str, cart_id: str, updated_at: datetime) -> None:
    body = cart_body(shopper_id, updated_at, cart_id=cart_id, items=[TRAIL_RUNNERS])
    response = post_cart(client, SECRET, body)
    assert response.status_code == 202, response.text


def scan_store(url: str, app_keys: list[bytes], sim_seconds: float, outbox: Path) -> None:
    """The gateway scans a simulated store for ``sim_seconds`` of simulated time, then stops."""
    wall_seconds = sim_seconds / SPEED
    run_simulated_store(url, app_keys, outbox, wall_seconds=wall_seconds, speed=SPEED, seed=7)


def test_abandoned_cart_shopper_walks_in_and_receives_an_offer(
    mosquitto: Mosquitto, spy: MqttRecorder, tmp_path: Path
) -> None:
    settings = CloudSettings(
        mqtt_url=mosquitto.url,
        mqtt_protocol="5",
        database_url=f"sqlite:///{tmp_path / 'cloud.db'}",
        webhook_secret=SECRET,
        cart_abandon_after_s=3600,
        admin_token=ADMIN_TOKEN,
    )
    with TestClient(create_app(settings)) as client:
        abandoned = register(client)
        fresh = register(client)
        no_offers = register(client, personal_offers=False)
        now = datetime.now(UTC)
        post_abandoned(client, abandoned["shopper_id"], "cart-abandoned", now - timedelta(hours=3))
        post_abandoned(client, fresh["shopper_id"], "cart-fresh", now - timedelta(minutes=2))
        post_abandoned(client, no_offers["shopper_id"], "cart-no-consent", now - timedelta(hours=3))

        keys = [bytes.fromhex(s["app_key"]) for s in (abandoned, fresh, no_offers)]
        scan_store(mosquitto.url, keys, sim_seconds=60, outbox=tmp_path / "outbox.db")

        offers = wait_for(
            lambda: client.get(
                "/v1/offers", params={"shopper_id": abandoned["shopper_id"]}, headers=ADMIN_HEADERS
            ).json()["items"]
        )
        assert len(offers) == 1
        assert offers[0]["store_id"] == "store-1"
        for other in (fresh, no_offers):
            listed = client.get(
                "/v1/offers", params={"shopper_id": other["shopper_id"]}, headers=ADMIN_HEADERS
            ).json()["items"]
            assert listed == [], f"{other['shopper_id']} must not get an offer"

        topic = notification_topic(abandoned["shopper_id"])
        received = wait_for(lambda: spy.on(topic))
        notification = OfferNotification.model_validate_json(received[0])
        assert notification.offer_code == offers[0]["code"]
        assert [item.sku for item in notification.items] == ["SHOE-042"]

        visits = client.get(
            "/v1/visits", params={"store_id": "store-1"}, headers=ADMIN_HEADERS
        ).json()["items"]
        resolved = {v["shopper_id"] for v in visits if v["shopper_id"]}
        assert {abandoned["shopper_id"], fresh["shopper_id"], no_offers["shopper_id"]} <= resolved
        assert any(v["subject_type"] == "anonymous" for v in visits)

    presence = [
        PresenceEvent.model_validate_json(p)
        for t, p in spy.all()
        if t == "storelink/v1/store-1/gw-1/presence"
    ]
    kinds = {e.kind for e in presence}
    assert {"enter", "exit"} <= kinds
    statuses = [
        GatewayStatus.model_validate_json(p) for p in spy.on("storelink/v1/store-1/gw-1/status")
    ]
    assert statuses[0].state == "online"
    assert statuses[-1].state == "offline"


def test_no_published_payload_contains_a_mac_address(
    mosquitto: Mosquitto, spy: MqttRecorder, tmp_path: Path
) -> None:
    scan_store(mosquitto.url, [bytes(range(32))], sim_seconds=40, outbox=tmp_path / "outbox.db")
    messages = spy.all()
    assert any(t.endswith("/presence") for t, _ in messages)
    for topic, payload in messages:
        assert not contains_mac_address(topic), topic
        assert not contains_mac_address(payload.decode()), payload
