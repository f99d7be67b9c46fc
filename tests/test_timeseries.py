"""Time-series points, the disk buffer and the sinks, against a real influxd and real SQL."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient

from cloud_api.ingest.consumer import CommittedBatch
from cloud_api.store.db import make_engine, make_sessionmaker
from cloud_api.store.migrate import upgrade_database
from cloud_api.store.models import TimeSeriesPoint
from cloud_api.timeseries.buffer import DiskBuffer
from cloud_api.timeseries.points import (
    OccupancySnapshot,
    OfferFact,
    OfferOutcome,
    Point,
    PresenceFact,
    line_protocol,
    ns,
    to_points,
)
from cloud_api.timeseries.query import InfluxQL, QueryError
from cloud_api.timeseries.sinks import InfluxV1Sink, InfluxV2Sink, PointsRejectedError, SqlSink
from cloud_api.timeseries.writer import TimeSeriesWriter, facts_of
from storelink.wire import (
    GatewayState,
    GatewayStatus,
    PresenceEvent,
    PresenceKind,
    Subject,
    SubjectType,
    new_event_id,
)
from tests.helpers import wait_for
from tests.influx_v2_gateway import InfluxV2Gateway, running_influx_v2_gateway
from tests.services import Influxd

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
SECRET_REF = "tok-7f3a9c1e5b2d"


def event(i: int, kind: PresenceKind = PresenceKind.ENTER, zone: str = "entrance") -> PresenceEvent:
    return PresenceEvent(
        store_id="store-1",
        gateway_id="gw-1",
        zone_id=zone,
        kind=kind,
        subject=Subject(type=SubjectType.APP, ref=f"{SECRET_REF}-{i}"),
        ts=T0 + timedelta(seconds=i),
        dwell_s=0.0 if kind == PresenceKind.ENTER else 42.5,
        rssi=-61.0,
        distance_m=1.5,
    )


def status(i: int) -> GatewayStatus:
    return GatewayStatus(
        store_id="store-1",
        gateway_id="gw-1",
        state=GatewayState.ONLINE,
        ts=T0 + timedelta(seconds=30 * i),
        adverts_seen=100 * i,
        outbox_depth=i,
        uptime_s=30.0 * i,
        cpu_temp_c=48.5,
    )


def facts(n: int) -> list[PresenceFact]:
    return [PresenceFact(event(i), opened_visit=i % 2 == 0) for i in range(n)]


# --- points (pure) ------------------------------------------------------------------------------


def test_points_name_stores_zones_and_gateways_never_a_shopper_or_subject() -> None:
    enter = event(1)
    offer = OfferFact(enter, OfferOutcome.SENT, enter.ts, campaign="winback", percent_off=10.0)
    points = to_points([PresenceFact(enter, opened_visit=True), offer, status(1)])
    assert [p.measurement for p in points] == ["presence", "footfall", "offers", "gateway_health"]
    presence, footfall, offers, health = points
    assert presence.tags == {
        "store_id": "store-1",
        "zone": "entrance",
        "gateway_id": "gw-1",
        "kind": "enter",
        "subject_type": "app",
        "source": "gateway",
    }
    assert footfall.fields == {"entries": 1}
    assert offers.tags["outcome"] == "sent" and offers.tags["campaign"] == "winback"
    assert health.fields["online"] == 1 and health.fields["cpu_temp_c"] == 48.5
    text = "\n".join(line_protocol(p) for p in points)
    assert SECRET_REF not in text
    assert enter.event_id not in text
    assert "shopper" not in text


def test_a_fact_always_makes_the_same_point_and_two_events_never_share_one() -> None:
    one = event(1)
    first = to_points([PresenceFact(one)])
    assert to_points([PresenceFact(PresenceEvent.model_validate_json(one.model_dump_json()))]) == (
        first
    )
    # Same tags, same millisecond, another event: another point.
    twin = one.model_copy(update={"event_id": new_event_id()})
    other = to_points([PresenceFact(twin)])
    assert other[0].time_ns != first[0].time_ns
    assert other[0].time_ns // 1_000_000 == first[0].time_ns // 1_000_000


def test_line_protocol_escapes_what_it_must() -> None:
    point = Point("m x", {"zone": "a,b=c d"}, {"note": 'say "hi"', "n": 3, "ok": True}, 5)
    assert line_protocol(point) == 'm\\ x,zone=a\\,b\\=c\\ d n=3i,note="say \\"hi\\"",ok=true 5'


def test_occupancy_has_the_store_and_each_zone() -> None:
    snapshot = OccupancySnapshot("store-1", T0, 3, {"entrance": 1, "dairy": 2})
    points = to_points([snapshot])
    assert [(p.tags.get("scope"), p.tags.get("zone"), p.fields["present"]) for p in points] == [
        ("store", None, 3),
        ("zone", "dairy", 2),
        ("zone", "entrance", 1),
    ]


# --- the disk buffer ----------------------------------------------------------------------------


def test_buffer_keeps_the_newest_points_when_full_and_counts_the_dropped(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    buffer = DiskBuffer(path, max_points=5)
    assert buffer.append([f"line {i}" for i in range(3)]) == 0
    assert buffer.append([f"line {i}" for i in range(3, 8)]) == 3
    assert len(buffer) == 5 and buffer.dropped == 3
    assert [line for _, line in buffer.peek(10)] == [f"line {i}" for i in range(3, 8)]
    buffer.remove([point_id for point_id, _ in buffer.peek(2)])
    buffer.close()
    reopened = DiskBuffer(path, max_points=5)
    assert len(reopened) == 3
    assert [line for _, line in reopened.peek(10)] == ["line 5", "line 6", "line 7"]
    reopened.close()


# --- InfluxDB 1.x -------------------------------------------------------------------------------


def test_v1_sink_creates_the_database_and_influxql_reads_the_points(influxd: Influxd) -> None:
    sink = InfluxV1Sink(influxd.url, "storelink")
    stream = facts(10)
    sink.write(to_points(stream))
    sink.write(to_points(stream))  # the same facts again overwrite themselves
    reader = InfluxQL(influxd.url, "storelink")
    (presence,) = reader.query('SELECT count("events") FROM "presence"')
    assert presence.rows()[0]["count"] == 10
    (footfall,) = reader.query('SELECT sum("entries") FROM "footfall" GROUP BY "zone"')
    assert footfall.tags == {"zone": "entrance"} and footfall.rows()[0]["sum"] == 5
    with pytest.raises(QueryError, match="error parsing query"):
        reader.query("SELEKT 1")
    sink.close()


def test_v1_sink_refuses_a_field_of_another_type(influxd: Influxd) -> None:
    sink = InfluxV1Sink(influxd.url, "storelink")
    sink.write([Point("offers", {"store_id": "s"}, {"count": 1}, 1)])
    with pytest.raises(PointsRejectedError, match="HTTP 400"):
        sink.write([Point("offers", {"store_id": "s"}, {"count": "one"}, 2)])


def test_outage_buffers_on_disk_and_writes_every_point_once_when_back(
    influxd: Influxd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cloud_api.timeseries")
    writer = TimeSeriesWriter(
        InfluxV1Sink(influxd.url, "storelink", timeout_s=2),
        buffer=DiskBuffer(tmp_path / "buffer.db", 10_000),
        batch_size=50,
        flush_interval_s=0.05,
        occupancy_interval_s=None,
    )
    writer.start()
    reader = InfluxQL(influxd.url, "storelink")
    stream = facts(300)
    writer.submit(stream[:100])
    wait_for(lambda: writer.counters.points_written == 150, what="first points written")
    influxd.stop()
    writer.submit(stream[100:200])
    assert writer.wait_idle(10)
    assert writer.buffer is not None and len(writer.buffer) == 150
    influxd.start()
    writer.submit(stream[200:])
    wait_for(lambda: writer.buffer is not None and not len(writer.buffer), what="buffer drained")
    assert writer.wait_idle(10)
    writer.stop()
    (presence,) = reader.query('SELECT count("events") FROM "presence"')
    (footfall,) = reader.query('SELECT count("entries") FROM "footfall"')
    assert (presence.rows()[0]["count"], footfall.rows()[0]["count"]) == (300, 150)
    assert writer.counters.points_buffered >= 150
    assert writer.counters.points_dropped == 0
    assert "buffered points are written" in caplog.text


def test_a_full_buffer_drops_the_oldest_points_and_counts_them(tmp_path: Path) -> None:
    # Nothing listens on this port: every write fails, every point goes to the buffer.
    from storelink.broker import free_port

    writer = TimeSeriesWriter(
        InfluxV1Sink(f"http://127.0.0.1:{free_port()}", "storelink", timeout_s=1),
        buffer=DiskBuffer(tmp_path / "buffer.db", 40),
        batch_size=10,
        flush_interval_s=0.01,
        occupancy_interval_s=None,
    )
    writer.start()
    stream = facts(40)
    writer.submit(stream)  # 60 points
    assert writer.wait_idle(10)
    writer.stop()
    assert writer.counters.points_dropped == 20
    assert writer.counters.points_written == 0
    kept = DiskBuffer(tmp_path / "buffer.db", 40)
    assert len(kept) == 40
    newest = to_points(stream)[-1]
    assert kept.peek(40)[-1][1] == line_protocol(newest)
    kept.close()


# --- the SQL fallback ---------------------------------------------------------------------------


def test_sql_fallback_keeps_each_point_once(database_url: str) -> None:
    upgrade_database(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    writer = TimeSeriesWriter(SqlSink(sessions), flush_interval_s=0.01, occupancy_interval_s=None)
    writer.start()
    stream = [*facts(6), status(1)]
    writer.submit(stream)
    writer.submit(stream)  # redelivered: overwrites
    assert writer.wait_idle(10)
    writer.stop()
    with sessions() as session:
        rows = session.scalars(sa.select(TimeSeriesPoint).order_by(TimeSeriesPoint.id)).all()
    engine.dispose()
    measurements = sorted(row.measurement for row in rows)
    assert measurements.count("presence") == 6 and measurements.count("footfall") == 3
    assert measurements.count("gateway_health") == 1
    health = next(row for row in rows if row.measurement == "gateway_health")
    assert health.tags == {"store_id": "store-1", "gateway_id": "gw-1"}
    assert health.fields["adverts_seen"] == 100 and health.ts == status(1).ts
    assert all(SECRET_REF not in str(row.tags) + str(row.fields) for row in rows)
    assert writer.counters.points_written == 2 * (6 + 3 + 1)


# --- InfluxDB 2.x through influxdb-client's batching WriteApi ----------------------------------


def test_v2_batches_the_client_gives_up_on_wait_in_the_buffer(
    influxd: Influxd, tmp_path: Path
) -> None:
    # InfluxDB 1.6 has no /api/v2/write (404): the client's batch fails for good, as against a
    # 2.x whose bucket or token is wrong, and its points must wait on disk, not vanish.
    sink = InfluxV2Sink(
        influxd.url, token="t", org="storelink", bucket="storelink", flush_interval_ms=50
    )
    writer = TimeSeriesWriter(
        sink,
        buffer=DiskBuffer(tmp_path / "buffer.db", 1000),
        flush_interval_s=0.01,
        occupancy_interval_s=None,
    )
    writer.start()
    stream = facts(10)
    writer.submit(stream)
    wait_for(lambda: writer.counters.points_buffered == 15, what="the failed batch buffered")
    assert writer.buffer is not None
    lines = sorted(line for _, line in writer.buffer.peek(100))
    assert lines == sorted(line_protocol(p) for p in to_points(stream))
    writer.stop()
    assert writer.counters.points_written == 0 and writer.counters.points_dropped == 0


# --- InfluxDB 2.x's /api/v2/write, as InfluxDB 1.8 maps it onto a real influxd ------------------

V2_TOKEN = "storelink-write-token"


@pytest.fixture
def influx_v2(influxd: Influxd) -> Iterator[InfluxV2Gateway]:
    """influxd behind 1.8's /api/v2/write mapping; the bucket ``storelink`` is its database."""
    InfluxQL(influxd.url, "storelink").query('CREATE DATABASE "storelink"')
    with running_influx_v2_gateway(influxd.url) as gateway:
        yield gateway


