"""Time-series points, the disk buffer and the sinks, against a real influxd and real SQL."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

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
    to_points,
)
from cloud_api.timeseries.query import InfluxQL, QueryError
from cloud_api.timeseries.sinks import InfluxV1Sink, InfluxV2Sink, PointsRejectedError, SqlSink
from cloud_api.timeseries.writer import TimeSeriesWriter
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
