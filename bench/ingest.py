# ruff: noqa: E402 (the project imports follow a sys.path fix)
"""How fast the cloud ingests presence events from a real Mosquitto. Prints JSON lines.

For SQLite and for PostgreSQL (a throwaway cluster started here, with fsync on), through a
Mosquitto started here (queue limits lifted, as docs/scaling.md says production's are), to
``--workers`` ingest worker processes (one ``PresenceConsumer`` each: paho's network thread and
the batching worker thread) sharing the presence events through the MQTT 5 shared
subscription and committing to the one database:

- ``ingest_events_per_s``: the workers' capacity. ``--events`` presence events (50,000) wait
  in the workers' MQTT sessions while they are stopped (the broker queues them, as it does
  across a restart); then the workers start and the clock runs from their start to the last
  commit. Every event is checked to be stored exactly once. ``cpu_us_per_event`` is the CPU
  time the worker processes spent per event (both threads), which the machine's other load
  does not inflate the way it does wall-clock figures.
- ``ingest_cpu_us_per_event``: the CPU time of workers, broker and database together per
  event, against ``budget_at_20000_per_s`` (what the machine's cores offer per event at
  20,000 events/s) and a ``reference`` measured in the same run: the least any ingest must do
  with the same messages (validate them, insert them into the events table of a SQLite file,
  commit per batch; no MQTT, visits or offers), which tells how fast the machine is today.
- ``ingest_in_process_us_per_event`` at batches of 20 and of 1,000, and
  ``ingest_batch_overhead_us``: the worker's transaction alone (validate, resolve, apply,
  commit; no MQTT), in this process, into a fresh SQLite file; what every batch costs whatever
  its size, and what each event adds, derived from the two. Under light load batches are small
  (what arrived while the previous one was stored), so the overhead, more than the per-event
  cost, sets the latency.
- ``ingest_latency_p50_ms`` / ``ingest_latency_p99_ms``: publish-to-commit latency at each
  steady ``rate`` (``--rates``; skipped above 90% of the capacity just measured, or
  ``--load-limit``). Each event carries the wall-clock time it was sent as its ``ts``; the
  worker's commit hook takes the difference right after the commit. It spans the publisher,
  the broker, the worker and the commit, so it bounds broker-to-commit latency from above.
  ``publisher_cpu_us_per_event``: what the load generator cost meanwhile.

With ``--stitcher process`` (the default runs both) each worker is two processes, as
``STORELINK_INGEST_STITCHER=process`` makes it: the worker stores and acknowledges the events,
and its stitcher process reads them back and makes the visits and offers (see
``cloud_api/ingest/stitcher.py``). ``ingest_events_per_s`` and ``ingest_latency_*`` then
measure the worker's commits, which is when an event is safe and acknowledged, and two more
figures measure the stitcher: ``stitch_events_per_s`` (from the workers' start to the last
event stitched, with ``stitcher_cpu_us_per_event``) and ``stitch_latency_p50_ms`` /
``stitch_latency_p99_ms`` (from the publisher's hand to the stitcher's commit, the time by
which an event's visit and offer exist; ``stitch_latency_second_half_*`` over the events stitched
last, once the stitcher that started cold with the run has worked off what queued meanwhile).
With ``--stitcher external`` (``STORELINK_INGEST_STITCHER=external``, ``storelink cloud
stitch`` run elsewhere) the workers do the same, and their stitchers start only once the
traffic ends: the figures are those of the workers with the machine to themselves, as when the
stitchers have cores of their own on another host.

The publisher is a separate process, as gateways are, publishing QoS 1 on 200 gateways' topics
(100 stores) with ``bench/load/lean_publisher.py``: paho's client would spend as much CPU per
message as the worker, on the same two cores. The events are a realistic mix: 60% anonymous
phones, 30% shopper-app tokens (a third of them registered shoppers, half of those with an
abandoned cart, so offers are decided and made), 10% beacons; each of 3,000 people in the
stores enters, dwells a few times and exits, interleaved with the others; a registered shopper
is in one store at a time. A dwell or exit says how long its subject has been in the zone: the
publisher writes the time since it sent the subject's enter, as a gateway counts it.

Run with ``.venv/bin/python bench/ingest.py [--events N] [--rates R ...] [--workers 1 2]
[--database sqlite|postgresql|both] [--stitcher inline process external] [--batch-size B]
[--stitch-batch-size S] [--stitch-nice N] [--load-limit L]``; needs mosquitto and PostgreSQL's
initdb/pg_ctl (``make system-deps``). Other load on the machine shows in the wall-clock
figures: run it on a quiet machine, and compare ``cpu_us_per_event``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import multiprocessing
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any, NamedTuple

# tests/services.py starts the throwaway Mosquitto and PostgreSQL; the repository root holds it.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import sqlalchemy as sa

from bench.load.lean_publisher import LeanPublisher, Packet
from cloud_api.config import CloudSettings
from cloud_api.ingest.consumer import (
    GC_YOUNG_THRESHOLD,
    CommittedBatch,
    PresenceConsumer,
    parse_message,
    tune_gc,
)
from cloud_api.ingest.directory import ShopperDirectory
from cloud_api.ingest.presence_service import PresenceService
from cloud_api.ingest.resolve import shopper_token_ref
from cloud_api.ingest.stitcher import Stitcher, stitch_batch_size
from cloud_api.ingest.stitcher_process import STITCHER_GC_YOUNG_THRESHOLD, yield_cpu
from cloud_api.match.offer_policy import offer_policy
from cloud_api.offers.codes import new_app_key
from cloud_api.store.db import make_engine, make_sessionmaker
from cloud_api.store.migrate import upgrade_database
from cloud_api.store.models import Cart, Offer, PresenceEventRow, Shopper, Visit
from storelink.broker import free_port, wait_for_port
from storelink.tokens import token_window
from storelink.wire import PresenceEvent, PresenceKind, Subject, SubjectType, presence_topic
from tests.services import _as_postgres_user, _postgres_bin, running_mosquitto

SEED = 20_261_124
STORES = 100
GATEWAYS_PER_STORE = 2
MIX = {SubjectType.ANONYMOUS: 0.60, SubjectType.APP: 0.30, SubjectType.BEACON: 0.10}
REGISTERED_SHOPPERS = 400
REGISTERED_SHARE = 1 / 3  # of the app subjects, registered shoppers' phones
ACTIVE_SUBJECTS = 3000  # people in the chain's stores at once
TS_PLACEHOLDER = "2000-01-01T00:00:00Z"
# A dwell no event has (the other numbers are an RSSI and a distance of a few metres): the
# publisher writes the seconds since the subject's enter was sent in its place.
DWELL_SENTINEL = 99999.25
DWELL_PLACEHOLDER = str(DWELL_SENTINEL)
# A worker that falls behind must find its backlog queued, not dropped after Mosquitto's
# default of 1,000 messages per session.
BROKER_CONFIG = "max_queued_messages 0\nmax_queued_bytes 0\n"
PUBLISHER_IN_FLIGHT = 1000
TIMEOUT_S = 300.0
# The in-process batch costs: small batches as under light load, large ones as from a backlog.
SMALL_BATCH = 20
LARGE_BATCH = 1000
BATCHES_PER_SIZE = {SMALL_BATCH: 300, LARGE_BATCH: 20}
# Latency is measured for LATENCY_RUN_S of traffic at each rate below this share of capacity.
LATENCY_RUN_S = 10.0
LATENCY_LOAD_LIMIT = 0.9


class Message(NamedTuple):
    """A presence event to publish: its payload holds ``TS_PLACEHOLDER`` and
    ``DWELL_PLACEHOLDER``, stamped when it is sent; ``entered``, for a dwell or an exit, is the
    index in the stream of its subject's enter (the dwell is the time since that was sent)."""

    topic: str
    payload: str
    entered: int | None


