"""Stores, zones and gateways: provisioning publishes the gateway's retained config on a real
broker; lists page with cursors; the gateways' status history keeps every transition."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from cloud_api.api.problems import PROBLEM_JSON
from cloud_api.app import create_app
from cloud_api.config import CloudSettings
from cloud_api.fleet.geometry import polygon_problem
from cloud_api.fleet.mqtt_auth import mosquitto_hash, new_mqtt_password, verify_mosquitto_hash
from cloud_api.fleet.stores import publish_store_configs
from cloud_api.ingest.gateway_status import record_gateway_status
from cloud_api.routes.stores import _lock_store_zones
from cloud_api.store.models import Gateway, Shopper, ShopperDevice, Visit, Zone
from storelink.wire import (
    GatewayConfig,
    GatewayState,
    GatewayStatus,
    ZoneConfig,
    config_topic,
    utc_now,
)
from tests import shopper_app
from tests.helpers import ADMIN_HEADERS, ADMIN_TOKEN, MqttRecorder, wait_for
from tests.services import Mosquitto

APP_UUID = "e2c56db5-dffb-48d2-b060-d0f5a71096e0"
STAFF_BADGE = "f7826da6-4fa2-4e98-8024-bc5b71e0893e:1:7"
SQUARE = [[0, 0], [4, 0], [4, 3], [0, 3]]


@dataclass
class Cloud(shopper_app.Cloud):
    def post(self, path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
        response = self.client.post(path, json=body, headers=ADMIN_HEADERS)
        assert response.status_code == status, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.client.get(path, params=params, headers=ADMIN_HEADERS)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer


@contextmanager
def running_cloud(database_url: str, **overrides: Any) -> Iterator[Cloud]:
    settings = CloudSettings(
        database_url=database_url, admin_token=ADMIN_TOKEN, app_uuid=APP_UUID, **overrides
    )
    app = create_app(settings)
    with TestClient(app) as client:
        yield Cloud(app, client)


@pytest.fixture
def cloud(database_url: str) -> Iterator[Cloud]:
    with running_cloud(database_url, mqtt_enabled=False) as cloud:
        yield cloud


def add_store(cloud: Cloud, store_id: str = "store-1", **extra: Any) -> dict[str, Any]:
    return cloud.post("/v1/stores", {"store_id": store_id, "name": "Via Roma", **extra})


def add_zones(cloud: Cloud, *zone_ids: str) -> None:
    for zone_id in zone_ids:
        body = {"zone_id": zone_id, "name": zone_id, "polygon": SQUARE}
        cloud.post("/v1/stores/store-1/zones", body)


# --- polygons -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("points", "problem"),
    [
        ([(0, 0), (1, 0)], "at least 3 points"),
        ([(0, 0), (1, 1), (2, 2)], "no area"),
        ([(0, 0), (2, 2), (2, 0), (0, 2)], "cross"),
        ([(0, 0), (4, 0), (4, 3), (0, 0)], "do not repeat"),
        ([(0, 0), (4, 0), (4, 3), (4, 0)], "appears twice"),
    ],
)
def test_a_bad_polygon_says_what_is_wrong(points: list[tuple[float, float]], problem: str) -> None:
    found = polygon_problem(points)
    assert found is not None and problem in found


def test_simple_polygons_pass() -> None:
    assert polygon_problem([(0, 0), (4, 0), (4, 3), (0, 3)]) is None
    # Concave (an L), clockwise: still simple.
    assert polygon_problem([(0, 0), (0, 4), (1, 4), (1, 1), (3, 1), (3, 0)]) is None


# --- stores and zones ---------------------------------------------------------------------------


def test_stores_and_zones_are_created_validated_and_listed(cloud: Cloud) -> None:
    store = add_store(cloud, staff_beacons=[STAFF_BADGE.upper()], timezone="Europe/Rome")
    assert store["staff_beacons"] == [STAFF_BADGE] and store["timezone"] == "Europe/Rome"
    assert cloud.post("/v1/stores", {"store_id": "store-1", "name": "x"}, status=409)
    bad_zone = cloud.post(
        "/v1/stores", {"store_id": "s2", "name": "x", "timezone": "Mars/Base"}, 422
    )
    assert "unknown time zone" in bad_zone["detail"]

    zone = cloud.post(
        "/v1/stores/store-1/zones", {"zone_id": "entrance", "name": "Door", "polygon": SQUARE}
    )
    assert zone["polygon"] == SQUARE
    bowtie = cloud.post(
        "/v1/stores/store-1/zones",
        {"zone_id": "bad", "name": "Bow tie", "polygon": [[0, 0], [2, 2], [2, 0], [0, 2]]},
        status=422,
    )
    assert bowtie["errors"][0]["loc"] == ["body", "polygon"]
    assert "cross" in bowtie["detail"]
    assert cloud.post(
        "/v1/stores/nowhere/zones", {"zone_id": "z", "name": "Z", "polygon": SQUARE}, 404
    )

    detail = cloud.get("/v1/stores/store-1")
    assert [z["zone_id"] for z in detail["zones"]] == ["entrance"]
    assert detail["zones"][0]["polygon"] == SQUARE
    zones = cloud.get("/v1/stores/store-1/zones")
    assert [z["zone_id"] for z in zones["items"]] == ["entrance"] and zones["next_cursor"] is None


def test_lists_page_with_an_opaque_cursor(cloud: Cloud) -> None:
    for number in range(5):
        add_store(cloud, f"store-{number}")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = cloud.get("/v1/stores", **params)
        seen += [s["store_id"] for s in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"store-{n}" for n in range(5)] and pages == 3
    bad = cloud.client.get("/v1/stores", params={"cursor": "bm90IGpzb24"}, headers=ADMIN_HEADERS)
    assert bad.status_code == 422 and "cursor" in bad.json()["detail"]


# --- gateways -----------------------------------------------------------------------------------


def add_wearable(cloud: Cloud, shopper_id: str, consents: bool, irk: bytes) -> None:
    now = datetime.now(UTC)
    with cloud.context.sessions() as session:
        session.add(
            Shopper(
                id=shopper_id,
                display_name=None,
                app_key=bytes(32),
                consent_personal_offers=False,
                consent_footfall_analytics=consents,
                consent_text_version="1",
                consent_at=now,
                created_at=now,
            )
        )
        session.flush()
        session.add(
            ShopperDevice(
                shopper_id=shopper_id,
                kind="wearable",
                ref=f"wear-{shopper_id}",
                irk=irk,
                store_id=None,
                label=None,
                created_at=now,
            )
        )
        session.commit()


def _retained_config(mosquitto: Mosquitto, topic: str, after_version: int) -> GatewayConfig:
    recorder = MqttRecorder(mosquitto.url, topic)
    try:
        wait_for(
            lambda: any(
                GatewayConfig.model_validate_json(p).version > after_version
                for p in recorder.on(topic)
            ),
            what=f"a config newer than version {after_version}",
        )
        return GatewayConfig.model_validate_json(recorder.on(topic)[-1])
    finally:
        recorder.close()


def test_provisioning_publishes_the_gateway_config_and_shows_the_password_once(
    database_url: str, mosquitto: Mosquitto
) -> None:
    with running_cloud(database_url, mqtt_url=mosquitto.url, mqtt_protocol="5") as cloud:
        add_store(
            cloud,
            staff_beacons=[STAFF_BADGE],
            calibration={"by_device_class": {"apple_watch": -62}},
        )
        cloud.post(
            "/v1/stores/store-1/zones", {"zone_id": "entrance", "name": "Door", "polygon": SQUARE}
        )
        add_wearable(cloud, "shp_yes", consents=True, irk=bytes(range(16)))
        add_wearable(cloud, "shp_no", consents=False, irk=bytes(16))
        unknown_zone = cloud.post(
            "/v1/stores/store-1/gateways",
            {"gateway_id": "gw-1", "zones": [{"zone_id": "till", "enter_distance_m": 2}]},
            status=422,
        )
        assert "till" in unknown_zone["detail"]

        topic = config_topic("store-1", "gw-1")
        gateway = cloud.post(
            "/v1/stores/store-1/gateways",
            {
                "gateway_id": "gw-1",
                "name": "by the door",
                "zones": [{"zone_id": "entrance", "enter_distance_m": 2.5, "exit_distance_m": 4}],
            },
        )
        assert gateway["mqtt_username"] == "gw-1" and len(gateway["mqtt_password"]) >= 24
        assert gateway["config_published"] is True and gateway["config_topic"] == topic
        assert cloud.post("/v1/stores/store-1/gateways", {"gateway_id": "gw-1"}, status=409)

        # Retained: a gateway connecting later still gets it.
        config = _retained_config(mosquitto, topic, 0)
        assert (config.store_id, config.gateway_id, config.version) == ("store-1", "gw-1", 1)
        assert config.zones is not None and config.zones[0].enter_distance_m == 2.5
        assert config.staff_beacons == (STAFF_BADGE,)
        assert config.calibration.by_device_class == {"apple_watch": -62}
        assert str(config.app_uuid) == APP_UUID
        # Only the consenting shopper's wearable.
        assert config.irks == {"wear-shp_yes": bytes(range(16)).hex()}

        with cloud.context.sessions() as session:
            stored = session.scalars(sa.select(Gateway.mqtt_password_hash)).one()
        assert gateway["mqtt_password"] not in stored
        assert verify_mosquitto_hash(gateway["mqtt_password"], stored)

        listed = cloud.get("/v1/stores/store-1/gateways")["items"]
        assert [(g["gateway_id"], g["config_version"]) for g in listed] == [("gw-1", 1)]
        assert "mqtt_password" not in listed[0]

        # Consent withdrawn, configs published again: the IRK is gone and the version moved on.
        with cloud.context.sessions() as session:
            session.execute(sa.update(Shopper).values(consent_footfall_analytics=False))
            session.commit()
            assert publish_store_configs(session, cloud.context.settings, "store-1")
        again = _retained_config(mosquitto, topic, 1)
        assert again.version == 2 and again.irks == {}

        # A change to the store's beacons reaches its gateways at once.
        other_badge = "f7826da6-4fa2-4e98-8024-bc5b71e0893e:1:8"
        changed = cloud.client.patch(
            "/v1/stores/store-1", json={"staff_beacons": [other_badge]}, headers=ADMIN_HEADERS
        )
        assert changed.status_code == 200 and changed.json()["staff_beacons"] == [other_badge]
        third = _retained_config(mosquitto, topic, 2)
        assert third.version == 3 and third.staff_beacons == (other_badge,)

        # A lost password is replaced; the old one no longer matches the stored hash.
        renewed = cloud.post("/v1/stores/store-1/gateways/gw-1/password", {}, status=200)
        with cloud.context.sessions() as session:
            stored = session.scalars(sa.select(Gateway.mqtt_password_hash)).one()
        assert verify_mosquitto_hash(renewed["mqtt_password"], stored)
        assert not verify_mosquitto_hash(gateway["mqtt_password"], stored)
        assert cloud.post("/v1/stores/store-2/gateways/gw-1/password", {}, status=404)


def test_provisioning_without_mqtt_still_registers_the_gateway(cloud: Cloud) -> None:
    add_store(cloud)
    gateway = cloud.post("/v1/stores/store-1/gateways", {"gateway_id": "gw-9"})
    assert gateway["config_published"] is False
    assert cloud.get("/v1/stores/store-1")["gateway_ids"] == ["gw-9"]


def test_changing_a_gateway_publishes_its_new_zones_and_rssi_offset(
    database_url: str, mosquitto: Mosquitto
) -> None:
    with running_cloud(database_url, mqtt_url=mosquitto.url, mqtt_protocol="5") as cloud:
        add_store(cloud)
        add_zones(cloud, "entrance", "racks")
        cloud.post(
            "/v1/stores/store-1/gateways",
            {
                "gateway_id": "gw-1",
                "zones": [{"zone_id": "entrance", "enter_distance_m": 2.5}],
                "rssi_offset_db": 3.5,
            },
        )
        topic = config_topic("store-1", "gw-1")
        first = _retained_config(mosquitto, topic, 0)
        assert (first.version, first.rssi_offset_db) == (1, 3.5)

        def patch(body: dict[str, Any], status: int = 200, store: str = "store-1") -> Any:
            response = cloud.client.patch(
                f"/v1/stores/{store}/gateways/gw-1", json=body, headers=ADMIN_HEADERS
            )
            assert response.status_code == status, response.text
            return response.json()

        changed = patch(
            {"zones": [{"zone_id": "racks", "enter_distance_m": 2.0}], "rssi_offset_db": -4}
        )
        assert changed["rssi_offset_db"] == -4 and changed["config_version"] == 2
        assert [z["zone_id"] for z in changed["zones"]] == ["racks"]
        second = _retained_config(mosquitto, topic, 1)
        assert second.rssi_offset_db == -4
        assert second.zones is not None and [z.zone_id for z in second.zones] == ["racks"]

        # null gives the gateway back its local offset; the rest stays.
        third = patch({"rssi_offset_db": None})
        assert third["rssi_offset_db"] is None and third["zones"] == changed["zones"]
        assert _retained_config(mosquitto, topic, 2).rssi_offset_db is None

        # A new name changes nothing the gateway runs with: no new config.
        assert patch({"name": "over the racks"})["config_version"] == 3

        refused = patch({"zones": [{"zone_id": "till", "enter_distance_m": 2}]}, 422)
        assert "till" in refused["detail"]
        patch({"zones": None}, 422)
        patch({"rssi_offset_db": 31}, 422)
        patch({"name": "x"}, 404, store="store-2")
        listed = cloud.get("/v1/stores/store-1/gateways")["items"]
        assert [(g["name"], g["config_version"], g["rssi_offset_db"]) for g in listed] == [
            ("over the racks", 3, None)
        ]


def test_deleting_a_gateway_removes_it_and_its_retained_config(
    database_url: str, mosquitto: Mosquitto
) -> None:
    with running_cloud(database_url, mqtt_url=mosquitto.url, mqtt_protocol="5") as cloud:
        add_store(cloud)
        for gateway_id in ("gw-1", "gw-2"):
            cloud.post("/v1/stores/store-1/gateways", {"gateway_id": gateway_id})
        with cloud.context.sessions() as session:
            for gateway_id in ("gw-1", "gw-2"):
                status = GatewayStatus(
                    store_id="store-1",
                    gateway_id=gateway_id,
                    state=GatewayState.ONLINE,
                    ts=datetime.now(UTC),
                    version="1.0",
                )
                record_gateway_status(session, status, datetime.now(UTC))
            session.commit()

        def delete(path: str, headers: dict[str, str] = ADMIN_HEADERS) -> int:
            return cloud.client.delete(path, headers=headers).status_code

        assert delete("/v1/stores/store-2/gateways/gw-1") == 404
        assert delete("/v1/stores/store-1/gateways/gw-1", headers={}) == 401
        assert delete("/v1/stores/store-1/gateways/gw-1") == 204
        assert delete("/v1/stores/store-1/gateways/gw-1") == 404

        listed = cloud.get("/v1/stores/store-1/gateways")["items"]
        assert [g["gateway_id"] for g in listed] == ["gw-2"]
        assert [
            g["gateway_id"] for g in cloud.client.get("/v1/gateways", headers=ADMIN_HEADERS).json()
        ] == ["gw-2"]
        assert cloud.get("/v1/stores/store-1/gateways/gw-1/history")["items"]

        # The broker hands a new subscriber every retained config at once: gw-2's, not gw-1's.
        wildcard = "storelink/v1/store-1/+/config"
        recorder = MqttRecorder(mosquitto.url, wildcard)
        try:
            wait_for(lambda: recorder.on(config_topic("store-1", "gw-2")), what="gw-2's config")
            time.sleep(0.2)
            assert recorder.on(config_topic("store-1", "gw-1")) == []
        finally:
            recorder.close()


def test_zones_are_read_changed_and_removed_while_their_history_stays(cloud: Cloud) -> None:
    add_store(cloud)
    add_store(cloud, "store-2")
    cloud.post("/v1/stores/store-1/zones", {"zone_id": "racks", "name": "Racks", "polygon": SQUARE})
    cloud.post("/v1/stores/store-1/zones", {"zone_id": "till", "name": "Till", "polygon": SQUARE})
    now = datetime.now(UTC)
    with cloud.context.sessions() as session:
        session.add(
            Visit(
                store_id="store-1",
                subject_type="anonymous",
                subject_ref="anon-1",
                shopper_id=None,
                started_at=now - timedelta(minutes=5),
                last_seen_at=now,
                ended_at=now,
                zones=["racks", "till"],
                presence={},
                dwell_s=300.0,
            )
        )
        session.commit()

    def patch(path: str, body: dict[str, Any], status: int = 200) -> Any:
        response = cloud.client.patch(path, json=body, headers=ADMIN_HEADERS)
        assert response.status_code == status, response.text
        return response.json()

    def refused(method: str, path: str, status: int, detail: str) -> None:
        body = {"name": "Shelves"} if method == "PATCH" else None
        response = cloud.client.request(method, path, json=body, headers=ADMIN_HEADERS)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.json()["detail"] == detail and response.json()["instance"] == path

    assert cloud.get("/v1/stores/store-1/zones/racks")["name"] == "Racks"
    bigger = [[0, 0], [8, 0], [8, 4], [0, 4]]
    changed = patch("/v1/stores/store-1/zones/racks", {"name": "Racks and bags", "polygon": bigger})
    assert (changed["zone_id"], changed["name"], changed["polygon"]) == (
        "racks",
        "Racks and bags",
        bigger,
    )
    shown = cloud.get("/v1/stores/store-1/zones/racks")
    assert (shown["name"], shown["polygon"]) == ("Racks and bags", bigger)
    # A field left out stays.
    assert patch("/v1/stores/store-1/zones/racks", {"name": "Racks"})["polygon"] == bigger
    detail = cloud.get("/v1/stores/store-1")
    assert [(z["zone_id"], z["name"], z["polygon"]) for z in detail["zones"]] == [
        ("racks", "Racks", bigger),
        ("till", "Till", SQUARE),
    ]

    bowtie = patch(
        "/v1/stores/store-1/zones/racks", {"polygon": [[0, 0], [2, 2], [2, 0], [0, 2]]}, 422
    )
    assert bowtie["errors"][0]["loc"] == ["body", "polygon"] and "cross" in bowtie["detail"]
    for field in ("name", "polygon"):
        assert patch("/v1/stores/store-1/zones/racks", {field: None}, 422)["errors"][0]["loc"] == [
            "body",
            field,
        ]
    # Visits and statistics name the zone by its id: it never changes.
    patch("/v1/stores/store-1/zones/racks", {"zone_id": "shelves"}, 422)
    assert cloud.get("/v1/stores/store-1/zones/racks")["polygon"] == bigger

    for method in ("GET", "PATCH", "DELETE"):
        refused(method, "/v1/stores/nowhere/zones/racks", 404, "no store 'nowhere'")
        refused(
            method, "/v1/stores/store-2/zones/racks", 404, "store 'store-2' has no zone 'racks'"
        )
    refused("GET", "/v1/stores/store-1/zones/shelves", 404, "store 'store-1' has no zone 'shelves'")

    removed = cloud.client.delete("/v1/stores/store-1/zones/racks", headers=ADMIN_HEADERS)
    assert removed.status_code == 204 and removed.content == b""
    refused("GET", "/v1/stores/store-1/zones/racks", 404, "store 'store-1' has no zone 'racks'")
    refused("DELETE", "/v1/stores/store-1/zones/racks", 404, "store 'store-1' has no zone 'racks'")
    assert [z["zone_id"] for z in cloud.get("/v1/stores/store-1/zones")["items"]] == ["till"]
    with cloud.context.sessions() as session:
        assert session.scalars(sa.select(Visit.zones)).one() == ["racks", "till"]
    # The id is free again.
    cloud.post("/v1/stores/store-1/zones", {"zone_id": "racks", "name": "New", "polygon": SQUARE})


def test_a_zone_a_gateway_detects_is_not_deleted_and_a_change_publishes_nothing(
    database_url: str, mosquitto: Mosquitto
) -> None:
    with running_cloud(database_url, mqtt_url=mosquitto.url, mqtt_protocol="5") as cloud:
        add_store(cloud)
        add_zones(cloud, "entrance", "racks")
        entrance = {"zone_id": "entrance", "enter_distance_m": 2.5}
        racks = {"zone_id": "racks", "enter_distance_m": 2.0}
        cloud.post("/v1/stores/store-1/gateways", {"gateway_id": "gw-1", "zones": [entrance]})
        cloud.post(
            "/v1/stores/store-1/gateways", {"gateway_id": "gw-2", "zones": [racks, entrance]}
        )
        topics = [config_topic("store-1", g) for g in ("gw-1", "gw-2")]
        for topic in topics:
            assert _retained_config(mosquitto, topic, 0).version == 1

        # A gateway's config carries the zone's id and its own distances, not the name or the
        # outline: changing those publishes nothing.
        recorder = MqttRecorder(mosquitto.url, "storelink/v1/store-1/+/config")
        try:
            wait_for(lambda: all(recorder.on(t) for t in topics), what="the retained configs")
            changed = cloud.client.patch(
                "/v1/stores/store-1/zones/entrance",
                json={"name": "Door", "polygon": [[0, 0], [5, 0], [5, 2]]},
                headers=ADMIN_HEADERS,
            )
            assert changed.status_code == 200, changed.text
            time.sleep(0.5)
            assert [
                GatewayConfig.model_validate_json(p).version for t in topics for p in recorder.on(t)
            ] == [1, 1]
        finally:
            recorder.close()
        listed = cloud.get("/v1/stores/store-1/gateways")["items"]
        assert [g["config_version"] for g in listed] == [1, 1]

        def delete(path: str, status: int) -> dict[str, Any]:
            response = cloud.client.delete(path, headers=ADMIN_HEADERS)
            assert response.status_code == status, response.text
            if status == 204:
                return {}
            assert response.headers["content-type"] == PROBLEM_JSON
            problem: dict[str, Any] = response.json()
            return problem

        conflict = delete("/v1/stores/store-1/zones/entrance", 409)
        assert conflict["status"] == 409 and "gw-1, gw-2" in conflict["detail"]
        assert cloud.get("/v1/stores/store-1/zones/entrance")["name"] == "Door"

        moved = cloud.client.patch(
            "/v1/stores/store-1/gateways/gw-1", json={"zones": [racks]}, headers=ADMIN_HEADERS
        )
        assert moved.status_code == 200, moved.text
        still = delete("/v1/stores/store-1/zones/entrance", 409)
        assert "gw-2" in still["detail"] and "gw-1" not in still["detail"]

        delete("/v1/stores/store-1/gateways/gw-2", 204)
        delete("/v1/stores/store-1/zones/entrance", 204)
        delete("/v1/stores/store-1/zones/entrance", 404)
        gone = cloud.post(
            "/v1/stores/store-1/gateways", {"gateway_id": "gw-3", "zones": [entrance]}, 422
        )
        assert "entrance" in gone["detail"]
        # gw-1 was told only of its own change, never of the zone's.
        config = _retained_config(mosquitto, topics[0], 1)
        assert config.version == 2 and config.zones is not None
        assert [z.zone_id for z in config.zones] == ["racks"]


# --- status history -----------------------------------------------------------------------------


def test_status_history_keeps_transitions_and_counters(cloud: Cloud) -> None:
    add_store(cloud)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    sequence = [
        (0, GatewayState.ONLINE, 10),
        (30, GatewayState.ONLINE, 25),
        (60, GatewayState.OFFLINE, 25),
        (900, GatewayState.ONLINE, 3),
    ]
    with cloud.context.sessions() as session:
        for seconds, state, adverts in sequence:
            status = GatewayStatus(
                store_id="store-1",
                gateway_id="gw-1",
                state=state,
                ts=t0 + timedelta(seconds=seconds),
                adverts_seen=adverts,
            )
            assert record_gateway_status(session, status, datetime.now(UTC))
            session.commit()
        # The broker replaying an old retained status adds nothing.
        replay = GatewayStatus(
            store_id="store-1", gateway_id="gw-1", state=GatewayState.ONLINE, ts=t0
        )
        assert not record_gateway_status(session, replay, datetime.now(UTC))
        session.commit()

    history = cloud.get("/v1/stores/store-1/gateways/gw-1/history")
    assert [(h["state"], h["adverts_seen"], h["transition"]) for h in history["items"]] == [
        ("online", 3, True),
        ("offline", 25, True),
        ("online", 25, False),
        ("online", 10, True),
    ]
    transitions = cloud.get(
        "/v1/stores/store-1/gateways/gw-1/history", transitions_only=True, limit=2
    )
    assert [h["state"] for h in transitions["items"]] == ["online", "offline"]
    rest = cloud.get(
        "/v1/stores/store-1/gateways/gw-1/history",
        transitions_only=True,
        limit=2,
        cursor=transitions["next_cursor"],
    )
    assert [h["state"] for h in rest["items"]] == ["online"] and rest["next_cursor"] is None


def test_staff_see_only_their_stores_gateways(cloud: Cloud) -> None:
    add_store(cloud, "store-a")
    add_store(cloud, "store-b")
    cloud.post(
        "/v1/staff",
        {"email": "mo@example.com", "password": "a long password", "store_ids": ["store-a"]},
    )
    token = cloud.client.post(
        "/v1/auth/login", json={"email": "mo@example.com", "password": "a long password"}
    ).json()["access_token"]
    staff = {"Authorization": f"Bearer {token}"}
    assert cloud.client.get("/v1/stores/store-a/gateways", headers=staff).status_code == 200
    for path in ("/v1/stores/store-b/gateways", "/v1/stores/store-b/gateways/gw-1/history"):
        assert cloud.client.get(path, headers=staff).status_code == 403
    provision = cloud.client.post(
        "/v1/stores/store-a/gateways", json={"gateway_id": "gw-x"}, headers=staff
    )
    assert provision.status_code == 403
    change = cloud.client.patch(
        "/v1/stores/store-a/gateways/gw-x", json={"name": "mine now"}, headers=staff
    )
    assert change.status_code == 403

    for store_id in ("store-a", "store-b"):
        cloud.post(
            f"/v1/stores/{store_id}/zones", {"zone_id": "till", "name": "Till", "polygon": SQUARE}
        )
    assert cloud.client.get("/v1/stores/store-a/zones/till", headers=staff).status_code == 200
    assert cloud.client.get("/v1/stores/store-b/zones/till", headers=staff).status_code == 403
    # Staff read their zones; only the administrator changes or removes them.
    rename = cloud.client.patch(
        "/v1/stores/store-a/zones/till", json={"name": "mine now"}, headers=staff
    )
    assert rename.status_code == 403 and rename.headers["content-type"] == PROBLEM_JSON
    assert cloud.client.delete("/v1/stores/store-a/zones/till", headers=staff).status_code == 403
    assert cloud.client.delete("/v1/stores/store-a/zones/till").status_code == 401
    assert cloud.get("/v1/stores/store-a/zones/till")["name"] == "Till"


# --- zones and gateways changed at once (PostgreSQL) --------------------------------------------
# SQLite writes one transaction at a time; on PostgreSQL only the store row's lock keeps a zone
# delete and a gateway being given that zone apart.


@contextmanager
def store_locked(cloud: Cloud, store_id: str) -> Iterator[tuple[Session, int]]:
    """A session of its own holding the store's row as a zone delete or a provisioning does,
    until it commits (or, if the test fails first, rolls back and lets the request go)."""
    with cloud.context.sessions() as session:
        _lock_store_zones(session, store_id)
        pid = session.scalar(sa.text("SELECT pg_backend_pid()"))
        assert isinstance(pid, int)
        yield session, pid


def in_thread(request: Callable[[], httpx.Response]) -> Future[httpx.Response]:
    # A daemon thread, not an executor: an executor's exit would join without a timeout.
    future: Future[httpx.Response] = Future()

    def run() -> None:
        try:
            future.set_result(request())
        except BaseException as error:
            future.set_exception(error)

    threading.Thread(target=run, name="store-request", daemon=True).start()
    return future


def assert_waits_for(cloud: Cloud, holder_pid: int, request: Future[httpx.Response]) -> None:
    """Return once the request's transaction waits for a lock the holder has: PostgreSQL says
    so, rather than the request merely being slow to start."""

    def waiting() -> bool:
        with cloud.context.sessions() as probe:
            waiters = probe.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE :holder = ANY(pg_blocking_pids(pid))"
                ),
                {"holder": holder_pid},
            )
        return bool(waiters)

    wait_for(lambda: request.done() or waiting(), what="the request to wait for the store's row")
    if request.done():
        early = request.result()
        raise AssertionError(
            f"answered while the store was locked: {early.status_code} {early.text}"
        )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_gateway_is_not_given_a_zone_while_it_is_deleted(cloud: Cloud, method: str) -> None:
    add_store(cloud)
    add_zones(cloud, "entrance", "racks")
    racks = {"zone_id": "racks", "enter_distance_m": 2.0}
    entrance = {"zone_id": "entrance", "enter_distance_m": 2.5}
    cloud.post("/v1/stores/store-1/gateways", {"gateway_id": "gw-1", "zones": [racks]})
    if method == "POST":
        path, body = "/v1/stores/store-1/gateways", {"gateway_id": "gw-2", "zones": [entrance]}
    else:
        path, body = "/v1/stores/store-1/gateways/gw-1", {"zones": [racks, entrance]}

    with store_locked(cloud, "store-1") as (deleting, pid):
        request = in_thread(
            lambda: cloud.client.request(method, path, json=body, headers=ADMIN_HEADERS)
        )
        assert_waits_for(cloud, pid, request)
        # What DELETE /v1/stores/store-1/zones/entrance goes on to do once it holds the row.
        zone = deleting.get(Zone, ("store-1", "entrance"))
        assert zone is not None
        deleting.delete(zone)
        deleting.commit()
        response = request.result(timeout=15)

    assert response.status_code == 422, response.text
    assert "store 'store-1' has no zone entrance" in response.json()["detail"]
    gateways = cloud.rows(Gateway)
    assert [(g.id, [z["zone_id"] for z in g.zones]) for g in gateways] == [("gw-1", ["racks"])]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_zone_is_not_deleted_while_a_gateway_is_given_it(cloud: Cloud) -> None:
    add_store(cloud)
    add_zones(cloud, "entrance")

    with store_locked(cloud, "store-1") as (provisioning, pid):
        request = in_thread(
            lambda: cloud.client.delete("/v1/stores/store-1/zones/entrance", headers=ADMIN_HEADERS)
        )
        assert_waits_for(cloud, pid, request)
        # What POST /v1/stores/store-1/gateways goes on to do once it holds the row.
        provisioning.add(
            Gateway(
                id="gw-1",
                store_id="store-1",
                name="by the door",
                zones=[
                    ZoneConfig(zone_id="entrance", enter_distance_m=2.5).model_dump(mode="json")
                ],
                rssi_offset_db=None,
                mqtt_password_hash=mosquitto_hash(new_mqtt_password()),
                config_version=0,
                created_at=utc_now(),
            )
        )
        provisioning.commit()
        response = request.result(timeout=15)

    assert response.status_code == 409, response.text
    assert "gateways still detect zone 'entrance': gw-1;" in response.json()["detail"]
    assert cloud.get("/v1/stores/store-1/zones/entrance")["name"] == "entrance"
