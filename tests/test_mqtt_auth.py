"""`storelink cloud mqtt-auth`: a real Mosquitto with the written password file and ACL lets each
gateway publish as itself only, and the cloud read (and ingest) everything."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cloud_api.app import create_app
from cloud_api.config import CloudSettings
from cloud_api.fleet.mqtt_auth import acl_file, mosquitto_hash, verify_mosquitto_hash
from cloud_api.ingest.consumer import PresenceConsumer
from storelink.cli import app as cli
from storelink.mqtt import make_client
from storelink.wire import (
    PresenceEvent,
    PresenceKind,
    Subject,
    SubjectType,
    config_topic,
    presence_topic,
)
from tests.helpers import ADMIN_HEADERS, ADMIN_TOKEN, MqttRecorder, wait_for
from tests.services import Mosquitto, running_mosquitto

CLOUD_USER = "storelink-cloud"
CLOUD_PASSWORD = "cloud pass/with:odd@chars"


def test_hash_has_mosquitto_passwd_format() -> None:
    # A line mosquitto_passwd 2.0 wrote for the password "secret".
    written = (
        "$7$101$Vmp/oXdv6bLzy/oV$t2+DXq4S75cnvRSwc2Su2ZIXbbaYO/aS295/D9cJkv0k90fXNWkOx2Tmm6gItIx3pU"
        "/6BlMcBWlF68fbGOSRpA=="
    )
    assert verify_mosquitto_hash("secret", written)
    assert not verify_mosquitto_hash("Secret", written)
    ours = mosquitto_hash("secret")
    assert ours.startswith("$7$101$") and verify_mosquitto_hash("secret", ours)


def url(broker: Mosquitto, user: str, password: str) -> str:
    return f"mqtt://{quote(user, safe='')}:{quote(password, safe='')}@{broker.host}:{broker.port}"


def provision(database_url: str) -> dict[str, str]:
    """Two stores with a gateway each; returns {gateway id: MQTT password}."""
    settings = CloudSettings(database_url=database_url, mqtt_enabled=False, admin_token=ADMIN_TOKEN)
    passwords = {}
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as client:
        for store, gateway in (("store-a", "gw-a"), ("store-b", "gw-b")):
            assert client.post("/v1/stores", json={"store_id": store, "name": store}).is_success
            answer = client.post(f"/v1/stores/{store}/gateways", json={"gateway_id": gateway})
            assert answer.status_code == 201, answer.text
            passwords[gateway] = answer.json()["mqtt_password"]
    return passwords


@pytest.fixture
def secured(database_url: str, tmp_path: Path) -> Iterator[tuple[Mosquitto, dict[str, str]]]:
    passwords = provision(database_url)
    out = tmp_path / "mosquitto-auth"
    result = CliRunner().invoke(
        cli,
        ["cloud", "mqtt-auth", "--out", str(out)],
        env={
            "STORELINK_DATABASE_URL": database_url,
            "STORELINK_MQTT_URL": (
                f"mqtt://{quote(CLOUD_USER)}:{quote(CLOUD_PASSWORD, safe='')}@127.0.0.1:1883"
            ),
        },
    )
    assert result.exit_code == 0, result.output
    assert "2 gateway(s)" in result.output
    assert (out / "passwd").stat().st_mode & 0o077 == 0
    config = f"password_file {out / 'passwd'}\nacl_file {out / 'acl'}\n"
    with running_mosquitto(config, anonymous=False) as broker:
        yield broker, passwords


def connect_result(broker_url: str) -> mqtt.ReasonCode | None:
    client, address = make_client(broker_url, "5", f"probe-{threading.get_ident()}")
    answered = threading.Event()
    result: list[mqtt.ReasonCode] = []

    def on_connect(
        _c: mqtt.Client, _u: object, _f: object, rc: mqtt.ReasonCode, _p: object
    ) -> None:
        result.append(rc)
        answered.set()

    client.on_connect = on_connect
    client.connect(address.host, address.port)
    client.loop_start()
    try:
        answered.wait(5)
    finally:
        client.disconnect()
        client.loop_stop()
    return result[0] if result else None


def event(store_id: str, gateway_id: str, ref: str) -> str:
    return PresenceEvent(
        store_id=store_id,
        gateway_id=gateway_id,
        zone_id="entrance",
        kind=PresenceKind.ENTER,
        subject=Subject(type=SubjectType.ANONYMOUS, ref=ref),
        ts=datetime.now(UTC),
        dwell_s=0,
        rssi=-60,
    ).model_dump_json()


def test_each_gateway_publishes_as_itself_only(
    secured: tuple[Mosquitto, dict[str, str]], database_url: str
) -> None:
    broker, passwords = secured
    cloud_url = url(broker, CLOUD_USER, CLOUD_PASSWORD)
    gateway_a = url(broker, "gw-a", passwords["gw-a"])

    wrong = connect_result(url(broker, "gw-a", passwords["gw-b"]))
    assert wrong is not None and wrong.is_failure
    assert connect_result(f"mqtt://{broker.host}:{broker.port}").is_failure  # type: ignore[union-attr]
    assert not connect_result(gateway_a).is_failure  # type: ignore[union-attr]

    # The cloud, as the ingest runs it: a shared subscription, with its own login.
    settings = CloudSettings(
        database_url=database_url, mqtt_url=cloud_url, mqtt_protocol="5", admin_token=ADMIN_TOKEN
    )
    app = create_app(settings)
    spy = MqttRecorder(cloud_url, "storelink/v1/#")
    with TestClient(app, headers=ADMIN_HEADERS) as client:
        consumer: PresenceConsumer = app.state.consumer
        assert consumer.wait_until_subscribed(10), "the cloud user could not subscribe"
        publisher, address = make_client(gateway_a, "5", "gw-a")
        publisher.connect(address.host, address.port)
        publisher.loop_start()
        try:
            # Another gateway's topic first: had it passed, it would arrive before the next one.
            forged = presence_topic("store-b", "gw-b")
            publisher.publish(forged, event("store-b", "gw-b", "forged"), qos=1).wait_for_publish(5)
            own = presence_topic("store-a", "gw-a")
            publisher.publish(own, event("store-a", "gw-a", "genuine"), qos=1).wait_for_publish(5)
            wait_for(lambda: spy.on(own), what="gateway A's own event at the cloud")
            wait_for(lambda: consumer.counters.presence_events == 1, what="the event ingested")
            assert spy.on(forged) == []
            visits = client.get("/v1/visits", params={"store_id": "store-b"}).json()["items"]
            assert visits == []

            # A config carries IRKs: gateway A reads its own, never another's.
            cloud, cloud_address = make_client(cloud_url, "5", "cloud-config")
            cloud.connect(cloud_address.host, cloud_address.port)
            cloud.loop_start()
            for store, gateway in (("store-b", "gw-b"), ("store-a", "gw-a")):
                topic = config_topic(store, gateway)
                cloud.publish(topic, gateway, qos=1, retain=True).wait_for_publish(5)
            cloud.disconnect()
            cloud.loop_stop()
            configs: list[tuple[str, bytes]] = []
            publisher.on_message = lambda _c, _u, m: configs.append((m.topic, m.payload))
            publisher.subscribe([(config_topic("store-b", "gw-b"), 1)])
            publisher.subscribe([(config_topic("store-a", "gw-a"), 1)])
            wait_for(lambda: configs, what="gateway A's retained config")
            assert configs == [(config_topic("store-a", "gw-a"), b"gw-a")]
        finally:
            publisher.disconnect()
            publisher.loop_stop()
            spy.close()


def test_the_acl_names_each_gateway_and_the_cloud() -> None:
    from cloud_api.fleet.mqtt_auth import GatewayLogin

    text = acl_file(CLOUD_USER, [GatewayLogin("store-a", "gw-a", "$7$...")])
    assert "user storelink-cloud\ntopic readwrite storelink/v1/#" in text
    assert "user gw-a\ntopic write storelink/v1/store-a/gw-a/#" in text
    assert "topic read storelink/v1/store-a/gw-a/config" in text
    assert "topic read storelink/v1/store-a/+/sightings" in text
