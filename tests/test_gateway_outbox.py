"""Store and forward: the gateway's on-disk outbox, alone and under broker outages and crashes.

The broker tests restart Mosquitto on the same port and persistence folder, so that the test's
subscriber keeps its session (and its queue of QoS 1 messages) across the restart, as a cloud
consumer with a persistent session would: every event the gateway delivers reaches it.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config import GatewaySettings
from gateway.outbox import MEMORY, Outbox, OutboxLockedError
from gateway.publish import SEND_WINDOW, MqttPublisher
from storelink.broker import free_port
from storelink.wire import (
    GatewayState,
    GatewayStatus,
    PresenceEvent,
    PresenceKind,
    Subject,
    SubjectType,
    presence_topic,
)
from tests.services import running_mosquitto

ROOT = Path(__file__).resolve().parent.parent
BASE_TS = 1_764_000_000
TOPIC = presence_topic("store-1", "gw-1")


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def make_event(index: int, gateway_id: str = "gw-1") -> PresenceEvent:
    """Event number ``index``: its subject ref and its ts both tell the index back."""
    return PresenceEvent(
        store_id="store-1",
        gateway_id=gateway_id,
        zone_id="entrance",
        kind=PresenceKind.ENTER,
        subject=Subject(type=SubjectType.APP, ref=f"{index:08x}"),
        ts=datetime.fromtimestamp(BASE_TS + index, UTC),
        dwell_s=0,
        rssi=-60,
        distance_m=1.0,
    )


def index_of(event: PresenceEvent) -> int:
    return int(event.subject.ref, 16)


# --- the outbox alone ---------------------------------------------------------------------------


def test_messages_come_out_in_order_until_acknowledged(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as outbox:
        for index in range(5):
            assert outbox.append(f"e{index}", TOPIC, f"payload {index}".encode())
        assert outbox.depth() == 5
        entries = outbox.peek(3)
        assert [e.event_id for e in entries] == ["e0", "e1", "e2"]
        assert [e.payload for e in entries] == [b"payload 0", b"payload 1", b"payload 2"]
        assert all(e.topic == TOPIC and e.enqueued_at > 0 for e in entries)
        assert entries[0].seq < entries[1].seq < entries[2].seq
        # Reading past what was sent, as the sender does.
        assert [e.event_id for e in outbox.peek(10, after_seq=entries[2].seq)] == ["e3", "e4"]

        assert outbox.ack(entries[1].seq)
        assert not outbox.ack(entries[1].seq), "already gone"
        assert outbox.ack_many([entries[0].seq, entries[2].seq, 10_000]) == 2
        assert [e.event_id for e in outbox.peek(10)] == ["e3", "e4"]
        assert outbox.depth() == 2
        assert outbox.dropped == 0


def test_an_event_is_stored_once(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as outbox:
        assert outbox.append("e0", TOPIC, b"first")
        assert not outbox.append("e0", TOPIC, b"again")
        assert [e.payload for e in outbox.peek(10)] == [b"first"]
        assert outbox.depth() == 1


def test_a_full_outbox_drops_the_oldest_and_counts_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="gateway.outbox"),
        Outbox(tmp_path / "outbox.db", max_events=3) as outbox,
    ):
        for index in range(7):
            assert outbox.append(f"e{index}", TOPIC, b"x")
        assert outbox.depth() == 3
        assert outbox.dropped == 4
        assert [e.event_id for e in outbox.peek(10)] == ["e4", "e5", "e6"]
    # Said once, not once per event: a long outage must not flood the log.
    drops = [r for r in caplog.records if "outbox full" in r.getMessage()]
    assert len(drops) == 1


def test_the_outbox_survives_a_reopen_and_never_reuses_a_seq(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "outbox.db"
    with Outbox(path) as outbox:
        for index in range(3):
            outbox.append(f"e{index}", TOPIC, bytes([index]))
        outbox.ack(outbox.peek(1)[0].seq)
    with Outbox(path) as outbox:
        entries = outbox.peek(10)
        assert [(e.event_id, e.payload) for e in entries] == [("e1", b"\x01"), ("e2", b"\x02")]
        assert outbox.depth() == 2
        last = entries[-1].seq
        outbox.ack_many(e.seq for e in entries)
        assert outbox.depth() == 0
    with Outbox(path) as outbox:
        outbox.append("e3", TOPIC, b"")
        # Emptied and reopened, the outbox still numbers on: a sender's cursor stays valid.
        assert outbox.peek(1)[0].seq > last


def test_the_outbox_file_belongs_to_one_gateway(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path):
        with pytest.raises(OutboxLockedError, match="in use"):
            Outbox(path)
        other_process = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from gateway.outbox import Outbox; Outbox(sys.argv[1])",
                str(path),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert other_process.returncode != 0
        assert "OutboxLockedError" in other_process.stderr
    Outbox(path).close()  # free again once closed


def test_the_outbox_refuses_hardware_addresses(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as outbox:
        with pytest.raises(ValueError, match="hardware address"):
            outbox.append("e0", TOPIC, b'{"ref": "AA:BB:CC:DD:EE:FF"}')
        assert outbox.depth() == 0


def test_an_outbox_in_memory_works_but_keeps_nothing() -> None:
    with Outbox(MEMORY) as outbox:
        assert outbox.append("e0", TOPIC, b"x")
        assert outbox.depth() == 1
    with Outbox(MEMORY) as outbox:
        assert outbox.depth() == 0


def test_a_closed_outbox_refuses_work(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.append("e0", TOPIC, b"x")
    outbox.close()
    outbox.close()
    assert outbox.depth() == 1
    with pytest.raises(RuntimeError, match="closed"):
        outbox.peek(1)


# --- against a real broker that goes away ------------------------------------------------------


class DurableSubscriber:
    """A subscriber whose session the broker keeps while it is away (MQTT 5 session expiry)."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"subscriber-{uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 300
        # Never a clean start: Mosquitto 2.0 saves a session to disk only if it was not opened
        # with one, whatever its expiry. The client id is new, so there is nothing to resume.
        self.client.connect(host, port, clean_start=False, properties=properties)
        self.client.loop_start()
        assert self._subscribed.wait(10), "no SUBACK"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(message)

    def events(self) -> list[PresenceEvent]:
        with self._lock:
            messages = list(self.messages)
        return [
            PresenceEvent.model_validate_json(m.payload)
            for m in messages
            if m.topic.endswith("/presence")
        ]

    def indexes(self) -> list[int]:
        return [index_of(event) for event in self.events()]

    def statuses(self) -> list[GatewayStatus]:
        with self._lock:
            messages = list(self.messages)
        return [
            GatewayStatus.model_validate_json(m.payload)
            for m in messages
            if m.topic.endswith("/status")
        ]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class RestartableBroker:
    """Mosquitto that can be stopped and started again on the same port with the same state."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.folder.mkdir()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._running: ExitStack | None = None

    def start(self) -> None:
        assert self._running is None
        stack = ExitStack()
        stack.enter_context(running_mosquitto(port=self.port, persistence_dir=self.folder))
        self._running = stack

    def stop(self) -> None:
        assert self._running is not None
        self._running.close()
        self._running = None

    def close(self) -> None:
        if self._running is not None:
            self.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RestartableBroker]:
    broker = RestartableBroker(tmp_path / "broker")
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def subscriber(broker: RestartableBroker) -> Iterator[DurableSubscriber]:
    """Subscribed to everything the gateway says, then left with the broker running."""
    broker.start()
    subscriber = DurableSubscriber("127.0.0.1", broker.port, "storelink/v1/#")
    try:
        yield subscriber
    finally:
        subscriber.close()


def gateway_settings(broker: RestartableBroker, outbox: Path, **overrides: Any) -> GatewaySettings:
    return GatewaySettings(mqtt_url=broker.url, mqtt_protocol="5", outbox_path=outbox, **overrides)


def test_events_wait_on_disk_for_a_broker_that_is_down_at_start(
    broker: RestartableBroker, subscriber: DurableSubscriber, tmp_path: Path
) -> None:
    broker.stop()
    publisher = MqttPublisher(gateway_settings(broker, tmp_path / "outbox.db"))
    publisher.start()
    try:
        events = [make_event(index) for index in range(200)]
        for event in events:
            assert publisher.publish(event)
        time.sleep(0.2)
        assert publisher.outbox_depth == 200, "nothing can have been delivered"
        broker.start()
        assert wait_until(lambda: len(subscriber.events()) >= 200)
    finally:
        assert publisher.stop()
    received = subscriber.events()
    # Nothing was in flight when the broker came up: exactly once, in order.
    assert [e.event_id for e in received] == [e.event_id for e in events]
    assert publisher.outbox_depth == 0


def test_a_full_outbox_drops_the_oldest_and_the_status_says_so(
    broker: RestartableBroker, subscriber: DurableSubscriber, tmp_path: Path
) -> None:
    broker.stop()
    settings = gateway_settings(broker, tmp_path / "outbox.db", outbox_max_events=5)
    publisher = MqttPublisher(settings)
    publisher.start()
    try:
        for index in range(8):
            assert publisher.publish(make_event(index))
        assert (publisher.outbox_depth, publisher.outbox_dropped) == (5, 3)
        broker.start()
        assert wait_until(lambda: len(subscriber.events()) >= 5)
    finally:
        assert publisher.stop()
    assert subscriber.indexes() == [3, 4, 5, 6, 7]
    assert wait_until(lambda: len(subscriber.statuses()) >= 2)
    online, offline = subscriber.statuses()[-2:]
    # Online on reconnect, with the backlog it was about to send and what it had lost.
    assert online.state is GatewayState.ONLINE
    assert online.outbox_dropped == 3
    assert (offline.state, offline.outbox_depth, offline.outbox_dropped) == (
        GatewayState.OFFLINE,
        0,
        3,
    )


def test_no_event_is_lost_when_the_broker_restarts_mid_stream(
    broker: RestartableBroker, subscriber: DurableSubscriber, tmp_path: Path
) -> None:
    total = 400
    publisher = MqttPublisher(gateway_settings(broker, tmp_path / "outbox.db"))
    publisher.start()
    published = threading.Event()

    def scanner() -> None:
        for index in range(total):
            assert publisher.publish(make_event(index))
            time.sleep(0.004)
        published.set()

    feeding = threading.Thread(target=scanner)
    feeding.start()
    try:
        assert wait_until(lambda: len(subscriber.events()) >= 50)
        broker.stop()  # mid-stream: events are in flight, and more keep coming
        time.sleep(0.5)
        assert publisher.outbox_depth > 0
        broker.start()
        assert published.wait(10)
        assert wait_until(lambda: set(subscriber.indexes()) == set(range(total)))
    finally:
        feeding.join(10)
        assert publisher.stop()
    received = subscriber.indexes()
    first_seen = list(dict.fromkeys(received))
    assert first_seen == list(range(total)), "order kept"
    # At least once: only what was in flight when the broker went down may come twice, from
    # the gateway (its send window) or to the subscriber (Mosquitto's 20 in flight per client).
    assert len(received) - total <= SEND_WINDOW + 20


CRASHING_GATEWAY = """
import sys
from gateway.config import GatewaySettings
from gateway.publish import SEND_WINDOW, MqttPublisher
from tests.test_gateway_outbox import make_event

url, outbox = sys.argv[1], sys.argv[2]
publisher = MqttPublisher(
    GatewaySettings(mqtt_url=url, mqtt_protocol="5", outbox_path=outbox)
)
publisher.start()
print("started", flush=True)
for line in sys.stdin:
    command, *args = line.split()
    if command == "publish":
        first, last = map(int, args)
        for index in range(first, last):
            assert publisher.publish(make_event(index))
        print("published", last, flush=True)
    elif command == "depth":
        print("depth", publisher.outbox_depth, flush=True)
    elif command == "stop":
        print("stopped", publisher.stop(timeout_s=10), flush=True)
        break
"""


class GatewayProcess:
    """The publisher in a child process, driven line by line through its stdin."""

    def __init__(self, url: str, outbox: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CRASHING_GATEWAY, url, str(outbox)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.reply() == "started"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.strip())

    def reply(self, timeout_s: float = 10.0) -> str:
        return self._lines.get(timeout=timeout_s)

    def ask(self, command: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.reply()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)


def test_a_gateway_killed_while_the_broker_is_down_loses_nothing(
    broker: RestartableBroker, subscriber: DurableSubscriber, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.db"
    gateway = GatewayProcess(broker.url, outbox)
    try:
        assert gateway.ask("publish 0 40") == "published 40"
        assert wait_until(lambda: len(subscriber.events()) >= 40)
        assert wait_until(lambda: gateway.ask("depth") == "depth 0")
        broker.stop()
        # Stored on disk when publish() returns; then the power goes.
        assert gateway.ask("publish 40 100") == "published 100"
    finally:
        gateway.kill()
    assert gateway.process.returncode == -9
    broker.start()

    restarted = GatewayProcess(broker.url, outbox)
    try:
        assert restarted.ask("publish 100 120") == "published 120"
        assert restarted.ask("stop") == "stopped True"
    finally:
        restarted.kill()
    assert wait_until(lambda: set(subscriber.indexes()) == set(range(120)))
    received = subscriber.events()
    indexes = [index_of(event) for event in received]
    # The backlog went first, in the order it was stored; the restarted gateway's own after it.
    assert indexes == sorted(indexes)
    assert [e.ts for e in received] == sorted(e.ts for e in received)
    assert {e.gateway_id for e in received} == {"gw-1"}
    # The restarted gateway's goodbye: nothing left on its disk.
    assert wait_until(lambda: subscriber.statuses()[-1].state is GatewayState.OFFLINE)
    assert subscriber.statuses()[-1].outbox_depth == 0


def test_an_event_the_broker_refuses_is_dropped_and_counted_not_retried(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    # The gateway may say how it is, but not publish presence: the broker answers PUBACK 0x87.
    acl.write_text("topic write storelink/v1/+/+/status\n")
    with running_mosquitto(f"acl_file {acl}\n") as mosquitto:
        settings = GatewaySettings(
            mqtt_url=mosquitto.url, mqtt_protocol="5", outbox_path=tmp_path / "outbox.db"
        )
        publisher = MqttPublisher(settings)
        publisher.start()
        for index in range(3):
            assert publisher.publish(make_event(index))
        # Refused events do not hold the queue: the outbox empties, and says what it lost.
        assert wait_until(lambda: publisher.outbox_depth == 0)
        assert publisher.outbox_dropped == 3
        assert publisher.stop()
