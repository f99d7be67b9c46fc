"""The wire contract between gateways, the cloud and the shopper app.

This module is the single definition of the MQTT topics and payloads. The gateway publishes with
it, the cloud validates with it, and docs/protocol.md describes it. A breaking change bumps
``PROTOCOL_VERSION`` and the topic root together, so old and new gateways can share a broker.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from ulid import ULID

PROTOCOL_VERSION = 1
TOPIC_ROOT = f"storelink/v{PROTOCOL_VERSION}"
DEADLETTER_TOPIC = f"{TOPIC_ROOT}/deadletter"

PRESENCE_QOS = 1
STATUS_QOS = 1
NOTIFICATION_QOS = 1

# An MQTT topic level must not hold the wildcards or the separator; ids are also kept short and
# printable so that they read well in logs and dashboards.
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]

_MAC_RE = re.compile(r"(?i)(?<![0-9a-f])(?:[0-9a-f]{2}[:-]){5}[0-9a-f]{2}(?![0-9a-f])")


def contains_mac_address(text: str) -> bool:
    """True when ``text`` holds something shaped like a Bluetooth/Ethernet address."""
    # An address has five separators: most subject refs have fewer, and counting them is a
    # third of the search (the cloud checks every event's ref).
    if text.count(":") + text.count("-") < 5:
        return False
    return _MAC_RE.search(text) is not None


def _not_a_mac(value: str) -> str:
    if contains_mac_address(value):
        raise ValueError("a subject ref must be a pseudonym, never a hardware address")
    return value


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]


def new_event_id() -> str:
    """A ULID: unique, and sorts by creation time."""
    return str(ULID())


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Message(BaseModel):
    # Unknown fields are refused so that a typo in a producer fails loudly at the consumer.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --- topics -------------------------------------------------------------------------------------


def presence_topic(store_id: str, gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{store_id}/{gateway_id}/presence"


def status_topic(store_id: str, gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{store_id}/{gateway_id}/status"


def notification_topic(shopper_ref: str) -> str:
    return f"{TOPIC_ROOT}/shoppers/{shopper_ref}/notifications"


def config_topic(store_id: str, gateway_id: str) -> str:
    """Retained ``GatewayConfig`` for one gateway, published by the cloud or an operator."""
    return f"{TOPIC_ROOT}/{store_id}/{gateway_id}/config"


def beacons_topic(store_id: str, gateway_id: str) -> str:
    """Retained ``BeaconFleetReport``: the health of the store's own beacons near a gateway."""
    return f"{TOPIC_ROOT}/{store_id}/{gateway_id}/beacons"


def sightings_topic(store_id: str, gateway_id: str) -> str:
    """``PeerSightings``: what a gateway hears, for the other gateways of its store."""
    return f"{TOPIC_ROOT}/{store_id}/{gateway_id}/sightings"


def store_sightings_subscription(store_id: str) -> str:
    """Every gateway's ``PeerSightings`` in one store."""
    return f"{TOPIC_ROOT}/{store_id}/+/sightings"


CONFIG_QOS = 1
BEACONS_QOS = 1
# Sightings are fresh every second and worthless a few seconds later: never queued or retried.
SIGHTINGS_QOS = 0


PRESENCE_SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/presence"
STATUS_SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/status"
BEACONS_SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/beacons"


