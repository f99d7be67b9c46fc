"""Notification delivery: a transactional outbox drained over channels, with retries and backoff.

An offer's notification is written with one ``notification_deliveries`` row per channel, status
``pending``, in the transaction that made the offer. The ingest worker publishes on MQTT right
after its commit and marks the row ``sent``; everything else (the webhook to the retailer's push
service, an MQTT publish whose worker died between commit and publish, a failed attempt) is
taken by the ``OutboxSender``: it claims due rows with a conditional UPDATE, so two workers
never send one row at once, and retries with exponential backoff until ``max_attempts``, then
marks the row ``failed``. A notification may thus arrive twice (sent, then the worker died
before marking it); its ``notification_id`` lets the receiver drop the copy, and delivery
receipts are idempotent.

Server-Sent Events are the third channel: a pull channel, streamed from the notifications table
itself (``routes.notifications``), so any worker serves any shopper.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.auth.signing import SIGNATURE_HEADER, sign_body
from cloud_api.ingest.bulk import json_array
from cloud_api.store.models import Base, Notification, NotificationDelivery
from storelink.wire import OfferNotification, utc_now

logger = logging.getLogger(__name__)

PENDING = "pending"
SENT = "sent"
FAILED = "failed"
# A claimed row is left alone this long: the sender that claimed it is sending it.
LEASE = timedelta(seconds=30)
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 600.0
DRAIN_BATCH = 100
NOTIFICATION_ID_HEADER = "X-Storelink-Notification-Id"
MQTT_CHANNEL = "mqtt"
WEBHOOK_CHANNEL = "webhook"
DELIVERIES = Base.metadata.tables[NotificationDelivery.__tablename__]


class DeliveryError(Exception):
    """A channel could not deliver; the text says why. The outbox retries."""


class Channel(Protocol):
    name: str

    def send(self, notification: OfferNotification) -> None:
        """Deliver, or raise ``DeliveryError``."""


class WebhookChannel:
    """POSTs the notification's JSON to the retailer's push service, signed like our webhooks."""

    name = WEBHOOK_CHANNEL

    def __init__(self, url: str, secret: str, timeout_s: float = 5.0) -> None:
        self._url = url
        self._secret = secret
        self._client = httpx.Client(timeout=timeout_s)

    def send(self, notification: OfferNotification) -> None:
        body = notification.model_dump_json().encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_body(self._secret, body),
            NOTIFICATION_ID_HEADER: notification.notification_id,
        }
        try:
            response = self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise DeliveryError(f"{type(error).__name__}: {error}") from error
        if not response.is_success:
            raise DeliveryError(f"push service answered {response.status_code}")

    def close(self) -> None:
        self._client.close()


class PublishChannel:
    """The shopper's MQTT topic, through whatever publishes for the process (the consumer)."""

    name = MQTT_CHANNEL

    def __init__(self, publish: Callable[[OfferNotification], None]) -> None:
        self._publish = publish

    def send(self, notification: OfferNotification) -> None:
        self._publish(notification)


def backoff(attempts: int) -> timedelta:
    """Wait before the next attempt after ``attempts`` failed ones: 1 s, 2 s, 4 s ... 10 min."""
    return timedelta(seconds=min(BACKOFF_FIRST_S * 2 ** max(attempts - 1, 0), BACKOFF_MAX_S))


def mark_sent(
    sessions: sessionmaker[Session], notification_ids: Sequence[str], channel: str, at: datetime
) -> None:
    """What the caller sent itself right after its commit (the fast path) is not sent again."""
    if not notification_ids:
        return
    with sessions.begin() as session:
        mark_sent_in(session, notification_ids, channel, at)


# Run by the ingest's batches whenever they sent offers: built once (see campaign_store).
_MARK_SENT = (
    sa.update(DELIVERIES)
    .where(
        DELIVERIES.c.notification_id.in_(json_array("notifications")),
        DELIVERIES.c.channel == sa.bindparam("on_channel"),
        DELIVERIES.c.status == PENDING,
    )
    .values(status=SENT, sent_at=sa.bindparam("at"), attempts=DELIVERIES.c.attempts + 1)
)


