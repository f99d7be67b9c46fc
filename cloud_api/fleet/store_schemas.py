"""Request and response bodies of stores, zones, gateways and their status history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict

from cloud_api.fleet.geometry import Point, polygon_problem
from storelink.wire import BeaconId, Calibration, Identifier, RssiOffsetDb, ZoneConfig

T = TypeVar("T")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    """One page of a list; ask for the next one with ``?cursor=<next_cursor>``."""

    items: list[T]
    next_cursor: str | None = Field(description="null: this was the last page")


def _simple_polygon(points: list[Point]) -> list[Point]:
    problem = polygon_problem(points)
    if problem is not None:
        raise ValueError(problem)
    return points


def _time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name like Europe/Rome)"
        ) from None
    return name


Polygon = Annotated[
    list[tuple[float, float]],
    Field(max_length=1000, description="[x, y] corners in metres; the outline closes by itself"),
    AfterValidator(_simple_polygon),
]


class StoreCreate(_Request):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "store_id": "store-1",
                    "name": "Milano Corso Como",
                    "timezone": "Europe/Rome",
                    "calibration": {"by_device_class": {"apple_phone": -59, "garmin": -66}},
                }
            ]
        }
    )

    store_id: Identifier
    name: str = Field(min_length=1, max_length=200)
    timezone: Annotated[str, AfterValidator(_time_zone)] = "UTC"
    app_uuid: UUID | None = Field(
        default=None, description="the retailer's app proximity UUID; null: the cloud's app_uuid"
    )
    calibration: Calibration = Field(default_factory=Calibration)
    staff_beacons: list[BeaconId] = Field(
        default_factory=list, description="staff badges: the gateways never report them"
    )
    store_beacons: list[BeaconId] = Field(
        default_factory=list, description="the store's fixed beacons: health reported"
    )


def _kept_when_left_out(value: object) -> object:
    # Only a null sent on purpose reaches here (defaults are not validated): these fields
    # always have a value, so null would be stored and break every read of the row.
    if value is None:
        raise ValueError("leave the field out to keep it; it cannot be null")
    return value


class StoreUpdate(_Request):
    """What to change; a field left out stays as it is."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "Milano Corso Como 12", "timezone": "Europe/Rome"}]
        }
    )

    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: Annotated[str, AfterValidator(_time_zone)] | None = None
    app_uuid: UUID | None = None
    calibration: Calibration | None = None
    staff_beacons: list[BeaconId] | None = None
    store_beacons: list[BeaconId] | None = None

    _not_null = field_validator(
        "name", "timezone", "calibration", "staff_beacons", "store_beacons"
    )(_kept_when_left_out)


class ZoneCreate(_Request):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "zone_id": "racks",
                    "name": "Racks and accessories",
                    "polygon": [[0, 0], [6, 0], [6, 4], [0, 4]],
                }
            ]
        }
    )

    zone_id: Identifier
    name: str = Field(min_length=1, max_length=200)
    polygon: Polygon


