"""Gateway settings: ``STORELINK_*`` variables or the ``gateway`` fields of the YAML file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from storelink.settings import StorelinkSettings
from storelink.wire import Identifier, Subject, SubjectType
from storelink.wire import canonical_beacon_id as wire_beacon_id


def canonical_beacon_id(value: str) -> str:
    """A store beacon's id as the gateway compares them: ``uuid:major:minor`` (iBeacon,
    AltBeacon) or ``namespace:instance`` (Eddystone-UID); see ``storelink.wire``."""
    return wire_beacon_id(value)


def parse_irk(text: str) -> bytes:
    """An identity resolving key from 32 hex digits (colons, dashes and spaces ignored), most
    significant byte first: the AES key as bluetooth-data-tools' ``get_cipher_for_irk`` takes it.
    """
    digits = re.sub(r"[\s:\-]", "", text)
    if not re.fullmatch(r"[0-9A-Fa-f]{32}", digits):
        raise ValueError("an IRK is 16 bytes: 32 hex digits")
    return bytes.fromhex(digits)


class GatewaySettings(StorelinkSettings):
    store_id: Identifier = Field(default="store-1", description="the store this gateway is in")
    gateway_id: Identifier = Field(
        default="gw-1", description="this gateway, unique within its store"
    )
    zone_id: Identifier = Field(
        default="entrance", description="the zone the gateway watches, named in every event"
    )
    scanner: Literal["bleak", "sim", "replay"] = Field(
        default="bleak",
        description=(
            "bleak listens to the Bluetooth adapter; sim to a simulated demo store; replay "
            "plays replay_file back"
        ),
    )
    replay_file: Path | None = Field(
        default=None,
        description=(
            "adverts recorded by `storelink gateway record` (JSON lines) that scanner=replay "
            "plays back at their recorded pace"
        ),
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
    rssi_offset_db: float = Field(
        default=0.0,
        ge=-30,
        le=30,
        description="added to every RSSI this gateway measures: how much weaker (positive) or "
        "louder (negative) its radio and antenna hear than the store's reference gateway",
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
    smoothing_filter: Literal["ewma", "median", "kalman", "one_euro"] = Field(
        default="ewma",
        description=(
            "RSSI filter per device: ewma (smoothing_alpha), median (of smoothing_window "
            "samples), kalman or one_euro; docs/tracking.md compares them"
        ),
    )
    smoothing_window: int = Field(
        default=5, ge=1, le=64, description="samples in the median filter's window"
    )
    exit_interval_margin: float = Field(
        default=20.0,
        ge=0,
        description=(
            "a subject has left after this many of its own learned advertising intervals plus "
            "exit_floor_s unseen near, at most exit_timeout_s; 0: always exit_timeout_s"
        ),
    )
    exit_floor_s: float = Field(
        default=8.0, ge=0, description="added to the learned-interval exit delay"
    )
    enter_confirm_s: float = Field(
        default=0.0,
        ge=0,
        description=(
            "a subject enters only once seen within the enter distance for this long (against "
            "passers-by at an open door); the visit still starts at the first near sighting"
        ),
    )
    companion_window_s: float = Field(
        default=0.0,
        ge=0,
        description=(
            "a wearable entering within this many seconds of a phone (or a phone of a wearable) "
            "is the same person's second device and does not enter of its own (footfall at a "
            "door); 0: off"
        ),
    )
    arrival_heard_max_s: float = Field(
        default=0.0,
        ge=0,
        description=(
            "only arrivals enter: a subject heard for longer than this before it first comes "
            "within the enter distance was already about (footfall at a door, where people "
            "walking in are heard only while they approach); 0: off"
        ),
    )
    heartbeat_s: float = Field(
        default=30.0, gt=0, description="seconds between status messages with counters"
    )
    arbitration: bool = Field(
        default=True,
        description=(
            "share what this gateway hears with the store's other gateways (sightings topic) "
            "and enter a subject only while this gateway hears it best (docs/tracking.md); "
            "alone in a store it changes nothing"
        ),
    )
    arbitration_margin_db: float = Field(
        default=5.0,
        ge=0,
        description="another gateway takes a subject over when it hears it this much louder",
    )
    arbitration_hold_s: float = Field(
        default=2.0,
        ge=0,
        description="... for this long without a break",
    )
    arbitration_stale_s: float = Field(
        default=10.0,
        gt=0,
        description=(
            "a gateway that has not heard a subject for this long (or gone silent) no longer "
            "claims it"
        ),
    )
    sightings_interval_s: float = Field(
        default=1.0, gt=0, description="seconds between this gateway's sightings summaries"
    )
    store_beacons: list[str] = Field(
        default=[],
        description=(
            "the store's own fixed beacons, kept out of footfall: uuid:major:minor (iBeacon, "
            "AltBeacon) or namespace:instance (Eddystone-UID, hex)"
        ),
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
    exit_distance_m: float | None = Field(
        default=None,
        gt=0,
        description=(
            "once in the zone, a subject closer than this is still present (hysteresis against "
            "flicker at the edge); unset: the enter distance"
        ),
    )
    staff_beacons: list[str] = Field(
        default=[],
        description="uuid:major:minor (or Eddystone namespace:instance) of staff badges, never "
        "counted as presence",
    )
    remote_config: bool = Field(
        default=True,
        description=(
            "apply the retained GatewayConfig on storelink/v1/{store_id}/{gateway_id}/config; "
            "the last good one is kept next to the outbox for restarts without the broker"
        ),
    )
    beacon_missing_after_s: float = Field(
        default=300.0,
        gt=0,
        description="a store beacon not heard for this long is reported missing",
    )
    beacon_report_s: float = Field(
        default=60.0,
        gt=0,
        description="seconds between beacon health reports (sooner when a beacon goes missing)",
    )
    watchdog_s: float = Field(
        default=120.0,
        ge=0,
        description=(
            "restart the scanner when no advertisement arrived for this long (BlueZ can stall "
            "after hours); 0 turns the watchdog off"
        ),
    )
    watchdog_max_backoff_s: float = Field(
        default=300.0,
        gt=0,
        description="longest wait between scanner restarts while the radio stays silent",
    )
    adapter_recovery: bool = Field(
        default=True,
        description=(
            "when a restarted scanner stays silent, reset the Bluetooth adapter with "
            "bluetooth-auto-recovery (Linux; needs CAP_NET_ADMIN)"
        ),
    )
    pseudonym_key: SecretStr | None = Field(
        default=None,
        description=(
            "key for the pseudonyms of devices without the app, from which a new key is derived "
            "every UTC day, so pseudonyms cannot be linked across days; unset: a random key per "
            "run, so they cannot be linked across restarts either"
        ),
    )
    irks: dict[str, SecretStr] = Field(
        default={},
        description=(
            "subject ref -> identity resolving key (32 hex digits) of a consenting shopper's "
            "wearable: an address it resolves is published as that wearable subject; pushed by "
            "the cloud"
        ),
    )

    @field_validator("store_beacons")
    @classmethod
    def _canonical_store_beacons(cls, values: list[str]) -> list[str]:
        return [canonical_beacon_id(value) for value in values]

    @field_validator("irks")
    @classmethod
    def _valid_irks(cls, values: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for ref, irk in values.items():
            # The ref is published as it is: it must be a pseudonym the wire accepts.
            Subject(type=SubjectType.WEARABLE, ref=ref)
            try:
                parse_irk(irk.get_secret_value())
            except ValueError:
                raise ValueError(f"the IRK of {ref!r} is not 32 hex digits") from None
        return values

    def irk_bytes(self) -> dict[str, bytes]:
        """``irks`` as the 16-byte keys ``gateway.identify`` takes."""
        return {ref: parse_irk(irk.get_secret_value()) for ref, irk in self.irks.items()}

    @field_validator("staff_beacons")
    @classmethod
    def _canonical_staff_beacons(cls, values: list[str]) -> list[str]:
        return [wire_beacon_id(value) for value in values]

    @model_validator(mode="after")
    def _exit_beyond_enter(self) -> GatewaySettings:
        if self.exit_distance_m is not None and self.exit_distance_m < self.enter_distance_m:
            raise ValueError("exit_distance_m must not be below enter_distance_m")
        return self
