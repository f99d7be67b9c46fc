"""The gateway against real brokers: Mosquitto (MQTT 5) and the embedded amqtt (MQTT 3.1.1)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from firmware_sim.world import DEMO_STORE_BEACON_ID, demo_app_keys, demo_world
from gateway.config import GatewaySettings
from gateway.publish import MqttPublisher
from gateway.simulated import simulated_gateway
from storelink.broker import EmbeddedBroker, free_port
from storelink.clock import ScaledClock
from storelink.tokens import TOKEN_WINDOW_S, app_token, token_major_minor, token_ref, token_window
from storelink.wire import (
    GatewayState,
    GatewayStatus,
    PresenceEvent,
    PresenceKind,
    Subject,
    SubjectType,
    contains_mac_address,
    presence_topic,
    status_topic,
)
from tests.services import Mosquitto

SPEED = 20.0


class Collector:
    """A plain MQTT client that records what it receives on ``topic``."""

    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
    ) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        self.client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(message)

    def wait_subscribed(self) -> None:
        assert self._subscribed.wait(10), "no SUBACK"

    def received(self) -> list[mqtt.MQTTMessage]:
        with self._lock:
            return list(self.messages)

    def statuses(self) -> list[tuple[GatewayStatus, bool]]:
        return [
            (GatewayStatus.model_validate_json(m.payload), m.retain)
            for m in self.received()
            if m.topic.endswith("/status")
        ]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_gateway_publishes_presence_of_a_simulated_store(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # Start just after a token window opens, so every app token stays the same throughout.
    start = token_window(time.time()) * TOKEN_WINDOW_S + 1.0
    clock = ScaledClock(start=start, speed=SPEED)
    keys = demo_app_keys(3)
    settings = GatewaySettings(
        mqtt_url=mosquitto.url,
        mqtt_protocol="5",
        gateway_id="gw-1",
        exit_timeout_s=10,
        dwell_interval_s=10,
        store_beacons=[DEMO_STORE_BEACON_ID],
        outbox_path=tmp_path / "outbox.db",
    )
    world = demo_world(settings.app_uuid, start, keys, anonymous=2, seed=0)
    everything = Collector(mosquitto.host, mosquitto.port, "storelink/v1/#")
    everything.wait_subscribed()
    late: list[Collector] = []

    async def main() -> tuple[Any, float]:
        async with simulated_gateway(settings, clock, world) as gateway:
            await asyncio.sleep(1.0)
            late.append(Collector(mosquitto.host, mosquitto.port, status_topic("store-1", "gw-1")))
            await asyncio.sleep(3.0)  # 80 s of store time: everybody has come and gone
            stopped_at = clock.now()
        return gateway.result(), stopped_at

    counters, stopped_at = asyncio.run(main())
    topic = presence_topic("store-1", "gw-1")
    assert wait_until(
        lambda: any(s.state is GatewayState.OFFLINE for s, _ in everything.statuses())
    )
    messages = everything.received()
    everything.close()
    late[0].close()

    for message in messages:
        assert not contains_mac_address(message.payload.decode()), message.payload
    events = [PresenceEvent.model_validate_json(m.payload) for m in messages if m.topic == topic]
    assert len(events) == counters.events_published

    visits: dict[Subject, list[PresenceKind]] = {}
    for event in events:
        assert (event.store_id, event.gateway_id, event.zone_id) == ("store-1", "gw-1", "entrance")
        visits.setdefault(event.subject, []).append(event.kind)
        if event.kind is PresenceKind.EXIT:
            # Left and timed out well before the gateway stopped.
            assert event.ts < datetime.fromtimestamp(stopped_at - 5, UTC)
    expected_apps = {token_ref(*token_major_minor(app_token(k, token_window(start)))) for k in keys}
    assert {s.ref for s in visits if s.type is SubjectType.APP} == expected_apps
    assert Counter(s.type for s in visits)[SubjectType.ANONYMOUS] == 2
    assert SubjectType.BEACON not in {s.type for s in visits}, "the store beacon is not footfall"
    for kinds in visits.values():
        assert kinds[0] is PresenceKind.ENTER and kinds[-1] is PresenceKind.EXIT
        assert kinds.count(PresenceKind.ENTER) == kinds.count(PresenceKind.EXIT) == 1
    assert any(PresenceKind.DWELL in kinds for kinds in visits.values())

    # A client subscribing mid-run gets the retained online status at once.
    retained = [status for status, retain in late[0].statuses() if retain]
    assert retained and retained[0].state is GatewayState.ONLINE
    # The last word is offline, with the final counters.
    final, _ = everything.statuses()[-1]
    assert final.state is GatewayState.OFFLINE
    assert final.adverts_seen == counters.adverts_seen > 100
    assert final.events_published == counters.events_published
    assert final.decode_errors == counters.decode_errors == 0
    # Everything was delivered before the gateway said goodbye, and nothing had to be dropped.
    assert (final.outbox_depth, final.outbox_dropped) == (0, 0)
    # Anonymous phones were seen by their hardware addresses; none reached the disk.
    for stored in tmp_path.glob("outbox.db*"):
        assert not contains_mac_address(stored.read_bytes().decode("latin-1")), stored


def test_publisher_waits_for_a_broker_that_comes_up_late(tmp_path: Path) -> None:
    port = free_port()
    settings = GatewaySettings(
        mqtt_url=f"mqtt://127.0.0.1:{port}",
        mqtt_protocol="3.1.1",
        gateway_id="gw-late",
        outbox_path=tmp_path / "outbox.db",
    )
    event = PresenceEvent(
        store_id="store-1",
        gateway_id="gw-late",
        zone_id="entrance",
        kind=PresenceKind.ENTER,
        subject=Subject(type=SubjectType.APP, ref="104de62a"),
        ts=datetime.now(UTC),
        dwell_s=0,
        rssi=-60,
        distance_m=1.2,
    )

    async def main() -> tuple[bool, list[tuple[GatewayStatus, bool]]]:
        publisher = MqttPublisher(settings)
        publisher.start()
        assert publisher.publish(event), "queued while the broker is down"
        await asyncio.sleep(0.5)
        assert publisher.unacknowledged == 1
        async with EmbeddedBroker(port=port):
            for _ in range(200):
                if publisher.unacknowledged == 0:
                    break
                await asyncio.sleep(0.05)
            collector = Collector(
                "127.0.0.1",
                port,
                status_topic("store-1", "gw-late"),
                protocol=MQTTProtocolVersion.MQTTv311,
            )
            for _ in range(100):
                if collector.statuses():
                    break
                await asyncio.sleep(0.05)
            flushed = await asyncio.to_thread(publisher.stop)
            collector.close()
        return flushed, collector.statuses()

    flushed, statuses = asyncio.run(main())
    assert flushed
    assert statuses, "no retained status after the reconnect"
    status, retained = statuses[0]
    assert (status.state, retained) == (GatewayState.ONLINE, True)


GATEWAY_THAT_LOSES_POWER = """
import sys, time
from gateway.config import GatewaySettings
from gateway.publish import MqttPublisher
MqttPublisher(
    GatewaySettings(mqtt_url=sys.argv[1], gateway_id="gw-will", outbox_path=sys.argv[2])
).start()
time.sleep(60)
"""


def test_the_broker_marks_a_vanished_gateway_offline(mosquitto: Mosquitto, tmp_path: Path) -> None:
    collector = Collector(mosquitto.host, mosquitto.port, status_topic("store-1", "gw-will"))
    collector.wait_subscribed()
    child = subprocess.Popen(
        [sys.executable, "-c", GATEWAY_THAT_LOSES_POWER, mosquitto.url, str(tmp_path / "o.db")]
    )
    try:
        assert wait_until(lambda: len(collector.statuses()) == 1)
        child.kill()  # no DISCONNECT: the broker must publish the last will
        assert wait_until(lambda: len(collector.statuses()) == 2)
    finally:
        child.kill()
        child.wait(10)
        collector.close()
    (online, _), (will, _) = collector.statuses()
    assert online.state is GatewayState.ONLINE
    assert (will.state, will.gateway_id) == (GatewayState.OFFLINE, "gw-will")
    retained = Collector(mosquitto.host, mosquitto.port, status_topic("store-1", "gw-will"))
    try:
        assert wait_until(lambda: bool(retained.statuses()))
        [(status, was_retained)] = retained.statuses()
        assert (status.state, was_retained) == (GatewayState.OFFLINE, True)
    finally:
        retained.close()
