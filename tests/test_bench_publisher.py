"""The ingest bench's load generator sends valid presence events whose dwell is real."""

from __future__ import annotations

import queue
import threading
from datetime import timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.ingest import BROKER_CONFIG, DWELL_PLACEHOLDER, TS_PLACEHOLDER, event_stream
from bench.load.lean_publisher import LeanPublisher, Packet
from storelink.wire import PRESENCE_SUBSCRIPTION, PresenceEvent, PresenceKind
from tests.services import running_mosquitto


def test_each_dwell_and_exit_says_the_time_since_its_subjects_enter_was_sent() -> None:
    stream = event_stream(4000, ["0a0b0c0d"], seed=3)
    received: queue.Queue[bytes] = queue.Queue()
    subscribed = threading.Event()
    # As the bench runs it: a subscriber that falls behind gets its backlog, none dropped.
    with running_mosquitto(BROKER_CONFIG) as broker:
        subscriber = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        subscriber.on_message = lambda client, userdata, message: received.put(message.payload)
        subscriber.on_subscribe = lambda *args: subscribed.set()
        subscriber.connect(broker.host, broker.port)
        subscriber.subscribe(PRESENCE_SUBSCRIPTION, qos=1)
        subscriber.loop_start()
        try:
            assert subscribed.wait(10)
            publisher = LeanPublisher(broker.url, "bench-publisher-test", 100)
            packets = [
                Packet(topic, payload, TS_PLACEHOLDER, DWELL_PLACEHOLDER, entered)
                for topic, payload, entered in stream
            ]
            publisher.publish(packets, rate=20_000)
            publisher.close()
            events = [PresenceEvent.model_validate_json(received.get(timeout=10)) for _ in stream]
        finally:
            subscriber.loop_stop()
            subscriber.disconnect()

    # One publisher on one connection: the broker keeps their order.
    sent_at = [event.ts for event in events]
    later = [
        (event, entered)
        for event, (_, _, entered) in zip(events, stream, strict=True)
        if entered is not None
    ]
    assert all(event.dwell_s == 0 for event in events if event.kind == PresenceKind.ENTER)
    assert {event.kind for event, _ in later} == {PresenceKind.DWELL, PresenceKind.EXIT}
    for event, entered in later:
        since_enter = event.ts - sent_at[entered]
        assert abs(timedelta(seconds=event.dwell_s) - since_enter) <= timedelta(microseconds=2)
    # At 20,000 events/s a subject's later events come a few milliseconds after its enter.
    assert max(event.dwell_s for event, _ in later) > 0.01
