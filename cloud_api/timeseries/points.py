"""Domain facts as time-series points, and points as InfluxDB line protocol. Pure: no I/O.

Measurements (tags in brackets):

- ``presence`` [store_id, zone, gateway_id, kind, subject_type, source]: one point per zone
  enter, dwell or exit; fields ``events`` (1), ``dwell_s``, ``rssi``, ``distance_m``.
- ``footfall`` [store_id, zone, gateway_id, source]: one point per visit that began (a store
  entry); field ``entries`` (1).
- ``occupancy`` [store_id, scope, zone]: how many are present, per zone (``scope=zone``) and in
  the whole store (``scope=store``, no zone tag); field ``present``.
- ``gateway_health`` [store_id, gateway_id]: one point per gateway heartbeat; fields ``online``
  and the heartbeat's counters and readings.
- ``offers`` [store_id, zone, gateway_id, outcome, campaign]: one point per campaign offer
  decided, sent or held out (the campaign's control group); fields ``count`` (1), ``items``,
  ``percent_off`` or ``amount_off``.

Privacy: no point names a shopper or a subject: no shopper id, no app token, no device
pseudonym, as a tag or as a field. Erasing a shopper deletes SQL rows and never has to touch the
time series.

Exactly once: a point's timestamp and tags are a function of the fact alone, so writing the
same fact again (a retry after a timeout, a buffer drained twice, a redelivered MQTT message)
overwrites the point instead of adding one. Two different events of the same tags in the same
millisecond would collide, so the sub-millisecond part of an event's timestamp is taken from a
hash of its event id (a ULID, never stored in the series): a collision needs the same tags, the
same millisecond and one chance in a million.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from storelink.wire import GatewayState, GatewayStatus, PresenceEvent

FieldValue = float | int | bool | str

NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class Point:
    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int

    @property
    def series_key(self) -> str:
        """Measurement and sorted tags: with the time, what makes a point unique."""
        tags = ",".join(f"{key}={self.tags[key]}" for key in sorted(self.tags))
        return f"{self.measurement},{tags}" if tags else self.measurement


class OfferOutcome(StrEnum):
    DECIDED = "decided"
    SENT = "sent"
    HELD_OUT = "held_out"


@dataclass(frozen=True)
class PresenceFact:
    """A presence event the ingest stored (not a duplicate)."""

    event: PresenceEvent
    opened_visit: bool = False
    source: str = "gateway"


@dataclass(frozen=True)
class OfferFact:
    """An offer decided, sent or held out at a presence event."""

    event: PresenceEvent
    outcome: OfferOutcome
    at: datetime
    campaign: str | None = None
    percent_off: float | None = None
    amount_off: float | None = None
    items: int = 0


@dataclass(frozen=True)
class OccupancySnapshot:
    store_id: str
    at: datetime
    in_store: int
    zones: Mapping[str, int] = field(default_factory=dict)


Fact = PresenceFact | OfferFact | OccupancySnapshot | GatewayStatus


def ns(at: datetime) -> int:
    """Nanoseconds since the epoch, exact (a float would round microseconds away)."""
    delta = at.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def event_time_ns(at: datetime, key: str) -> int:
    """``at`` to the millisecond, plus a sub-millisecond offset that ``key`` alone decides."""
    return ns(at) // NS_PER_MS * NS_PER_MS + zlib.crc32(key.encode()) % NS_PER_MS


def presence_points(fact: PresenceFact) -> list[Point]:
    event = fact.event
    at = event_time_ns(event.ts, event.event_id)
    fields: dict[str, FieldValue] = {"events": 1, "dwell_s": event.dwell_s, "rssi": event.rssi}
    if event.distance_m is not None:
        fields["distance_m"] = event.distance_m
    points = [
        Point(
            "presence",
            {
                "store_id": event.store_id,
                "zone": event.zone_id,
                "gateway_id": event.gateway_id,
                "kind": event.kind.value,
                "subject_type": event.subject.type.value,
                "source": fact.source,
            },
            fields,
            at,
        )
    ]
    if fact.opened_visit:
        tags = {
            "store_id": event.store_id,
            "zone": event.zone_id,
            "gateway_id": event.gateway_id,
            "source": fact.source,
        }
        points.append(Point("footfall", tags, {"entries": 1}, at))
    return points


def offer_points(fact: OfferFact) -> list[Point]:
    event = fact.event
    tags = {
        "store_id": event.store_id,
        "zone": event.zone_id,
        "gateway_id": event.gateway_id,
        "outcome": fact.outcome.value,
    }
    if fact.campaign:
        tags["campaign"] = fact.campaign
    fields: dict[str, FieldValue] = {"count": 1, "items": fact.items}
    if fact.percent_off is not None:
        fields["percent_off"] = fact.percent_off
    if fact.amount_off is not None:
        fields["amount_off"] = fact.amount_off
    return [Point("offers", tags, fields, event_time_ns(fact.at, event.event_id))]


def occupancy_points(snapshot: OccupancySnapshot) -> list[Point]:
    at = ns(snapshot.at)
    points = [
        Point(
            "occupancy",
            {"store_id": snapshot.store_id, "scope": "store"},
            {"present": snapshot.in_store},
            at,
        )
    ]
    for zone, present in sorted(snapshot.zones.items()):
        tags = {"store_id": snapshot.store_id, "scope": "zone", "zone": zone}
        points.append(Point("occupancy", tags, {"present": present}, at))
    return points


def gateway_health_points(status: GatewayStatus) -> list[Point]:
    fields: dict[str, FieldValue] = {
        "online": int(status.state == GatewayState.ONLINE),
        "adverts_seen": status.adverts_seen,
        "events_published": status.events_published,
        "decode_errors": status.decode_errors,
        "outbox_depth": status.outbox_depth,
        "outbox_dropped": status.outbox_dropped,
        "scanner_restarts": status.scanner_restarts,
        "passers_by": status.passers_by,
    }
    optional = {
        "uptime_s": status.uptime_s,
        "adverts_per_s": status.adverts_per_s,
        "cpu_temp_c": status.cpu_temp_c,
    }
    fields.update({name: value for name, value in optional.items() if value is not None})
    tags = {"store_id": status.store_id, "gateway_id": status.gateway_id}
    return [Point("gateway_health", tags, fields, ns(status.ts))]


def to_points(facts: Iterable[Fact]) -> list[Point]:
    points: list[Point] = []
    for fact in facts:
        if isinstance(fact, PresenceFact):
            points.extend(presence_points(fact))
        elif isinstance(fact, OfferFact):
            points.extend(offer_points(fact))
        elif isinstance(fact, OccupancySnapshot):
            points.extend(occupancy_points(fact))
        else:
            points.extend(gateway_health_points(fact))
    return points


# --- line protocol ------------------------------------------------------------------------------


def _escape_key(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _escape_measurement(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def _field_value(value: FieldValue) -> str:
    # bool before int: a bool is an int to Python.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def line_protocol(point: Point) -> str:
    """One line of InfluxDB line protocol (nanosecond precision), as 1.x and 2.x both read it."""
    head = _escape_measurement(point.measurement)
    for key in sorted(point.tags):
        value = point.tags[key]
        if value:  # an empty tag value is not allowed: the tag is left out
            head += f",{_escape_key(key)}={_escape_key(value)}"
    fields = ",".join(
        f"{_escape_key(key)}={_field_value(point.fields[key])}" for key in sorted(point.fields)
    )
    return f"{head} {fields} {point.time_ns}"
