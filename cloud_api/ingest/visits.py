"""Visit stitching: from per-zone enter/dwell/exit events to one visit per subject per store.

A visit lasts while the subject is present somewhere in the store: in any zone, and under any
of the app tokens it rotated through. It ends when its last presence exits. A visit nobody
closed (a gateway that crashed before its exits) ends by itself once the subject has not been
seen for ``VISIT_IDLE_TIMEOUT_S``; the next sighting then starts a new visit.

Events may arrive out of order: several cloud workers share the gateways' events (MQTT shared
subscriptions hand consecutive events of one gateway to different workers), and a gateway's
outbox replays its backlog after an outage. So whether a presence ("zone/ref") is present is
decided by its latest event *by time*, not by arrival: an exit followed by the late arrival of
its enter leaves the presence gone, and an event whose presence began before the end of the
subject's last visit belongs to that visit instead of starting another.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple

from storelink.wire import PresenceKind

VISIT_IDLE_TIMEOUT_S = 30 * 60

# presence ("zone/ref") -> (epoch seconds of its latest event, present after that event)
Presence = Mapping[str, tuple[float, bool]]


# Immutable tuples rather than frozen dataclasses: the ingest makes several per event, and a
# frozen dataclass takes about three times as long to build.
class Sighting(NamedTuple):
    kind: PresenceKind
    zone_id: str
    subject_ref: str
    ts: datetime
    dwell_s: float


class VisitState(NamedTuple):
    started_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None
    zones: tuple[str, ...]
    presence: Presence

    @property
    def dwell_s(self) -> float:
        return (self.last_seen_at - self.started_at).total_seconds()

    @property
    def present(self) -> frozenset[str]:
        """The presences whose latest event is an enter or a dwell."""
        return frozenset(key for key, (_, here) in self.presence.items() if here)


class Stitched(NamedTuple):
    """The visit after a sighting; ``opened`` when it is a new visit rather than the latest one.

    ``abandoned`` is the open visit closed for idleness, when the sighting replaced it.
    """

    visit: VisitState
    opened: bool
    abandoned: VisitState | None = None


def presence_to_json(presence: Presence) -> dict[str, Any]:
    return {key: [ts, 1 if here else 0] for key, (ts, here) in presence.items()}


def presence_json_text(presence: Presence) -> str:
    """``json.dumps(presence_to_json(presence))``, written out directly: the ingest writes one
    for every visit an event touches, and the dict and the encoder's layers cost more."""
    if len(presence) == 1:  # most visits: one subject in one zone (0.8 against 1.2 us)
        for key, (ts, here) in presence.items():
            return f"{{{encode_basestring_ascii(key)}: [{float(ts)!r}, {1 if here else 0}]}}"
    items = ", ".join(
        f"{encode_basestring_ascii(key)}: [{float(ts)!r}, {1 if here else 0}]"
        for key, (ts, here) in presence.items()
    )
    return f"{{{items}}}"


@lru_cache(maxsize=4096)
def zones_json_text(zones: tuple[str, ...]) -> str:
    """``json.dumps(list(zones))``, remembered: a store has a few zones and its visits take a
    few paths through them, and ``json.dumps`` cost 1.4 us for every visit written (0.1 here)."""
    return json.dumps(list(zones))


def presence_from_json(stored: Mapping[str, Any]) -> dict[str, tuple[float, bool]]:
    return {key: (float(ts), bool(here)) for key, (ts, here) in stored.items()}


_IDLE = timedelta(seconds=VISIT_IDLE_TIMEOUT_S)
_EXIT = PresenceKind.EXIT


def _began(sighting: Sighting) -> datetime:
    # A dwell or exit says how long the subject has been in the zone, so since when.
    ts, dwell_s = sighting.ts, sighting.dwell_s
    return ts - timedelta(seconds=dwell_s) if dwell_s > 0 else ts


def _apply(visit: VisitState | None, sighting: Sighting, began: datetime) -> VisitState:
    """``visit`` with ``sighting``, which began at ``began``; None: a new visit.

    Per event, on the ingest's hottest path: tuples are built by position, and the new visit's
    fields are worked out without building the empty visit first."""
    kind, zone, ts = sighting.kind, sighting.zone_id, sighting.ts
    if visit is None:
        zones: tuple[str, ...] = (zone,)
        presence: Presence = {}
        last_seen, started = ts, began
    else:
        zones = visit.zones
        # The path is the order zones were entered; a dwell or exit adds a zone only if its
        # enter was missed, so presence in two overlapping zones does not zigzag the path.
        if (kind == PresenceKind.ENTER and (not zones or zones[-1] != zone)) or zone not in zones:
            zones = (*zones, zone)
        presence = visit.presence
        # Time only moves forward, and a late event can only say the visit began earlier.
        last_seen = ts if ts > visit.last_seen_at else visit.last_seen_at
        started = began if began < visit.started_at else visit.started_at
    stamp = ts.timestamp()
    here = kind != _EXIT
    # Topic-safe identifiers never contain "/", so the pair cannot be ambiguous.
    key = f"{zone}/{sighting.subject_ref}"
    latest = presence.get(key)
    # The latest event by time decides; of two at the same instant, the exit.
    if latest is None or stamp > latest[0] or (stamp == latest[0] and not here):
        presence = {**presence, key: (stamp, here)}
    # Most sightings leave their own presence here: no need to look at the others then.
    still_here = presence[key][1] or any(present for _, present in presence.values())
    return VisitState(started, last_seen, None if still_here else last_seen, zones, presence)


def _closed(visit: VisitState) -> VisitState:
    gone = {key: (ts, False) for key, (ts, _) in visit.presence.items()}
    return visit._replace(ended_at=visit.last_seen_at, presence=gone)


def stitch(latest: VisitState | None, sighting: Sighting) -> Stitched:
    """Apply ``sighting`` to the subject's latest visit in the store, or start a new one.

    The latest visit takes the sighting while it is open (and not idle), and, once ended, a
    sighting whose presence began before that end: a late event of that visit (a dwell or exit
    says since when the subject has been in its zone).
    """
    began = _began(sighting)
    abandoned = None
    if latest is not None:
        ended_at = latest.ended_at
        if ended_at is None and sighting.ts - latest.last_seen_at <= _IDLE:
            return Stitched(_apply(latest, sighting, began), False)
        if ended_at is not None and began <= ended_at:
            return Stitched(_apply(latest, sighting, began), False)
        if ended_at is None:
            abandoned = _closed(latest)
    return Stitched(_apply(None, sighting, began), True, abandoned)