def v2_writer(url: str, tmp_path: Path, *, max_retry_time_ms: int = 60_000) -> TimeSeriesWriter:
    sink = InfluxV2Sink(
        url,
        token=V2_TOKEN,
        org="storelink",
        bucket="storelink",
        batch_size=100,
        flush_interval_ms=50,
        max_retry_time_ms=max_retry_time_ms,
    )
    return TimeSeriesWriter(
        sink,
        buffer=DiskBuffer(tmp_path / "buffer.db", 10_000),
        batch_size=100,
        flush_interval_s=0.01,
        occupancy_interval_s=None,
    )


def committed(
    events: list[PresenceEvent], acknowledge: Callable[[], None] | None = None
) -> CommittedBatch:
    """What the ingest hands over for messages it stored before (a redelivery): presence
    points, and footfall for every other event."""
    return CommittedBatch(
        events=(),
        messages=len(events),
        committed_at=time.time(),
        redelivered=tuple((e, int(e.ts.timestamp()) % 2 == 0) for e in events),
        acknowledge=acknowledge,
    )


def presence_in_influx(reader: InfluxQL) -> list[tuple[int, float, float]]:
    series = reader.query('SELECT "events", "dwell_s", "rssi" FROM "presence"')
    return sorted(
        (row["time"], row["dwell_s"], row["rssi"])
        for one in series
        for row in one.rows()
        if row["events"] == 1
    )


