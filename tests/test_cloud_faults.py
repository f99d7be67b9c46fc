"""Everything fails once while a gateway streams: nothing is lost, nothing is stored twice.

Real processes throughout: a gateway's own publisher (``MqttPublisher`` with its on-disk outbox),
a Mosquitto broker with persistence, two cloud workers (the real app under uvicorn, each its own
process, with the InfluxDB 1.x sink and its disk buffer), a PostgreSQL server and an influxd.
While the gateway streams presence events at a steady rate the test, one after the other,
restarts the broker, SIGKILLs a worker and starts its replacement, stops PostgreSQL for 10 s and
stops influxd for 30 s. Afterwards every event is in SQL exactly once and its points are in
InfluxDB, each exactly once.

Each event's zone names the fault it was published during, so a loss says where it happened
(a worker's loss shows under the fault before its kill: what it held when it died).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cloud_api.app import create_app
from cloud_api.config import CloudSettings
from cloud_api.timeseries.query import InfluxQL
from gateway.config import GatewaySettings
from gateway.publish import MqttPublisher
from storelink.broker import free_port
from storelink.wire import (
    GatewayConfig,
    PresenceEvent,
    PresenceKind,
    Subject,
    SubjectType,
    config_topic,
    presence_topic,
)
from tests.helpers import ADMIN_HEADERS, ADMIN_TOKEN, MqttRecorder, wait_for
from tests.services import (
    Influxd,
    Mosquitto,
    Postgres,
    running_influxd,
    running_mosquitto,
    running_postgres,
)

ROOT = Path(__file__).resolve().parent.parent
STORE, GATEWAY = "store-1", "gw-1"
INFLUX_DB = "storelink"
# The broker queues whatever a worker has not taken yet, however much (docs/scaling.md).
BROKER_LIMITS = "max_queued_messages 0\nmax_queued_bytes 0\n"
EVENT_INTERVAL_S = 0.025
DATABASE_OUTAGE_S = 10.0
INFLUX_OUTAGE_S = 30.0


class Broker:
    """Mosquitto with persistence on a fixed port, which the test restarts."""

    def __init__(self, persistence_dir: Path) -> None:
        self.port = free_port()
        self._persistence_dir = persistence_dir
        self._stack: ExitStack | None = None
        self.server: Mosquitto | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._stack = ExitStack()
        self.server = self._stack.enter_context(
            running_mosquitto(BROKER_LIMITS, port=self.port, persistence_dir=self._persistence_dir)
        )

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack = self.server = None


class CloudWorker:
    """``uvicorn --factory cloud_api.app:create_app``: one cloud process with its ingest."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.env = {
            **env,
            "STORELINK_MQTT_CLIENT_ID": f"cloud-{name}",
            # Its own buffer, which a replacement on the same host takes over.
            "STORELINK_TIMESERIES_BUFFER_PATH": str(log_dir / f"buffer-{name}.db"),
        }
        self.log_path = log_dir / f"worker-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> CloudWorker:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "cloud_api.app:create_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"worker {self.name} exited:\n{self.log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stitcher_pid(self) -> int:
        """The pid of its stitcher process (``STORELINK_INGEST_STITCHER=process``)."""
        assert self.process is not None
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        stitchers = [
            int(child)
            for child in children
            if "spawn_main" in Path(f"/proc/{child}/cmdline").read_text(errors="replace")
        ]
        assert len(stitchers) == 1, f"worker {self.name}'s children: {children}"
        return stitchers[0]


def started_publisher(url: str, outbox: Path) -> MqttPublisher:
    """The store's gateway's publisher, connected, with its outbox at ``outbox``."""
    settings = GatewaySettings(
        store_id=STORE, gateway_id=GATEWAY, mqtt_url=url, mqtt_protocol="5", outbox_path=outbox
    )
    publisher = MqttPublisher(settings)
    publisher.start()
    return publisher


def anonymous_enter(ref: str, zone: str = "entrance") -> PresenceEvent:
    return PresenceEvent(
        store_id=STORE,
        gateway_id=GATEWAY,
        zone_id=zone,
        kind=PresenceKind.ENTER,
        subject=Subject(type=SubjectType.ANONYMOUS, ref=ref),
        ts=datetime.now(UTC),
        dwell_s=0,
        rssi=-60,
    )


