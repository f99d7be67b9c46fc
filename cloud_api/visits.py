"""Visit stitching: from per-zone enter/dwell/exit events to one visit per subject per store.

A visit lasts while the subject is present somewhere in the store: in any zone, and under any
of the app tokens it rotated through. It ends when its last presence exits. A visit nobody
closed (a gateway that crashed before its exits) ends by itself once the subject has not been
seen for ``VISIT_IDLE_TIMEOUT_S``; the next sighting then starts a new visit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from storelink.wire import PresenceKind

VISIT_IDLE_TIMEOUT_S = 30 * 60


@dataclass(frozen=True)
class Sighting:
    kind: PresenceKind
    zone_id: str
    subject_ref: str
    ts: datetime
    dwell_s: float

    @property
    def presence(self) -> str:
        # Topic-safe identifiers never contain "/", so the pair cannot be ambiguous.
        return f"{self.zone_id}/{self.subject_ref}"


@dataclass(frozen=True)
class VisitState:
    started_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None
    zones: tuple[str, ...]
    present: frozenset[str]

    @property
    def dwell_s(self) -> float:
        return (self.last_seen_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class Stitched:
    """The visit after a sighting; ``opened`` when it is a new visit rather than the open one.

    ``abandoned`` is the open visit closed for idleness, when the sighting replaced it.
    """

    visit: VisitState
    opened: bool
    abandoned: VisitState | None = None


def _is_idle(visit: VisitState, at: datetime) -> bool:
    return at - visit.last_seen_at > timedelta(seconds=VISIT_IDLE_TIMEOUT_S)


def _open(sighting: Sighting) -> VisitState:
    # A dwell or exit without an enter (the cloud started mid-visit) still says since when.
    started = sighting.ts - timedelta(seconds=sighting.dwell_s)
    return VisitState(
        started_at=min(started, sighting.ts),
        last_seen_at=sighting.ts,
        ended_at=None,
        zones=(),
        present=frozenset(),
    )


def _apply(visit: VisitState, sighting: Sighting) -> VisitState:
    zones = visit.zones
    # The path is the order zones were entered; a dwell or exit adds a zone only if its enter
    # was missed, so presence in two overlapping zones does not zigzag the path.
    entered = sighting.kind == PresenceKind.ENTER and (not zones or zones[-1] != sighting.zone_id)
    if entered or sighting.zone_id not in zones:
        zones = (*zones, sighting.zone_id)
    if sighting.kind == PresenceKind.EXIT:
        present = visit.present - {sighting.presence}
    else:
        present = visit.present | {sighting.presence}
    # Events of several gateways may arrive slightly out of order: time only moves forward.
    last_seen = max(visit.last_seen_at, sighting.ts)
    ended = last_seen if not present else None
    return replace(visit, last_seen_at=last_seen, ended_at=ended, zones=zones, present=present)


def stitch(open_visit: VisitState | None, sighting: Sighting) -> Stitched:
    """Apply ``sighting`` to the subject's open visit in the store, or start a new one."""
    if open_visit is not None and not _is_idle(open_visit, sighting.ts):
        return Stitched(_apply(open_visit, sighting), opened=False)
    abandoned = None
    if open_visit is not None:
        abandoned = replace(open_visit, ended_at=open_visit.last_seen_at, present=frozenset())
    return Stitched(_apply(_open(sighting), sighting), opened=True, abandoned=abandoned)
