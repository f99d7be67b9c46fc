"""The MQTT consumer: presence events, gateway status and beacon health in, offers out.

Durable and scalable:

- **At least once, acknowledged after commit.** paho's automatic acknowledgement is off: a
  message is acknowledged (PUBACK) only once what it says is committed, so a worker that dies
  loses nothing; the broker sends the unacknowledged messages again, and ``event_id`` makes the
  second copy change nothing.
- **A persistent session** (MQTT 5): the worker connects with a stable client id, clean start
  off and a session expiry, so the broker keeps its subscriptions and queues its share of the
  events while it restarts.
- **Shared subscription** (MQTT 5): every worker of a deployment subscribes to
  ``$share/<group>/storelink/v1/+/+/presence`` and the broker hands each event to one of them.
  Gateway status and beacon fleet reports (a few messages a minute per gateway) go to every
  worker: they are retained, which a shared subscription does not deliver, and storing them
  twice is harmless.
- **Batches off the network thread.** paho's thread only validates and queues what arrives
  (plain PUBLISH packets straight from its read buffer: ``mqtt_client``). A worker thread takes
  what is queued, up to ``ingest_batch_size`` messages (optionally waiting
  ``ingest_batch_wait_s`` for more), applies them in order in one transaction, commits,
  publishes the offers' notifications, then acknowledges the batch; the next batch's
  transaction marks those notifications sent in the outbox. While it commits, the next batch
  queues up: under light load a batch is an event or two and waits for nothing, under heavy
  load batches fill up and the commits stay few.
- **Or only stored** (``ingest_stitcher = "process"`` or ``"external"``): the transaction
  stores the events and nothing more, and a stitcher process makes their visits and offers
  from the events table afterwards (``stitcher``), on another CPU core: one the worker starts
  beside itself, or one run on its own (``storelink cloud stitch``), on another host say.

Every message is validated against the wire contract. A message that fails (bad JSON, a schema
violation, a topic that disagrees with its payload) is not stored: it is counted, logged with
the reason, republished to the dead-letter topic for someone to look at, and acknowledged: it
will never become valid. While the database is unreachable the worker retries the batch and
acknowledges nothing; when a batch fails for another reason, its messages are retried one by
one, and only those that fail alone are dead-lettered. Nothing a gateway sends, and no failure
while processing it, stops the consumer.

With MQTT 3.1.1 (the embedded demo broker, which has neither shared subscriptions nor session
expiry) the consumer subscribes to the plain topics with a clean session: one worker only.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import partial
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.config import CloudSettings
from cloud_api.ingest.beacon_health import record_beacon_report
from cloud_api.ingest.gateway_status import record_gateway_status
from cloud_api.ingest.mqtt_client import BufferedClient, make_consumer_client
from cloud_api.ingest.presence_service import (
    EventRows,
    PresenceOutcome,
    PresenceService,
    event_rows,
)
from cloud_api.ingest.retry import until_committed
from cloud_api.notify.outbox import MQTT_CHANNEL, DeliveryError, mark_sent_in
from cloud_api.store.checkpoint import WalCheckpointer
from cloud_api.store.db import begin_write
from storelink.mqtt import connect_properties
from storelink.wire import (
    BEACONS_QOS,
    BEACONS_SUBSCRIPTION,
    DEADLETTER_TOPIC,
    NOTIFICATION_QOS,
    PRESENCE_QOS,
    PRESENCE_SUBSCRIPTION,
    STATUS_QOS,
    STATUS_SUBSCRIPTION,
    BeaconFleetReport,
    DeadLetter,
    GatewayStatus,
    OfferNotification,
    PresenceEvent,
    notification_topic,
    parse_gateway_topic,
    utc_now,
)

logger = logging.getLogger(__name__)

KEEPALIVE_S = 30
RECONNECT_MAX_DELAY_S = 30
DEADLETTER_QOS = 1
# Unacknowledged messages the broker may have in flight to a worker (MQTT 5 Receive Maximum),
# in batches. Mosquitto's default is 20, which would cap every batch at 20 events. Room for two
# batches held the worker back at 20,000 events/s: a batch that waits for its stitcher's turn
# on SQLite's write lock (up to 50 ms) and then commits lets 1,000-1,400 more events arrive,
# and the broker stopped sending at 2,000 (the worker's p99 106-112 ms; with room for four,
# 75-77 ms; for eight, 73-77). A larger window costs only redeliveries after a crash.
IN_FLIGHT_BATCHES = 4
# How long a stopping worker waits for its last batch to commit and be acknowledged.
DRAIN_TIMEOUT_S = 10.0
SESSION_TAKEN_OVER = 142
# Allocations between two young-generation collections of Python's cyclic garbage collector
# (the interpreter's default is 700). The ingest allocates a few dozen objects per event and
# keeps few of them: at the default, collections cost about a sixth of the worker's CPU time.
GC_YOUNG_THRESHOLD = 10_000


@dataclass
class IngestCounters:
    """Since this process started. Only the ingest worker thread writes them."""

    presence_events: int = 0
    duplicates: int = 0
    gateway_statuses: int = 0
    invalid_payloads: int = 0
    processing_errors: int = 0
    offers: int = 0
    notifications: int = 0
    batches: int = 0
    database_retries: int = 0


@dataclass(frozen=True)
class CommittedBatch:
    """What one transaction stored, reported to ``on_commit`` after the commit (and after the
    acknowledgement, unless ``defer_ack`` leaves that to ``on_commit``)."""

    events: tuple[PresenceEvent, ...]
    """The new presence events (not the duplicates), in the order they were applied."""
    messages: int
    committed_at: float
    """``time.time()`` right after the commit."""
    outcomes: tuple[PresenceOutcome, ...] = ()
    """What each of ``events`` did: its visit, offer decision and notification."""
    statuses: tuple[GatewayStatus, ...] = ()
    """The gateway heartbeats of the batch."""
    sent: frozenset[str] = frozenset()
    """Ids of the notifications published."""
    commit_s: float = 0.0
    """Seconds the batch took to store, retries included."""
    redelivered: tuple[tuple[PresenceEvent, bool], ...] = ()
    """Presence events stored before (a redelivery), each with whether it opened its visit:
    a worker that died after the commit may not have written their time-series points."""
    acknowledge: Callable[[], None] | None = None
    """With ``defer_ack``: acknowledges the batch's messages; call it once what ``on_commit``
    does with the batch is safe."""
    stitched: bool = True
    """False when a stitcher process makes the events' visits later (``ingest_stitcher``):
    ``outcomes`` then say only that the events are new, and the stitcher's own batches carry
    what they did."""


def tune_gc(young_threshold: int = GC_YOUNG_THRESHOLD) -> None:
    """Tune the process's garbage collector for the ingest, which is what the process spends
    its time on.

    Raises the young generation's threshold to ``young_threshold`` (never lowers it), and
    freezes what the process holds by now (modules, models, compiled statements), so that a
    full collection no longer walks it: one took 59-73 ms, a pause in the middle of a batch,
    and 13-21 ms without what was there at the start. Frozen objects are still freed when
    nothing refers to them; only a reference cycle among them waits for ``gc.unfreeze()``.
    """
    young, *older = gc.get_threshold()
    gc.set_threshold(max(young, young_threshold), *older)
    gc.collect()
    gc.freeze()


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


GatewayMessage = PresenceEvent | GatewayStatus | BeaconFleetReport


def parse_message(topic: str, payload: bytes) -> GatewayMessage:
    """The message on ``topic``, validated; raises ``InvalidMessageError`` with the reason."""
    try:
        store_id, gateway_id, channel = parse_gateway_topic(topic)
    except ValueError as error:
        raise InvalidMessageError(str(error)) from None
    model: type[PresenceEvent] | type[GatewayStatus] | type[BeaconFleetReport]
    if channel == "presence":
        model = PresenceEvent
    elif channel == "status":
        model = GatewayStatus
    elif channel == "beacons":
        model = BeaconFleetReport
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


def presence_subscription(settings: CloudSettings) -> str:
    if settings.mqtt_protocol == "5":
        return f"$share/{settings.mqtt_shared_group}/{PRESENCE_SUBSCRIPTION}"
    return PRESENCE_SUBSCRIPTION


class Received(NamedTuple):
    """A message as paho's network thread queued it for the worker (a tuple: one is made per
    message on the network thread, where a frozen dataclass costs several times as much)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    # The connection it came on: an acknowledgement is only valid on that one.
    connection: int
    # Validated on the network thread, or why not: that thread runs while the worker waits
    # for SQLite or the disk (which let go of the GIL), so the worker no longer pays for it.
    message: GatewayMessage | InvalidMessageError


