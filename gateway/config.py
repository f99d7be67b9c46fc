"""Gateway settings: ``STORELINK_*`` variables or the ``gateway`` fields of the YAML file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from uuid import UUID

from pydantic import Field, SecretStr, field_validator

from storelink.settings import StorelinkSettings
from storelink.wire import Identifier


def canonical_beacon_id(value: str) -> str:
    """``uuid:major:minor`` with the UUID lower-case and dashed, as the gateway compares them."""
    try:
        uuid, major, minor = value.split(":")
        parsed = UUID(uuid), int(major), int(minor)
    except ValueError:
        raise ValueError(f"a beacon id is uuid:major:minor, got {value!r}") from None
    if not (0 <= parsed[1] <= 0xFFFF and 0 <= parsed[2] <= 0xFFFF):
        raise ValueError(f"iBeacon major and minor are 16-bit, got {value!r}")
    return f"{parsed[0]}:{parsed[1]}:{parsed[2]}"


class GatewaySettings(StorelinkSettings):
    store_id: Identifier = Field(default="store-1", description="the store this gateway is in")
    gateway_id: Identifier = Field(
        default="gw-1", description="this gateway, unique within its store"
    )
    zone_id: Identifier = Field(
        default="entrance", description="the zone the gateway watches, named in every event"
    )
    scanner: Literal["bleak", "sim"] = Field(
        default="bleak",
        description="bleak listens to the Bluetooth adapter; sim to a simulated demo store",
    )
    adapter: str | None = Field(
        default=None, description="Bluetooth adapter on Linux, e.g. hci1; default: the first one"
    )
    scanning_mode: Literal["active", "passive"] = Field(
        default="active",
        description="active also requests scan responses; passive only listens (BlueZ >= 5.56)",
    )
    enter_distance_m: float = Field(
        default=3.0,
        gt=0,
        description="a device estimated closer than this enters the zone; farther is a passer-by",
    )
    exit_timeout_s: float = Field(
        default=20.0, gt=0, description="a subject not seen near for this long has left"
    )
    dwell_interval_s: float = Field(
        default=60.0, gt=0, description="seconds between dwell events while a subject stays"
    )
    rssi_at_1m: int = Field(
        default=-59,
        ge=-100,
        le=0,
        description="RSSI at 1 m for devices that do not advertise their measured power",
    )
    path_loss_exponent: float = Field(
        default=2.0,
        gt=0,
        description="log-distance path-loss exponent: 2 in open space, 2.5-4 among shelves",
    )
    smoothing_alpha: float = Field(
        default=0.3,
        gt=0,
        le=1,
        description="weight of a new RSSI sample in the moving average (1 = no smoothing)",
    )
    heartbeat_s: float = Field(
        default=30.0, gt=0, description="seconds between status messages with counters"
    )
    store_beacons: list[str] = Field(
        default=[],
        description="uuid:major:minor of the store's own fixed beacons, kept out of footfall",
    )
    outbox_path: Path = Field(
        default=Path("var/gateway-outbox.db"),
        description=(
            "SQLite file where presence events wait until the broker acknowledges them, so "
            "that outages, restarts and power cuts lose none; relative to the working directory"
        ),
    )
    outbox_max_events: int = Field(
        default=100_000,
        ge=1,
        description=(
            "most events the outbox keeps while the broker is unreachable; beyond it the "
            "oldest are dropped, counted as outbox_dropped in the status"
        ),
    )
    pseudonym_key: SecretStr | None = Field(
        default=None,
        description=(
            "key for the pseudonyms of devices without the app; unset: a random key per run, "
            "so pseudonyms cannot be linked across restarts"
        ),
    )

    @field_validator("store_beacons")
    @classmethod
    def _canonical_store_beacons(cls, values: list[str]) -> list[str]:
        return [canonical_beacon_id(value) for value in values]
