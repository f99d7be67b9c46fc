"""What many tests need: polling with a deadline, an MQTT recorder, and an in-memory event sink."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import paho.mqtt.client as mqtt
from bleak.backends.scanner import AdvertisementData
from bluetooth_data_tools import parse_advertisement_data_bytes

from storelink.mqtt import make_client
from storelink.settings import MqttProtocol
from storelink.wire import GatewayStatus, PresenceEvent

T = TypeVar("T")

# The cloud's admin token in tests: CloudSettings(..., admin_token=ADMIN_TOKEN).
ADMIN_TOKEN = "test-admin-token"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def wait_for(condition: Callable[[], T], timeout_s: float = 15.0, what: str = "") -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s}s: {what or condition}")


class MqttRecorder:
    """A separate MQTT client, as the shopper app or an operator would subscribe: keeps it all."""

    def __init__(self, url: str, *topics: str, protocol: MqttProtocol = "5") -> None:
        self._messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client, address = make_client(url, protocol, f"recorder-{time.monotonic_ns()}")
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        assert subscribed.wait(5), "the recorder could not subscribe"

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._messages.append((message.topic, bytes(message.payload)))

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [payload for t, payload in self._messages if t == topic]

    def all(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self._messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class ListSink:
    """The gateway pipeline's ``EventSink``, in memory."""

    def __init__(self) -> None:
        self.events: list[PresenceEvent] = []
        self.statuses: list[GatewayStatus] = []

    def publish(self, event: PresenceEvent) -> bool:
        self.events.append(event)
        return True

    def publish_status(self, status: GatewayStatus) -> bool:
        self.statuses.append(status)
        return True


def bluez_advert(raw: bytes, rssi: int) -> AdvertisementData:
    """What bleak gives on BlueZ for these advertising data: parsed fields, no raw bytes."""
    name, uuids, service_data, manufacturer_data, tx_power = parse_advertisement_data_bytes(raw)
    return AdvertisementData(
        name,
        dict(manufacturer_data),
        dict(service_data),
        list(uuids),
        tx_power,
        rssi,
        ("/org/bluez/hci0/dev_5A_11_22_33_44_55", {}),
    )