Stream = list[Message]


def emit(metric: str, value: float | None, unit: str, **extra: object) -> None:
    print(json.dumps({"metric": metric, "value": value, "unit": unit, **extra}), flush=True)


# --- the events ---------------------------------------------------------------------------------


@dataclass
class Person:
    subject: Subject
    store: int
    zone: int
    dwells_left: int
    # The index of the person's enter in the stream.
    entered: int


@dataclass
class World:
    rng: random.Random
    app_refs: list[str]
    people: list[Person] = field(default_factory=list)
    serial: int = 0
    emitted: int = 0
    # A registered shopper is one person, in one store at a time: their phone's ref comes
    # back only after they left. (Drawing it at random, each of the 400 entered a store about
    # once a second at 20,000 events/s, and their visits piled up under a few refs.)
    inside: set[str] = field(default_factory=set)

    def new_subject(self) -> Subject:
        self.serial += 1
        kind = self.rng.choices(list(MIX), weights=list(MIX.values()))[0]
        if kind == SubjectType.APP:
            if self.rng.random() < REGISTERED_SHARE:
                ref = self.rng.choice(self.app_refs)
                if ref not in self.inside:
                    self.inside.add(ref)
                    return Subject(type=kind, ref=ref)
            return Subject(type=kind, ref=f"{self.rng.getrandbits(32):08x}")
        if kind == SubjectType.BEACON:
            return Subject(type=kind, ref=f"f7826da6-4fa2-4e98-8024-bc5b71e0893e.7.{self.serial}")
        return Subject(type=kind, ref=f"anon-{self.rng.getrandbits(64):016x}")

    def next_event(self) -> tuple[PresenceEvent, int | None]:
        """The next event, and for a dwell or exit the index of its subject's enter."""
        rng = self.rng
        index = self.emitted
        self.emitted += 1
        if len(self.people) < ACTIVE_SUBJECTS:
            person = Person(
                self.new_subject(),
                rng.randrange(STORES),
                rng.randrange(GATEWAYS_PER_STORE),
                rng.randrange(4),
                index,
            )
            self.people.append(person)
            kind = PresenceKind.ENTER
        else:
            chosen = rng.randrange(len(self.people))
            person = self.people[chosen]
            if person.dwells_left > 0:
                person.dwells_left -= 1
                kind = PresenceKind.DWELL
            else:
                self.people[chosen] = self.people[-1]
                self.people.pop()
                self.inside.discard(person.subject.ref)
                kind = PresenceKind.EXIT
        event = PresenceEvent(
            store_id=f"store-{person.store:04d}",
            gateway_id=f"gw-{person.zone}",
            zone_id=("entrance", "floor")[person.zone],
            kind=kind,
            subject=person.subject,
            ts=datetime(2000, 1, 1, tzinfo=UTC),
            dwell_s=DWELL_SENTINEL,
            rssi=round(rng.uniform(-90, -50), 1),
            distance_m=round(rng.uniform(0.5, 8), 2),
        )
        return event, None if kind == PresenceKind.ENTER else person.entered


