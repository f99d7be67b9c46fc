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

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
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
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- topics -------------------------------------------------------------------------------------


def presence_topic(store_id: str, gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{store_id}/{gateway_id}/presence"


def status_topic(store_id: str, gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{store_id}/{gateway_id}/status"


def notification_topic(shopper_ref: str) -> str:
    return f"{TOPIC_ROOT}/shoppers/{shopper_ref}/notifications"


PRESENCE_SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/presence"
STATUS_SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/status"


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
    percent_off: Decimal = Field(gt=0, le=100)
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