def presence_of(events: list[PresenceEvent]) -> list[tuple[int, float, float]]:
    return sorted((int(e.ts.timestamp() * 1000), e.dwell_s, e.rssi) for e in events)


def test_v2_sink_writes_through_the_batching_api_into_influxd(
    influx_v2: InfluxV2Gateway, influxd: Influxd, tmp_path: Path
) -> None:
    client = InfluxDBClient(url=influx_v2.url, token=V2_TOKEN, org="storelink")
    assert client.ping()
    client.close()  # type: ignore[no-untyped-call]
    health = urllib3.request("GET", influx_v2.url + "/health")
    assert (health.status, health.json()["status"]) == (200, "pass")
    writer = v2_writer(influx_v2.url, tmp_path)
    writer.start()
    events = [event(i, PresenceKind.EXIT if i % 3 else PresenceKind.ENTER) for i in range(250)]
    acks = [threading.Event() for _ in range(3)]
    batches = [
        committed(events[:120], acks[0].set),
        committed(events[120:], acks[1].set),
        committed(events[:120], acks[2].set),  # redelivered again: the same points
    ]
    for batch in batches:
        writer.committed(batch)
    writer.submit([status(1)])
    assert writer.wait_idle(15)
    assert all(ack.is_set() for ack in acks)
    writer.stop()
    reader = InfluxQL(influxd.url, "storelink")
    assert presence_in_influx(reader) == presence_of(events)
    (footfall,) = reader.query('SELECT count("entries") FROM "footfall"')
    assert footfall.rows()[0]["count"] == 125
    (heartbeat,) = reader.query('SELECT "online", "adverts_seen" FROM "gateway_health"')
    at = int(status(1).ts.timestamp() * 1000)
    assert heartbeat.rows() == [{"time": at, "online": 1, "adverts_seen": 100}]
    # Every point went through /api/v2/write once: gzipped, with the token, into the bucket.
    handed_over = sum(len(to_points(facts_of(batch))) for batch in batches) + 1
    assert sum(w.lines for w in influx_v2.writes) == handed_over
    assert {
        (w.status, w.gzipped, w.authorization, w.bucket, w.org, w.precision)
        for w in influx_v2.writes
    } == {(204, True, f"Token {V2_TOKEN}", "storelink", "storelink", "ns")}
    assert writer.counters.points_written == handed_over
    assert writer.counters.points_buffered == 0