@dataclass
class Stream:
    """A gateway publishing anonymous store entries through its durable outbox, at a steady
    rate, each in the zone named after the fault of the moment."""

    publisher: MqttPublisher
    phase: str = "steady"
    published: dict[str, str] = field(default_factory=dict)
    """event id -> zone"""
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gateway-stream", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            zone = self.phase
            event = anonymous_enter(f"anon-{len(self.published)}", zone)
            if self.publisher.publish(event):
                self.published[event.event_id] = zone
            else:
                self.failures += 1
            next_at += EVENT_INTERVAL_S
            self._stop.wait(max(0.0, next_at - time.monotonic()))


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    """A server of this test's own: it is stopped in the middle."""
    with running_postgres() as server:
        yield server


def influx_counts(reader: InfluxQL, field_name: str, measurement: str) -> dict[str, int]:
    series = reader.query(
        f'SELECT count("{field_name}") FROM "{measurement}" '
        f'WHERE "store_id" = \'{STORE}\' GROUP BY "zone"'
    )
    return {s.tags["zone"]: int(s.rows()[0]["count"]) for s in series}


def sql_rows(postgres: Postgres, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(postgres.url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(sql))]
    finally:
        engine.dispose()


def sql_events(postgres: Postgres) -> tuple[int, int, set[str]]:
    """Rows, distinct event ids, and the event ids, of the stored presence events."""
    ids = [row[0] for row in sql_rows(postgres, "SELECT event_id FROM presence_events")]
    return len(ids), len(set(ids)), set(ids)


def sql_visits(postgres: Postgres) -> tuple[int, int]:
    """Visits, and distinct subjects among them (each event is its own subject's entry)."""
    refs = [row[0] for row in sql_rows(postgres, "SELECT subject_ref FROM visits")]
    return len(refs), len(set(refs))


@pytest.mark.parametrize("stitcher", ["inline", "process"])
def test_broker_restart_worker_kill_database_and_influx_outages_lose_and_double_nothing(
    postgres: Postgres, tmp_path: Path, stitcher: str
) -> None:
    started = time.monotonic()
    broker = Broker(tmp_path / "mosquitto")
    (tmp_path / "mosquitto").mkdir()
    broker.start()
    with ExitStack() as stack:
        stack.callback(broker.stop)
        influxd: Influxd = stack.enter_context(running_influxd())
        reader = InfluxQL(influxd.url, INFLUX_DB)
        stack.callback(reader.close)
        reader.query(f'CREATE DATABASE "{INFLUX_DB}"')
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("STORELINK_")},
            "STORELINK_DATABASE_URL": postgres.url,
            "STORELINK_MQTT_URL": broker.url,
            "STORELINK_MQTT_PROTOCOL": "5",
            "STORELINK_ADMIN_TOKEN": ADMIN_TOKEN,
            "STORELINK_INFLUX_URL": influxd.url,
            "STORELINK_INFLUX_API": "v1",
            "STORELINK_INFLUX_DATABASE": INFLUX_DB,
            "STORELINK_INGEST_STITCHER": stitcher,
        }
        workers = {name: CloudWorker(name, env, tmp_path).start() for name in ("a", "b")}
        stack.callback(lambda: [w.stop() for w in workers.values()])
        wait_for(lambda: all(w.ready() for w in workers.values()), 60, "both workers ready")

        publisher = started_publisher(broker.url, tmp_path / "gateway-outbox.db")
        stream = Stream(publisher)
        stream.start()
        stack.callback(stream.stop)
        time.sleep(3)

        stream.phase = "broker-restart"
        broker.stop()
        time.sleep(2)
        broker.start()
        time.sleep(4)

        stream.phase = "worker-killed"
        workers["a"].kill()
        time.sleep(1)
        workers["a"] = CloudWorker("a", env, tmp_path).start()
        wait_for(workers["a"].ready, 60, "the replacement worker ready")
        time.sleep(2)

        if stitcher == "process":
            # Worker b's stitcher dies; b goes on storing, and starts another one.
            stream.phase = "stitcher-killed"
            os.kill(workers["b"].stitcher_pid(), signal.SIGKILL)
            time.sleep(3)

        stream.phase = "database-down"
        postgres.stop()
        time.sleep(DATABASE_OUTAGE_S)
        postgres.start()
        time.sleep(2)

        stream.phase = "influx-down"
        influxd.stop()
        time.sleep(INFLUX_OUTAGE_S)
        influxd.start()

        stream.phase = "recovered"
        time.sleep(3)
        stream.stop()
        wait_for(lambda: publisher.unacknowledged == 0, 30, "the gateway's outbox delivered")
        assert publisher.stop()
        assert stream.failures == 0
        published = stream.published
        expected = Counter(published.values())
        assert set(expected) == {
            "steady",
            "broker-restart",
            "worker-killed",
            *(["stitcher-killed"] if stitcher == "process" else []),
            "database-down",
            "influx-down",
            "recovered",
        }

        try:
            wait_for(lambda: sql_events(postgres)[0] >= len(published), 60, "every event in SQL")
        except AssertionError:
            missing = Counter(published[i] for i in set(published) - sql_events(postgres)[2])
            logs = "\n".join(w.log()[-4000:] for w in workers.values())
            raise AssertionError(f"events missing in SQL, by fault: {missing}\n{logs}") from None
        try:
            wait_for(
                lambda: (
                    influx_counts(reader, "events", "presence") == expected
                    and influx_counts(reader, "entries", "footfall") == expected
                ),
                60,
                "every point in InfluxDB",
            )
        except AssertionError:
            presence = influx_counts(reader, "events", "presence")
            footfall = influx_counts(reader, "entries", "footfall")
            logs = "\n".join(w.log()[-4000:] for w in workers.values())
            raise AssertionError(
                f"points missing in InfluxDB: expected {dict(expected)}, presence {presence}, "
                f"footfall {footfall}\n{logs}"
            ) from None
        for worker in workers.values():
            worker.stop()

        rows, distinct, ids = sql_events(postgres)
        assert (rows, distinct) == (len(published), len(published))
        assert ids == set(published)
        # Each event stitched once: a visit of its own subject.
        assert sql_visits(postgres) == (len(published), len(published))
        # Exactly once: InfluxDB counts one point per event, per measurement and fault.
        assert influx_counts(reader, "events", "presence") == expected
        assert influx_counts(reader, "entries", "footfall") == expected
    assert time.monotonic() - started < 150