def mark_sent_in(
    session: Session, notification_ids: Sequence[str], channel: str, at: datetime
) -> None:
    """``mark_sent`` in the caller's transaction (the ingest's next batch: no commit of its own)."""
    session.connection().execute(
        _MARK_SENT,
        {"notifications": sorted(notification_ids), "on_channel": channel, "at": at},
    )


class OutboxSender:
    """Sends the due deliveries of the channels it has; a thread, or ``drain`` called directly."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        channels: Mapping[str, Channel],
        max_attempts: int,
        interval_s: float = 0.5,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._sessions = sessions
        self._channels = dict(channels)
        self._max_attempts = max_attempts
        self._interval_s = interval_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-sender", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                while self.drain() == DRAIN_BATCH and not self._stop.is_set():
                    pass
            except Exception:
                # The database may be away; the rows stay pending and the next round retries.
                logger.exception("outbox round failed")

    def drain(self) -> int:
        """Attempt every due delivery of our channels once; how many were attempted."""
        now = self._clock()
        claimed = self._claim(now)
        for delivery_id, attempts, payload in claimed:
            channel = self._channels[payload[0]]
            notification = OfferNotification.model_validate(payload[1])
            try:
                channel.send(notification)
            except DeliveryError as error:
                self._failed(delivery_id, attempts, str(error))
                continue
            with self._sessions.begin() as session:
                session.execute(
                    sa.update(NotificationDelivery)
                    .where(NotificationDelivery.id == delivery_id)
                    .values(status=SENT, sent_at=self._clock(), last_error=None)
                )
        return len(claimed)

    def _claim(self, now: datetime) -> list[tuple[int, int, tuple[str, dict[str, object]]]]:
        with self._sessions.begin() as session:
            due = session.execute(
                sa.select(
                    NotificationDelivery.id,
                    NotificationDelivery.attempts,
                    NotificationDelivery.next_attempt_at,
                    NotificationDelivery.channel,
                    Notification.payload,
                )
                .join(
                    Notification,
                    Notification.notification_id == NotificationDelivery.notification_id,
                )
                .where(
                    NotificationDelivery.status == PENDING,
                    NotificationDelivery.next_attempt_at <= now,
                    NotificationDelivery.channel.in_(sorted(self._channels)),
                )
                .order_by(NotificationDelivery.next_attempt_at)
                .limit(DRAIN_BATCH)
            ).all()
            claimed = []
            for delivery_id, attempts, due_at, channel, payload in due:
                # Conditional: of two senders claiming one row, one changes it and one does not.
                taken = session.execute(
                    sa.update(NotificationDelivery)
                    .where(
                        NotificationDelivery.id == delivery_id,
                        NotificationDelivery.status == PENDING,
                        NotificationDelivery.next_attempt_at == due_at,
                    )
                    .values(next_attempt_at=now + LEASE, attempts=attempts + 1)
                )
                if isinstance(taken, sa.CursorResult) and taken.rowcount == 1:
                    claimed.append((delivery_id, attempts + 1, (channel, payload)))
        return claimed

    def _failed(self, delivery_id: int, attempts: int, error: str) -> None:
        gave_up = attempts >= self._max_attempts
        logger.warning(
            "notification delivery %d failed (attempt %d%s): %s",
            delivery_id,
            attempts,
            ", giving up" if gave_up else "",
            error,
        )
        with self._sessions.begin() as session:
            session.execute(
                sa.update(NotificationDelivery)
                .where(NotificationDelivery.id == delivery_id)
                .values(
                    status=FAILED if gave_up else PENDING,
                    next_attempt_at=self._clock() + backoff(attempts),
                    last_error=error[:1000],
                )
            )
