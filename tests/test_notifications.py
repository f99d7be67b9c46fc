"""Notification channels: SSE to a real HTTP client, a signed webhook to a real HTTP server, the
outbox's retries and its recovery of what a dying worker committed but never published."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import uvicorn

from cloud_api.auth.app_auth import APP_SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_app_request
from cloud_api.auth.signing import SIGNATURE_HEADER, verify_signature
from cloud_api.match.campaign_store import INLINE_GRACE
from cloud_api.notify.outbox import NOTIFICATION_ID_HEADER, OutboxSender, WebhookChannel
from cloud_api.store.models import NotificationDelivery
from storelink.wire import (
    OfferNotification,
    notification_topic,
    presence_topic,
    utc_now,
)
from tests.engagement_fixtures import App, Engagement, register, running_engagement
from tests.helpers import MqttRecorder, wait_for
from tests.services import Mosquitto
from tests.test_cloud_ingest import publish

PUSH_SECRET = "push-service-secret"


def signed(app: App, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        TIMESTAMP_HEADER: timestamp,
        APP_SIGNATURE_HEADER: sign_app_request(app.app_key, timestamp, method, path, body),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def served(database_url: str) -> Iterator[tuple[Engagement, str]]:
    """The cloud behind a real uvicorn server on a free port, and its base URL."""
    with running_engagement(database_url) as cloud:
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                cloud.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for(lambda: server.started, what="uvicorn started")
        try:
            yield cloud, f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)


class EventStream:
    """A real HTTP client reading the SSE stream on a thread: events land in a queue."""

    def __init__(self, base: str, app: App, last_event_id: str | None = None) -> None:
        path = f"/v1/shoppers/{app.shopper_id}/notifications/stream"
        headers = signed(app, "GET", path)
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.events: queue.Queue[dict[str, str]] = queue.Queue()
        self.connected = threading.Event()
        self.status: int | None = None
        self._client = httpx.Client(base_url=base, timeout=httpx.Timeout(5, read=None))
        self._thread = threading.Thread(target=self._read, args=(path, headers), daemon=True)
        self._thread.start()
        assert self.connected.wait(10), "the stream did not open"

    def _read(self, path: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", path, headers=headers) as response:
                self.status = response.status_code
                self.content_type = response.headers.get("content-type", "")
                event: dict[str, str] = {}
                for line in response.iter_lines():
                    if line == ": connected":
                        self.connected.set()
                    elif line == "" and event:
                        self.events.put(event)
                        event = {}
                    elif not line.startswith(":") and ":" in line:
                        name, _, value = line.partition(":")
                        event[name] = value.strip()
        except httpx.HTTPError:
            pass
        finally:
            self.connected.set()

    def next(self, timeout_s: float = 10) -> dict[str, str]:
        return self.events.get(timeout=timeout_s)

    def close(self) -> None:
        self._client.close()


def test_sse_streams_new_offers_and_resumes_after_the_last_event(
    served: tuple[Engagement, str],
) -> None:
    cloud, base = served
    cloud.campaign(id="welcome")
    alice = register(cloud.client)
    stream = EventStream(base, alice)
    try:
        assert stream.status == 200
        assert stream.content_type.startswith("text/event-stream")
        now = datetime.now(UTC)
        outcome = cloud.seen(alice, now)
        assert outcome.notification is not None
        event = stream.next()
        assert event["event"] == "offer"
        payload = OfferNotification.model_validate_json(event["data"])
        assert payload.offer_code == outcome.notification.offer_code
        first_id = event["id"]
    finally:
        stream.close()

    # Offline meanwhile: the next day's offer is waiting when the page reconnects.
    later = cloud.seen(alice, datetime.now(UTC) + timedelta(days=1))
    assert later.notification is not None
    resumed = EventStream(base, alice, last_event_id=first_id)
    try:
        event = resumed.next()
        assert json.loads(event["data"])["offer_code"] == later.notification.offer_code
        assert int(event["id"]) > int(first_id)
        with pytest.raises(queue.Empty):
            resumed.next(timeout_s=1)
    finally:
        resumed.close()


def test_sse_needs_the_shoppers_signature(served: tuple[Engagement, str]) -> None:
    cloud, base = served
    alice = register(cloud.client)
    path = f"/v1/shoppers/{alice.shopper_id}/notifications/stream"
    response = httpx.get(base + path, timeout=5)
    assert response.status_code == 401
    assert "X-Storelink-Timestamp" in response.json()["detail"]
    mallory = register(cloud.client)
    forged = signed(mallory, "GET", path)
    assert httpx.get(base + path, headers=forged, timeout=5).status_code == 401


def test_a_web_page_signs_the_stream_in_its_query_string(served: tuple[Engagement, str]) -> None:
    """EventSource cannot set headers: the same timestamp and signature go in ?ts=&sig=."""
    cloud, base = served
    cloud.campaign(id="welcome")
    alice, mallory = register(cloud.client), register(cloud.client)
    path = f"/v1/shoppers/{alice.shopper_id}/notifications/stream"
    headers = signed(alice, "GET", path)
    query = {"ts": headers[TIMESTAMP_HEADER], "sig": headers[APP_SIGNATURE_HEADER]}
    with httpx.Client(base_url=base, timeout=httpx.Timeout(5, read=10)) as client:
        with client.stream("GET", path, params=query) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            assert next(lines) == ": connected"
            outcome = cloud.seen(alice, datetime.now(UTC))
            assert outcome.notification is not None
            data = next(line for line in lines if line.startswith("data:"))
            assert outcome.notification.offer_code in data
        forged = signed(mallory, "GET", path)
        stolen = {"ts": forged[TIMESTAMP_HEADER], "sig": forged[APP_SIGNATURE_HEADER]}
        assert client.get(path, params=stolen).status_code == 401
        # Only the stream takes a signature from the URL; the other app calls want headers.
        consent = f"/v1/shoppers/{alice.shopper_id}/consent"
        assert client.get(consent, params=query).status_code == 401


def test_receipts_record_delivery_and_opening_once(served: tuple[Engagement, str]) -> None:
    cloud, base = served
    cloud.campaign(id="welcome")
    alice = register(cloud.client)
    outcome = cloud.seen(alice, datetime.now(UTC))
    assert outcome.notification is not None
    path = f"/v1/notifications/{outcome.notification.notification_id}/receipts"

    def receipt(status: str, app: App = alice) -> httpx.Response:
        body = json.dumps({"status": status}).encode()
        headers = {**signed(app, "POST", path, body), "Content-Type": "application/json"}
        return httpx.post(base + path, content=body, headers=headers, timeout=5)

    delivered = receipt("delivered")
    assert delivered.status_code == 200, delivered.text
    assert delivered.json()["opened_at"] is None
    opened = receipt("opened").json()
    assert opened["delivered_at"] == delivered.json()["delivered_at"]
    assert opened["opened_at"] is not None
    assert receipt("opened").json() == opened
    assert receipt("read").status_code == 422
    assert receipt("opened", register(cloud.client)).status_code == 401
    unknown = "/v1/notifications/01NOPE/receipts"
    body = b'{"status": "opened"}'
    missing = httpx.post(base + unknown, content=body, headers=signed(alice, "POST", unknown, body))
    assert missing.status_code == 404


class PushService:
    """The retailer's push service: a real HTTP server answering with the scripted statuses."""

    def __init__(self, statuses: list[int]) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((dict(self.headers), body))
                code = statuses.pop(0) if len(statuses) > 1 else statuses[0]
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/push"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def test_the_webhook_channel_signs_and_retries_with_backoff(database_url: str) -> None:
    push = PushService([500, 200])
    try:
        with running_engagement(
            database_url, push_webhook_url=push.url, push_webhook_secret=PUSH_SECRET
        ) as cloud:
            # This test's sender, on its own clock, is the only one: the app's would race it.
            cloud.app.state.outbox.stop()
            cloud.campaign(id="welcome")
            now = datetime.now(UTC)
            outcome = cloud.seen(register(cloud.client), now, now=now)
            assert outcome.notification is not None
            rows = cloud.rows(NotificationDelivery)
            assert sorted(r.channel for r in rows) == ["mqtt", "webhook"]
            clock = Clock(now)
            channel = WebhookChannel(push.url, PUSH_SECRET)
            sender = OutboxSender(cloud.context.sessions, {"webhook": channel}, 5, clock=clock)
            # The worker that made it has the first seconds to send it itself.
            assert sender.drain() == 0
            clock.at = now + timedelta(seconds=6)
            assert sender.drain() == 1
            (failed,) = cloud.rows(NotificationDelivery, NotificationDelivery.channel == "webhook")
            assert (failed.status, failed.attempts) == ("pending", 1)
            assert failed.last_error == "push service answered 500"
            assert failed.next_attempt_at == clock.at + timedelta(seconds=1)
            assert sender.drain() == 0
            clock.at += timedelta(seconds=1)
            assert sender.drain() == 1
            (sent,) = cloud.rows(NotificationDelivery, NotificationDelivery.channel == "webhook")
            assert (sent.status, sent.attempts, sent.last_error) == ("sent", 2, None)
            assert len(push.received) == 2
            headers, body = push.received[-1]
            assert verify_signature(PUSH_SECRET, body, headers[SIGNATURE_HEADER])
            assert headers[NOTIFICATION_ID_HEADER] == outcome.notification.notification_id
            assert OfferNotification.model_validate_json(body) == outcome.notification
            (mqtt,) = cloud.rows(NotificationDelivery, NotificationDelivery.channel == "mqtt")
            assert mqtt.status == "pending"
            channel.close()
    finally:
        push.close()