def test_a_broker_that_lost_its_retained_configs_gets_them_again_when_the_cloud_starts(
    tmp_path: Path,
) -> None:
    database_url = f"sqlite:///{tmp_path / 'cloud.db'}"
    topic = config_topic(STORE, GATEWAY)

    def cloud(broker: Mosquitto) -> TestClient:
        settings = CloudSettings(
            database_url=database_url,
            admin_token=ADMIN_TOKEN,
            mqtt_url=broker.url,
            mqtt_protocol="5",
            timeseries_buffer_path=tmp_path / "buffer.db",
        )
        return TestClient(create_app(settings), headers=ADMIN_HEADERS)

    with running_mosquitto() as first, cloud(first) as client:
        created = client.post("/v1/stores", json={"store_id": STORE, "name": "Via Roma"})
        assert created.status_code == 201, created.text
        gateway = client.post(f"/v1/stores/{STORE}/gateways", json={"gateway_id": GATEWAY})
        assert gateway.status_code == 201 and gateway.json()["config_published"], gateway.text

    # A new broker, without the old one's persistence: no retained config on it.
    with running_mosquitto() as second:
        before = MqttRecorder(second.url, topic)
        time.sleep(0.5)
        assert before.on(topic) == []
        before.close()
        with cloud(second):
            recorder = MqttRecorder(second.url, topic)
            try:
                (payload,) = wait_for(lambda: recorder.on(topic), what="the retained config")
            finally:
                recorder.close()
    config = GatewayConfig.model_validate_json(payload)
    assert (config.store_id, config.gateway_id) == (STORE, GATEWAY)
    # A new version, so that a gateway that kept the old one takes it too.
    assert config.version == 2


def test_an_event_no_subscription_matched_stays_in_the_gateway_outbox_until_one_does(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """As after a Mosquitto restart, which does not restore the cloud's shared subscription:
    the broker answers "no matching subscribers" and drops the event, so the gateway keeps it."""
    publisher = started_publisher(mosquitto.url, tmp_path / "outbox.db")
    try:
        event = anonymous_enter("anon-1")
        assert publisher.publish(event)
        time.sleep(2.5)
        assert publisher.outbox_depth == 1
        recorder = MqttRecorder(mosquitto.url, f"$share/storelink/{presence_topic(STORE, GATEWAY)}")
        try:
            (payload,) = wait_for(
                lambda: recorder.on(presence_topic(STORE, GATEWAY)), what="the event"
            )
        finally:
            recorder.close()
        assert PresenceEvent.model_validate_json(payload).event_id == event.event_id
        wait_for(lambda: publisher.outbox_depth == 0, what="the outbox emptied")
    finally:
        publisher.stop()
