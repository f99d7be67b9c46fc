"""The footfall statistics API on a real database, fed through the ingest's own code paths."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cloud_api.app import create_app
from cloud_api.config import CloudSettings
from cloud_api.deps import CloudContext
from cloud_api.ingest.beacon_health import record_beacon_report
from cloud_api.ingest.gateway_status import record_gateway_status
from cloud_api.ingest.presence_service import PresenceService
from cloud_api.match.offer_policy import offer_policy
from cloud_api.store.db import begin_write
from storelink.wire import (
    BeaconFleetReport,
    BeaconHealth,
    GatewayState,
    GatewayStatus,
    PresenceEvent,
    PresenceKind,
    Subject,
    SubjectType,
)
from tests.helpers import ADMIN_HEADERS, ADMIN_TOKEN

STORE = "store-1"
BEACON = "f7826da6-4fa2-4e98-8024-bc5b71e0893e:100:1"


def event(
    kind: PresenceKind, zone: str, subject: Subject, ts: datetime, dwell_s: float = 0.0
) -> PresenceEvent:
    return PresenceEvent(
        store_id=STORE,
        gateway_id="gw-1",
        zone_id=zone,
        kind=kind,
        subject=subject,
        ts=ts,
        dwell_s=dwell_s,
        rssi=-60,
    )


def stay(zone: str, subject: Subject, start: datetime, seconds: float) -> list[PresenceEvent]:
    end = start + timedelta(seconds=seconds)
    return [
        event(PresenceKind.ENTER, zone, subject, start),
        event(PresenceKind.EXIT, zone, subject, end, seconds),
    ]


@pytest.fixture
def day() -> date:
    # Three days ago: every event is in the past whatever the time of day the test runs.
    return (datetime.now(UTC) - timedelta(days=3)).date()


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


@pytest.fixture
def client(database_url: str, day: date) -> Iterator[TestClient]:
    settings = CloudSettings(
        database_url=database_url,
        mqtt_enabled=False,
        admin_token=ADMIN_TOKEN,
    )
    app = create_app(settings)
    with TestClient(app, headers=ADMIN_HEADERS) as client:
        context: CloudContext = app.state.context
        feed(context, day)
        yield client


def feed(context: CloudContext, day: date) -> None:
    """A regular who came a week before, a walk-in, one who only stepped in, one here now."""
    service = PresenceService(context.sessions, context.directory, offer_policy(context.settings))
    regular = Subject(type=SubjectType.WEARABLE, ref="wear-regular")
    walk_in = Subject(type=SubjectType.ANONYMOUS, ref="anon-walk-in")
    glance = Subject(type=SubjectType.ANONYMOUS, ref="anon-glance")
    here_now = Subject(type=SubjectType.ANONYMOUS, ref="anon-here-now")
    now = datetime.now(UTC)
    events = [
        *stay("entrance", regular, at(day - timedelta(days=7), 10), 300),
        *stay("entrance", regular, at(day, 10), 60),
        *stay("racks", regular, at(day, 10, 1), 600),
        *stay("entrance", walk_in, at(day, 10, 20), 120),
        *stay("entrance", glance, at(day, 10, 30), 20),
        event(PresenceKind.ENTER, "racks", here_now, now - timedelta(minutes=1)),
    ]
    service.handle_batch(events, now)
    statuses = [
        GatewayStatus(
            store_id=STORE,
            gateway_id="gw-1",
            state=GatewayState.ONLINE,
            ts=at(day, hour, 59),
            uptime_s=uptime,
            passers_by=passers,
        )
        for hour, uptime, passers in ((10, 3600.0, 12), (11, 7200.0, 20))
    ]
    report = BeaconFleetReport(
        store_id=STORE,
        gateway_id="gw-1",
        ts=now,
        missing_after_s=60,
        beacons=(BeaconHealth(beacon_id=BEACON, missing=False, last_seen=now, battery_mv=2400),),
    )
    with context.sessions.begin() as session:
        begin_write(session)
        for status in [*statuses, statuses[0]]:  # the broker replays a retained status
            record_gateway_status(session, status, now)
        record_beacon_report(session, report)
    # The gateway is online now: its latest status arrives as the test runs.
    with context.sessions.begin() as session:
        begin_write(session)
        live = GatewayStatus(
            store_id=STORE,
            gateway_id="gw-1",
            state=GatewayState.ONLINE,
            ts=now,
            uptime_s=10.0,
            passers_by=0,
        )
        record_gateway_status(session, live, now)


def get(client: TestClient, path: str, **params: Any) -> Any:
    response = client.get(f"/v1/stats/{path}", params={"store_id": STORE, **params})
    assert response.status_code == 200, response.text
    return response.json()


STATS_PATHS = (
    "occupancy",
    "visits-per-hour",
    "visitors",
    "dwell",
    "zones",
    "peak-hours",
    "capture",
    "health",
)


def test_stats_need_a_token_and_a_staff_member_sees_only_their_stores(
    client: TestClient,
) -> None:
    for store in (STORE, "store-2"):
        created = client.post("/v1/stores", json={"store_id": store, "name": store})
        assert created.status_code == 201, created.text
    account = {"email": "bea@example.com", "password": "a long password", "store_ids": ["store-2"]}
    assert client.post("/v1/staff", json=account).status_code == 201
    login = client.post(
        "/v1/auth/login", json={"email": account["email"], "password": account["password"]}
    )
    assert login.status_code == 200, login.text
    staff = {"Authorization": f"Bearer {login.json()['access_token']}"}
    for path in STATS_PATHS:
        url = f"/v1/stats/{path}"
        anonymous = client.get(url, params={"store_id": STORE}, headers={"Authorization": ""})
        assert anonymous.status_code == 401, path
        refused = client.get(url, params={"store_id": STORE}, headers=staff)
        assert refused.status_code == 403, path
        assert "no access to store 'store-1'" in refused.json()["detail"]
        assert client.get(url, params={"store_id": "store-2"}, headers=staff).status_code == 200


def test_local_days_default_to_the_store_time_zone(client: TestClient, day: date) -> None:
    created = client.post(
        "/v1/stores", json={"store_id": STORE, "name": "Boutique", "timezone": "Europe/Rome"}
    )
    assert created.status_code == 201, created.text
    body = get(client, "visits-per-hour", date=day.isoformat())
    assert body["timezone"] == "Europe/Rome"
    assert [row["hour"] for row in body["rows"] if row["today"]] == [11]


def test_occupancy_shows_who_is_in_which_zone_now(client: TestClient) -> None:
    body = get(client, "occupancy")
    assert body["in_store"] == 1
    assert {z["zone_id"]: z["present"] for z in body["zones"]} == {"racks": 1}
    # The store's zones show even when nobody is in them.
    assert client.post("/v1/stores", json={"store_id": STORE, "name": "B"}).status_code == 201
    zone = {"zone_id": "entrance", "name": "Door", "polygon": [[0, 0], [2, 0], [2, 2]]}
    assert client.post(f"/v1/stores/{STORE}/zones", json=zone).status_code == 201
    body = get(client, "occupancy")
    assert {z["zone_id"]: z["present"] for z in body["zones"]} == {"entrance": 0, "racks": 1}


def test_visits_per_hour_against_the_same_weekday(client: TestClient, day: date) -> None:
    body = get(client, "visits-per-hour", date=day.isoformat())
    assert body["total_today"] == 2  # the 20-second glance is not a visit
    ten = body["rows"][10]
    assert (ten["hour"], ten["today"], ten["week_1"], ten["week_4"]) == (10, 2, 1, 0)
    assert ten["average_4_weeks"] == 0.25
    rome = get(client, "visits-per-hour", date=day.isoformat(), tz="Europe/Rome")
    assert [row["hour"] for row in rome["rows"] if row["today"]] == [11]


def test_minimum_stays_are_settings_and_query_parameters(client: TestClient, day: date) -> None:
    span = {"from": day.isoformat(), "to": day.isoformat()}
    assert get(client, "visitors", **span)["visits"] == 2
    lenient = get(client, "visitors", min_store_stay_s=10, **span)
    assert lenient["visits"] == 3
    assert lenient["rules"]["min_store_stay_s"] == 10


def test_visitors_give_returning_bounds(client: TestClient, day: date) -> None:
    body = get(client, "visitors", **{"from": day.isoformat(), "to": day.isoformat()})
    assert body["unique_visitors"] == 2
    assert (body["identified_visitors"], body["anonymous_visitors"]) == (1, 1)
    assert body["returning_identified"] == 1
    assert body["returning_rate_identified"] == 1.0
    assert (body["returning_rate_lower"], body["returning_rate_upper"]) == (0.5, 1.0)
    assert "randomise" in body["method"]


def test_dwell_distribution(client: TestClient, day: date) -> None:
    body = get(client, "dwell", **{"from": day.isoformat(), "to": day.isoformat()})
    buckets = {(b["from_s"], b["to_s"]): b["visits"] for b in body["buckets"]}
    assert buckets[(120.0, 300.0)] == 1  # the walk-in, 2 minutes
    assert buckets[(600.0, 1200.0)] == 1  # the regular, 11 minutes in all
    assert sum(buckets.values()) == 2
    assert body["median_s"] == 120.0


def test_zone_heatmap_and_peak_hours(client: TestClient, day: date) -> None:
    span = {"from": day.isoformat(), "to": day.isoformat()}
    zones = get(client, "zones", **span)
    cells = {(r["zone_id"], r["hour"]): (r["stays"], r["dwell_s"]) for r in zones["rows"]}
    assert cells == {("entrance", 10): (2, 180.0), ("racks", 10): (1, 600.0)}
    peaks = get(client, "peak-hours", **span)
    assert peaks["rows"] == [{"weekday": day.weekday(), "hour": 10, "visits": 2, "average": 2.0}]


def test_capture_rate_from_the_passers_by_the_gateway_heard(client: TestClient, day: date) -> None:
    body = get(client, "capture", **{"from": day.isoformat(), "to": day.isoformat()})
    # 12 passers-by in the first hour, 8 more by the second status; the replay adds nothing.
    assert (body["entered"], body["passed_by"]) == (2, 20)
    assert body["capture_rate"] == pytest.approx(2 / 22)


def test_health_shows_gateways_and_beacon_batteries(client: TestClient) -> None:
    body = get(client, "health")
    assert [(g["gateway_id"], g["online"]) for g in body["gateways"]] == [("gw-1", True)]
    (beacon,) = body["beacons"]
    assert (beacon["beacon_id"], beacon["battery_mv"], beacon["battery_low"]) == (
        BEACON,
        2400,
        True,
    )


def test_every_table_exports_as_csv(client: TestClient, day: date) -> None:
    span = {"from": day.isoformat(), "to": day.isoformat(), "format": "csv"}
    response = client.get(
        "/v1/stats/visits-per-hour",
        params={"store_id": STORE, "date": day.isoformat(), "format": "csv"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 24
    assert rows[10] == {
        "hour": "10",
        "today": "2",
        "week_1": "1",
        "week_2": "0",
        "week_3": "0",
        "week_4": "0",
        "average_4_weeks": "0.25",
    }
    for path in ("visitors", "dwell", "zones", "peak-hours", "capture", "occupancy"):
        exported = client.get(f"/v1/stats/{path}", params={"store_id": STORE, **span})
        assert exported.status_code == 200, path
        table = list(csv.DictReader(io.StringIO(exported.text)))
        assert table, path
    zones = list(
        csv.DictReader(
            io.StringIO(client.get("/v1/stats/zones", params={"store_id": STORE, **span}).text)
        )
    )
    assert {(r["zone_id"], r["stays"]) for r in zones} == {("entrance", "2"), ("racks", "1")}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"tz": "Mars/Olympus"}, "unknown time zone"),
        ({"from": "2026-11-20", "to": "2026-11-10"}, "is after"),
        ({"from": "2024-01-01", "to": "2026-01-01"}, "at most 366 days"),
    ],
)
def test_bad_periods_are_refused_precisely(
    client: TestClient, params: dict[str, str], message: str
) -> None:
    response = client.get("/v1/stats/visitors", params={"store_id": STORE, **params})
    assert response.status_code == 422
    assert message in response.text


def test_the_stats_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("occupancy", "visits-per-hour", "visitors", "dwell", "zones", "peak-hours"):
        operation = paths[f"/v1/stats/{path}"]["get"]
        content = operation["responses"]["200"]["content"]
        assert "text/csv" in content and "$ref" in str(content["application/json"]), path


def test_the_dashboard_is_served_from_the_package(client: TestClient) -> None:
    page = client.get("/dashboard/")
    assert page.status_code == 200
    assert 'src="vendor/chart.umd.js"' in page.text
    chart = client.get("/dashboard/vendor/chart.umd.js")
    assert chart.status_code == 200 and "Chart.js v4" in chart.text[:200]
    assert client.get("/dashboard", follow_redirects=False).status_code == 307


def test_an_older_beacon_report_changes_nothing_and_a_newer_one_replaces_it(
    database_url: str,
) -> None:
    settings = CloudSettings(database_url=database_url, mqtt_enabled=False, admin_token=ADMIN_TOKEN)
    app = create_app(settings)
    other = "8b0ca750095477cb3e77:000000000001"
    now = datetime.now(UTC)

    def report(ts: datetime, *beacons: BeaconHealth) -> BeaconFleetReport:
        return BeaconFleetReport(
            store_id=STORE, gateway_id="gw-1", ts=ts, missing_after_s=60, beacons=beacons
        )

    with TestClient(app, headers=ADMIN_HEADERS) as client:
        context: CloudContext = app.state.context
        with context.sessions.begin() as session:
            begin_write(session)
            both = (
                BeaconHealth(beacon_id=BEACON, missing=False, battery_mv=2900),
                BeaconHealth(beacon_id=other, missing=True),
            )
            assert record_beacon_report(session, report(now, *both))
            older = BeaconHealth(beacon_id=BEACON, missing=True, battery_mv=3000)
            assert not record_beacon_report(session, report(now - timedelta(minutes=1), older))
        body = get(client, "health")
        assert [(b["beacon_id"], b["missing"], b["battery_mv"]) for b in body["beacons"]] == [
            (other, True, None),
            (BEACON, False, 2900),
        ]
        with context.sessions.begin() as session:
            begin_write(session)
            newer = BeaconHealth(beacon_id=BEACON, missing=False, battery_mv=2850)
            assert record_beacon_report(session, report(now + timedelta(minutes=1), newer))
        body = get(client, "health")
        assert [(b["beacon_id"], b["battery_mv"]) for b in body["beacons"]] == [(BEACON, 2850)]
