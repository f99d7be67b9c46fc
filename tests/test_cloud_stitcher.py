"""The stitcher (``ingest_stitcher = "process"``) makes of stored events what the worker would
have made of them in line, once each, whoever else stitches or stores; on SQLite and on a real
PostgreSQL server."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.app import create_app
from cloud_api.config import CloudSettings
from cloud_api.ingest.consumer import CommittedBatch
from cloud_api.ingest.directory import ShopperDirectory
from cloud_api.ingest.presence_service import PresenceService, event_rows
from cloud_api.ingest.resolve import shopper_token_ref
from cloud_api.ingest.stitcher import Stitcher, stitch_batch_size, stitch_lag
from cloud_api.match.offer_policy import offer_policy
from cloud_api.store.db import begin_write, make_engine, make_sessionmaker
from cloud_api.store.migrate import upgrade_database
from cloud_api.store.models import EVENTS, STITCH_MARKS, VISITS
from cloud_api.timeseries.points import PresenceFact
from cloud_api.timeseries.writer import facts_of
from storelink.tokens import token_window
from storelink.wire import (
    TOPIC_ROOT,
    OfferNotification,
    PresenceEvent,
    PresenceKind,
    Subject,
    SubjectType,
    notification_topic,
)
from tests.helpers import ADMIN_HEADERS, MqttRecorder, wait_for
from tests.services import Mosquitto
from tests.test_cloud_api import cart_body, post_signed, register
from tests.test_cloud_ingest import enter, send, settings_for

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
WORKER = "cloud-a"
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@dataclass
class Database:
    url: str
    sessions: sessionmaker[Session]
    service: PresenceService

    def stitcher(self, worker: str = WORKER, **settings: Any) -> Recording:
        return Recording(self, worker, settings)

    def record(self, events: Sequence[PresenceEvent], worker: str = WORKER) -> int:
        """Store ``events`` as ``worker``'s receiving process does; how many were new."""
        with self.sessions() as session:
            rows = event_rows(self.service.resolve(events, session=session), NOW, worker)
        with self.sessions.begin() as session:
            begin_write(session)
            outcomes = self.service.record(session, rows)
        return sum(not outcome.duplicate for outcome in outcomes)

    def apply(self, events: Sequence[PresenceEvent]) -> None:
        """Store and stitch ``events`` in line."""
        self.service.handle_batch(events, NOW)

    def visits(self) -> list[tuple[Any, ...]]:
        """Every visit, without its id, in a stable order."""
        columns = ("store_id", "subject_type", "subject_ref", "started_at", "last_seen_at")
        with self.sessions() as session:
            rows = session.execute(
                sa.select(
                    *(VISITS.c[name] for name in columns),
                    VISITS.c.ended_at,
                    VISITS.c.zones,
                    VISITS.c.dwell_s,
                ).order_by(*(VISITS.c[name] for name in columns))
            )
            return [tuple(row) for row in rows]

    def marks(self, worker: str = WORKER) -> tuple[int, int]:
        with self.sessions() as session:
            row = session.execute(
                sa.select(STITCH_MARKS.c.stitched_to, STITCH_MARKS.c.points_to).where(
                    STITCH_MARKS.c.worker == worker
                )
            ).one()
            return int(row[0]), int(row[1])


class Recording:
    """A stitcher whose committed batches are kept; ``acknowledge`` them to say their points
    are safe."""

    def __init__(self, database: Database, worker: str, settings: dict[str, Any]) -> None:
        self.batches: list[CommittedBatch] = []
        self.stitcher = Stitcher(
            CloudSettings(database_url=database.url, **settings),
            PresenceService(
                database.sessions,
                ShopperDirectory(database.sessions),
                offer_policy(CloudSettings()),
            ),
            database.sessions,
            worker,
            on_commit=self.batches.append,
        )

    def until_caught_up(self) -> int:
        stitched = 0
        while done := self.stitcher.step():
            stitched += done
        return stitched

    def stitched(self) -> list[str]:
        return [event.event_id for batch in self.batches for event in batch.events]

    def acknowledge(self) -> None:
        for batch in self.batches:
            assert batch.acknowledge is not None
            batch.acknowledge()


