"""Presence over MQTT into the cloud, out as InfluxDB points: a real Mosquitto, a real influxd."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cloud_api.app import create_app
from cloud_api.config import CloudSettings
from cloud_api.ingest.consumer import CommittedBatch
from cloud_api.ingest.presence_service import PresenceOutcome
from cloud_api.match.decide import CartLine, Outcome, Terms, Verdict
from cloud_api.store.models import TimeSeriesPoint
from cloud_api.timeseries.points import OfferFact, OfferOutcome, PresenceFact
from cloud_api.timeseries.query import InfluxQL
from cloud_api.timeseries.sinks import SqlSink
from cloud_api.timeseries.writer import TimeSeriesWriter, facts_of
from storelink.mqtt import make_client
from storelink.wire import (
    GatewayState,
    GatewayStatus,
    OfferNotification,
    PresenceEvent,
    PresenceKind,
    Subject,
    SubjectType,
    presence_topic,
    status_topic,
)
from tests.helpers import ADMIN_HEADERS, ADMIN_TOKEN, wait_for
from tests.services import Influxd, Mosquitto

OUTAGE_S = 30.0


class Gateway:
    """One MQTT connection publishing presence and heartbeats, as a gateway does."""

    def __init__(self, url: str) -> None:
        self.client, address = make_client(url, "5", f"test-gateway-{time.monotonic_ns()}")
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        self.sent = 0
        self.heartbeats = 0
        self.adverts_seen = 0

    def enter(self, zone: str = "entrance") -> PresenceEvent:
        self.sent += 1
        event = PresenceEvent(
            store_id="store-1",
            gateway_id="gw-1",
            zone_id=zone,
            kind=PresenceKind.ENTER,
            subject=Subject(type=SubjectType.ANONYMOUS, ref=f"anon-{self.sent:05d}"),
            ts=datetime.now(UTC),
            dwell_s=0,
            rssi=-60,
        )
        self._publish(presence_topic("store-1", "gw-1"), event.model_dump_json())
        return event

    def heartbeat(self, adverts_seen: int) -> None:
        self.heartbeats += 1
        self.adverts_seen = adverts_seen
        status = GatewayStatus(
            store_id="store-1",
            gateway_id="gw-1",
            state=GatewayState.ONLINE,
            ts=datetime.now(UTC),
            adverts_seen=adverts_seen,
            adverts_per_s=12.5,
        )
        self._publish(status_topic("store-1", "gw-1"), status.model_dump_json())

    def _publish(self, topic: str, payload: str) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(5)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def gateway(mosquitto: Mosquitto) -> Iterator[Gateway]:
    gateway = Gateway(mosquitto.url)
    yield gateway
    gateway.close()


def store_occupancy(reader: InfluxQL) -> int | None:
    query = 'SELECT last("present") FROM "occupancy" WHERE "scope" = \'store\''
    series = reader.query(query)
    return int(series[0].rows()[0]["last"]) if series else None


def count(reader: InfluxQL, field: str, measurement: str) -> int:
    series = reader.query(f'SELECT count("{field}") FROM "{measurement}"')
    return int(series[0].rows()[0]["count"]) if series else 0


def test_presence_over_mqtt_becomes_points_and_an_influx_outage_loses_none(
    mosquitto: Mosquitto, influxd: Influxd, gateway: Gateway, tmp_path: Path
) -> None:
    settings = CloudSettings(
        mqtt_url=mosquitto.url,
        mqtt_protocol="5",
        database_url=f"sqlite:///{tmp_path / 'cloud.db'}",
        admin_token=ADMIN_TOKEN,
        influx_url=influxd.url,
        influx_api="v1",
        influx_database="storelink",
        influx_flush_interval_s=0.1,
        timeseries_buffer_path=tmp_path / "timeseries-buffer.db",
        timeseries_occupancy_interval_s=1.0,
    )
    reader = InfluxQL(influxd.url, "storelink")
    # So that polling before the first write finds an empty database, not none.
    reader.query('CREATE DATABASE "storelink"')
    app = create_app(settings)
    with TestClient(app, headers=ADMIN_HEADERS) as client:
        assert app.state.consumer.wait_until_subscribed(10)
        writer: TimeSeriesWriter = app.state.timeseries
        for _ in range(20):
            gateway.enter()
        gateway.heartbeat(100)
        wait_for(lambda: count(reader, "events", "presence") == 20, what="first 20 points")

        influxd.stop()
        down_since = time.monotonic()
        while time.monotonic() - down_since < OUTAGE_S:
            gateway.enter(zone="dairy")
            if gateway.sent % 10 == 0:
                gateway.heartbeat(100 * gateway.sent)
            time.sleep(OUTAGE_S / 40)
        assert writer.buffer is not None and len(writer.buffer) > 0
        metrics = client.get("/metrics").text
        assert "storelink_timeseries_buffer_points" in metrics
        influxd.start()
        for _ in range(20):
            gateway.enter()
        total = gateway.sent
        wait_for(
            lambda: count(reader, "events", "presence") == total,
            timeout_s=60,
            what="every presence event as a point",
        )
        wait_for(lambda: not len(writer.buffer or []), what="the buffer drained")
        wait_for(
            lambda: store_occupancy(reader) == total, what="an occupancy snapshot with everyone"
        )
        metrics = client.get("/metrics").text

    # Every event exactly once: each anonymous subject walked in once, so one entry each.
    assert count(reader, "events", "presence") == total
    assert count(reader, "entries", "footfall") == total
    zones = reader.query('SELECT count("events") FROM "presence" GROUP BY "zone"')
    per_zone = {series.tags["zone"]: series.rows()[0]["count"] for series in zones}
    assert per_zone == {"entrance": 40, "dairy": total - 40}
    (health,) = reader.query('SELECT last("adverts_seen"), count("online") FROM "gateway_health"')
    row = health.rows()[0]
    assert (row["last"], row["count"]) == (gateway.adverts_seen, gateway.heartbeats)
    assert writer.counters.points_dropped == 0
    assert writer.counters.points_buffered > 0
    assert "storelink_timeseries_points_dropped_total 0.0" in metrics
    assert "storelink_ingest_lag_seconds_count" in metrics
    assert "storelink_ingest_commit_seconds_bucket" in metrics
    assert "storelink_timeseries_write_seconds_count" in metrics


def test_a_committed_batch_becomes_presence_footfall_and_offer_facts() -> None:
    event = PresenceEvent(
        store_id="store-1",
        gateway_id="gw-1",
        zone_id="entrance",
        kind=PresenceKind.ENTER,
        subject=Subject(type=SubjectType.APP, ref="tok-1"),
        ts=datetime(2026, 11, 24, 10, tzinfo=UTC),
        dwell_s=0,
        rssi=-60,
    )
    terms = Terms(
        percent_off=Decimal("10"),
        amount_off=None,
        items=(CartLine("sku-1", "Mug", "home", Decimal("8.50"), 2),),
        currency="EUR",
        min_spend=None,
        online=False,
        expires_at=event.ts + timedelta(hours=2),
        message="10% off",
    )
    notification = OfferNotification(
        shopper_ref="shopper-1",
        store_id="store-1",
        offer_code="ABCD-2345",
        percent_off=Decimal("10"),
        items=(),
        currency="EUR",
        expires_at=event.ts + timedelta(hours=2),
        message="10% off",
        ts=event.ts,
    )
    outcome = PresenceOutcome(
        duplicate=False,
        shopper_id="shopper-1",
        verdicts=(
            Verdict("winback", Outcome.OFFERED, (), "cart-1", terms),
            Verdict("spring", Outcome.HELD_OUT, (), "cart-1", terms),
            Verdict("vip", Outcome.INELIGIBLE, ()),
        ),
        notification=notification,
        opened_visit=True,
    )
    batch = CommittedBatch(
        (event,),
        1,
        time.time(),
        (outcome,),
        (),
        frozenset({notification.notification_id}),
        0.01,
    )
    facts = facts_of(batch)
    assert facts[0] == PresenceFact(event, opened_visit=True)
    offers = [(f.outcome, f.campaign, f.percent_off, f.items) for f in facts[1:]]
    assert all(isinstance(f, OfferFact) for f in facts[1:])
    assert offers == [
        (OfferOutcome.DECIDED, "winback", 10.0, 2),
        (OfferOutcome.SENT, "winback", 10.0, 2),
        (OfferOutcome.HELD_OUT, "spring", 10.0, 2),
    ]


def test_without_influxdb_the_points_go_to_the_sql_database(
    mosquitto: Mosquitto, gateway: Gateway, tmp_path: Path
) -> None:
    settings = CloudSettings(
        mqtt_url=mosquitto.url,
        mqtt_protocol="5",
        database_url=f"sqlite:///{tmp_path / 'cloud.db'}",
        admin_token=ADMIN_TOKEN,
        influx_flush_interval_s=0.1,
    )
    assert settings.influx_url is None
    app = create_app(settings)
    with TestClient(app, headers=ADMIN_HEADERS):
        assert app.state.consumer.wait_until_subscribed(10)
        writer: TimeSeriesWriter = app.state.timeseries
        assert isinstance(writer.sink, SqlSink) and writer.buffer is None
        events = [gateway.enter() for _ in range(5)]
        gateway.heartbeat(10)

        def stored() -> dict[str, int]:
            with app.state.context.sessions() as session:
                rows = session.execute(
                    sa.select(TimeSeriesPoint.measurement, sa.func.count()).group_by(
                        TimeSeriesPoint.measurement
                    )
                )
                return {measurement: count for measurement, count in rows}

        wait_for(
            lambda: stored().get("presence") == 5 and stored().get("gateway_health") == 1,
            what="points in SQL",
        )
        assert stored()["footfall"] == 5
        with app.state.context.sessions() as session:
            query = sa.select(TimeSeriesPoint.ts).where(TimeSeriesPoint.measurement == "presence")
            times = {
                ts.replace(microsecond=ts.microsecond // 1000 * 1000)
                for ts in session.scalars(query)
            }
    # At the event's millisecond (the sub-millisecond part comes from the event id).
    assert times == {e.ts.replace(microsecond=e.ts.microsecond // 1000 * 1000) for e in events}


def test_a_stopping_worker_acknowledges_what_its_writer_still_held(
    mosquitto: Mosquitto, gateway: Gateway, tmp_path: Path
) -> None:
    settings = CloudSettings(
        mqtt_url=mosquitto.url,
        mqtt_protocol="5",
        mqtt_client_id="test-cloud-stopping",
        database_url=f"sqlite:///{tmp_path / 'cloud.db'}",
        admin_token=ADMIN_TOKEN,
        # The writer holds the committed batches, unacknowledged, until it stops.
        influx_flush_interval_s=60.0,
    )
    app = create_app(settings)
    with TestClient(app, headers=ADMIN_HEADERS):
        consumer = app.state.consumer
        assert consumer.wait_until_subscribed(10)
        for _ in range(10):
            gateway.enter()
        wait_for(lambda: consumer.counters.presence_events == 10, what="10 events committed")
        assert not app.state.timeseries.wait_idle(0.2), "the writer still holds them"

    # The same client id resumes the session: the broker would send again what was not
    # acknowledged, before anything new.
    app = create_app(settings)
    with TestClient(app, headers=ADMIN_HEADERS):
        consumer = app.state.consumer
        assert consumer.wait_until_subscribed(10)
        gateway.enter()
        wait_for(lambda: consumer.counters.presence_events == 1, what="the new event committed")
        assert consumer.counters.duplicates == 0
    with sa.create_engine(settings.database_url).connect() as connection:
        points = connection.scalar(
            sa.select(sa.func.count())
            .select_from(TimeSeriesPoint)
            .where(TimeSeriesPoint.measurement == "presence")
        )
    assert points == 11
