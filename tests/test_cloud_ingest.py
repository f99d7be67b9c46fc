"""The MQTT consumer inside the running app, against a real Mosquitto and a SQLite file."""

from __future__ import annotations

import gc
import json
import logging
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud_api.app import create_app
from cloud_api.config import CloudSettings
from cloud_api.deps import CloudContext
from cloud_api.ingest.consumer import GC_YOUNG_THRESHOLD, PresenceConsumer
from cloud_api.ingest.resolve import shopper_token_ref
from cloud_api.store.models import Base
from storelink.broker import free_port, wait_for_port
from storelink.mqtt import make_client
from storelink.tokens import token_window
from storelink.wire import (
    DEADLETTER_TOPIC,
    TOPIC_ROOT,
    DeadLetter,
    GatewayState,
    GatewayStatus,
    OfferNotification,
    PresenceEvent,
    PresenceKind,
    Subject,
    SubjectType,
    notification_topic,
    presence_topic,
    status_topic,
)
from tests.helpers import ADMIN_HEADERS, ADMIN_TOKEN, MqttRecorder, wait_for
from tests.services import Mosquitto, mosquitto_binary
from tests.test_cloud_api import SECRET, cart_body, post_signed, register


class Cloud:
    def __init__(self, app: FastAPI, client: TestClient) -> None:
        self.app, self.client = app, client

    @property
    def consumer(self) -> PresenceConsumer:
        consumer: PresenceConsumer = self.app.state.consumer
        return consumer

    @property
    def context(self) -> CloudContext:
        context: CloudContext = self.app.state.context
        return context

    def summary(self) -> dict[str, int]:
        summary: dict[str, int] = self.client.get("/v1/stats/summary").json()
        return summary


def settings_for(url: str, tmp_path: Path) -> CloudSettings:
    return CloudSettings(
        mqtt_url=url,
        mqtt_protocol="5",
        database_url=f"sqlite:///{tmp_path / 'cloud.db'}",
        webhook_secret=SECRET,
        admin_token=ADMIN_TOKEN,
    )