def open_database(url: str) -> Database:
    upgrade_database(url)
    sessions = make_sessionmaker(make_engine(url))
    settings = CloudSettings(database_url=url)
    return Database(
        url, sessions, PresenceService(sessions, ShopperDirectory(sessions), offer_policy(settings))
    )


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    yield database
    database.sessions.kw["bind"].dispose()


@pytest.fixture
def reference(tmp_path: Path) -> Iterator[Database]:
    """A second database, where the same events are stitched in line."""
    database = open_database(f"sqlite:///{tmp_path / 'inline.db'}")
    yield database
    database.sessions.kw["bind"].dispose()


def event(
    ref: str,
    kind: PresenceKind,
    seconds: float,
    dwell_s: float = 0.0,
    zone: str = "entrance",
    subject_type: SubjectType = SubjectType.WEARABLE,
) -> PresenceEvent:
    return PresenceEvent(
        store_id="store-1",
        gateway_id="gw-1",
        zone_id=zone,
        kind=kind,
        subject=Subject(type=subject_type, ref=ref),
        ts=T0 + timedelta(seconds=seconds),
        dwell_s=dwell_s,
        rssi=-61.5,
        distance_m=None if kind == PresenceKind.EXIT else 2.25,
    )


def shoppers_walking(count: int, seed: int = 7) -> list[PresenceEvent]:
    """``count`` subjects entering, dwelling in one or two zones and leaving, interleaved."""
    rng = random.Random(seed)
    walks: list[list[PresenceEvent]] = []
    for n in range(count):
        start = rng.uniform(0, 600)
        ref = f"anon-{n:04d}"
        walk = [event(ref, PresenceKind.ENTER, start)]
        walk += [
            event(ref, PresenceKind.DWELL, start + 30 * step, 30 * step)
            for step in range(1, rng.randrange(2, 5))
        ]
        if rng.random() < 0.5:
            walk.append(event(ref, PresenceKind.ENTER, start + 200, zone="shoes"))
            walk.append(event(ref, PresenceKind.EXIT, start + 260, 60, zone="shoes"))
        walk.append(event(ref, PresenceKind.EXIT, start + 300, 300))
        walks.append(walk)
    return sorted((e for walk in walks for e in walk), key=lambda e: e.ts)


def in_batches(events: Sequence[PresenceEvent], size: int) -> Iterator[Sequence[PresenceEvent]]:
    for start in range(0, len(events), size):
        yield events[start : start + size]


def test_stored_events_are_stitched_into_the_visits_the_worker_would_have_made(
    database: Database, reference: Database
) -> None:
    events = shoppers_walking(60)
    stitcher = database.stitcher(ingest_stitch_batch_size=37)
    for batch in in_batches(events, 50):
        assert database.record(batch) == len(batch)
        reference.apply(batch)
        stitcher.until_caught_up()

    assert database.visits() == reference.visits()
    assert len(database.visits()) == 60
    assert sorted(stitcher.stitched()) == sorted(e.event_id for e in events)
    # Read back as they were received, to the last field.
    read_back = {e.event_id: e for batch in stitcher.batches for e in batch.events}
    for sent in events:
        assert read_back[sent.event_id] == sent
        assert read_back[sent.event_id].model_dump_json() == sent.model_dump_json()
    with database.sessions() as session:
        assert stitch_lag(session, WORKER) == 0
        last = session.execute(sa.select(sa.func.max(EVENTS.c.id))).scalar_one()
    assert database.marks() == (last, 0)
    # The same facts the worker would have written: a footfall entry per visit.
    opened = [
        fact.event.subject.ref
        for batch in stitcher.batches
        for fact in facts_of(batch)
        if isinstance(fact, PresenceFact) and fact.opened_visit
    ]
    assert sorted(opened) == [f"anon-{n:04d}" for n in range(60)]


