# ruff: noqa: E402 (the project imports follow a sys.path fix)
"""How fast the time-series writer turns facts into stored points. Prints JSON lines.

``--facts`` presence events (20,000; every other one a store entry, so 1.5 points each) go
through ``TimeSeriesWriter.submit`` into, in turn:

- ``timeseries_influx_v1_points_per_s``: a real influxd (1.x, started here) through the v1 sink;
- ``timeseries_buffer_points_per_s``: the disk buffer, with nothing listening (an outage), then
  ``timeseries_drain_points_per_s``: the buffer written back once influxd is up;
- ``timeseries_sql_points_per_s``: the SQL fallback on a SQLite file.

Every run checks that each point was stored exactly once. ``timeseries_buffer_bytes_per_point``
is the buffer file's size per point. The clock runs from the first submit to the writer's idle
(or the buffer's empty).

Run with ``.venv/bin/python bench/timeseries.py [--facts N]``; needs influxd (``make system-deps``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# tests/services.py starts the throwaway influxd; the repository root holds it.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import sqlalchemy as sa

from cloud_api.store.db import make_engine, make_sessionmaker
from cloud_api.store.migrate import upgrade_database
from cloud_api.store.models import TimeSeriesPoint
from cloud_api.timeseries.buffer import DiskBuffer
from cloud_api.timeseries.points import PresenceFact
from cloud_api.timeseries.query import InfluxQL
from cloud_api.timeseries.sinks import InfluxV1Sink, PointSink, SqlSink
from cloud_api.timeseries.writer import TimeSeriesWriter
from storelink.wire import PresenceEvent, PresenceKind, Subject, SubjectType
from tests.services import running_influxd

TIMEOUT_S = 600.0


def facts(count: int) -> list[PresenceFact]:
    start = datetime.now(UTC) - timedelta(hours=1)
    return [
        PresenceFact(
            PresenceEvent(
                store_id=f"store-{i % 20}",
                gateway_id=f"gw-{i % 40}",
                zone_id=f"zone-{i % 7}",
                kind=PresenceKind.ENTER,
                subject=Subject(type=SubjectType.ANONYMOUS, ref=f"anon-{i}"),
                ts=start + timedelta(milliseconds=i),
                dwell_s=0,
                rssi=-60,
            ),
            opened_visit=i % 2 == 0,
        )
        for i in range(count)
    ]


def emit(metric: str, value: float, unit: str) -> None:
    print(json.dumps({"metric": metric, "value": round(value, 3), "unit": unit}), flush=True)


def writer_for(sink: PointSink, buffer: DiskBuffer | None = None) -> TimeSeriesWriter:
    writer = TimeSeriesWriter(sink, buffer=buffer, batch_size=5000, occupancy_interval_s=None)
    writer.start()
    return writer


def feed(writer: TimeSeriesWriter, stream: list[PresenceFact]) -> float:
    started = time.perf_counter()
    for start in range(0, len(stream), 500):
        writer.submit(stream[start : start + 500])
    if not writer.wait_idle(TIMEOUT_S):
        raise SystemExit("the writer did not finish")
    return time.perf_counter() - started


def count_influx(url: str) -> int:
    (series,) = InfluxQL(url, "storelink").query('SELECT count("events") FROM "presence"')
    return int(series.values[0][1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=20_000)
    args = parser.parse_args()
    stream = facts(args.facts)
    points = args.facts + (args.facts + 1) // 2

    with tempfile.TemporaryDirectory(prefix="storelink-bench-ts-") as tmp, running_influxd() as db:
        writer = writer_for(InfluxV1Sink(db.url, "storelink"))
        elapsed = feed(writer, stream)
        writer.stop()
        assert count_influx(db.url) == args.facts
        emit("timeseries_influx_v1_points_per_s", points / elapsed, "points/s")

        db.stop()
        path = Path(tmp) / "buffer.db"
        second = facts(args.facts)
        writer = writer_for(InfluxV1Sink(db.url, "storelink"), DiskBuffer(path, 10 * points))
        elapsed = feed(writer, second)
        assert writer.buffer is not None and len(writer.buffer) == points
        emit("timeseries_buffer_points_per_s", points / elapsed, "points/s")
        emit("timeseries_buffer_bytes_per_point", path.stat().st_size / points, "B")
        db.start()
        started = time.perf_counter()
        while len(writer.buffer):
            if time.perf_counter() - started > TIMEOUT_S:
                raise SystemExit("the buffer did not drain")
            time.sleep(0.01)
        emit("timeseries_drain_points_per_s", points / (time.perf_counter() - started), "points/s")
        writer.stop()
        assert count_influx(db.url) == 2 * args.facts

        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade_database(url)
        engine = make_engine(url)
        writer = writer_for(SqlSink(make_sessionmaker(engine)))
        elapsed = feed(writer, stream)
        writer.stop()
        with engine.connect() as connection:
            stored = connection.scalar(sa.select(sa.func.count()).select_from(TimeSeriesPoint))
        engine.dispose()
        assert stored == points, (stored, points)
        emit("timeseries_sql_points_per_s", points / elapsed, "points/s")


if __name__ == "__main__":
    main()