@pytest.fixture
def cloud(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[Cloud]:
    app = create_app(settings_for(mosquitto.url, tmp_path))
    with TestClient(app, headers=ADMIN_HEADERS) as client:
        cloud = Cloud(app, client)
        assert cloud.consumer.wait_until_subscribed(10), "the consumer never subscribed"
        yield cloud


@pytest.fixture
def listener(mosquitto: Mosquitto) -> Iterator[MqttRecorder]:
    listener = MqttRecorder(
        mosquitto.url, f"{TOPIC_ROOT}/shoppers/+/notifications", DEADLETTER_TOPIC
    )
    yield listener
    listener.close()


def publish(url: str, topic: str, payload: str | bytes) -> None:
    client, address = make_client(url, "5", f"test-gateway-{time.monotonic_ns()}")
    client.connect(address.host, address.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def enter(subject: Subject, ts: datetime | None = None, **changes: Any) -> PresenceEvent:
    event = PresenceEvent(
        store_id="store-1",
        gateway_id="gw-1",
        zone_id="entrance",
        kind=PresenceKind.ENTER,
        subject=subject,
        ts=ts or datetime.now(UTC),
        dwell_s=0,
        rssi=-58,
        distance_m=1.2,
    )
    return event.model_copy(update=changes)


def send(url: str, event: PresenceEvent) -> None:
    publish(url, presence_topic(event.store_id, event.gateway_id), event.model_dump_json())


ANONYMOUS = Subject(type=SubjectType.ANONYMOUS, ref="anon-7f3a")
GATEWAY_TOPIC = presence_topic("store-1", "gw-1")


def test_an_abandoned_cart_shopper_walking_in_is_sent_an_offer(
    cloud: Cloud, listener: MqttRecorder, mosquitto: Mosquitto
) -> None:
    shopper = register(cloud.client)
    shopper_id = shopper["shopper_id"]
    now = datetime.now(UTC)
    assert (
        post_signed(cloud.client, cart_body(shopper_id, now - timedelta(hours=3))).status_code
        == 202
    )
    ref = shopper_token_ref(bytes.fromhex(shopper["app_key"]), token_window(now.timestamp()))

    send(mosquitto.url, enter(Subject(type=SubjectType.APP, ref=ref), now))

    offers = wait_for(
        lambda: cloud.client.get("/v1/offers", params={"shopper_id": shopper_id}).json()["items"]
    )
    assert len(offers) == 1
    assert offers[0]["cart_id"] == "cart-1"
    visits = cloud.client.get("/v1/visits", params={"store_id": "store-1"}).json()["items"]
    assert [(v["shopper_id"], v["subject_type"]) for v in visits] == [(shopper_id, "app")]
    assert offers[0]["visit_id"] == visits[0]["id"]

    received = wait_for(lambda: listener.on(notification_topic(shopper_id)))
    notification = OfferNotification.model_validate_json(received[0])
    assert notification.offer_code == offers[0]["code"]
    assert notification.shopper_ref == shopper_id
    assert notification.store_id == "store-1"
    assert [item.sku for item in notification.items] == ["SHOE-042", "SOCK-007"]
    assert notification.expires_at == now + timedelta(hours=2)

    counters = cloud.consumer.counters
    assert (counters.presence_events, counters.offers, counters.notifications) == (1, 1, 1)
    assert cloud.summary() == {
        "visits": 1,
        "offers": 1,
        "notifications": 1,
        "presence_events": 1,
        "invalid_payloads": 0,
    }


def test_malformed_messages_are_dead_lettered_and_the_consumer_goes_on(
    cloud: Cloud, listener: MqttRecorder, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cloud_api.ingest.consumer")
    valid = enter(ANONYMOUS)
    schema_violation = json.loads(valid.model_dump_json()) | {"kind": "teleport", "rssi": 99}
    other_store = enter(ANONYMOUS, store_id="store-2").model_dump_json()
    bad = [
        (GATEWAY_TOPIC, b'{"event_id": ', "invalid JSON"),
        (GATEWAY_TOPIC, json.dumps(schema_violation).encode(), "schema violation: kind:"),
        (GATEWAY_TOPIC, other_store.encode(), "topic mismatch"),
    ]
    for topic, payload, _ in bad:
        publish(mosquitto.url, topic, payload)

    wait_for(lambda: len(listener.on(DEADLETTER_TOPIC)) == 3)
    letters = [DeadLetter.model_validate_json(p) for p in listener.on(DEADLETTER_TOPIC)]
    for letter, (topic, payload, reason) in zip(letters, bad, strict=True):
        assert letter.topic == topic
        assert letter.payload == payload.decode()
        assert reason in letter.reason
    assert "rssi" in letters[1].reason
    assert "'store-1'" in letters[2].reason and "'store-2'" in letters[2].reason

    refused = [
        r
        for r in caplog.records
        if r.name == "cloud_api.ingest.consumer" and r.levelno == logging.WARNING
    ]
    assert [reason in r.getMessage() for r, (_, _, reason) in zip(refused, bad, strict=True)] == [
        True
    ] * 3
    assert cloud.consumer.counters.invalid_payloads == 3
    assert cloud.summary()["invalid_payloads"] == 3
    assert cloud.summary()["presence_events"] == 0

    send(mosquitto.url, valid)
    wait_for(lambda: cloud.summary()["presence_events"] == 1)
    assert cloud.summary()["visits"] == 1
    assert cloud.consumer.counters.invalid_payloads == 3


def test_the_consumer_keeps_the_startup_heap_out_of_collections_until_it_stops(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    assert gc.get_freeze_count() == 0
    app = create_app(settings_for(mosquitto.url, tmp_path))
    with TestClient(app, headers=ADMIN_HEADERS) as client:
        cloud = Cloud(app, client)
        assert cloud.consumer.wait_until_subscribed(10), "the consumer never subscribed"
        # The modules, models and the app: tens of thousands of objects.
        assert gc.get_freeze_count() > 10_000
        assert gc.get_threshold()[0] >= GC_YOUNG_THRESHOLD
        send(mosquitto.url, enter(ANONYMOUS))
        wait_for(lambda: cloud.consumer.counters.presence_events == 1)
    assert gc.get_freeze_count() == 0


def test_a_redelivered_event_is_stored_once(cloud: Cloud, mosquitto: Mosquitto) -> None:
    event = enter(ANONYMOUS)
    send(mosquitto.url, event)
    send(mosquitto.url, event)
    wait_for(lambda: cloud.consumer.counters.duplicates == 1)
    assert cloud.consumer.counters.presence_events == 1
    summary = cloud.summary()
    assert (summary["presence_events"], summary["visits"]) == (1, 1)


def test_a_visit_is_stitched_from_enter_dwell_and_exit(cloud: Cloud, mosquitto: Mosquitto) -> None:
    t0 = datetime.now(UTC)
    send(mosquitto.url, enter(ANONYMOUS, t0))
    send(
        mosquitto.url,
        enter(ANONYMOUS, t0 + timedelta(seconds=60), kind=PresenceKind.DWELL, dwell_s=60.0),
    )
    send(
        mosquitto.url,
        enter(ANONYMOUS, t0 + timedelta(seconds=90), kind=PresenceKind.EXIT, dwell_s=90.0),
    )
    wait_for(lambda: cloud.consumer.counters.presence_events == 3)
    (visit,) = cloud.client.get("/v1/visits", params={"store_id": "store-1"}).json()["items"]
    assert visit["subject_type"] == "anonymous"
    assert visit["shopper_id"] is None
    assert visit["dwell_s"] == 90
    assert visit["ended_at"] is not None


def test_the_latest_gateway_status_is_kept(cloud: Cloud, mosquitto: Mosquitto) -> None:
    t0 = datetime.now(UTC)
    newer = GatewayStatus(
        store_id="store-1",
        gateway_id="gw-1",
        state=GatewayState.ONLINE,
        ts=t0,
        adverts_seen=40,
        outbox_depth=3,
        uptime_s=3600.5,
        adverts_per_s=212.0,
        cpu_temp_c=51.2,
        scanner_restarts=1,
        config_version=7,
        config_error="zones.0.enter_distance_m: Input should be greater than 0",
    )
    # The broker replays a retained status on reconnection: old news must not win.
    older = newer.model_copy(
        update={"state": GatewayState.OFFLINE, "ts": t0 - timedelta(minutes=5)}
    )
    publish(mosquitto.url, status_topic("store-1", "gw-1"), newer.model_dump_json())
    publish(mosquitto.url, status_topic("store-1", "gw-1"), older.model_dump_json())
    wait_for(lambda: cloud.consumer.counters.gateway_statuses == 2)
    (gateway,) = cloud.client.get("/v1/gateways", params={"store_id": "store-1"}).json()
    assert gateway["gateway_id"] == "gw-1"
    assert (gateway["state"], gateway["adverts_seen"], gateway["outbox_depth"]) == ("online", 40, 3)
    health = {
        k: gateway[k] for k in ("uptime_s", "adverts_per_s", "cpu_temp_c", "scanner_restarts")
    }
    assert health == {
        "uptime_s": 3600.5,
        "adverts_per_s": 212.0,
        "cpu_temp_c": 51.2,
        "scanner_restarts": 1,
    }
    assert (gateway["config_version"], gateway["config_error"]) == (7, newer.config_error)
    assert cloud.client.get("/v1/gateways", params={"store_id": "store-2"}).json() == []


def test_a_processing_failure_costs_one_message_not_the_consumer(
    cloud: Cloud, listener: MqttRecorder, mosquitto: Mosquitto
) -> None:
    with cloud.context.sessions.begin() as session:
        engine = session.get_bind()
        session.execute(sa.text("DROP TABLE visits"))
    lost = enter(ANONYMOUS)
    send(mosquitto.url, lost)
    wait_for(lambda: cloud.consumer.counters.processing_errors == 1)
    (letter,) = wait_for(lambda: listener.on(DEADLETTER_TOPIC))
    assert DeadLetter.model_validate_json(letter).reason.startswith(
        "processing failed: OperationalError"
    )

    assert isinstance(engine, sa.Engine)
    Base.metadata.tables["visits"].create(engine)
    send(mosquitto.url, enter(ANONYMOUS))
    wait_for(lambda: cloud.consumer.counters.presence_events == 1)
    # The failed event was rolled back whole: only the second one is stored.
    assert cloud.summary()["presence_events"] == 1


def start_mosquitto(port: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    conf = tmp_path / "late-mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    process = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stderr=subprocess.DEVNULL)
    wait_for_port("127.0.0.1", port)
    return process


def test_the_app_starts_without_a_broker_and_consumes_once_one_is_up(tmp_path: Path) -> None:
    port = free_port()
    url = f"mqtt://127.0.0.1:{port}"
    app = create_app(settings_for(url, tmp_path))
    with TestClient(app, headers=ADMIN_HEADERS) as client:
        cloud = Cloud(app, client)
        assert client.get("/healthz").json()["mqtt"] == "disconnected"
        assert register(client)["shopper_id"]

        broker = start_mosquitto(port, tmp_path)
        try:
            assert cloud.consumer.wait_until_subscribed(40), "the consumer never reconnected"
            assert client.get("/healthz").json()["mqtt"] == "connected"
            send(url, enter(ANONYMOUS))
            wait_for(lambda: cloud.summary()["presence_events"] == 1)
        finally:
            broker.terminate()
            broker.wait(timeout=10)
