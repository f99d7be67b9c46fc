"""The MQTT consumer: presence events and gateway status in, offer notifications out.

Every message is validated against the wire contract. A message that fails (bad JSON, a schema
violation, a topic that disagrees with its payload) is not stored: it is counted, logged with
the reason, and republished to the dead-letter topic for someone to look at. Nothing a gateway
sends, and no failure while processing it, stops the consumer.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.config import CloudSettings
from cloud_api.gateway_status import record_gateway_status
from cloud_api.presence_service import PresenceService
from storelink.mqtt import connect_properties, make_client
from storelink.wire import (
    DEADLETTER_TOPIC,
    NOTIFICATION_QOS,
    PRESENCE_QOS,
    PRESENCE_SUBSCRIPTION,
    STATUS_QOS,
    STATUS_SUBSCRIPTION,
    DeadLetter,
    GatewayStatus,
    OfferNotification,
    PresenceEvent,
    notification_topic,
    parse_gateway_topic,
    utc_now,
)

logger = logging.getLogger(__name__)

# The broker keeps the subscription and queues QoS 1 events while the consumer reconnects.
SESSION_EXPIRY_S = 3600
KEEPALIVE_S = 30
RECONNECT_MAX_DELAY_S = 30
DEADLETTER_QOS = 1


@dataclass
class IngestCounters:
    """Since this process started. Only the MQTT network thread writes them."""

    presence_events: int = 0
    duplicates: int = 0
    gateway_statuses: int = 0
    invalid_payloads: int = 0
    processing_errors: int = 0
    offers: int = 0
    notifications: int = 0


class InvalidMessageError(Exception):
    """A message that breaks the wire contract; its text is the precise reason."""


def describe(error: ValidationError) -> str:
    details = error.errors(include_url=False)
    if details and details[0]["type"] == "json_invalid":
        return f"invalid JSON: {details[0].get('ctx', {}).get('error', details[0]['msg'])}"
    fields = "; ".join(
        f"{'.'.join(str(part) for part in d['loc']) or '(message)'}: {d['msg']}" for d in details
    )
    return f"schema violation: {fields}"


def parse_message(topic: str, payload: bytes) -> PresenceEvent | GatewayStatus:
    """The message on ``topic``, validated; raises ``InvalidMessageError`` with the reason."""
    try:
        store_id, gateway_id, channel = parse_gateway_topic(topic)
    except ValueError as error:
        raise InvalidMessageError(str(error)) from None
    model: type[PresenceEvent] | type[GatewayStatus]
    if channel == "presence":
        model = PresenceEvent
    elif channel == "status":
        model = GatewayStatus
    else:
        raise InvalidMessageError(f"unknown channel {channel!r} in topic {topic!r}")
    try:
        message = model.model_validate_json(payload)
    except ValidationError as error:
        raise InvalidMessageError(describe(error)) from None
    if (message.store_id, message.gateway_id) != (store_id, gateway_id):
        raise InvalidMessageError(
            f"topic mismatch: the topic names store {store_id!r} and gateway {gateway_id!r}, "
            f"the payload store {message.store_id!r} and gateway {message.gateway_id!r}"
        )
    return message


class PresenceConsumer:
    """Subscribes to every gateway's presence and status; runs on paho's network thread."""

    def __init__(
        self,
        settings: CloudSettings,
        service: PresenceService,
        sessions: sessionmaker[Session],
    ) -> None:
        self.counters = IngestCounters()
        self._settings = settings
        self._service = service
        self._sessions = sessions
        self._subscribed = threading.Event()
        self._client, self._address = make_client(
            settings.mqtt_url, settings.mqtt_protocol, settings.mqtt_client_id
        )
        self._client.reconnect_delay_set(min_delay=1, max_delay=RECONNECT_MAX_DELAY_S)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def wait_until_subscribed(self, timeout_s: float) -> bool:
        """True once the broker has granted the subscriptions; messages before that are lost."""
        return self._subscribed.wait(timeout_s)

    def start(self) -> None:
        """Connect in the background: a broker that is down now is retried until it is up."""
        self._client.connect_async(
            self._address.host,
            self._address.port,
            keepalive=KEEPALIVE_S,
            properties=connect_properties(self._settings.mqtt_protocol, SESSION_EXPIRY_S),
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # --- paho callbacks -------------------------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            logger.error("MQTT broker %s refused the consumer: %s", self._address.host, reason_code)
            return
        logger.info(
            "consumer connected to MQTT broker %s:%d", self._address.host, self._address.port
        )
        # On every connect: a broker that lost the session has lost the subscriptions too.
        client.subscribe([(PRESENCE_SUBSCRIPTION, PRESENCE_QOS), (STATUS_SUBSCRIPTION, STATUS_QOS)])

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            logger.error("the broker refused the consumer's subscriptions: %s", ", ".join(refused))
            return
        self._subscribed.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._subscribed.clear()
        if reason_code.is_failure:
            logger.warning("consumer lost the MQTT broker (%s); reconnecting", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = utc_now()
        payload = bytes(message.payload)
        try:
            self._process(message.topic, payload, now)
        except InvalidMessageError as invalid:
            self.counters.invalid_payloads += 1
            logger.warning("refused a message on %s: %s", message.topic, invalid)
            self._dead_letter(message.topic, payload, str(invalid), now)
        except Exception as error:
            # A database outage or a bug must cost one message, never the consumer.
            self.counters.processing_errors += 1
            logger.exception("failed to process a message on %s", message.topic)
            reason = f"processing failed: {type(error).__name__}: {error}"
            self._dead_letter(message.topic, payload, reason, now)

    # --- processing -----------------------------------------------------------------------------

    def _process(self, topic: str, payload: bytes, now: datetime) -> None:
        message = parse_message(topic, payload)
        if isinstance(message, GatewayStatus):
            with self._sessions.begin() as session:
                record_gateway_status(session, message, now)
            self.counters.gateway_statuses += 1
            return
        outcome = self._service.handle(message, now)
        if outcome.duplicate:
            self.counters.duplicates += 1
            logger.debug("duplicate presence event %s ignored", message.event_id)
            return
        self.counters.presence_events += 1
        if outcome.notification is not None:
            self.counters.offers += 1
            self._notify(outcome.notification)

    def _notify(self, notification: OfferNotification) -> None:
        topic = notification_topic(notification.shopper_ref)
        info = self._client.publish(topic, notification.model_dump_json(), qos=NOTIFICATION_QOS)
        # Not connected still queues a QoS 1 message: paho sends it on reconnection.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            logger.error("could not publish offer %s: %s", notification.offer_code, info.rc)
            return
        self.counters.notifications += 1
        logger.info("offer %s sent to %s", notification.offer_code, topic)

    def _dead_letter(self, topic: str, payload: bytes, reason: str, now: datetime) -> None:
        letter = DeadLetter(
            reason=reason,
            topic=topic,
            payload=payload.decode("utf-8", errors="backslashreplace"),
            received_at=now,
        )
        try:
            self._client.publish(DEADLETTER_TOPIC, letter.model_dump_json(), qos=DEADLETTER_QOS)
        except Exception:
            logger.exception("could not dead-letter a message from %s", topic)
