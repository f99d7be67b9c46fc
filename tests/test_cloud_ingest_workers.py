"""Several ingest workers on one real Mosquitto and one database (SQLite file and PostgreSQL).

The broker is configured as docs/scaling.md says production's must be: no limit on the messages
it queues for a worker, so that a worker that falls behind or restarts finds its backlog.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud_api.app import create_app
from cloud_api.config import CloudSettings
from cloud_api.ingest.consumer import PresenceConsumer, presence_subscription
from cloud_api.ingest.directory import ShopperDirectory
from cloud_api.ingest.presence_service import PresenceService
from cloud_api.match.offer_policy import offer_policy
from cloud_api.store.db import make_engine, make_sessionmaker
from cloud_api.store.migrate import upgrade_database
from cloud_api.store.models import PresenceEventRow, Visit
from storelink.mqtt import make_client
from storelink.wire import (
    PRESENCE_SUBSCRIPTION,
    PresenceEvent,
    PresenceKind,
    Subject,
    SubjectType,
    presence_topic,
)
from tests.helpers import ADMIN_HEADERS, ADMIN_TOKEN, wait_for
from tests.services import Mosquitto, running_mosquitto

ROOT = Path(__file__).resolve().parent.parent
BROKER_LIMITS = "max_queued_messages 0\nmax_queued_bytes 0\n"


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with running_mosquitto(BROKER_LIMITS) as mosquitto:
        yield mosquitto


class Worker:
    """One ingest worker, as a cloud process runs it, on its own database engine."""

    def __init__(self, mqtt_url: str, database_url: str, client_id: str, **settings: Any) -> None:
        self.settings = CloudSettings(
            mqtt_url=mqtt_url,
            mqtt_protocol=settings.pop("mqtt_protocol", "5"),
            database_url=database_url,
            mqtt_client_id=client_id,
            **settings,
        )
        self.engine = make_engine(database_url)
        sessions = make_sessionmaker(self.engine)
        service = PresenceService(sessions, ShopperDirectory(sessions), offer_policy(self.settings))
        self.consumer = PresenceConsumer(self.settings, service, sessions)

    def start(self) -> Worker:
        self.consumer.start()
        assert self.consumer.wait_until_subscribed(10), "the worker could not subscribe"
        return self

    def stop(self, *, leave: bool = False) -> None:
        self.consumer.stop(leave=leave)
        self.engine.dispose()


def stored_ids(database_url: str) -> list[str]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(connection.scalars(sa.select(PresenceEventRow.event_id)))
    finally:
        engine.dispose()


def visits(database_url: str) -> list[sa.Row[Any]]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            query = sa.select(Visit.subject_ref, Visit.started_at, Visit.ended_at, Visit.zones)
            return list(connection.execute(query))
    finally:
        engine.dispose()


def walks(subjects: int, t0: datetime) -> list[PresenceEvent]:
    """Each subject enters, dwells and leaves, at one of four gateways in two stores."""
    events = []
    for number in range(subjects):
        gateway = number % 4
        start = t0 + timedelta(seconds=number)
        for kind, after in (
            (PresenceKind.ENTER, 0),
            (PresenceKind.DWELL, 60),
            (PresenceKind.EXIT, 90),
        ):
            events.append(
                PresenceEvent(
                    store_id=f"store-{gateway % 2}",
                    gateway_id=f"gw-{gateway}",
                    zone_id=f"zone-{gateway}",
                    kind=kind,
                    subject=Subject(type=SubjectType.ANONYMOUS, ref=f"anon-{number:04d}"),
                    ts=start + timedelta(seconds=after),
                    dwell_s=float(after),
                    rssi=-60,
                    distance_m=1.5,
                )
            )
    return events


def publish_all(url: str, events: list[PresenceEvent], copies: int = 1) -> None:
    """Publish at QoS 1 as gateways do, each event ``copies`` times in a row."""
    client, address = make_client(url, "5", f"test-gateways-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect(address.host, address.port)
    client.loop_start()
    try:
        infos = [
            client.publish(presence_topic(e.store_id, e.gateway_id), e.model_dump_json(), qos=1)
            for e in events
            for _ in range(copies)
        ]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def app_worker(mqtt_url: str, database_url: str, client_id: str) -> FastAPI:
    return create_app(
        CloudSettings(
            mqtt_url=mqtt_url,
            mqtt_protocol="5",
            database_url=database_url,
            mqtt_client_id=client_id,
            admin_token=ADMIN_TOKEN,
        )
    )


def test_two_workers_split_the_events_and_store_each_exactly_once(
    broker: Mosquitto, database_url: str
) -> None:
    events = walks(300, datetime.now(UTC) - timedelta(minutes=10))
    app_a = app_worker(broker.url, database_url, "worker-a")
    app_b = app_worker(broker.url, database_url, "worker-b")
    with (
        TestClient(app_a, headers=ADMIN_HEADERS) as client_a,
        TestClient(app_b, headers=ADMIN_HEADERS) as client_b,
    ):
        a: PresenceConsumer = app_a.state.consumer
        b: PresenceConsumer = app_b.state.consumer
        assert a.wait_until_subscribed(10) and b.wait_until_subscribed(10)

        # Every event twice in a row, as a gateway does when a PUBACK is lost: the broker hands
        # the copies to different workers, which insert the same event_id at the same moment.
        publish_all(broker.url, events, copies=2)

        def handled() -> int:
            return sum(c.counters.presence_events + c.counters.duplicates for c in (a, b))

        wait_for(lambda: handled() == 2 * len(events), what="every copy handled")
        for counters in (a.counters, b.counters):
            assert counters.processing_errors == counters.invalid_payloads == 0
            # The broker split the load (whichever copy commits first is stored).
            assert counters.presence_events + counters.duplicates > 0
        assert a.counters.presence_events + b.counters.presence_events == len(events)
        assert a.counters.duplicates + b.counters.duplicates == len(events)
        summary = client_a.get("/v1/stats/summary").json()
        assert summary == client_b.get("/v1/stats/summary").json() | {
            "invalid_payloads": summary["invalid_payloads"]
        }

    ids = stored_ids(database_url)
    assert len(ids) == len(events)
    assert set(ids) == {e.event_id for e in events}
    # Each subject's enter, dwell and exit went to whichever worker, in whichever order the
    # workers committed them: still one visit each, from its enter to its exit.
    stitched = visits(database_url)
    assert len(stitched) == 300
    for visit in stitched:
        number = int(visit.subject_ref.removeprefix("anon-"))
        enter = events[3 * number].ts
        assert (visit.started_at, visit.ended_at) == (enter, enter + timedelta(seconds=90))
        assert visit.zones == [f"zone-{number % 4}"]


def read_lines(process: subprocess.Popen[str]) -> queue.SimpleQueue[str]:
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.strip())

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_a_worker_killed_before_acknowledging_loses_nothing_and_duplicates_nothing(
    broker: Mosquitto, database_url: str
) -> None:
    upgrade_database(database_url)
    events = walks(200, datetime.now(UTC) - timedelta(minutes=10))
    other = Worker(broker.url, database_url, "worker-b").start()
    # Worker A, a process of its own, dies by SIGKILL once its third batch of 50 is committed
    # and before that batch is acknowledged.
    dying = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.cloud_worker",
            broker.url,
            database_url,
            "worker-a",
            "50",
            "3",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = read_lines(dying)
        assert lines.get(timeout=15) == "subscribed"
        publish_all(broker.url, events)
        assert dying.wait(timeout=15) == -9, "worker A was not killed"
        killed_line = lines.get(timeout=5)
        assert killed_line.startswith("killed ")
        committed_unacknowledged = int(killed_line.split()[1])
        assert committed_unacknowledged > 0

        # A's share waits in its session: the other worker cannot take it.
        stored_now = wait_for(lambda: stored_ids(database_url), what="B stores its share")
        time.sleep(1.0)
        assert len(stored_ids(database_url)) < len(events)
        assert len(stored_now) <= len(events)

        # A comes back under the same client id; the broker resends all it had not acknowledged.
        restarted = Worker(broker.url, database_url, "worker-a").start()
        try:
            wait_for(lambda: len(stored_ids(database_url)) >= len(events), what="all stored")
            wait_for(
                lambda: restarted.consumer.counters.duplicates >= committed_unacknowledged,
                what="the committed batch redelivered",
            )
            time.sleep(0.5)
            # The batch committed before the kill came again and changed nothing.
            assert restarted.consumer.counters.duplicates == committed_unacknowledged
            assert restarted.consumer.counters.processing_errors == 0
        finally:
            restarted.stop()
    finally:
        dying.kill()
        dying.wait(timeout=5)
        other.stop()

    ids = stored_ids(database_url)
    assert len(ids) == len(set(ids)) == len(events)
    assert set(ids) == {e.event_id for e in events}
    assert len(visits(database_url)) == 200


def test_a_worker_that_leaves_the_group_hands_its_share_to_the_others(
    broker: Mosquitto, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'leave.db'}"
    upgrade_database(database_url)
    staying = Worker(broker.url, database_url, "worker-staying").start()
    leaving = Worker(broker.url, database_url, "worker-leaving").start()
    try:
        leaving.stop(leave=True)
        events = walks(40, datetime.now(UTC))
        publish_all(broker.url, events)
        wait_for(lambda: staying.consumer.counters.presence_events == len(events))
        assert len(stored_ids(database_url)) == len(events)
    finally:
        staying.stop()


def test_a_stopped_worker_keeps_its_share_queued_until_it_is_back(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """A restart (stop without leaving) keeps the session: nothing published meanwhile is lost."""
    database_url = f"sqlite:///{tmp_path / 'restart.db'}"
    upgrade_database(database_url)
    worker = Worker(broker.url, database_url, "worker-restarting").start()
    worker.stop()
    events = walks(30, datetime.now(UTC))
    publish_all(broker.url, events)
    time.sleep(0.3)
    assert stored_ids(database_url) == []
    worker = Worker(broker.url, database_url, "worker-restarting").start()
    try:
        wait_for(lambda: len(stored_ids(database_url)) == len(events))
    finally:
        worker.stop()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_database_outage_holds_the_events_until_it_is_over(
    broker: Mosquitto, database_url: str
) -> None:
    """Unreachable database: the worker retries, acknowledges nothing, dead-letters nothing."""
    upgrade_database(database_url)
    name = database_url.rsplit("/", 1)[1]
    admin = sa.create_engine(
        database_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
    )
    worker = Worker(broker.url, database_url, "worker-outage").start()
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": name},
            )
        events = walks(5, datetime.now(UTC))
        publish_all(broker.url, events)
        wait_for(lambda: worker.consumer.counters.database_retries >= 2, what="retries")
        counters = worker.consumer.counters
        assert counters.presence_events == counters.processing_errors == 0

        with admin.connect() as connection:
            connection.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        wait_for(lambda: worker.consumer.counters.presence_events == len(events), timeout_s=20)
        assert worker.consumer.counters.processing_errors == 0
    finally:
        worker.stop()
        admin.dispose()
    assert sorted(stored_ids(database_url)) == sorted(e.event_id for e in events)


def test_mqtt_3_subscribes_to_the_plain_topic(broker: Mosquitto, tmp_path: Path) -> None:
    """The embedded demo broker speaks MQTT 3.1.1 and knows no shared subscriptions."""
    database_url = f"sqlite:///{tmp_path / 'v3.db'}"
    upgrade_database(database_url)
    worker = Worker(broker.url, database_url, "worker-v3", mqtt_protocol="3.1.1")
    assert presence_subscription(worker.settings) == PRESENCE_SUBSCRIPTION
    worker.start()
    try:
        events = walks(5, datetime.now(UTC))
        publish_all(broker.url, events)
        wait_for(lambda: worker.consumer.counters.presence_events == len(events))
    finally:
        worker.stop()
    assert len(stored_ids(database_url)) == len(events)
