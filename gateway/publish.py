"""Presence events and gateway status to the MQTT broker, surviving broker outages."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import GatewaySettings
from gateway.status import make_status
from storelink.clock import Clock, SystemClock
from storelink.mqtt import connect_properties, make_client
from storelink.wire import (
    PRESENCE_QOS,
    STATUS_QOS,
    GatewayState,
    GatewayStatus,
    PresenceEvent,
    presence_topic,
    status_topic,
)

logger = logging.getLogger(__name__)

# Long enough for a broker restart or a flaky store uplink: the broker keeps the session, and
# paho resends unacknowledged QoS 1 messages when it reconnects.
SESSION_EXPIRY_S = 3600
KEEPALIVE_S = 30
RECONNECT_MAX_DELAY_S = 30
# Bounds the memory of a gateway cut off from its broker for long: beyond this many messages
# waiting, new events are dropped and logged.
MAX_QUEUED_MESSAGES = 50_000


class MqttPublisher:
    """QoS 1 presence events, and a retained status that the broker turns offline on a lost link."""

    def __init__(self, settings: GatewaySettings, *, clock: Clock | None = None) -> None:
        self._settings = settings
        self._clock = clock or SystemClock()
        self._presence_topic = presence_topic(settings.store_id, settings.gateway_id)
        self._status_topic = status_topic(settings.store_id, settings.gateway_id)
        self._status = make_status(settings, GatewayState.ONLINE, self._clock.now())
        self._lock = threading.Condition()
        # Message ids sent but not yet acknowledged, and acknowledgements that raced ahead of
        # publish() returning the id: the network thread may see the PUBACK first.
        self._unacked: set[int] = set()
        self._early_acks: set[int] = set()

        client_id = f"storelink-{settings.store_id}-{settings.gateway_id}"
        self._client, self._address = make_client(
            settings.mqtt_url, settings.mqtt_protocol, client_id
        )
        self._client.max_queued_messages_set(MAX_QUEUED_MESSAGES)
        self._client.reconnect_delay_set(min_delay=1, max_delay=RECONNECT_MAX_DELAY_S)
        self._client.will_set(
            self._status_topic,
            make_status(settings, GatewayState.OFFLINE, self._clock.now()).model_dump_json(),
            qos=STATUS_QOS,
            retain=True,
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish

    @property
    def unacknowledged(self) -> int:
        with self._lock:
            return len(self._unacked)

    def start(self) -> None:
        """Connect in the background; a broker that is down now is retried until it is up."""
        self._client.connect_async(
            self._address.host,
            self._address.port,
            keepalive=KEEPALIVE_S,
            properties=connect_properties(self._settings.mqtt_protocol, SESSION_EXPIRY_S),
        )
        self._client.loop_start()

    def publish(self, event: PresenceEvent) -> bool:
        """Queue ``event`` for delivery; False when the queue is full and it is dropped."""
        return self._send(self._presence_topic, event.model_dump_json(), PRESENCE_QOS, retain=False)

    def publish_status(self, status: GatewayStatus) -> bool:
        self._status = status
        return self._send(self._status_topic, status.model_dump_json(), STATUS_QOS, retain=True)

    def stop(self, final: GatewayStatus | None = None, timeout_s: float = 5.0) -> bool:
        """Say offline, wait for acknowledgements, disconnect. True if nothing was left unsent.

        ``final`` is the offline status left retained; by default the last status sent, marked
        offline. Blocks: call it from a thread when an event loop must keep running meanwhile.
        """
        offline = final or self._status.model_copy(
            update={"state": GatewayState.OFFLINE, "ts": self._clock_ts()}
        )
        self.publish_status(offline)
        deadline = time.monotonic() + timeout_s
        with self._lock:
            flushed = self._lock.wait_for(
                lambda: not self._unacked, timeout=max(0.0, deadline - time.monotonic())
            )
        if not flushed:
            logger.warning("stopping with %d messages unacknowledged", len(self._unacked))
        self._client.disconnect()
        self._client.loop_stop()
        return flushed

    def _send(self, topic: str, payload: str, qos: int, *, retain: bool) -> bool:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            logger.warning("MQTT queue full: dropped a message for %s", topic)
            return False
        # Not connected (MQTT_ERR_NO_CONN) still queues the message; it goes out on reconnect.
        with self._lock:
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
            else:
                self._unacked.add(info.mid)
        return True

    def _clock_ts(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), UTC)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            logger.error(
                "MQTT broker %s refused the connection: %s", self._address.host, reason_code
            )
            return
        logger.info("connected to MQTT broker %s:%d", self._address.host, self._address.port)
        online = self._status.model_copy(
            update={"state": GatewayState.ONLINE, "ts": self._clock_ts()}
        )
        self.publish_status(online)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            logger.warning("lost the MQTT broker (%s); reconnecting", reason_code)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        if reason_code.is_failure:
            logger.error("the broker refused message %d: %s", mid, reason_code)
        with self._lock:
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:
                self._early_acks.add(mid)
            self._lock.notify_all()