def test_a_redelivered_event_is_stored_and_stitched_once(database: Database) -> None:
    walk = [event("anon-1", PresenceKind.ENTER, 0), event("anon-1", PresenceKind.EXIT, 90, 90)]
    assert database.record(walk) == 2
    assert database.record([walk[1], walk[0]]) == 0
    stitcher = database.stitcher()
    assert stitcher.until_caught_up() == 2
    assert stitcher.until_caught_up() == 0
    ((*_, ended_at, zones, dwell_s),) = database.visits()
    assert (ended_at, zones, dwell_s) == (T0 + timedelta(seconds=90), ["entrance"], 90)


def test_two_stitchers_of_one_worker_stitch_each_event_once(database: Database) -> None:
    # The old one still finishing while its replacement starts: each reads the mark in its
    # stitching transaction, so whichever comes second finds the events stitched.
    events = shoppers_walking(30, seed=11)
    old, new = (
        database.stitcher(ingest_stitch_batch_size=25),
        database.stitcher(ingest_stitch_batch_size=25),
    )
    for batch in in_batches(events, 40):
        database.record(batch)
        old.stitcher.step()
        new.stitcher.step()
    old.until_caught_up()
    new.until_caught_up()
    stitched = old.stitched() + new.stitched()
    assert sorted(stitched) == sorted(e.event_id for e in events)
    assert old.stitched() and new.stitched()
    assert len(database.visits()) == 30


def test_a_stitcher_reads_only_its_own_workers_events(database: Database) -> None:
    database.record([event("anon-a", PresenceKind.ENTER, 0)], worker="cloud-a")
    database.record([event("anon-b", PresenceKind.ENTER, 1)], worker="cloud-b")
    database.apply([event("anon-c", PresenceKind.ENTER, 2)])  # stitched in line already
    a, b = database.stitcher("cloud-a"), database.stitcher("cloud-b")
    assert a.until_caught_up() == 1
    assert [e.subject.ref for e in a.batches[0].events] == ["anon-a"]
    with database.sessions() as session:
        assert stitch_lag(session, "cloud-b") == 1
    assert b.until_caught_up() == 1
    assert [v[2] for v in database.visits()] == ["anon-a", "anon-b", "anon-c"]


def test_a_restarted_stitcher_derives_again_the_points_it_had_not_made_safe(
    database: Database,
) -> None:
    first = [event(f"anon-{n}", PresenceKind.ENTER, n) for n in range(5)]
    second = [event(f"anon-{n}", PresenceKind.DWELL, 60 + n, 30) for n in range(5)]
    second.append(event("anon-9", PresenceKind.ENTER, 70))
    database.record(first)
    crashed = database.stitcher()
    crashed.until_caught_up()
    crashed.acknowledge()  # the first events' points are safe ...
    database.record(second)
    crashed.until_caught_up()  # ... the second ones' were not when it died
    stitched_to, points_to = database.marks()
    assert points_to < stitched_to

    restarted = database.stitcher()
    restarted.stitcher.start()  # resumes, then stitches
    restarted.stitcher.stop()
    (again,) = restarted.batches
    assert [e.event_id for e, _ in again.redelivered] == [e.event_id for e in second]
    # The footfall entry comes again for the visit an event of theirs opened, and no other.
    assert [e.subject.ref for e, opened in again.redelivered if opened] == ["anon-9"]
    restarted.acknowledge()
    restarted.stitcher.step()  # idle: records that the points are safe now
    assert database.marks() == (stitched_to, stitched_to)
    assert len(database.visits()) == 6