def test_a_delivery_that_keeps_failing_is_given_up(database_url: str) -> None:
    push = PushService([503])
    try:
        with running_engagement(
            database_url, push_webhook_url=push.url, push_webhook_secret=PUSH_SECRET
        ) as cloud:
            # This test's sender, on its own clock, is the only one: the app's would race it.
            cloud.app.state.outbox.stop()
            cloud.campaign(id="welcome")
            now = datetime.now(UTC) - timedelta(minutes=1)
            cloud.seen(register(cloud.client), now, now=now)
            clock = Clock(datetime.now(UTC))
            sender = OutboxSender(
                cloud.context.sessions,
                {"webhook": WebhookChannel(push.url, PUSH_SECRET)},
                3,
                clock=clock,
            )
            for _ in range(3):
                assert sender.drain() == 1
                clock.at += timedelta(minutes=5)
            assert sender.drain() == 0
            (row,) = cloud.rows(NotificationDelivery, NotificationDelivery.channel == "webhook")
            assert (row.status, row.attempts) == ("failed", 3)
            assert len(push.received) == 3
    finally:
        push.close()


@contextmanager
def alice_listening(
    database_url: str, mosquitto: Mosquitto
) -> Iterator[tuple[Engagement, App, str, MqttRecorder]]:
    """A cloud on the broker with a welcome campaign; Alice's app listens on her topic."""
    with running_engagement(database_url, mqtt_enabled=True, mqtt_url=mosquitto.url) as cloud:
        cloud.campaign(id="welcome")
        alice = register(cloud.client)
        topic = notification_topic(alice.shopper_id)
        recorder = MqttRecorder(mosquitto.url, topic)
        try:
            yield cloud, alice, topic, recorder
        finally:
            recorder.close()