Parsed = tuple[Received, GatewayMessage]


class Settled(Enum):
    """What became of a message other than a presence event's outcome."""

    STATUS_STORED = "status stored"
    DEAD_LETTERED = "dead-lettered"
    NOT_STORED = "not stored: the worker stopped while the database was unreachable"


Outcome = PresenceOutcome | Settled


class PresenceConsumer:
    """Subscribes to every gateway's presence and status; see the module's description."""

    def __init__(
        self,
        settings: CloudSettings,
        service: PresenceService,
        sessions: sessionmaker[Session],
        *,
        on_commit: Callable[[CommittedBatch], None] | None = None,
        defer_ack: bool = False,
    ) -> None:
        """``defer_ack``: ``on_commit`` acknowledges each batch (its ``acknowledge``) once what
        it made of it is safe, so that a worker dying in between gets the messages again."""
        self.counters = IngestCounters()
        self._settings = settings
        self._service = service
        self._sessions = sessions
        self._on_commit = on_commit
        self._defer_ack = defer_ack and on_commit is not None
        self._v5 = settings.mqtt_protocol == "5"
        # With a stitcher process, this one only stores and acknowledges the events.
        self._stitched = settings.ingest_stitcher == "inline"
        # ...and on SQLite, which has one writer at a time, makes their rows before the lock.
        self._rows_first = not self._stitched and sessions.kw["bind"].dialect.name == "sqlite"
        self._subscriptions = [
            (presence_subscription(settings), PRESENCE_QOS),
            (STATUS_SUBSCRIPTION, STATUS_QOS),
            (BEACONS_SUBSCRIPTION, BEACONS_QOS),
        ]
        self._queue: queue.SimpleQueue[Received] = queue.SimpleQueue()
        self._subscribed = threading.Event()
        # Set when the worker should stop taking messages and finish what it has (draining).
        self._closing = threading.Event()
        self._worker: threading.Thread | None = None
        self._checkpointer = WalCheckpointer.for_engine(sessions.kw["bind"])
        # Bumped on every connect and disconnect, under the lock the acknowledgements take.
        self._connection = 0
        self._ack_lock = threading.Lock()
        # Notifications published and not yet marked sent in the outbox, with when: the next
        # batch's transaction marks them (a transaction of their own, with its fsync, cost as
        # much as a small batch), or the worker itself once no batch came for a moment.
        self._unmarked: list[tuple[str, datetime]] = []
        self._client, self._address = make_consumer_client(
            settings.mqtt_url, settings.mqtt_protocol, settings.mqtt_client_id
        )
        self._client.manual_ack_set(True)
        self._client.reconnect_delay_set(min_delay=1, max_delay=RECONNECT_MAX_DELAY_S)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        if isinstance(self._client, BufferedClient):
            self._client.on_publish_received = self._on_publish

    @property
    def client_id(self) -> str:
        return self._settings.mqtt_client_id

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def wait_until_subscribed(self, timeout_s: float) -> bool:
        """True once the broker has granted the subscriptions."""
        return self._subscribed.wait(timeout_s)

    def start(self) -> None:
        """Connect in the background: a broker that is down now is retried until it is up.

        Tunes the process's garbage collector for the consumer (``tune_gc``) until ``stop``.
        """
        tune_gc()
        if self._checkpointer is not None:
            self._checkpointer.start()
        self._worker = threading.Thread(
            target=self._run, name=f"ingest-{self.client_id}", daemon=True
        )
        self._worker.start()
        if self._v5:
            properties = connect_properties("5", self._settings.mqtt_session_expiry_s)
            assert properties is not None
            properties.ReceiveMaximum = min(
                IN_FLIGHT_BATCHES * self._settings.ingest_batch_size, 65535
            )
            # Never a clean start: a restarted worker resumes its session and its backlog.
            self._client.connect_async(
                self._address.host,
                self._address.port,
                keepalive=KEEPALIVE_S,
                clean_start=False,
                properties=properties,
            )
        else:
            self._client.connect_async(self._address.host, self._address.port, KEEPALIVE_S)
        self._client.loop_start()

    def stop(
        self,
        *,
        leave: bool = False,
        timeout_s: float = DRAIN_TIMEOUT_S,
        flush: Callable[[], None] | None = None,
    ) -> None:
        """Commit and acknowledge what was received, then disconnect.

        The session stays with the broker, which keeps queueing this worker's share of the
        events until it comes back (with the same client id) or the session expires. A worker
        that will not come back (scaling down) should ``leave``: it unsubscribes, drains what
        the broker still had queued for it, and ends its session, so the others get it all.
        ``flush``: with ``defer_ack``, whatever ``on_commit`` handed the batches to finishes
        with them (and acknowledges them) after the last commit, while still connected.
        """
        if leave and self._v5 and self.connected:
            self._leave_group(timeout_s)
        self._closing.set()
        if self._worker is not None:
            self._worker.join(timeout_s)
            if self._worker.is_alive():
                logger.warning("ingest worker still busy after %.0fs; stopping anyway", timeout_s)
        if flush is not None:
            flush()
        properties = None
        if leave and self._v5:
            properties = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 0
        self._client.disconnect(properties=properties)
        self._client.loop_stop()
        if self._checkpointer is not None:
            self._checkpointer.stop()
        gc.unfreeze()

    def _leave_group(self, timeout_s: float) -> None:
        done = threading.Event()
        self._client.on_unsubscribe = lambda *_: done.set()
        self._client.unsubscribe([topic for topic, _ in self._subscriptions])
        done.wait(timeout_s)
        # What the broker had queued for this session still comes; wait until it stops.
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            if not self._queue.empty():
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 0.5:
                break
            time.sleep(0.05)

    # --- paho callbacks (network thread) --------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._ack_lock:
            self._connection += 1
        if reason_code.is_failure:
            logger.error("MQTT broker %s refused the consumer: %s", self._address.host, reason_code)
            return
        logger.info(
            "consumer %s connected to MQTT broker %s:%d (session %s)",
            self.client_id,
            self._address.host,
            self._address.port,
            "resumed" if flags.session_present else "new",
        )
        # On every connect: a broker that lost the session has lost the subscriptions too.
        client.subscribe(self._subscriptions)

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
        with self._ack_lock:
            self._connection += 1
        self._subscribed.clear()
        if reason_code.value == SESSION_TAKEN_OVER:
            logger.error(
                "another MQTT client connected with this consumer's id %r and took its session: "
                "give every ingest worker its own STORELINK_MQTT_CLIENT_ID",
                self.client_id,
            )
        elif reason_code.is_failure:
            logger.warning("consumer lost the MQTT broker (%s); reconnecting", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = repr(message._topic)
        self._on_publish(topic, bytes(message.payload), message.mid, message.qos)

    def _on_publish(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        """A PUBLISH, from ``_on_message`` or straight from ``BufferedClient``'s buffer."""
        if self._closing.is_set():
            # Not acknowledged: the broker sends it again, to this session when it resumes.
            return
        message: GatewayMessage | InvalidMessageError
        try:
            message = parse_message(topic, payload)
        except InvalidMessageError as invalid:
            message = invalid
        self._queue.put(Received(topic, payload, mid, qos, self._connection, message))

    # --- the worker thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if not batch:
                self._mark_sent()
                continue
            try:
                self._process(batch)
            except Exception:
                # A bug, not a message: its messages stay unacknowledged, so the broker sends
                # them again on the next connection, and the worker goes on with the next batch.
                self.counters.processing_errors += len(batch)
                logger.exception("a batch of %d messages failed unexpectedly", len(batch))
        self._mark_sent()

    def _next_batch(self) -> list[Received] | None:
        """What is queued, up to a batch, after waiting for a first message; None: stop."""
        try:
            first = self._queue.get(timeout=0.1)
        except queue.Empty:
            return None if self._closing.is_set() else []
        batch = [first]
        limit = self._settings.ingest_batch_size
        deadline = time.monotonic() + self._settings.ingest_batch_wait_s
        while len(batch) < limit:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _process(self, batch: Sequence[Received]) -> None:
        now = utc_now()
        settled: list[Received] = []
        parsed: list[Parsed] = []
        for item in batch:
            message = item.message
            if isinstance(message, InvalidMessageError):
                self.counters.invalid_payloads += 1
                logger.warning("refused a message on %s: %s", item.topic, message)
                self._dead_letter(item, str(message), now)
                settled.append(item)
            else:
                parsed.append((item, message))
        stored: list[PresenceEvent] = []
        sent: list[str] = []
        applied: list[PresenceOutcome] = []
        redelivered: list[tuple[PresenceEvent, bool]] = []
        statuses: list[GatewayStatus] = []
        started = time.perf_counter()
        if parsed:
            try:
                outcomes = self._store(parsed, now)
            except Exception:
                logger.warning(
                    "a batch of %d messages failed; retrying them one by one",
                    len(parsed),
                    exc_info=True,
                )
                # Not again with each message: if marking them failed, none would get in.
                self._mark_sent()
                outcomes = self._store_one_by_one(parsed, now)
            for (item, message), outcome in zip(parsed, outcomes, strict=True):
                if outcome is Settled.NOT_STORED:
                    continue  # unacknowledged: the broker sends it again
                settled.append(item)
                if isinstance(message, PresenceEvent) and isinstance(outcome, PresenceOutcome):
                    self._count(message, outcome, stored, sent)
                    if not outcome.duplicate:
                        applied.append(outcome)
                    else:
                        redelivered.append((message, outcome.opened_visit))
                elif isinstance(message, GatewayStatus):
                    statuses.append(message)
        commit_s = time.perf_counter() - started
        committed_at = time.time()
        if not self._defer_ack:
            self._acknowledge(settled)
        sent_at = utc_now()
        self._unmarked.extend((notification_id, sent_at) for notification_id in sent)
        self.counters.batches += 1
        if self._on_commit is not None:
            self._on_commit(
                CommittedBatch(
                    tuple(stored),
                    len(batch),
                    committed_at,
                    tuple(applied),
                    tuple(statuses),
                    frozenset(sent),
                    commit_s,
                    tuple(redelivered),
                    partial(self._acknowledge, settled) if self._defer_ack else None,
                    self._stitched,
                )
            )

    def _count(
        self,
        event: PresenceEvent,
        outcome: PresenceOutcome,
        stored: list[PresenceEvent],
        sent: list[str],
    ) -> None:
        if outcome.duplicate:
            self.counters.duplicates += 1
            logger.debug("duplicate presence event %s ignored", event.event_id)
            return
        self.counters.presence_events += 1
        stored.append(event)
        if outcome.notification is not None:
            self.counters.offers += 1
            try:
                self.send_notification(outcome.notification)
            except DeliveryError as error:
                # Still pending in the outbox: the sender retries it.
                logger.error(
                    "could not publish offer %s: %s", outcome.notification.offer_code, error
                )
                return
            sent.append(outcome.notification.notification_id)

    def _store(self, parsed: Sequence[Parsed], now: datetime) -> list[Outcome]:
        """Commit ``parsed`` in one transaction, retrying while the database is unreachable.

        One outcome per message; all ``NOT_STORED`` when the worker stopped before the
        database came back.
        """
        outcomes = until_committed(
            partial(self._transaction, parsed, now), self._closing, self._count_retry
        )
        return [Settled.NOT_STORED] * len(parsed) if outcomes is None else outcomes

    def _count_retry(self) -> None:
        self.counters.database_retries += 1

    def _transaction(self, parsed: Sequence[Parsed], now: datetime) -> list[Outcome]:
        events = [message for _, message in parsed if isinstance(message, PresenceEvent)]
        statuses = [message for _, message in parsed if isinstance(message, GatewayStatus)]
        reports = [message for _, message in parsed if isinstance(message, BeaconFleetReport)]
        unmarked = len(self._unmarked)
        rows = self._event_rows(events, now) if self._rows_first else None
        with self._sessions.begin() as session:
            begin_write(session)
            if self._stitched:
                resolved = self._service.resolve(events, session=session)
                outcomes = iter(self._service.apply(session, resolved, now))
            else:
                if rows is None:
                    resolved = self._service.resolve(events, session=session)
                    rows = event_rows(resolved, now, self.client_id)
                outcomes = iter(self._service.record(session, rows))
            _mark_sent_in(session, self._unmarked)
            for status in statuses:
                record_gateway_status(session, status, now)
            for report in reports:
                record_beacon_report(session, report)
        del self._unmarked[:unmarked]
        self.counters.gateway_statuses += len(statuses)
        return [
            next(outcomes) if isinstance(message, PresenceEvent) else Settled.STATUS_STORED
            for _, message in parsed
        ]

    def _event_rows(self, events: Sequence[PresenceEvent], now: datetime) -> EventRows:
        """SQLite: the rows ``record`` stores, resolved and made before the write lock is
        taken: they were a third of the worker's time under the lock, which its stitcher waits
        for (PostgreSQL has no such lock: there they are made in the transaction, without a
        session more per batch). Its stitcher resolves each event again, in the transaction
        that stitches it. A shopper erased in between fails the batch on the foreign key; it is
        then stored message by message, each resolved again."""
        with self._sessions() as session:
            return event_rows(self._service.resolve(events, session=session), now, self.client_id)

    def _store_one_by_one(self, parsed: Sequence[Parsed], now: datetime) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for item, message in parsed:
            try:
                (outcome,) = self._store([(item, message)], now)
            except Exception as error:
                # A bug or a broken schema must cost this message, never the consumer.
                self.counters.processing_errors += 1
                logger.exception("failed to process a message on %s", item.topic)
                reason = f"processing failed: {type(error).__name__}: {error}"
                self._dead_letter(item, reason, now)
                outcome = Settled.DEAD_LETTERED
            outcomes.append(outcome)
        return outcomes

    def _acknowledge(self, messages: Sequence[Received]) -> None:
        client = self._client
        with self._ack_lock:
            # A message from an earlier connection comes again on this one: the broker resends
            # what was not acknowledged, and an old packet id may name another message now.
            current = [m for m in messages if m.qos > 0 and m.connection == self._connection]
            if isinstance(client, BufferedClient):
                client.ack_all([m.mid for m in current if m.qos == 1])
                current = [m for m in current if m.qos != 1]
            for message in current:
                client.ack(message.mid, message.qos)

    def send_notification(self, notification: OfferNotification) -> None:
        """Publish on the shopper's topic (the outbox's MQTT channel); ``DeliveryError`` if not."""
        topic = notification_topic(notification.shopper_ref)
        info = self._client.publish(topic, notification.model_dump_json(), qos=NOTIFICATION_QOS)
        # Not connected still queues a QoS 1 message: paho sends it on reconnection.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise DeliveryError(f"MQTT publish refused: {mqtt.error_string(info.rc)}")
        self.counters.notifications += 1
        logger.info("offer %s sent to %s", notification.offer_code, topic)

    def _mark_sent(self) -> None:
        """Mark what was published sent, in a transaction of its own (no batch is coming)."""
        if not self._unmarked:
            return
        try:
            with self._sessions.begin() as session:
                _mark_sent_in(session, self._unmarked)
        except sa.exc.SQLAlchemyError:
            # Left pending: the outbox sender sends them again, and the app drops the copies.
            logger.warning("could not mark %d notifications sent", len(self._unmarked))
        self._unmarked.clear()

    def _dead_letter(self, item: Received, reason: str, now: datetime) -> None:
        letter = DeadLetter(
            reason=reason,
            topic=item.topic,
            payload=item.payload.decode("utf-8", errors="backslashreplace"),
            received_at=now,
        )
        try:
            self._client.publish(DEADLETTER_TOPIC, letter.model_dump_json(), qos=DEADLETTER_QOS)
        except Exception:
            logger.exception("could not dead-letter a message from %s", item.topic)


def _mark_sent_in(session: Session, unmarked: Sequence[tuple[str, datetime]]) -> None:
    by_time: dict[datetime, list[str]] = {}
    for notification_id, at in unmarked:
        by_time.setdefault(at, []).append(notification_id)
    for at, notification_ids in by_time.items():
        mark_sent_in(session, notification_ids, MQTT_CHANNEL, at)
