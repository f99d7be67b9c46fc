"""Presence events and gateway status to the MQTT broker, surviving outages, crashes and power cuts.

Every presence event goes to the on-disk outbox (``gateway.outbox``) first; a sender thread
drains the outbox in order at QoS 1 and deletes an event only when the broker's PUBACK for it
arrives. At most ``SEND_WINDOW`` events are in flight, so memory stays small however long the
broker is away: the backlog waits on disk.

On a reconnect paho resends the events that were in flight (same packet ids) before anything
newer goes out, which keeps the order; after a restart the sender starts again from the oldest
event in the outbox. An event whose PUBACK was lost is sent twice: delivery is at least once,
and the cloud drops duplicates by ``event_id``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import GatewaySettings
from gateway.outbox import Entry, Outbox
from gateway.status import make_status
from storelink.clock import Clock, SystemClock
from storelink.mqtt import connect_properties, make_client
from storelink.wire import (
    BEACONS_QOS,
    PRESENCE_QOS,
    SIGHTINGS_QOS,
    STATUS_QOS,
    BeaconFleetReport,
    GatewayState,
    GatewayStatus,
    PeerSightings,
    PresenceEvent,
    beacons_topic,
    presence_topic,
    sightings_topic,
    status_topic,
)

logger = logging.getLogger(__name__)

# Long enough for a broker restart or a flaky store uplink: the broker keeps the session.
SESSION_EXPIRY_S = 3600
KEEPALIVE_S = 30
RECONNECT_MAX_DELAY_S = 30
# Events handed to paho and not yet acknowledged. Below paho's default of 20 in-flight messages,
# leaving room for status messages, so that paho never holds a message back on its own.
SEND_WINDOW = 16
# paho keeps at most the send window and a few status messages; this only guards against a bug.
MAX_QUEUED_MESSAGES = 1_000
SENDER_JOIN_S = 5.0
SENDER_RETRY_S = 1.0
# MQTT 5 PUBACK reason: the broker took the message but no subscription matched it.
NO_MATCHING_SUBSCRIBERS = 16


class MqttPublisher:
    """QoS 1 presence events through a durable outbox, and a retained status that the broker
    turns offline on a lost link."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        clock: Clock | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock or SystemClock()
        self._presence_topic = presence_topic(settings.store_id, settings.gateway_id)
        self._status_topic = status_topic(settings.store_id, settings.gateway_id)
        self._outbox = outbox or Outbox(settings.outbox_path, max_events=settings.outbox_max_events)
        self._status = make_status(settings, GatewayState.ONLINE, self._clock.now())
        self._rejected = 0
        self._beacons_topic = beacons_topic(settings.store_id, settings.gateway_id)
        # The latest beacon report; like the status, sent again on every connect.
        self._beacons: BeaconFleetReport | None = None
        self._sightings_topic = sightings_topic(settings.store_id, settings.gateway_id)
        # topic filter -> (QoS, handler of the payload, called on paho's network thread).
        self._subscriptions: dict[str, tuple[int, Callable[[bytes], None]]] = {}

        # Shared between the caller's thread, the sender thread and paho's network thread.
        self._lock = threading.Condition()
        self._connected = False
        # Packet id -> outbox seq of the event it carries, or None for a status message.
        self._inflight: dict[int, int | None] = {}
        # PUBACKs that raced ahead of client.publish() returning the packet id: id -> refused.
        self._early_acks: dict[int, ReasonCode] = {}
        self._events_inflight = 0
        # Packet ids of QoS 0 sightings handed to paho: nothing to wait for, nothing to resend.
        self._volatile: set[int] = set()
        # Acknowledged events that the sender has yet to delete from the outbox.
        self._acked: list[int] = []
        # Highest seq handed to paho by this process; the sender continues above it.
        self._sent_through = 0
        # The outbox may hold events above _sent_through (set by appends and at start).
        self._pending = True
        # After a reconnect paho first resends the events in flight; newer ones wait for them.
        self._resending = False
        self._stopping = False
        # No sending before this (monotonic): the broker had no subscriber for an event.
        self._paused_until = 0.0
        # The oldest such event: the sender goes back to it.
        self._resend_from: int | None = None
        self._sender = threading.Thread(target=self._send_loop, name="outbox-sender", daemon=True)

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
        self._client.on_message = self._on_message

    @property
    def unacknowledged(self) -> int:
        """Events in the outbox plus status messages sent and not yet acknowledged."""
        with self._lock:
            statuses = sum(1 for seq in self._inflight.values() if seq is None)
        return self._outbox.depth() + statuses

    @property
    def outbox_depth(self) -> int:
        return self._outbox.depth()

    @property
    def outbox_dropped(self) -> int:
        """Events that will never be delivered: pushed out of a full outbox, or refused by the
        broker."""
        return self._outbox.dropped + self._rejected

    def start(self) -> None:
        """Connect in the background; a broker that is down now is retried until it is up."""
        self._client.connect_async(
            self._address.host,
            self._address.port,
            keepalive=KEEPALIVE_S,
            properties=connect_properties(self._settings.mqtt_protocol, SESSION_EXPIRY_S),
        )
        self._client.loop_start()
        self._sender.start()

    def publish(self, event: PresenceEvent) -> bool:
        """Store ``event`` on disk for delivery; False only if it could not be stored."""
        try:
            self._outbox.append(
                event.event_id, self._presence_topic, event.model_dump_json().encode()
            )
        except (sqlite3.Error, ValueError, RuntimeError) as exc:
            # The event itself is not logged: this is the one place it could still be lost.
            logger.error("could not store a presence event in the outbox: %s", exc)
            return False
        with self._lock:
            self._pending = True
            self._lock.notify_all()
        return True

    def publish_status(self, status: GatewayStatus) -> bool:
        """Send ``status`` retained, with the outbox figures filled in.

        While the broker is unreachable only the latest status is kept: it goes out on reconnect.
        """
        self._status = self._with_outbox_figures(status)
        with self._lock:
            connected = self._connected
        if not connected:
            return True
        return self._send_status(self._status)

    def publish_beacons(self, report: BeaconFleetReport) -> bool:
        """Send the beacon health report retained; while disconnected only the latest is kept."""
        with self._lock:
            self._beacons = report
            connected = self._connected
        if not connected:
            return True
        return self._send_retained(self._beacons_topic, report.model_dump_json(), BEACONS_QOS)

    def publish_sightings(self, sightings: PeerSightings) -> bool:
        """Send the sightings summary for the store's other gateways, at most once: it is stale
        a second later, so nothing is kept while the broker is unreachable."""
        with self._lock:
            connected = self._connected
        if not connected:
            return False
        info = self._client.publish(
            self._sightings_topic, sightings.model_dump_json(), qos=SIGHTINGS_QOS, retain=False
        )
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        with self._lock:
            if self._early_acks.pop(info.mid, None) is None:
                self._volatile.add(info.mid)
        return True

    def subscribe(self, topic: str, qos: int, handler: Callable[[bytes], None]) -> None:
        """Receive the payloads published on ``topic`` (a topic filter: ``+`` and ``#`` match as
        MQTT says), on every connect again (so a retained message arrives after each reconnect).
        ``handler`` runs on paho's network thread and must not block."""
        with self._lock:
            self._subscriptions[topic] = (qos, handler)
            connected = self._connected
        if connected:
            self._client.subscribe(topic, qos=qos)

    def stop(self, final: GatewayStatus | None = None, timeout_s: float = 5.0) -> bool:
        """Deliver what is queued, say offline, disconnect. True if nothing was left unsent.

        ``final`` is the offline status left retained; by default the last status sent, marked
        offline. It goes out once the outbox is empty or ``timeout_s`` is half gone, so that its
        ``outbox_depth`` tells what is left on disk. Events still unacknowledged stay in the
        outbox for the next start. Blocks: call it from a thread when an event loop must keep
        running meanwhile.
        """
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._lock.wait_for(self._drained, timeout=timeout_s / 2)
        offline = self._with_outbox_figures(
            final
            or self._status.model_copy(
                update={"state": GatewayState.OFFLINE, "ts": self._clock_ts()}
            )
        )
        self._status = offline
        # Even while disconnected: paho keeps it and sends it if the link comes back in time.
        self._send_status(offline)
        with self._lock:
            flushed = self._lock.wait_for(
                lambda: self._drained() and not self._inflight,
                timeout=max(0.0, deadline - time.monotonic()),
            )
            self._stopping = True
            self._lock.notify_all()
        if self._sender.is_alive():
            self._sender.join(SENDER_JOIN_S)
        self._client.disconnect()
        self._client.loop_stop()
        with self._lock:
            acked, self._acked = self._acked, []
        self._delete(acked)
        if not flushed:
            logger.warning(
                "stopping with %d events in the outbox and %d messages unacknowledged; the "
                "events go out after the next start",
                self._outbox.depth(),
                len(self._inflight),
            )
        self._outbox.close()
        return flushed

    # --- the sender thread ----------------------------------------------------------------------

    def _drained(self) -> bool:
        """Every event delivered and deleted from the outbox (call with the lock held)."""
        return not self._events_inflight and not self._acked and self._outbox.depth() == 0

    def _can_send(self) -> bool:
        return (
            self._pending
            and self._connected
            and not self._resending
            and self._events_inflight < SEND_WINDOW
            and time.monotonic() >= self._paused_until
        )

    def _send_loop(self) -> None:
        while not self._stopping:
            try:
                self._send_some()
            except Exception:
                # Never let the sender die: what it failed to send is still in the outbox.
                logger.exception("the outbox sender failed; retrying")
                with self._lock:
                    self._pending = True
                    self._lock.wait(SENDER_RETRY_S)

    def _send_some(self) -> None:
        """Delete what was acknowledged, then send what the window allows."""
        with self._lock:
            while not (self._stopping or self._acked or self._can_send()):
                # Woken by the end of a pause too, which no other thread signals.
                self._lock.wait(max(self._paused_until - time.monotonic(), 0.0) or None)
            if self._stopping:
                return
            acked, self._acked = self._acked, []
            room = SEND_WINDOW - self._events_inflight if self._can_send() else 0
            if room:
                # Cleared before reading, so that an append from now on sets it again.
                self._pending = False
                if self._resend_from is not None:
                    self._sent_through = min(self._sent_through, self._resend_from - 1)
                    self._resend_from = None
            after = self._sent_through
        self._delete(acked)
        if room:
            entries = self._read(room, after)
            for entry in entries:
                if not self._send_event(entry.seq, entry.topic, entry.payload):
                    break
            if len(entries) == room:
                with self._lock:
                    self._pending = True

    def _read(self, limit: int, after_seq: int) -> list[Entry]:
        try:
            return self._outbox.peek(limit, after_seq)
        except (sqlite3.Error, RuntimeError) as exc:
            logger.error("could not read the outbox: %s", exc)
            with self._lock:
                self._pending = True
                self._lock.wait(SENDER_RETRY_S)
            return []

    def _delete(self, seqs: list[int]) -> None:
        if not seqs:
            return
        try:
            self._outbox.ack_many(seqs)
        except (sqlite3.Error, RuntimeError) as exc:
            # They stay in the outbox and are sent again after a restart: duplicates, not losses.
            logger.error("could not delete %d delivered events from the outbox: %s", len(seqs), exc)
        with self._lock:
            self._lock.notify_all()

    def _send_event(self, seq: int, topic: str, payload: bytes) -> bool:
        info = self._client.publish(topic, payload, qos=PRESENCE_QOS, retain=False)
        with self._lock:
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # not expected: the window keeps paho small
                logger.error("paho refused to queue an event; it stays in the outbox")
                self._pending = True
                self._lock.wait(SENDER_RETRY_S)
                return False
            self._sent_through = seq
            # Not connected (MQTT_ERR_NO_CONN) still queues the message; paho sends it on reconnect.
            if info.mid in self._early_acks:
                self._event_acknowledged(seq, self._early_acks.pop(info.mid))
            else:
                self._inflight[info.mid] = seq
                self._events_inflight += 1
        return True

    def _event_acknowledged(self, seq: int, reason_code: ReasonCode) -> None:
        """The broker's PUBACK for the event ``seq`` (call with the lock held)."""
        if reason_code.value == NO_MATCHING_SUBSCRIBERS:
            # Taken and dropped: nobody subscribed. A Mosquitto that restarted has lost the
            # cloud's shared subscription (it does not restore those) until the cloud
            # subscribes again: the event stays in the outbox and goes again, from it on,
            # after a pause. Later events already delivered may go twice; the cloud drops those.
            self._resend_from = min(self._resend_from or seq, seq)
            self._paused_until = time.monotonic() + SENDER_RETRY_S
            self._pending = True
            return
        if reason_code.is_failure:
            self._rejected += 1
        self._acked.append(seq)

    def _send_status(self, status: GatewayStatus) -> bool:
        return self._send_retained(self._status_topic, status.model_dump_json(), STATUS_QOS)

    def _send_retained(self, topic: str, payload: str, qos: int) -> bool:
        info = self._client.publish(topic, payload, qos=qos, retain=True)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            logger.warning("MQTT queue full: dropped a message on %s", topic)
            return False
        with self._lock:
            if self._early_acks.pop(info.mid, None) is None:
                self._inflight[info.mid] = None
        return True

    def _with_outbox_figures(self, status: GatewayStatus) -> GatewayStatus:
        return status.model_copy(
            update={"outbox_depth": self.outbox_depth, "outbox_dropped": self.outbox_dropped}
        )

    def _clock_ts(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), UTC)

    # --- paho callbacks, on its network thread --------------------------------------------------

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
        with self._lock:
            self._connected = True
            # paho resends what was in flight right after this callback returns.
            self._resending = self._events_inflight > 0
            self._pending = True
            self._lock.notify_all()
        online = self._status.model_copy(
            update={"state": GatewayState.ONLINE, "ts": self._clock_ts()}
        )
        self.publish_status(online)
        with self._lock:
            beacons = self._beacons
            subscriptions = [(topic, qos) for topic, (qos, _) in self._subscriptions.items()]
        if beacons is not None:
            self._send_retained(self._beacons_topic, beacons.model_dump_json(), BEACONS_QOS)
        if subscriptions:
            client.subscribe(subscriptions)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            self._connected = False
            # paho drops unsent QoS 0 messages with the connection: no callback will come.
            self._volatile.clear()
        if reason_code.is_failure:
            logger.warning("lost the MQTT broker (%s); reconnecting", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            subscription = self._subscriptions.get(message.topic)
            if subscription is None:
                subscription = next(
                    (
                        handler
                        for pattern, handler in self._subscriptions.items()
                        if mqtt.topic_matches_sub(pattern, message.topic)
                    ),
                    None,
                )
        if subscription is None:
            return
        try:
            subscription[1](bytes(message.payload))
        except Exception:
            # paho would otherwise swallow it; the payload is not logged (it may hold keys).
            logger.exception("the handler of %s failed", message.topic)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        with self._lock:
            if mid in self._volatile:
                self._volatile.discard(mid)
                return
            if reason_code.is_failure:
                # Sending it again would hold every later event back behind it: it is dropped.
                logger.error("the broker refused message %d: %s", mid, reason_code)
            if mid not in self._inflight:
                self._early_acks[mid] = reason_code
                return
            seq = self._inflight.pop(mid)
            if seq is not None:
                self._events_inflight -= 1
                self._event_acknowledged(seq, reason_code)
                if self._events_inflight == 0:
                    self._resending = False
            self._lock.notify_all()