class ZoneUpdate(_Request):
    """What to change; a field left out stays as it is. The zone id never changes: visits and
    statistics name the zone by it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "Racks, shoes and bags", "polygon": [[0, 0], [8, 0], [8, 4], [0, 4]]}
            ]
        }
    )

    name: str | None = Field(default=None, min_length=1, max_length=200)
    polygon: Polygon | None = None

    _not_null = field_validator("name", "polygon")(_kept_when_left_out)


class ZoneOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "zone_id": "racks",
                    "name": "Racks and accessories",
                    "polygon": [[0, 0], [6, 0], [6, 4], [0, 4]],
                    "created_at": "2026-11-24T15:42:07Z",
                }
            ]
        }
    )

    zone_id: str
    name: str
    polygon: list[tuple[float, float]]
    created_at: datetime


STORE_EXAMPLE: JsonDict = {
    "store_id": "store-1",
    "name": "Milano Corso Como",
    "timezone": "Europe/Rome",
    "app_uuid": None,
    "calibration": {"by_beacon": {}, "by_device_class": {"apple_phone": -59}},
    "staff_beacons": [],
    "store_beacons": [],
    "created_at": "2026-11-24T15:42:07Z",
}


class StoreOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [STORE_EXAMPLE]})

    store_id: str
    name: str
    timezone: str
    app_uuid: str | None
    calibration: Calibration
    staff_beacons: list[str]
    store_beacons: list[str]
    created_at: datetime


class StoreDetail(StoreOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **STORE_EXAMPLE,
                    "zones": [
                        {
                            "zone_id": "racks",
                            "name": "Racks and accessories",
                            "polygon": [[0, 0], [6, 0], [6, 4], [0, 4]],
                            "created_at": "2026-11-24T15:42:07Z",
                        }
                    ],
                    "gateway_ids": ["gw-store-1-a"],
                }
            ]
        }
    )

    zones: list[ZoneOut]
    gateway_ids: list[str]


GATEWAY_ZONES = (
    "the store's zones this gateway detects, with their distances; empty: the gateway's local "
    "zone settings"
)
RSSI_OFFSET = (
    "dB added to every RSSI the gateway measures, for a radio that hears weaker (positive) or "
    "louder (negative) than the store's others; null: the gateway's local setting"
)


class GatewayCreate(_Request):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "gateway_id": "gw-store-1-a",
                    "name": "Ceiling, by the racks",
                    "zones": [
                        {"zone_id": "racks", "enter_distance_m": 2.5, "exit_distance_m": 3.5},
                        {"zone_id": "entrance", "enter_distance_m": 3.0},
                    ],
                }
            ]
        }
    )

    gateway_id: Identifier = Field(description="unique in the chain: also its MQTT user name")
    name: str = Field(default="", max_length=200)
    zones: list[ZoneConfig] = Field(default_factory=list, description=GATEWAY_ZONES)
    rssi_offset_db: RssiOffsetDb | None = Field(default=None, description=RSSI_OFFSET)


class GatewayUpdate(_Request):
    """What to change; a field left out stays as it is. Its config is published again."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "zones": [{"zone_id": "racks", "enter_distance_m": 2.0}],
                    "rssi_offset_db": 4.5,
                }
            ]
        }
    )

    name: str | None = Field(default=None, max_length=200)
    zones: list[ZoneConfig] | None = Field(default=None, description=GATEWAY_ZONES)
    rssi_offset_db: RssiOffsetDb | None = Field(
        default=None, description=f"{RSSI_OFFSET}; null clears it"
    )

    _not_null = field_validator("name", "zones")(_kept_when_left_out)


_GATEWAY_EXAMPLE: dict[str, Any] = {
    "gateway_id": "gw-store-1-a",
    "store_id": "store-1",
    "name": "Ceiling, by the racks",
    "zones": [{"zone_id": "racks", "enter_distance_m": 2.5, "exit_distance_m": 3.5}],
    "rssi_offset_db": None,
    "config_topic": "storelink/v1/store-1/gw-store-1-a/config",
    "config_version": 4,
    "state": "online",
    "last_status_at": "2026-11-24T15:42:07Z",
    "created_at": "2026-11-02T09:00:00Z",
}


class GatewayOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_GATEWAY_EXAMPLE]})

    gateway_id: str
    store_id: str
    name: str
    zones: list[ZoneConfig]
    rssi_offset_db: float | None
    config_topic: str
    config_version: int
    state: str | None = Field(description="online/offline as last reported; null: never")
    last_status_at: datetime | None
    created_at: datetime


class GatewayProvisioned(GatewayOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_GATEWAY_EXAMPLE,
                    "config_version": 1,
                    "state": None,
                    "last_status_at": None,
                    "created_at": "2026-11-24T15:42:07Z",
                    "mqtt_username": "gw-store-1-a",
                    "mqtt_password": "Qm7vT2xK9pR4wN8sL3cF6hJ1yB5dG0aZ",
                    "config_published": True,
                }
            ]
        }
    )

    mqtt_username: str
    mqtt_password: str = Field(description="shown this once; the cloud keeps only its hash")
    config_published: bool = Field(
        description="false: the broker was not reachable (or MQTT is off); the config is sent "
        "again with the store's next change"
    )


class GatewayCredentials(BaseModel):
    gateway_id: str
    mqtt_username: str
    mqtt_password: str = Field(
        description="shown this once; the old one no longer works once "
        "`storelink cloud mqtt-auth` has rewritten the broker's files"
    )


class GatewayStatusEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    state: str
    transition: bool = Field(description="the state changed with this status (or it is the first)")
    ts: datetime
    adverts_seen: int
    events_published: int
    decode_errors: int
    outbox_depth: int
    outbox_dropped: int
    scanner_restarts: int
    uptime_s: float | None
    adverts_per_s: float | None
    cpu_temp_c: float | None
    received_at: datetime