def test_events_after_an_erasure_of_the_latest_ones_are_still_stitched(
    database: Database,
) -> None:
    # SQLite hands out the largest id plus one: had the erased events' ids come back, they
    # would lie at or below the stitcher's mark, and it would never read the new events.
    database.record(
        [event("anon-1", PresenceKind.ENTER, 0), event("anon-2", PresenceKind.ENTER, 1)]
    )
    stitcher = database.stitcher()
    assert stitcher.until_caught_up() == 2
    with database.sessions.begin() as session:
        session.execute(sa.delete(VISITS).where(VISITS.c.subject_ref == "anon-2"))
        session.execute(sa.delete(EVENTS).where(EVENTS.c.subject_ref == "anon-2"))
    database.record([event("anon-3", PresenceKind.ENTER, 2)])
    assert stitcher.until_caught_up() == 1
    assert [v[2] for v in database.visits()] == ["anon-1", "anon-3"]


def test_a_visit_changed_while_the_batch_was_worked_out_is_stitched_again(
    reference: Database,
) -> None:
    # On SQLite (only: PostgreSQL has no single writer to spare) the stitcher works a batch out
    # before it takes the write lock; a visit that somebody changed in between (here by hand,
    # in the app's check-ins by the same service) voids that work, and the batch is stitched
    # again under the lock.
    database = reference
    database.record([event("anon-1", PresenceKind.ENTER, 0)])
    recording = database.stitcher()
    recording.until_caught_up()
    database.record([event("anon-1", PresenceKind.EXIT, 90, 90)])
    stitcher = recording.stitcher
    make_plan = stitcher._plan

    def plan_then_changed_meanwhile() -> Any:
        planned = make_plan()
        with database.sessions.begin() as session:
            session.execute(sa.update(VISITS).values(zones=["entrance", "till"]))
        return planned

    stitcher._plan = plan_then_changed_meanwhile  # type: ignore[method-assign]
    assert recording.until_caught_up() == 1
    ((*_, ended_at, zones, _),) = database.visits()
    assert (ended_at, zones) == (T0 + timedelta(seconds=90), ["entrance", "till"])
    assert stitcher.counters.replanned == 1


# --- the app, with its stitcher process ---------------------------------------------------------


def split_settings(url: str, tmp_path: Path) -> CloudSettings:
    return settings_for(url, tmp_path).model_copy(
        update={"ingest_stitcher": "process", "ingest_stitch_poll_s": 0.01}
    )


def sql_count(database_url: str, sql: str) -> int:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text(sql)).scalar_one())
    finally:
        engine.dispose()


@contextmanager
def split_app(settings: CloudSettings) -> Iterator[tuple[TestClient, Any]]:
    """The app with a stitcher process, its consumer subscribed; its client and ``app.state``."""
    app = create_app(settings)
    with TestClient(app, headers=ADMIN_HEADERS) as client:
        assert app.state.consumer.wait_until_subscribed(10)
        yield client, app.state


def registered(client: TestClient, now: datetime) -> tuple[str, str]:
    """A shopper registered through the API, and the token their app advertises at ``now``."""
    shopper = register(client)
    ref = shopper_token_ref(bytes.fromhex(shopper["app_key"]), token_window(now.timestamp()))
    return shopper["shopper_id"], ref


def walk_in_and_out(broker_url: str, people: int, now: datetime) -> None:
    """``people`` anonymous phones enter store-1 and leave it 40 s later."""
    for number in range(people):
        subject = Subject(type=SubjectType.ANONYMOUS, ref=f"anon-{number}")
        send(broker_url, enter(subject, now))
        exit_ = enter(subject, now + timedelta(seconds=40), kind=PresenceKind.EXIT)
        send(broker_url, exit_.model_copy(update={"dwell_s": 40.0}))