def event_stream(count: int, app_refs: list[str], seed: int) -> Stream:
    """``count`` events, with placeholders for the time and the dwell."""
    world = World(random.Random(seed), app_refs)
    stream = []
    for _ in range(count):
        event, entered = world.next_event()
        topic = presence_topic(event.store_id, event.gateway_id)
        stream.append(Message(topic, event.model_dump_json(), entered))
    assert all(
        TS_PLACEHOLDER in payload and payload.count(DWELL_PLACEHOLDER) == 1
        for _, payload, _ in stream[:10]
    )
    return stream


# --- the publisher process ----------------------------------------------------------------------


def publish(url: str, stream: Stream, rate: float | None, result: Any) -> None:
    """Publish ``stream`` at QoS 1, at ``rate`` events/s or as fast as the broker takes them;
    reports when the first and last were sent, and the CPU time this process spent."""
    packets = [
        Packet(topic, payload, TS_PLACEHOLDER, DWELL_PLACEHOLDER, entered)
        for topic, payload, entered in stream
    ]
    cpu = time.process_time()
    publisher = LeanPublisher(url, f"bench-publisher-{os.getpid()}", PUBLISHER_IN_FLIGHT)
    start, published = publisher.publish(packets, rate)
    publisher.close()
    result.put((start, published, time.process_time() - cpu))


# --- the worker processes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Batching:
    size: int
    wait_s: float
    stitch_size: int | None
    stitch_nice: int


def settings_for(
    broker_url: str, database_url: str, worker: int, batching: Batching, stitcher: str
) -> CloudSettings:
    return CloudSettings(
        mqtt_url=broker_url,
        mqtt_protocol="5",
        database_url=database_url,
        mqtt_client_id=f"bench-worker-{worker}",
        ingest_batch_size=batching.size,
        ingest_batch_wait_s=batching.wait_s,
        ingest_stitch_batch_size=batching.stitch_size,
        ingest_stitch_nice=batching.stitch_nice,
        ingest_stitcher=stitcher,
    )


def work(
    broker_url: str,
    database_url: str,
    worker: int,
    batching: Batching,
    stitcher: str,
    go: Event,
    stop: Event,
    report: Any,
) -> None:
    """One ingest worker: reports ("ready"), then each commit, then its latencies and CPU time."""
    settings = settings_for(broker_url, database_url, worker, batching, stitcher)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    service = PresenceService(sessions, ShopperDirectory(sessions), offer_policy(settings))
    service.resolve([])  # nothing to resolve: just import and warm what a worker needs
    latencies: list[float] = []

    def on_commit(batch: CommittedBatch) -> None:
        latencies.extend(batch.committed_at - event.ts.timestamp() for event in batch.events)
        report.put(("commit", worker, len(batch.events), batch.committed_at))

    consumer = PresenceConsumer(settings, service, sessions, on_commit=on_commit)
    report.put(("ready", worker, 0, 0.0))
    go.wait(TIMEOUT_S)
    cpu = time.process_time()
    consumer.start()
    if not consumer.wait_until_subscribed(10):
        report.put(("failed", worker, 0, 0.0))
        return
    report.put(("subscribed", worker, 0, 0.0))
    stop.wait(TIMEOUT_S)
    consumer.stop()
    cpu = time.process_time() - cpu
    report.put(("done", worker, consumer.counters.duplicates, cpu))
    report.put(("latencies", worker, latencies, 0.0))
    engine.dispose()