def parse_gateway_topic(topic: str) -> tuple[str, str, str]:
    """Split ``storelink/v1/{store}/{gateway}/{channel}`` into its three variable parts."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_ROOT:
        raise ValueError(f"not a storelink gateway topic: {topic!r}")
    return parts[2], parts[3], parts[4]


# --- presence -----------------------------------------------------------------------------------


class SubjectType(StrEnum):
    APP = "app"
    WEARABLE = "wearable"
    BEACON = "beacon"
    ANONYMOUS = "anonymous"


class Subject(_Message):
    """Who was seen, as a pseudonymous reference the gateway is allowed to know."""

    type: SubjectType
    ref: Annotated[
        str,
        StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,128}$"),
        AfterValidator(_not_a_mac),
    ]

    def __hash__(self) -> int:
        # The gateway keys every per-subject table by Subject, several times per advert;
        # pydantic's generic frozen-model hash costs about ten times this.
        return hash((self.type, self.ref))


class PresenceKind(StrEnum):
    ENTER = "enter"
    DWELL = "dwell"
    EXIT = "exit"


class PresenceEvent(_Message):
    event_id: Annotated[str, StringConstraints(pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$")] = Field(
        default_factory=new_event_id, description="ULID, unique per event; the idempotency key"
    )
    store_id: Identifier
    gateway_id: Identifier
    zone_id: Identifier
    kind: PresenceKind
    subject: Subject
    ts: UtcDatetime
    dwell_s: float = Field(ge=0, description="seconds in the zone so far (0 on enter)")
    rssi: float = Field(ge=-127, le=20, description="smoothed RSSI in dBm")
    distance_m: float | None = Field(default=None, ge=0, description="estimated distance")


# --- gateway status -----------------------------------------------------------------------------


class GatewayState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class GatewayStatus(_Message):
    """Retained on the status topic; the broker publishes the offline form as the last will."""

    store_id: Identifier
    gateway_id: Identifier
    state: GatewayState
    ts: UtcDatetime
    version: str = ""
    adverts_seen: int = Field(default=0, ge=0)
    events_published: int = Field(default=0, ge=0)
    decode_errors: int = Field(default=0, ge=0)
    outbox_depth: int = Field(
        default=0, ge=0, description="events stored on the gateway, not yet acknowledged"
    )
    outbox_dropped: int = Field(
        default=0, ge=0, description="events dropped since start because the outbox was full"
    )
    uptime_s: float | None = Field(default=None, ge=0, description="seconds since start")
    adverts_per_s: float | None = Field(
        default=None, ge=0, description="advertisements received per second since the last status"
    )
    cpu_temp_c: float | None = Field(
        default=None, description="the SoC temperature where the system exposes it (a Pi)"
    )
    scanner_restarts: int = Field(
        default=0, ge=0, description="times the watchdog restarted a silent scanner since start"
    )
    passers_by: int = Field(
        default=0,
        ge=0,
        description="devices heard since start that never came into a zone: people passing the "
        "window, for the capture rate",
    )
    config_version: int | None = Field(
        default=None, ge=0, description="version of the remote GatewayConfig in use; null: none"
    )
    config_error: str | None = Field(
        default=None,
        max_length=1000,
        description="why the latest remote config was rejected; null once a config is applied",
    )


# --- remote gateway configuration ---------------------------------------------------------------

_IBEACON_ID_RE = re.compile(r"^([0-9A-Fa-f-]{32,36}):(\d{1,5}):(\d{1,5})$")
_EDDYSTONE_UID_RE = re.compile(r"^([0-9A-Fa-f]{20}):([0-9A-Fa-f]{12})$")


def canonical_beacon_id(value: str) -> str:
    """An iBeacon as ``uuid:major:minor`` (UUID lower-case, dashed; decimal major and minor),
    or an Eddystone-UID as ``namespace:instance`` (20 and 12 lower-case hex digits)."""
    eddystone = _EDDYSTONE_UID_RE.match(value)
    if eddystone:
        return f"{eddystone[1].lower()}:{eddystone[2].lower()}"
    ibeacon = _IBEACON_ID_RE.match(value)
    if ibeacon:
        try:
            uuid = UUID(ibeacon[1])
        except ValueError:
            uuid = None
        major, minor = int(ibeacon[2]), int(ibeacon[3])
        if uuid is not None and major <= 0xFFFF and minor <= 0xFFFF:
            return f"{uuid}:{major}:{minor}"
    raise ValueError(
        f"a beacon id is uuid:major:minor (16-bit major and minor) or an Eddystone-UID "
        f"namespace:instance, got {value!r}"
    )


BeaconId = Annotated[str, AfterValidator(canonical_beacon_id)]
RssiAt1m = Annotated[int, Field(ge=-100, le=0)]
DeviceClassName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,32}$")]
SubjectRef = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,128}$"), AfterValidator(_not_a_mac)
]


def _irk(value: str) -> str:
    if len(value) != 32:
        raise ValueError("an IRK is 16 bytes: 32 hex digits")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise ValueError("an IRK is 32 hex digits") from None
    return value.lower()


IrkHex = Annotated[str, AfterValidator(_irk)]


class ZoneConfig(_Message):
    zone_id: Identifier
    enter_distance_m: float = Field(gt=0, description="closer than this enters the zone")
    exit_distance_m: float | None = Field(
        default=None,
        gt=0,
        description="once in, closer than this still counts as present (hysteresis); "
        "null: the enter distance",
    )
    path_loss_exponent: float | None = Field(
        default=None, gt=0, le=10, description="null: the gateway's path_loss_exponent setting"
    )

    @model_validator(mode="after")
    def _exit_beyond_enter(self) -> ZoneConfig:
        if self.exit_distance_m is not None and self.exit_distance_m < self.enter_distance_m:
            raise ValueError("exit_distance_m must not be below enter_distance_m")
        return self


# What a gateway adds to every RSSI it measures: its radio's difference from the store's others.
RssiOffsetDb = Annotated[float, Field(ge=-30, le=30)]


class Calibration(_Message):
    """RSSI at 1 m, the reference of the distance estimate; a beacon's own entry comes first."""

    by_beacon: dict[BeaconId, RssiAt1m] = Field(default_factory=dict)
    by_device_class: dict[DeviceClassName, RssiAt1m] = Field(
        default_factory=dict,
        description="keyed by subject type (app, wearable, beacon, anonymous) or by the "
        "gateway's device class (apple_phone, apple_watch, garmin, ...)",
    )


