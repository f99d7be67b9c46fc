"""Every Grafana dashboard's queries run on a real influxd seeded through the cloud's writer.

Grafana's macros are substituted as its InfluxDB datasource does: ``$timeFilter`` becomes a
time range in epoch milliseconds, ``$__interval`` the group-by interval, and a multi-value
template variable used in a regex a parenthesised alternation of regex-escaped values.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud_api.timeseries.buffer import DiskBuffer
from cloud_api.timeseries.points import (
    Fact,
    OccupancySnapshot,
    OfferFact,
    OfferOutcome,
    PresenceFact,
)
from cloud_api.timeseries.query import InfluxQL
from cloud_api.timeseries.sinks import InfluxV1Sink
from cloud_api.timeseries.writer import TimeSeriesWriter
from storelink.wire import (
    GatewayState,
    GatewayStatus,
    PresenceEvent,
    PresenceKind,
    Subject,
    SubjectType,
)
from tests.services import Influxd

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "dashboards" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
ZONES = ("entrance", "dairy", "bakery")
GATEWAYS = ("gw-1", "gw-2")
STORES = ("store-1", "store.2")
HOURS = 2


def datasource_uid() -> str:
    provisioning = yaml.safe_load((GRAFANA / "provisioning/datasources/influxdb.yaml").read_text())
    (datasource,) = provisioning["datasources"]
    assert datasource["type"] == "influxdb" and datasource["jsonData"]["dbName"] == "storelink"
    uid: str = datasource["uid"]
    return uid


def store_facts(store: str, start: datetime) -> list[Fact]:
    facts: list[Fact] = []
    for minute in range(0, HOURS * 60, 5):
        at = start + timedelta(minutes=minute)
        zone = ZONES[minute // 5 % len(ZONES)]
        gateway = GATEWAYS[minute // 5 % len(GATEWAYS)]
        common = {
            "store_id": store,
            "gateway_id": gateway,
            "zone_id": zone,
            "subject": Subject(type=SubjectType.APP, ref=f"tok-{minute}"),
            "rssi": -60.0,
        }
        enter = PresenceEvent(kind=PresenceKind.ENTER, ts=at, dwell_s=0, **common)
        leave = at + timedelta(minutes=3)
        exit_ = PresenceEvent(kind=PresenceKind.EXIT, ts=leave, dwell_s=180.0 + minute, **common)
        facts += [PresenceFact(enter, opened_visit=True), PresenceFact(exit_)]
        campaign = "winback" if minute % 10 == 0 else "spring"
        facts += [
            OfferFact(enter, OfferOutcome.DECIDED, at, campaign, percent_off=10.0, items=2),
            OfferFact(enter, OfferOutcome.SENT, at, campaign, percent_off=10.0, items=2),
            OfferFact(exit_, OfferOutcome.HELD_OUT, leave, campaign, percent_off=15.0, items=1),
        ]
        facts.append(OccupancySnapshot(store, at, 3 + minute % 4, {z: 1 for z in ZONES}))
        for number, gateway_id in enumerate(GATEWAYS):
            facts.append(
                GatewayStatus(
                    store_id=store,
                    gateway_id=gateway_id,
                    state=GatewayState.ONLINE,
                    ts=at + timedelta(seconds=number),
                    adverts_seen=100 * minute,
                    decode_errors=minute // 10,
                    outbox_depth=minute % 7,
                    uptime_s=60.0 * minute,
                    adverts_per_s=12.5,
                    cpu_temp_c=50.0,
                )
            )
    return facts


@pytest.fixture
def seeded(influxd: Influxd, tmp_path: Path) -> tuple[InfluxQL, datetime, datetime]:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=HOURS)
    writer = TimeSeriesWriter(
        InfluxV1Sink(influxd.url, "storelink"),
        buffer=DiskBuffer(tmp_path / "buffer.db", 100_000),
        occupancy_interval_s=None,
        flush_interval_s=0.05,
    )
    writer.start()
    for store in STORES:
        writer.submit(store_facts(store, start))
    assert writer.wait_idle(30)
    writer.stop()
    assert writer.counters.points_written > 0
    assert writer.counters.points_rejected == writer.counters.points_buffered == 0
    return InfluxQL(influxd.url, "storelink"), start, datetime.now(UTC)


def regex_value(values: list[str]) -> str:
    """A multi-value variable in a regex, as Grafana's InfluxDB datasource writes it."""
    escaped = [re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda m: "\\" + m.group(0), v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(
    query: str, variables: dict[str, list[str]], start: datetime, end: datetime, interval: str
) -> str:
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    query = query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
    query = query.replace("$__interval", interval)
    for name in sorted(variables, key=len, reverse=True):
        query = query.replace(f"${name}", regex_value(variables[name]))
    left = re.findall(r"\$\w+", query)
    assert not left, f"{left} left unsubstituted in {query}"
    return query


def load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def test_the_dashboards_are_there_and_use_the_provisioned_datasource() -> None:
    names = {path.stem for path in DASHBOARDS}
    assert names == {"footfall", "occupancy", "dwell", "engagement", "fleet-health"}
    uids = [load(path)["uid"] for path in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    uid = datasource_uid()
    for path in DASHBOARDS:
        board = load(path)
        assert board["panels"], path.name
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == uid, (path.name, panel["title"])
            for target in panel["targets"]:
                assert target["rawQuery"] is True and target["datasource"]["uid"] == uid


@pytest.mark.parametrize("path", DASHBOARDS, ids=[path.stem for path in DASHBOARDS])
def test_every_panel_query_returns_rows_from_influxdb(
    path: Path, seeded: tuple[InfluxQL, datetime, datetime]
) -> None:
    reader, start, end = seeded
    board = load(path)
    variables: dict[str, list[str]] = {}
    for variable in board["templating"]["list"]:
        query = interpolate(variable["query"], variables, start, end, "5m")
        values = sorted({row[1] for series in reader.query(query) for row in series.values})
        assert values, f"{path.name}: variable {variable['name']} has no values"
        # "All", as Grafana expands it for a multi-value variable without a custom all value.
        variables[variable["name"]] = values
    assert variables["store"] == sorted(STORES)
    for panel in board["panels"]:
        for target in panel["targets"]:
            query = interpolate(target["query"], variables, start, end, "5m")
            series = reader.query(query)
            assert series, f"{path.name}: {panel['title']} returned nothing: {query}"
            numbers = [
                value
                for s in series
                for row in s.values
                for value in row[1:]
                if isinstance(value, int | float) and value
            ]
            assert numbers, f"{path.name}: {panel['title']} returned only empty values: {query}"


def test_a_single_store_selection_shows_that_store_only(
    seeded: tuple[InfluxQL, datetime, datetime],
) -> None:
    reader, start, end = seeded
    (panel,) = [p for p in load(GRAFANA / "dashboards/footfall.json")["panels"] if p["id"] == 2]
    query = interpolate(panel["targets"][0]["query"], {"store": ["store.2"]}, start, end, "5m")
    (series,) = reader.query(query)
    assert series.tags == {"store_id": "store.2"}
    assert series.values[0][1] == HOURS * 60 // 5