def stitch(
    broker_url: str,
    database_url: str,
    worker: int,
    batching: Batching,
    deferred: bool,
    go: Event,
    stop: Event,
    report: Any,
) -> None:
    """A worker's stitcher process (``--stitcher process``): reports ("ready"), then each commit
    ("stitched"), then its latencies and CPU time, once it has stitched all after ``stop``.
    ``deferred`` (``--stitcher external``): it starts stitching only at ``stop``, as if it ran
    on cores of its own elsewhere during the run."""
    settings = settings_for(broker_url, database_url, worker, batching, "process")
    yield_cpu(settings)
    engine = make_engine(database_url, replayable=True)
    sessions = make_sessionmaker(engine)
    service = PresenceService(sessions, ShopperDirectory(sessions), offer_policy(settings))
    service.resolve([])
    latencies: list[float] = []

    def on_commit(batch: CommittedBatch) -> None:
        latencies.extend(batch.committed_at - event.ts.timestamp() for event in batch.events)
        report.put(("stitched", worker, len(batch.events), batch.committed_at))
        # No time series here: the batch's points are as safe as they will be.
        if batch.acknowledge is not None:
            batch.acknowledge()

    stitcher = Stitcher(settings, service, sessions, settings.mqtt_client_id, on_commit=on_commit)
    report.put(("ready", worker, 0, 0.0))
    go.wait(TIMEOUT_S)
    cpu = time.process_time()
    tune_gc(STITCHER_GC_YOUNG_THRESHOLD)
    if not deferred:
        stitcher.start()
    stop.wait(TIMEOUT_S)
    if deferred:
        stitcher.start()
    stitcher.stop(TIMEOUT_S)
    cpu = time.process_time() - cpu
    counters = stitcher.counters
    report.put(("stitch-done", worker, (counters.batches, counters.replanned), cpu))
    report.put(("stitch-latencies", worker, latencies, 0.0))
    engine.dispose()


@dataclass
class Phase:
    """W worker processes (and with ``stitcher="process"`` W stitcher processes), started
    together; the figures they report."""

    broker_url: str
    database_url: str
    workers: int
    batching: Batching
    stitcher: str
    context: Any = field(default_factory=lambda: multiprocessing.get_context("spawn"))

    def __post_init__(self) -> None:
        self.go = self.context.Event()
        self.stop = self.context.Event()
        self.report = self.context.Queue()
        common = (self.broker_url, self.database_url)
        self.processes = [
            self.context.Process(
                target=work,
                args=(*common, n, self.batching, self.stitcher, self.go, self.stop, self.report),
            )
            for n in range(self.workers)
        ]
        self.stitchers = self.workers if self.stitcher != "inline" else 0
        # External: the stitchers' figures are not measured, only that they stitch everything.
        self.deferred = self.stitcher == "external"
        self.processes += [
            self.context.Process(
                target=stitch,
                args=(*common, n, self.batching, self.deferred, self.go, self.stop, self.report),
            )
            for n in range(self.stitchers)
        ]
        self.committed = self.stitched = 0
        # The workers' commits: a worker's CPU per event grows as its batches shrink.
        self.worker_batches = 0
        self.last_commit = self.last_stitch = 0.0
        self.cpu_s = 0.0
        self.stitch_cpu_s = 0.0
        self.stitch_batches = self.replanned = 0
        self.duplicates = 0
        self.latencies: list[float] = []
        self.stitch_latencies: list[float] = []
        for process in self.processes:
            process.start()
        self._expect("ready", len(self.processes))

    @property
    def measures_stitching(self) -> bool:
        """Stitcher processes run beside the workers (``--stitcher process``)."""
        return bool(self.stitchers) and not self.deferred

    def _expect(self, kind: str, count: int) -> None:
        seen = 0
        while seen < count:
            message = self.report.get(timeout=TIMEOUT_S)
            if message[0] == "failed":
                raise RuntimeError(f"worker {message[1]} could not subscribe")
            if message[0] in ("commit", "stitched"):
                self._commit(message)
            elif message[0] == kind:
                seen += 1

    def _commit(self, message: tuple[str, int, int, float]) -> None:
        if message[0] == "stitched":
            self.stitched += message[2]
            self.last_stitch = max(self.last_stitch, message[3])
            return
        self.committed += message[2]
        self.worker_batches += 1
        self.last_commit = max(self.last_commit, message[3])

    def start(self) -> float:
        started = time.time()
        self.go.set()
        self._expect("subscribed", self.workers)
        return started

    def wait_for(self, events: int) -> None:
        """Until ``events`` are committed and, with stitcher processes beside the workers,
        stitched."""
        deadline = time.monotonic() + TIMEOUT_S
        while self.committed < events or (self.measures_stitching and self.stitched < events):
            message = self.report.get(timeout=max(deadline - time.monotonic(), 0.1))
            if message[0] in ("commit", "stitched"):
                self._commit(message)

    def finish(self) -> None:
        self.stop.set()
        expected = {
            "done": self.workers,
            "latencies": self.workers,
            "stitch-done": self.stitchers,
            "stitch-latencies": self.stitchers,
        }
        seen = dict.fromkeys(expected, 0)
        while seen != expected:
            kind, _, value, cpu = self.report.get(timeout=TIMEOUT_S)
            if kind in ("commit", "stitched"):
                self._commit((kind, _, value, cpu))
                continue
            seen[kind] += 1
            if kind == "done":
                self.duplicates += value
                self.cpu_s += cpu
            elif kind == "stitch-done":
                self.cpu_s += cpu
                self.stitch_cpu_s += cpu
                self.stitch_batches += value[0]
                self.replanned += value[1]
            elif kind == "latencies":
                self.latencies.extend(value)
            elif kind == "stitch-latencies":
                self.stitch_latencies.extend(value)
        for process in self.processes:
            process.join(timeout=30)