def test_the_app_with_a_stitcher_process_makes_visits_and_offers_and_survives_its_death(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    listener = MqttRecorder(mosquitto.url, f"{TOPIC_ROOT}/shoppers/+/notifications")
    settings = split_settings(mosquitto.url, tmp_path)
    with split_app(settings) as (client, state):
        consumer = state.consumer
        now = datetime.now(UTC)
        shopper_id, ref = registered(client, now)
        cart = cart_body(shopper_id, now - timedelta(hours=3))
        assert post_signed(client, cart).status_code == 202

        send(mosquitto.url, enter(Subject(type=SubjectType.APP, ref=ref), now))

        # The offer is made by the stitcher and sent by the worker's outbox sender.
        offers = wait_for(
            lambda: client.get("/v1/offers", params={"shopper_id": shopper_id}).json()["items"]
        )
        received = wait_for(lambda: listener.on(notification_topic(shopper_id)))
        assert OfferNotification.model_validate_json(received[0]).offer_code == offers[0]["code"]
        (visit,) = client.get("/v1/visits", params={"store_id": "store-1"}).json()["items"]
        assert offers[0]["visit_id"] == visit["id"]
        assert consumer.counters.presence_events == 1
        metrics = client.get("/metrics").text
        assert "storelink_stitch_lag_events 0.0" in metrics

        # It yields the CPU to the worker, which acknowledges the events.
        stitcher = state.stitcher
        assert stitcher.pid is not None
        niceness = os.getpriority(os.PRIO_PROCESS, stitcher.pid) - os.getpriority(
            os.PRIO_PROCESS, os.getpid()
        )
        assert niceness == min(settings.ingest_stitch_nice, 19 - os.nice(0))

        # The stitcher dies; the worker goes on storing, and a new stitcher catches up.
        os.kill(stitcher.pid, signal.SIGKILL)
        walk_in_and_out(mosquitto.url, 20, now)
        wait_for(lambda: consumer.counters.presence_events == 41, 20, "every event stored")
        wait_for(lambda: stitcher.restarts == 1, 20, "the stitcher started again")
        wait_for(
            lambda: (
                len(client.get("/v1/visits", params={"store_id": "store-1"}).json()["items"]) == 21
            ),
            30,
            "every visit stitched",
        )
        visits = client.get("/v1/visits", params={"store_id": "store-1"}).json()["items"]
        assert all(v["ended_at"] is not None for v in visits if v["subject_type"] == "anonymous")
        assert "storelink_stitch_restarts_total 1.0" in client.get("/metrics").text
    # Every store entry counted once in the time series, the stitcher's death notwithstanding.
    footfall = sql_count(
        settings.database_url,
        "SELECT count(*) FROM timeseries_points WHERE measurement = 'footfall'",
    )
    assert footfall == 21
    assert sql_count(settings.database_url, "SELECT count(*) FROM visits") == 21
    listener.close()


def test_stitching_batches_are_smaller_where_the_worker_waits_for_them() -> None:
    sqlite_url, postgresql_url = "sqlite:///./storelink.db", "postgresql://db/storelink"
    assert stitch_batch_size(CloudSettings(database_url=sqlite_url)) == 1000
    assert stitch_batch_size(CloudSettings(database_url=postgresql_url)) == 3000
    configured = {"ingest_stitch_batch_size": 250}
    for url in (sqlite_url, postgresql_url):
        assert stitch_batch_size(CloudSettings(database_url=url, **configured)) == 250


def test_a_shopper_erased_while_the_worker_resolved_their_event_is_not_stored_by_name(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    settings = split_settings(mosquitto.url, tmp_path)
    with split_app(settings) as (client, state):
        consumer = state.consumer
        now = datetime.now(UTC)
        shopper_id, ref = registered(client, now)
        make_rows = consumer._event_rows
        erasures: list[int] = []

        def erased_meanwhile(events: Sequence[PresenceEvent], at: datetime) -> Any:
            # The worker resolves before it takes the write lock: the erasure comes in between.
            rows = make_rows(events, at)
            if not erasures:
                erasures.append(client.delete(f"/v1/shoppers/{shopper_id}").status_code)
            return rows

        consumer._event_rows = erased_meanwhile
        send(mosquitto.url, enter(Subject(type=SubjectType.APP, ref=ref), now))
        wait_for(lambda: consumer.counters.presence_events == 1, 20, "the event stored")
        assert erasures == [200]
        assert consumer.counters.processing_errors == 0
        assert consumer.counters.invalid_payloads == 0
    stored = "SELECT count(*) FROM presence_events"
    assert sql_count(settings.database_url, stored) == 1
    by_name = f"{stored} WHERE shopper_id IS NOT NULL OR subject_ref != '{ref}'"
    assert sql_count(settings.database_url, by_name) == 0


def test_an_external_stitcher_stitches_what_its_worker_stored_and_stops_when_told(
    mosquitto: Mosquitto, database_url: str, tmp_path: Path
) -> None:
    # ingest_stitcher "external": the worker stores and acknowledges, and starts no stitcher;
    # `storelink cloud stitch`, a process of its own (on another host, say), stitches.
    settings = split_settings(mosquitto.url, tmp_path).model_copy(
        update={
            "ingest_stitcher": "external",
            "database_url": database_url,
            "mqtt_client_id": "cloud-a",
        }
    )
    env = {
        **os.environ,
        "STORELINK_DATABASE_URL": database_url,
        "STORELINK_INGEST_STITCH_POLL_S": "0.01",
        "STORELINK_TIMESERIES_BUFFER_PATH": str(tmp_path / "stitcher-buffer.db"),
    }
    command = [sys.executable, "-m", "storelink", "cloud", "stitch", "--worker", "cloud-a"]
    with split_app(settings) as (client, state):
        assert state.stitcher is None
        walk_in_and_out(mosquitto.url, 10, datetime.now(UTC))
        wait_for(lambda: state.consumer.counters.presence_events == 20, 20, "every event stored")
        assert client.get("/v1/visits", params={"store_id": "store-1"}).json()["items"] == []
        metrics = client.get("/metrics").text
        assert "storelink_stitch_lag_events 20.0" in metrics
        assert "storelink_stitch_restarts" not in metrics

        # A worker id nobody stores under: it says so, and waits.
        mistyped = subprocess.Popen(
            [*command[:-1], "cloud-b"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert mistyped.stdout is not None
        starting = list(
            itertools.takewhile(
                lambda line: b"started (pid" not in line, iter(mistyped.stdout.readline, b"")
            )
        )
        mistyped.send_signal(signal.SIGTERM)
        assert mistyped.wait(30) == 0
        assert any(b"no events stored for worker 'cloud-b' yet" in line for line in starting)

        stitcher = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            wait_for(
                lambda: "storelink_stitch_lag_events 0.0" in client.get("/metrics").text,
                60,
                "the external stitcher caught up",
            )
            visits = client.get("/v1/visits", params={"store_id": "store-1"}).json()["items"]
            assert len(visits) == 10
            assert all(visit["ended_at"] is not None for visit in visits)
            stitcher.send_signal(signal.SIGTERM)
            output, _ = stitcher.communicate(timeout=30)
        finally:
            if stitcher.poll() is None:
                stitcher.kill()
                stitcher.wait()
    assert stitcher.returncode == 0, output
    assert "stitcher of cloud-a stopped at event" in output
    assert "no events stored" not in output
    footfall = "SELECT count(*) FROM timeseries_points WHERE measurement = 'footfall'"
    assert sql_count(database_url, footfall) == 10


@pytest.mark.parametrize(
    ("arguments", "env", "reason"),
    [
        (["--worker", ""], {}, "mqtt_client_id: String should have at least 1 character"),
        ([], {"STORELINK_DATABASE_URL": "sqlite://"}, "use a SQLite file"),
        ([], {"STORELINK_INGEST_STITCH_NICE": "high"}, "ingest_stitch_nice"),
    ],
)
def test_the_stitch_command_refuses_bad_settings_with_the_reason(
    arguments: list[str], env: dict[str, str], reason: str
) -> None:
    from typer.testing import CliRunner

    from storelink.cli import app

    result = CliRunner().invoke(app, ["cloud", "stitch", *arguments], env=env)
    assert result.exit_code == 2
    # The message as read, without the box drawn around it.
    assert reason in " ".join(result.output.replace("│", " ").split())
