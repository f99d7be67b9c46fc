"""The ingest's shortcuts give what the long way gives: the MQTT client's read of plain PUBLISH
packets straight from its buffer (against a real Mosquitto), and the visit cache that spares a
batch reading its subjects' visits back (against real SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.config import CloudSettings
from cloud_api.ingest.directory import ShopperDirectory
from cloud_api.ingest.mqtt_client import BufferedClient, make_consumer_client
from cloud_api.ingest.presence_service import PresenceService
from cloud_api.ingest.visits import presence_json_text, presence_to_json, zones_json_text
from cloud_api.match.offer_policy import offer_policy
from cloud_api.store.db import make_engine, make_sessionmaker
from cloud_api.store.migrate import upgrade_database
from cloud_api.store.models import Visit
from storelink.mqtt import connect_properties, make_client
from storelink.wire import PresenceEvent, PresenceKind, Subject, SubjectType
from tests.helpers import wait_for
from tests.services import Mosquitto

TOPIC = "storelink/v1/store-1/gw-1/presence"

# --- the MQTT client ----------------------------------------------------------------------------


class Subscriber:
    """The consumer's client, acknowledging by hand, recording what came which way."""

    def __init__(self, mosquitto: Mosquitto, client_id: str) -> None:
        client, address = make_consumer_client(mosquitto.url, "5", client_id)
        assert isinstance(client, BufferedClient)
        self.client = client
        # (read from the buffer, topic, payload, packet id, QoS), in the order they came
        self.messages: list[tuple[bool, str, bytes, int, int]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        client.manual_ack_set(True)
        client.on_publish_received = self._fast
        client.on_message = self._slow
        client.on_connect = lambda c, *_: c.subscribe(TOPIC, qos=2)
        client.on_subscribe = lambda *_: subscribed.set()
        properties = connect_properties("5", 600)
        assert properties is not None
        # Everything in flight at once, unacknowledged (Mosquitto's default is 20).
        properties.ReceiveMaximum = 65535
        client.connect(address.host, address.port, clean_start=False, properties=properties)
        client.loop_start()
        assert subscribed.wait(5), "could not subscribe"

    def _fast(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        with self._lock:
            self.messages.append((True, topic, payload, mid, qos))

    def _slow(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(
                (False, message.topic, bytes(message.payload), message.mid, message.qos)
            )

    def received(self) -> list[tuple[bool, str, bytes, int, int]]:
        with self._lock:
            return list(self.messages)

    def acknowledge_all(self) -> None:
        received = self.received()
        self.client.ack_all([mid for fast, _, _, mid, qos in received if fast and qos == 1])
        for fast, _, _, mid, qos in received:
            if not fast and qos > 0:
                self.client.ack(mid, qos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_plain_publishes_are_read_from_the_buffer_and_the_rest_by_paho(
    mosquitto: Mosquitto,
) -> None:
    subscriber = Subscriber(mosquitto, "fast-path")
    publisher, address = make_client(mosquitto.url, "5", "fast-path-publisher")
    publisher.connect(address.host, address.port)
    publisher.loop_start()
    with_properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    with_properties.UserProperty = ("origin", "test")
    # Enough, and large enough, that packets are cut at the end of a 64 KiB read.
    plain = [f"plain-{n}-".encode() + b"x" * (n * 37 % 900) for n in range(600)]
    large = b"L" * 150_000
    infos = [publisher.publish(TOPIC, payload, qos=1) for payload in plain[:300]]
    infos.append(publisher.publish(TOPIC, b"at-most-once", qos=0))
    infos.append(publisher.publish(TOPIC, b"with-properties", qos=1, properties=with_properties))
    infos.append(publisher.publish(TOPIC, b"exactly-once", qos=2))
    infos.append(publisher.publish(TOPIC, large, qos=1))
    infos.extend(publisher.publish(TOPIC, payload, qos=1) for payload in plain[300:])
    for info in infos:
        info.wait_for_publish(10)
    wait_for(lambda: len(subscriber.received()) == len(plain) + 4, timeout_s=10)

    received = subscriber.received()
    assert all(topic == TOPIC for _, topic, _, _, _ in received)
    # The QoS 1 messages in order, whichever way each came (the publisher sends QoS 0 at once,
    # and QoS 2 completes after a further round trip).
    assert [payload for _, _, payload, _, qos in received if qos == 1] == [
        *plain[:300],
        b"with-properties",
        large,
        *plain[300:],
    ]
    ways = {payload: (fast, qos) for fast, _, payload, _, qos in received}
    assert ways[b"at-most-once"] == (True, 0)
    # A packet with properties or at QoS 2 is left to paho, and so are the few cut by a read.
    assert ways[b"with-properties"] == (False, 1)
    assert ways[b"exactly-once"] == (False, 2)
    assert sum(fast for fast, *_ in received) > len(received) * 0.9

    # The packet ids were right: acknowledged, nothing comes again on the resumed session.
    subscriber.acknowledge_all()
    time.sleep(0.5)
    subscriber.close()
    again = Subscriber(mosquitto, "fast-path")
    time.sleep(1.0)
    assert again.received() == []
    again.close()
    publisher.disconnect()
    publisher.loop_stop()


# --- the visit cache ----------------------------------------------------------------------------

NOW = datetime(2030, 3, 1, 10, 0, tzinfo=UTC)
SUBJECTS = [Subject(type=SubjectType.ANONYMOUS, ref=f"anon-{n:016x}") for n in range(6)]


def event(
    subject: Subject, kind: PresenceKind, seconds: float, zone: str = "entrance"
) -> PresenceEvent:
    dwell = 0.0 if kind == PresenceKind.ENTER else 30.0
    return PresenceEvent(
        store_id="store-1",
        gateway_id="gw-1",
        zone_id=zone,
        kind=kind,
        subject=subject,
        ts=NOW + timedelta(seconds=seconds),
        dwell_s=dwell,
        rssi=-60.0,
        distance_m=1.0,
    )


def batches() -> list[list[PresenceEvent]]:
    """Visits over several batches: zones changed, late events, exits, returns."""
    enter, dwell, leave = PresenceKind.ENTER, PresenceKind.DWELL, PresenceKind.EXIT
    a, b, c, d, e, f = SUBJECTS
    return [
        [event(a, enter, 0), event(b, enter, 1), event(c, enter, 2)],
        [event(a, dwell, 60), event(b, enter, 62, "floor"), event(d, enter, 63)],
        # c's exit arrives before its dwell; b leaves the entrance, stays on the floor.
        [event(c, leave, 120), event(c, dwell, 90), event(b, leave, 121), event(e, enter, 122)],
        [event(a, leave, 180), event(d, dwell, 181), event(e, dwell, 182), event(f, enter, 183)],
        # a comes back (a new visit); a late dwell of d; b leaves the floor.
        [event(a, enter, 300), event(d, dwell, 150), event(b, leave, 301, "floor")],
        [event(a, dwell, 360), event(d, leave, 361), event(e, leave, 362), event(f, leave, 363)],
    ]


def visits(sessions: sessionmaker[Session]) -> list[tuple[Any, ...]]:
    with sessions() as session:
        rows = session.execute(
            sa.select(
                Visit.subject_ref,
                Visit.started_at,
                Visit.last_seen_at,
                Visit.ended_at,
                Visit.zones,
                Visit.presence,
                Visit.dwell_s,
            ).order_by(Visit.subject_ref, Visit.started_at)
        )
        return [tuple(row) for row in rows]


def service_for(sessions: sessionmaker[Session], url: str) -> PresenceService:
    settings = CloudSettings(database_url=url, mqtt_enabled=False)
    return PresenceService(sessions, ShopperDirectory(sessions), offer_policy(settings))


def test_cached_visits_stitch_as_visits_read_back_do(database_url: str, tmp_path: Any) -> None:
    other_url = f"sqlite:///{tmp_path / 'reference.db'}"
    for url in (database_url, other_url):
        upgrade_database(url)
    cached_engine, reference_engine = make_engine(database_url), make_engine(other_url)
    cached, reference = make_sessionmaker(cached_engine), make_sessionmaker(reference_engine)
    service = service_for(cached, database_url)
    for number, batch in enumerate(batches()):
        service.handle_batch(batch, NOW + timedelta(seconds=number))
        # A service of its own per batch: nothing cached, every visit read back.
        service_for(reference, other_url).handle_batch(batch, NOW + timedelta(seconds=number))
    assert visits(cached) == visits(reference)
    assert len(visits(cached)) == 7
    cached_engine.dispose()
    reference_engine.dispose()


@pytest.mark.parametrize("writer", ["same pool", "another engine"])
def test_a_write_by_anyone_else_empties_the_cache(tmp_path: Any, writer: str) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    service = service_for(sessions, url)
    subject = SUBJECTS[0]
    service.handle_batch([event(subject, PresenceKind.ENTER, 0)], NOW)
    service.handle_batch([event(subject, PresenceKind.DWELL, 60)], NOW)

    # An erasure, say: through the pool's one connection, or through another one.
    other = make_engine(url) if writer == "another engine" else engine
    with make_sessionmaker(other).begin() as session:
        session.execute(sa.delete(Visit))

    service.handle_batch([event(subject, PresenceKind.DWELL, 120)], NOW)
    # A stale cache would have updated the deleted visit, and stored none.
    [(ref, started_at, last_seen_at, ended_at, *_)] = visits(sessions)
    assert ref == subject.ref
    assert (started_at, last_seen_at, ended_at) == (
        NOW + timedelta(seconds=90),
        NOW + timedelta(seconds=120),
        None,
    )
    other.dispose()
    engine.dispose()


def test_a_visit_another_worker_stitched_is_read_again(database_url: str) -> None:
    upgrade_database(database_url)
    engines = [make_engine(database_url), make_engine(database_url)]
    sessions = [make_sessionmaker(engine) for engine in engines]
    mine, theirs = (service_for(s, database_url) for s in sessions)
    subject = SUBJECTS[0]
    mine.handle_batch([event(subject, PresenceKind.ENTER, 0)], NOW)
    mine.handle_batch([event(subject, PresenceKind.DWELL, 60)], NOW)
    # The shared subscription hands the next event to the other worker.
    theirs.handle_batch([event(subject, PresenceKind.ENTER, 90, "floor")], NOW)
    mine.handle_batch([event(subject, PresenceKind.DWELL, 120)], NOW)

    [(_, started_at, last_seen_at, ended_at, zones, presence, _)] = visits(sessions[0])
    assert (started_at, last_seen_at, ended_at) == (NOW, NOW + timedelta(seconds=120), None)
    # A stale cache would have written the visit back without the other worker's zone.
    assert zones == ["entrance", "floor"]
    assert set(presence) == {f"entrance/{subject.ref}", f"floor/{subject.ref}"}
    for engine in engines:
        engine.dispose()


def test_a_visit_update_assigns_only_what_changed(tmp_path: Any) -> None:
    """SQLite rewrites the index entries of every column an UPDATE assigns: a dwell assigns
    none of the indexed ones, an exit only its end, a new zone only the path and no start."""
    url = f"sqlite:///{tmp_path / 'updates.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    service = service_for(make_sessionmaker(engine), url)
    assigned: list[set[str]] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def record(_c: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("UPDATE visits SET "):
            assignments = statement.removeprefix("UPDATE visits SET ").split(" WHERE ")[0]
            assigned.append({part.split(" = ")[0] for part in assignments.split(", ")})

    subject = SUBJECTS[0]
    service.handle_batch([event(subject, PresenceKind.ENTER, 0)], NOW)
    expected = []
    for kind, seconds, zone, changed in [
        (PresenceKind.DWELL, 60, "entrance", set()),
        (PresenceKind.ENTER, 70, "floor", {"zones"}),
        (PresenceKind.EXIT, 120, "entrance", set()),
        (PresenceKind.EXIT, 130, "floor", {"ended_at"}),
    ]:
        service.handle_batch([event(subject, kind, seconds, zone)], NOW)
        expected.append({"last_seen_at", "presence", "dwell_s", *changed})
    assert assigned == expected
    [(_, started_at, _, ended_at, zones, _, _)] = visits(make_sessionmaker(engine))
    assert (started_at, ended_at) == (NOW, NOW + timedelta(seconds=130))
    assert zones == ["entrance", "floor"]
    engine.dispose()


@pytest.mark.parametrize(
    "presence",
    [
        {},
        {"entrance/anon-00ff": (1_900_000_000.123456, True)},
        {"entrance/a": (1_900_000_000.0, False), "floor/a": (1_900_000_060.5, True)},
        {'odd "zone"/r\u00e9f\\': (1e-7, True), "z/r": (12345678901.25, False)},
    ],
)
def test_presence_is_written_as_json_dumps_would(presence: dict[str, tuple[float, bool]]) -> None:
    assert presence_json_text(presence) == json.dumps(presence_to_json(presence))


@pytest.mark.parametrize("zones", [(), ("entrance",), ("entrance", "floor", "entrance"), ('"é\\',)])
def test_zones_are_written_as_json_dumps_would(zones: tuple[str, ...]) -> None:
    assert zones_json_text(zones) == json.dumps(list(zones))