def run_publisher(url: str, stream: Stream, rate: float | None) -> tuple[float, float, float]:
    """(first sent, last sent, publisher CPU seconds), from a process of its own."""
    context = multiprocessing.get_context("spawn")
    result = context.Queue()
    process = context.Process(target=publish, args=(url, stream, rate, result))
    process.start()
    times: tuple[float, float, float] = result.get(timeout=TIMEOUT_S)
    process.join(timeout=10)
    return times


# --- the cloud's database -----------------------------------------------------------------------


def seed_shoppers(database_url: str, now: datetime) -> list[str]:
    """Registered shoppers, half with an abandoned cart; their app refs right now."""
    upgrade_database(database_url)
    rng = random.Random(SEED)
    engine = make_engine(database_url)
    refs = []
    window = token_window(now.timestamp())
    with make_sessionmaker(engine).begin() as session:
        for number in range(REGISTERED_SHOPPERS):
            key = new_app_key()
            shopper_id = f"shp_bench{number:05d}"
            session.add(
                Shopper(
                    id=shopper_id,
                    display_name=None,
                    app_key=key,
                    consent_personal_offers=True,
                    consent_footfall_analytics=rng.random() < 0.8,
                    consent_text_version="bench",
                    consent_at=now,
                    created_at=now,
                )
            )
            refs.append(shopper_token_ref(key, window))
            if number % 2 == 0:
                session.flush()
                item = {"sku": "SHOE-042", "name": "Runners", "unit_price": "89.90", "quantity": 1}
                session.add(
                    Cart(
                        cart_id=f"cart-{number}",
                        shopper_id=shopper_id,
                        items=[item],
                        total=Decimal("89.90"),
                        currency="EUR",
                        status="open",
                        updated_at=now - timedelta(hours=3),
                    )
                )
    engine.dispose()
    return refs


def count(database_url: str, model: type[PresenceEventRow | Visit | Offer]) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.scalar(sa.select(sa.func.count()).select_from(model)) or 0
    finally:
        engine.dispose()


def distinct_events(database_url: str) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            query = sa.select(sa.func.count(sa.distinct(PresenceEventRow.event_id)))
            return connection.scalar(query) or 0
    finally:
        engine.dispose()