class GatewayConfig(_Message):
    """Retained on the config topic. What it leaves out (null) keeps the gateway's local setting.

    A gateway applies a valid config at once, keeps it on disk for a restart without the broker,
    and rejects an invalid one with ``config_error`` in its status, keeping the last good one.
    """

    version: int = Field(ge=0, description="chosen by the publisher; reported in the status")
    store_id: Identifier
    gateway_id: Identifier
    zones: tuple[ZoneConfig, ...] | None = Field(default=None, min_length=1)
    calibration: Calibration = Field(default_factory=Calibration)
    staff_beacons: tuple[BeaconId, ...] | None = Field(
        default=None, description="staff badges: never presence"
    )
    store_beacons: tuple[BeaconId, ...] | None = Field(
        default=None, description="the store's fixed beacons: never presence, health reported"
    )
    app_uuid: UUID | None = Field(default=None, description="the retailer's app proximity UUID")
    irks: dict[SubjectRef, IrkHex] | None = Field(
        default=None,
        repr=False,
        description="IRKs of consenting shoppers' wearables, keyed by the ref published for them",
    )
    rssi_offset_db: RssiOffsetDb | None = Field(
        default=None,
        description="added to every RSSI this gateway measures, so that gateways with "
        "different radios or antennas compare fairly and estimate distances alike; null: the "
        "gateway's rssi_offset_db setting",
    )
    arbitration_margin_db: float | None = Field(
        default=None,
        ge=0,
        le=40,
        description="dB louder another gateway must hear a subject to take it over",
    )
    arbitration_hold_s: float | None = Field(
        default=None, ge=0, le=600, description="for how long, without a break"
    )

    @model_validator(mode="after")
    def _unique_zones(self) -> GatewayConfig:
        if self.zones is not None:
            ids = [zone.zone_id for zone in self.zones]
            if len(set(ids)) != len(ids):
                raise ValueError("zone ids must be unique")
        return self


# --- beacon fleet health ------------------------------------------------------------------------


class BeaconHealth(_Message):
    beacon_id: BeaconId
    missing: bool = Field(description="not heard for the report's missing_after_s")
    last_seen: UtcDatetime | None = Field(default=None, description="null: not since start")
    rssi: float | None = Field(default=None, ge=-127, le=20, description="smoothed, dBm")
    battery_mv: int | None = Field(default=None, ge=0, description="Eddystone-TLM, if sent")
    temperature_c: float | None = Field(default=None, description="Eddystone-TLM, if sent")
    adv_count: int | None = Field(default=None, ge=0, description="Eddystone-TLM PDU count")
    beacon_uptime_s: float | None = Field(default=None, ge=0, description="Eddystone-TLM")
    telemetry_at: UtcDatetime | None = Field(default=None, description="when TLM was last heard")


class BeaconFleetReport(_Message):
    """Retained on the beacons topic: one entry per configured store beacon."""

    store_id: Identifier
    gateway_id: Identifier
    ts: UtcDatetime
    missing_after_s: float = Field(gt=0)
    beacons: tuple[BeaconHealth, ...]


# --- sightings shared between the gateways of a store -------------------------------------------

MAX_SIGHTINGS = 10_000


class Sighting(_Message):
    subject: Subject
    rssi: float = Field(ge=-127, le=20, description="smoothed RSSI in dBm")
    age_s: float = Field(
        ge=0, description="seconds between the last advert heard and the summary's ts"
    )


class PeerSightings(_Message):
    """Published about once a second on the sightings topic (not retained, QoS 0): the subjects
    a gateway heard since its previous summary, so that the store's gateways agree which of them
    hears each subject best (``gateway.arbitrate``). Subjects are the pseudonymous refs of
    presence events, never addresses."""

    store_id: Identifier
    gateway_id: Identifier
    ts: UtcDatetime
    sightings: tuple[Sighting, ...] = Field(max_length=MAX_SIGHTINGS)


# --- notifications to the shopper app ----------------------------------------------------------


class OfferItem(_Message):
    sku: str
    name: str
    unit_price: Decimal
    quantity: int = Field(ge=1)


class OfferNotification(_Message):
    """What the shopper app receives on its notification topic."""

    notification_id: str = Field(default_factory=new_event_id)
    kind: Literal["offer"] = "offer"
    shopper_ref: Identifier
    store_id: Identifier
    offer_code: str
    # The reward: a percentage or an amount off (the items listed, or the whole purchase if none).
    percent_off: Decimal | None = Field(default=None, gt=0, le=100)
    amount_off: Decimal | None = Field(default=None, gt=0)
    min_spend: Decimal | None = Field(default=None, ge=0)
    online: bool = False
    campaign_id: str | None = None
    items: tuple[OfferItem, ...]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    expires_at: UtcDatetime
    message: str
    ts: UtcDatetime


# --- dead letters -------------------------------------------------------------------------------


class DeadLetter(_Message):
    """What the cloud republishes on ``DEADLETTER_TOPIC`` for a message it refused."""

    reason: str
    topic: str
    payload: str = Field(
        description="the refused payload as text; undecodable bytes as backslash escapes"
    )
    received_at: UtcDatetime