def test_a_notification_committed_but_never_published_is_sent_by_the_outbox(
    database_url: str, mosquitto: Mosquitto
) -> None:
    """A worker died between its commit and its publish: another worker's sender publishes it."""
    with alice_listening(database_url, mosquitto) as (cloud, alice, topic, recorder):
        # Made by a service outside the consumer, which publishes nothing: like a dead worker.
        made = utc_now() - timedelta(seconds=10)
        outcome = cloud.seen(alice, made, now=made)
        assert outcome.notification is not None
        (received,) = wait_for(lambda: recorder.on(topic), what="the outbox published it")
        assert OfferNotification.model_validate_json(received) == outcome.notification
        wait_for(
            lambda: [r.status for r in cloud.rows(NotificationDelivery)] == ["sent"],
            what="the delivery marked sent",
        )


def test_the_consumer_publishes_right_after_its_commit_and_marks_it_sent(
    database_url: str, mosquitto: Mosquitto
) -> None:
    with alice_listening(database_url, mosquitto) as (cloud, alice, topic, recorder):
        event = alice.seen(utc_now())
        publish(mosquitto.url, presence_topic("store-1", "gw-1"), event.model_dump_json())
        (received,) = wait_for(lambda: recorder.on(topic), what="the offer published")
        notification = OfferNotification.model_validate_json(received)
        # Marked sent by the consumer itself, well before the outbox's grace is over.
        (row,) = wait_for(
            lambda: cloud.rows(NotificationDelivery, NotificationDelivery.status == "sent"),
            timeout_s=INLINE_GRACE.total_seconds() - 1,
            what="marked sent",
        )
        assert (row.notification_id, row.attempts) == (notification.notification_id, 1)
        assert row.sent_at is not None