def process_cpu_s(root_pids: list[int]) -> float:
    """CPU seconds used so far by these processes and their children (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, parent = int(stat.parent.name), int(fields[1])
        if pid in root_pids or parent in root_pids:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def stamped_now(stream: Stream) -> list[tuple[str, bytes]]:
    """The messages of ``stream`` as a gateway would send them now (for the in-process figures:
    the publisher stamps each at the moment it sends it), all at one instant, so with no dwell
    yet."""
    stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [
        (topic, text.replace(TS_PLACEHOLDER, stamp).replace(DWELL_PLACEHOLDER, "0.0").encode())
        for topic, text, _ in stream
    ]


def minimal_writer_us_per_event(stream: Stream, batch_size: int) -> float:
    """The reference: CPU per event of the least any ingest must do with the same messages, in
    this process: validate each against the wire contract, INSERT it (events table only, its
    indexes, ``ON CONFLICT DO NOTHING``) with the driver's executemany, commit per batch, in a
    SQLite file in WAL mode with synchronous FULL. No MQTT, no visits, no offers."""
    messages = stamped_now(stream)
    columns = (
        *("event_id", "store_id", "gateway_id", "zone_id", "kind", "subject_type"),
        *("subject_ref", "ts", "dwell_s", "rssi", "distance_m", "received_at", "source"),
    )
    sql = (
        f"INSERT INTO presence_events ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))}) ON CONFLICT (event_id) DO NOTHING"
    )
    with tempfile.TemporaryDirectory(prefix="storelink-bench-") as tmp:
        path = f"{tmp}/reference.db"
        engine = sa.create_engine(f"sqlite:///{path}")
        events_table = PresenceEventRow.metadata.tables[PresenceEventRow.__tablename__]
        PresenceEventRow.metadata.create_all(engine, tables=[events_table])
        engine.dispose()
        connection = sqlite3.connect(path)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        cpu = time.process_time()
        for start in range(0, len(messages), batch_size):
            received = datetime.now(UTC).isoformat(" ")[:26]
            rows = []
            for topic, payload in messages[start : start + batch_size]:
                event = parse_message(topic, payload)
                assert isinstance(event, PresenceEvent)
                rows.append(
                    (
                        event.event_id,
                        event.store_id,
                        event.gateway_id,
                        event.zone_id,
                        event.kind.value,
                        event.subject.type.value,
                        event.subject.ref,
                        event.ts.isoformat(" ")[:26],
                        event.dwell_s,
                        event.rssi,
                        event.distance_m,
                        received,
                        "gateway",
                    )
                )
            connection.executemany(sql, rows)
            connection.commit()
        cpu = time.process_time() - cpu
        connection.close()
    return cpu / len(messages) * 1e6


def in_process_us_per_event(count: int, batch_size: int) -> float:
    """CPU per event of the worker's transaction alone, in this process: the same events,
    validated, resolved and applied ``batch_size`` at a time, each batch committed, into a fresh
    SQLite file with the bench's shoppers. No MQTT: what is left is the batch's own work."""
    with tempfile.TemporaryDirectory(prefix="storelink-bench-") as tmp:
        database_url = f"sqlite:///{tmp}/in-process.db"
        refs = seed_shoppers(database_url, datetime.now(UTC))
        messages = stamped_now(event_stream(count, refs, SEED))
        engine = make_engine(database_url)
        sessions = make_sessionmaker(engine)
        policy = offer_policy(CloudSettings())
        service = PresenceService(sessions, ShopperDirectory(sessions), policy)
        # As a worker runs: its consumer raises the collector's threshold (consumer.start).
        thresholds = gc.get_threshold()
        gc.set_threshold(max(thresholds[0], GC_YOUNG_THRESHOLD), *thresholds[1:])
        cpu = time.process_time()
        for start in range(0, len(messages), batch_size):
            events = []
            for topic, payload in messages[start : start + batch_size]:
                event = parse_message(topic, payload)
                assert isinstance(event, PresenceEvent)
                events.append(event)
            service.handle_batch(events, datetime.now(UTC))
        cpu = time.process_time() - cpu
        gc.set_threshold(*thresholds)
        engine.dispose()
    return cpu / len(messages) * 1e6


def batch_costs() -> None:
    """What a batch costs beside its events: the statements every batch runs, whatever its
    size, and the commit. Under light load a batch is what arrived while the previous one was
    stored, a few dozen events, so this overhead, not the per-event cost, sets the latency:
    a worker storing R events/s goes round in about overhead / (1 - R x per-event cost)."""
    small, large = SMALL_BATCH, LARGE_BATCH
    costs = {
        size: in_process_us_per_event(size * BATCHES_PER_SIZE[size], size)
        for size in (small, large)
    }
    overhead = (costs[small] - costs[large]) / (1 / small - 1 / large)
    for size, cost in costs.items():
        emit("ingest_in_process_us_per_event", round(cost, 1), "us/event", batch_size=size)
    emit(
        "ingest_batch_overhead_us",
        round(overhead),
        "us/batch",
        per_event_us=round(costs[large] - overhead / large, 1),
        derived_from=f"the two ingest_in_process_us_per_event lines ({small} and {large})",
    )


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(share * 1000) - 1]


def bench_database(
    name: str,
    database_url: str,
    database_pids: list[int],
    events: int,
    rates: list[float],
    worker_counts: list[int],
    batching: Batching,
    stitchers: list[str],
    load_limit: float,
) -> None:
    refs = seed_shoppers(database_url, datetime.now(UTC))
    seed = SEED
    stored = 0
    with running_mosquitto(BROKER_CONFIG) as broker:
        for stitcher, workers in itertools.product(stitchers, sorted(set(worker_counts))):
            # The workers' sessions exist and subscribe; the workers stop and the events queue
            # up in their sessions, as they do while workers restart.
            phase = Phase(broker.url, database_url, workers, batching, stitcher)
            phase.start()
            phase.finish()
            seed += 1
            stream = event_stream(events, refs, seed)
            run_publisher(broker.url, stream, None)
            phase = Phase(broker.url, database_url, workers, batching, stitcher)
            services = [broker.process.pid, *database_pids]
            service_cpu = [process_cpu_s([pid]) for pid in services]
            started = phase.start()
            phase.wait_for(events)
            service_cpu = [
                process_cpu_s([pid]) - cpu for pid, cpu in zip(services, service_cpu, strict=True)
            ]
            phase.finish()
            stored += events
            total, distinct = count(database_url, PresenceEventRow), distinct_events(database_url)
            assert total == distinct == stored, f"{total} rows, {distinct} ids, {stored} sent"
            capacity = events / (phase.last_commit - started)
            cpu_us_per_event = phase.cpu_s / events * 1e6
            setup = {"database": name, "workers": workers, "stitcher": stitcher}
            emit(
                "ingest_events_per_s",
                round(capacity),
                "events/s",
                **setup,
                events=events,
                batch_size=batching.size,
                cpu_us_per_event=round(cpu_us_per_event),
                broker_cpu_us_per_event=round(service_cpu[0] / events * 1e6),
                **(
                    {"database_cpu_us_per_event": round(service_cpu[1] / events * 1e6)}
                    if database_pids
                    else {}
                ),
                visits=count(database_url, Visit),
                offers=count(database_url, Offer),
                load_average=round(os.getloadavg()[0], 2),
            )
            if phase.measures_stitching:
                emit(
                    "stitch_events_per_s",
                    round(events / (phase.last_stitch - started)),
                    "events/s",
                    **setup,
                    what="stored, acknowledged and stitched into visits and offers",
                    stitcher_cpu_us_per_event=round(phase.stitch_cpu_s / events * 1e6),
                )
            all_cpu = cpu_us_per_event + sum(service_cpu) / events * 1e6
            emit(
                "ingest_cpu_us_per_event",
                round(all_cpu),
                "us/event",
                **setup,
                what="workers, broker and database together (publisher not included)",
                reference=round(minimal_writer_us_per_event(stream, batching.size)),
                reference_is="validate and insert only (events table, SQLite, one process)",
                budget_at_20000_per_s=round(os.cpu_count() or 1) * 1e6 / 20_000,
            )

            # Steady traffic: latency from the publisher's hand to the commit.
            for rate in rates:
                if rate > load_limit * capacity:
                    for metric in ("ingest_latency_p50_ms", "ingest_latency_p99_ms"):
                        emit(
                            metric,
                            None,
                            "ms",
                            **setup,
                            rate=round(rate),
                            skipped="above the capacity just measured: the backlog only grows",
                        )
                    continue
                seed += 1
                count_at_rate = min(events, round(rate * LATENCY_RUN_S))
                stream = event_stream(count_at_rate, refs, seed)
                phase = Phase(broker.url, database_url, workers, batching, stitcher)
                phase.start()
                first, last, publisher_cpu = run_publisher(broker.url, stream, rate)
                phase.wait_for(count_at_rate)
                phase.finish()
                stored += count_at_rate
                assert count(database_url, PresenceEventRow) == stored
                achieved = round(count_at_rate / (last - first))
                figures = [
                    (metric, share, phase.latencies)
                    for share, metric in (
                        (0.5, "ingest_latency_p50_ms"),
                        (0.99, "ingest_latency_p99_ms"),
                    )
                ]
                if phase.measures_stitching:
                    # A stitcher starts cold (no visits cached, statements not prepared) and
                    # works off what queued meanwhile: the second half is its steady state.
                    late = phase.stitch_latencies[len(phase.stitch_latencies) // 2 :]
                    figures += [
                        (metric, share, latencies)
                        for latencies, share, metric in (
                            (phase.stitch_latencies, 0.5, "stitch_latency_p50_ms"),
                            (phase.stitch_latencies, 0.99, "stitch_latency_p99_ms"),
                            (late, 0.5, "stitch_latency_second_half_p50_ms"),
                            (late, 0.99, "stitch_latency_second_half_p99_ms"),
                        )
                    ]
                for metric, share, latencies in figures:
                    emit(
                        metric,
                        round(percentile([1000 * s for s in latencies], share), 1),
                        "ms",
                        **setup,
                        rate=achieved,
                        events=count_at_rate,
                        batch_size=batching.size,
                        worker_batches=phase.worker_batches,
                        worker_cpu_us_per_event=round(
                            (phase.cpu_s - phase.stitch_cpu_s) / count_at_rate * 1e6, 1
                        ),
                        **(
                            {
                                "stitcher_cpu_us_per_event": round(
                                    phase.stitch_cpu_s / count_at_rate * 1e6, 1
                                ),
                                "stitch_batches": phase.stitch_batches,
                                "replanned": phase.replanned,
                                "stitch_batch_size": stitch_batch_size(
                                    settings_for(broker.url, database_url, 0, batching, stitcher)
                                ),
                                "stitch_nice": batching.stitch_nice,
                            }
                            if phase.measures_stitching
                            else {}
                        ),
                        publisher_cpu_us_per_event=round(publisher_cpu / count_at_rate * 1e6, 1),
                        load_average=round(os.getloadavg()[0], 2),
                    )


@contextmanager
def running_durable_postgres() -> Iterator[tuple[str, int]]:
    """A throwaway PostgreSQL cluster as tests.services starts one, but with fsync on.

    The test suite's cluster runs without fsync, for speed; a benchmark of commits must not.
    """
    host, port = "127.0.0.1", free_port()
    tmp = tempfile.mkdtemp(prefix="storelink-bench-pg-")
    data = Path(tmp) / "data"
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres", "postgres")
    initdb = [_postgres_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
    pg_ctl = _postgres_bin("pg_ctl")
    try:
        subprocess.run(_as_postgres_user([*initdb, "-E", "UTF8"]), check=True, capture_output=True)
        options = f"-h {host} -p {port} -k {tmp} -c fsync=on -c synchronous_commit=on"
        start = [pg_ctl, "-D", str(data), "-o", options, "-l", f"{tmp}/pg.log", "-w", "start"]
        subprocess.run(_as_postgres_user(start), check=True, capture_output=True)
        try:
            wait_for_port(host, port)
            postmaster = int((data / "postmaster.pid").read_text().split()[0])
            yield f"postgresql+psycopg://postgres@{host}:{port}/postgres", postmaster
        finally:
            stop = [pg_ctl, "-D", str(data), "-m", "fast", "stop"]
            subprocess.run(_as_postgres_user(stop), check=False, capture_output=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rates", type=float, nargs="+", default=[1000.0, 5000.0, 20_000.0])
    defaults = CloudSettings()
    parser.add_argument("--batch-size", type=int, default=defaults.ingest_batch_size)
    parser.add_argument(
        "--batch-wait", type=float, default=defaults.ingest_batch_wait_s, help="seconds"
    )
    parser.add_argument(
        "--stitch-batch-size", type=int, help="default: the stitcher's for the database"
    )
    parser.add_argument(
        "--stitch-nice",
        type=int,
        default=defaults.ingest_stitch_nice,
        help="the stitcher's CPU priority below the worker's (0: the same)",
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--stitcher",
        choices=["inline", "process", "external"],
        nargs="+",
        default=["inline", "process"],
        help="stitch in the worker's transaction, in a stitcher process beside each worker, "
        "or (external) in a stitcher process that starts once the traffic ends, as one with "
        "cores of its own elsewhere would not take the workers' (its figures are not measured)",
    )
    parser.add_argument(
        "--load-limit",
        type=float,
        default=LATENCY_LOAD_LIMIT,
        help="skip a rate above this share of the capacity just measured (default %(default)s: "
        "the backlog would only grow); above 1 to measure it anyway",
    )
    args = parser.parse_args()
    batching = Batching(args.batch_size, args.batch_wait, args.stitch_batch_size, args.stitch_nice)
    batch_costs()
    measure = (args.events, args.rates, args.workers, batching, args.stitcher, args.load_limit)
    if args.database in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="storelink-bench-") as tmp:
            bench_database("sqlite", f"sqlite:///{tmp}/ingest.db", [], *measure)
    if args.database in ("postgresql", "both"):
        with running_durable_postgres() as (url, postmaster):
            bench_database("postgresql", url, [postmaster], *measure)


if __name__ == "__main__":
    main()