def test_v2_acknowledges_a_batch_only_once_the_client_wrote_its_points(
    influx_v2: InfluxV2Gateway, influxd: Influxd, tmp_path: Path
) -> None:
    writer = v2_writer(influx_v2.url, tmp_path)
    writer.start()
    events = [event(i) for i in range(40)]
    written_at_ack: list[list[int]] = []
    acknowledged = threading.Event()

    def acknowledge() -> None:
        written_at_ack.append([w.status for w in influx_v2.writes])
        acknowledged.set()

    batch = committed(events, acknowledge)
    influx_v2.hold()
    writer.committed(batch)
    wait_for(lambda: influx_v2.waiting == 1, what="the client's write waiting at the server")
    # The points left the writer long ago; they are only with the client (and the server).
    time.sleep(1.0)
    assert not acknowledged.is_set()
    assert not writer.wait_idle(0.1)
    influx_v2.release()
    assert acknowledged.wait(10)
    assert written_at_ack == [[204]]
    assert writer.wait_idle(5)
    writer.stop()
    assert presence_in_influx(InfluxQL(influxd.url, "storelink")) == presence_of(events)


def test_v2_points_the_client_gives_up_on_are_buffered_before_the_ack_and_written_once(
    influx_v2: InfluxV2Gateway, influxd: Influxd, tmp_path: Path
) -> None:
    writer = v2_writer(influx_v2.url, tmp_path, max_retry_time_ms=2_000)
    assert writer.buffer is not None
    buffer = writer.buffer
    writer.start()
    events = [event(i) for i in range(90)]
    first, during, later = threading.Event(), threading.Event(), threading.Event()
    writer.committed(committed(events[:30], first.set))
    assert first.wait(10)
    influxd.stop()
    buffered_at_ack: list[int] = []

    def acknowledge() -> None:
        buffered_at_ack.append(len(buffer))
        during.set()

    batch = committed(events[30:60], acknowledge)
    writer.committed(batch)
    wait_for(lambda: any(w.status == 503 for w in influx_v2.writes), what="a refused write")
    # The client retries for 2 s; until it gives up the points are only in its memory.
    assert not during.is_set()
    assert during.wait(15)
    handed_over = len(to_points(facts_of(batch)))
    assert buffered_at_ack == [handed_over]
    # Behind the buffered points: straight to disk, acknowledged at once.
    writer.committed(committed(events[60:], later.set))
    assert later.wait(5)
    assert len(buffer) == handed_over + len(to_points(facts_of(committed(events[60:]))))
    influxd.start()
    wait_for(lambda: not len(buffer), timeout_s=30, what="the buffer written back")
    assert writer.wait_idle(5)
    writer.stop()
    reader = InfluxQL(influxd.url, "storelink")
    assert presence_in_influx(reader) == presence_of(events)
    (footfall,) = reader.query('SELECT count("entries") FROM "footfall"')
    assert footfall.rows()[0]["count"] == 45
    assert writer.counters.points_dropped == 0 and writer.counters.points_rejected == 0


def test_v2_points_influxdb_refuses_are_counted_and_acknowledged(
    influx_v2: InfluxV2Gateway, influxd: Influxd, tmp_path: Path
) -> None:
    # "events" as a string in the same shard: the presence points conflict with it, for good.
    conflict = Point("presence", {"store_id": "store-1"}, {"events": "one"}, ns(T0))
    InfluxV1Sink(influxd.url, "storelink").write([conflict])
    writer = v2_writer(influx_v2.url, tmp_path)
    writer.start()
    acknowledged = threading.Event()
    batch = committed([event(i) for i in range(10)], acknowledged.set)
    writer.committed(batch)
    assert acknowledged.wait(10)
    assert writer.wait_idle(5)
    writer.stop()
    assert [w.status for w in influx_v2.writes] == [400]
    assert writer.counters.points_rejected == len(to_points(facts_of(batch)))
    assert writer.buffer is not None and not len(writer.buffer)
