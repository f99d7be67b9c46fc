"""What valid presence events do to the database: record, resolve, stitch, decide, offer.

Events come in batches (the MQTT consumer commits up to a thousand at a time), and a batch is
applied in one transaction with a handful of statements whatever its size: one INSERT for the
events, one SELECT for the subjects' latest visits (on SQLite only for the subjects that
``visit_cache`` does not know), one INSERT and an UPDATE per kind of change for the visits,
and, only when a recognised shopper walked in, a few more for carts and offers. Inside the
batch the events take effect one after the other, in order: each is stitched onto the visit as
the previous events left it, and an offer made for one event counts for the campaigns' caps at
the next.

A redelivered event (same ``event_id``, in the same batch or already stored, by this worker or
another one at the same moment) changes nothing: ``INSERT ... ON CONFLICT DO NOTHING`` says
which events are new. On PostgreSQL, workers whose batches touch the same subject or shopper
take turns on advisory locks, so that two of them never stitch the same visit or offer the same
cart at once; on SQLite the database's write lock does that.

Campaigns decide in ``campaign_store`` (pure decision in ``decide``). An offer's notification
is written with its outbox rows in the same transaction and sent by the caller after the commit
(or, if the caller dies first, by the outbox sender), so a shopper is never sent a code that a
rollback took away, and no committed notification is lost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.ingest import bulk
from cloud_api.ingest.directory import ShopperDirectory
from cloud_api.ingest.resolve import ConsentingShopper
from cloud_api.ingest.visit_cache import CachedVisit, VisitCache, VisitKey
from cloud_api.ingest.visits import (
    Presence,
    Sighting,
    VisitState,
    presence_from_json,
    presence_json_text,
    presence_to_json,
    stitch,
    zones_json_text,
)
from cloud_api.match.campaign_store import Candidate, decide_batch
from cloud_api.match.decide import Verdict
from cloud_api.match.offer_policy import OfferPolicy
from cloud_api.store.db import begin_write, is_sqlite, lock_key, lock_keys
from cloud_api.store.models import EVENTS, VISITS
from storelink.wire import (
    OfferNotification,
    PresenceEvent,
    PresenceKind,
    SubjectType,
)

# StrEnum's .value is a descriptor call; the ingest asks for it several times per event.
_VALUE: dict[str, str] = {member: member.value for member in (*PresenceKind, *SubjectType)}
# The visit a subject's events are stitched onto (VisitKey): a tracked shopper's, whichever
# token they advertise, or else the subject's own. Subject types never read "shopper".
# Subjects a consenting shopper may be behind; anonymous ones are nobody by construction.
_RESOLVABLE = frozenset({SubjectType.APP, SubjectType.WEARABLE, SubjectType.BEACON})


# Tuples rather than frozen dataclasses, which take about three times as long to build: the
# ingest makes one of each per event (see visits.Sighting).
class PresenceOutcome(NamedTuple):
    duplicate: bool
    shopper_id: str | None = None
    visit_id: int | None = None
    # Every campaign's verdict, with its checks; empty when the event could earn no offer.
    verdicts: tuple[Verdict, ...] = ()
    notification: OfferNotification | None = None
    # The event began a visit: a store entry, for footfall.
    opened_visit: bool = False


# What ``record`` says of each event, shared (an outcome is immutable): one per event.
_STORED = PresenceOutcome(duplicate=False)
_STORED_BEFORE = PresenceOutcome(duplicate=True)


class Resolved(NamedTuple):
    """An event with the consenting shopper behind it, if any, resolved before the transaction."""

    event: PresenceEvent
    shopper: ConsentingShopper | None
    # Recognised for an offer is not consent to have one's visits recorded by name.
    tracked_id: str | None
    visit_key: VisitKey
    may_get_offer: bool
    # gateway, or app: the shopper app's own check-in, which joins the same visit.
    source: str = "gateway"

    @classmethod
    def of(
        cls, event: PresenceEvent, shopper: ConsentingShopper | None, source: str = "gateway"
    ) -> Resolved:
        tracked = shopper.shopper_id if shopper and shopper.footfall_analytics else None
        if tracked is not None:
            key = (event.store_id, "shopper", tracked)
        else:
            key = (event.store_id, _VALUE[event.subject.type], event.subject.ref)
        # Entering triggers campaigns, and so does dwelling; leaving never does.
        offer = event.kind != PresenceKind.EXIT and shopper is not None and shopper.personal_offers
        return cls(event, shopper, tracked, key, offer, source)


@dataclass(slots=True)
class _WorkingVisit:
    """A visit as the batch changes it; written once, at the end of the batch."""

    id: int | None
    store_id: str
    subject_type: str
    subject_ref: str
    shopper_id: str | None
    state: VisitState
    # The event that began the visit, when this batch did.
    opened_by: str | None = None
    # The visit as the database holds it; None for a visit the batch opened.
    stored: VisitState | None = None


class VisitWrites(NamedTuple):
    """A batch's visit rows, made before the write lock is taken (``_visit_writes``)."""

    updates: list[list[dict[str, Any]]]
    """The stored visits' rows, one list per combination of columns they assign."""
    created: list[_WorkingVisit]
    """The visits the batch opened; their rows, in ``created_rows``, get ids under the lock."""
    created_rows: list[dict[str, Any]]


class StitchPlan(NamedTuple):
    """Events stitched onto visits in memory (``PresenceService.plan``), not written yet."""

    fresh: Sequence[Resolved]
    visits: list[_WorkingVisit]
    """The visit of each event."""
    writes: VisitWrites
    visit_changes: int | None = None
    """SQLite's count of changes to visits when the plan was made (``VisitCache.seen``)."""


class PresenceService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        directory: ShopperDirectory,
        policy: OfferPolicy,
    ) -> None:
        self._sessions = sessions
        self._directory = directory
        self._policy = policy
        self._visits = VisitCache()

    def handle(self, event: PresenceEvent, now: datetime) -> PresenceOutcome:
        """Apply one event in a transaction of its own."""
        return self.handle_batch([event], now)[0]

    def handle_batch(self, events: Sequence[PresenceEvent], now: datetime) -> list[PresenceOutcome]:
        """Apply ``events`` in order, in one transaction; one outcome per event."""
        with self._sessions.begin() as session:
            begin_write(session)
            return self.apply(session, self.resolve(events, session=session), now)

    def resolve(
        self,
        events: Sequence[PresenceEvent],
        source: str = "gateway",
        *,
        session: Session | None = None,
    ) -> list[Resolved]:
        """Whose app token, wearable or key fob each event saw; in memory.

        ``source`` is recorded with each event: ``gateway`` or ``app`` (a check-in).
        ``session``: the batch's write transaction, for the directory's version check (one
        statement instead of a session of its own per batch); the directory's own without it.
        """
        directory = self._directory
        if any(event.subject.type in _RESOLVABLE for event in events):
            directory.refresh(session)
        resolved = []
        for event in events:
            shopper = None
            if event.subject.type == SubjectType.APP:
                shopper = directory.resolve(event.subject.ref, event.ts, session)
            elif event.subject.type in _RESOLVABLE:
                shopper = directory.resolve_device(event.subject.ref, session)
            resolved.append(Resolved.of(event, shopper, source))
        return resolved

    def apply(
        self, session: Session, batch: Sequence[Resolved], now: datetime
    ) -> list[PresenceOutcome]:
        """Apply a resolved batch inside the caller's write transaction (see ``begin_write``)."""
        if not batch:
            return []
        # Before the batch writes anything: what the transaction found, not what it did.
        cached = self._visits.current(session)
        if not is_sqlite(session):  # SQLite's write lock serialises the batches already
            lock_keys(session, _lock_keys(batch))
        new = _insert_new_events(session, event_rows(batch, now))
        stitched = self._stitch(session, cached, [batch[i] for i in new], now)
        position_of = {index: position for position, index in enumerate(new)}
        redelivered = [item for index, item in enumerate(batch) if index not in position_of]
        opened = self.opened_visits(session, [item.event for item in redelivered])
        return [
            PresenceOutcome(duplicate=True, opened_visit=item.event.event_id in opened)
            if (position := position_of.get(index)) is None
            else stitched[position]
            for index, item in enumerate(batch)
        ]

    def record(self, session: Session, rows: EventRows) -> list[PresenceOutcome]:
        """Store those of the events in ``rows`` not stored yet, for the stitcher process of
        the worker they name, which stitches them later (``stitch``); the outcomes say only
        which events were stored before. ``rows`` is made before the write lock is taken
        (``event_rows``)."""
        new = set(_insert_new_events(session, rows))
        return [_STORED if index in new else _STORED_BEFORE for index in range(rows.size)]

    def stitch(
        self, session: Session, stored: Sequence[Resolved], now: datetime
    ) -> list[PresenceOutcome]:
        """What ``apply`` does with new events, for events ``record`` stored already, inside the
        caller's write transaction; one outcome per event."""
        if not stored:
            return []
        cached = self._visits.current(session)
        if not is_sqlite(session):
            lock_keys(session, _lock_keys(stored))
        return self._stitch(session, cached, stored, now)

    def _stitch(
        self,
        session: Session,
        cached: Mapping[VisitKey, CachedVisit],
        fresh: Sequence[Resolved],
        now: datetime,
    ) -> list[PresenceOutcome]:
        known = self._visits.usable(session, cached, {item.visit_key for item in fresh})
        return self._write(session, _stitch_plan(session, fresh, known), now)

    def plan(self, session: Session, stored: Sequence[Resolved]) -> StitchPlan:
        """What ``stitch`` would write for ``stored``, worked out in memory from what ``session``
        sees, without taking SQLite's write lock: ``apply_plan`` then writes it under the lock,
        if no visit changed meanwhile."""
        # Read first, and the cache judged by it: a visit changed while the plan is made (SQLite
        # reads each statement afresh outside a write transaction) changes the count after it,
        # and voids the plan.
        changes = self._visits.seen(session)
        cached = self._visits.current(session, changes)
        known = self._visits.usable(session, cached, {item.visit_key for item in stored})
        return _stitch_plan(session, stored, known, changes)

    def apply_plan(
        self, session: Session, plan: StitchPlan, now: datetime
    ) -> list[PresenceOutcome] | None:
        """Write ``plan`` in the caller's write transaction; None, and nothing written, when a
        visit changed since it was made (``stitch`` it again)."""
        if plan.visit_changes is None or self._visits.seen(session) != plan.visit_changes:
            return None
        self._visits.current(session, plan.visit_changes)
        return self._write(session, plan, now)

    def _write(self, session: Session, plan: StitchPlan, now: datetime) -> list[PresenceOutcome]:
        fresh, visits = plan.fresh, plan.visits
        _write_visits(session, plan.writes)
        self._visits.commit_later(session, [_cached(visit) for visit in visits])
        decided = self._candidates(fresh, visits)
        results = dict(
            zip(
                decided,
                decide_batch(session, list(decided.values()), self._policy, now),
                strict=True,
            )
        )
        outcomes = []
        for position, item in enumerate(fresh):
            visit = visits[position]
            result = results.get(position)
            # By position, not keyword: one per event (0.27 against 0.48 us).
            outcomes.append(
                PresenceOutcome(
                    False,
                    item.shopper.shopper_id if item.shopper else None,
                    visit.id,
                    result.verdicts if result else (),
                    result.notification if result else None,
                    visit.opened_by == item.event.event_id,
                )
            )
        return outcomes

    def opened_visits(self, session: Session, stored: Sequence[PresenceEvent]) -> set[str]:
        """Which of the ``stored`` events (stitched before) began their visit.

        What is derived from an event again after a redelivery or a stitcher's restart (its
        time-series points) needs it. Told by the visit that starts when the event began and
        carries its subject; a visit whose start a late, earlier event moved back no longer
        names its first event.
        """
        return _opened_by(session, stored)

    def _candidates(
        self, fresh: Sequence[Resolved], visits: Sequence[_WorkingVisit]
    ) -> dict[int, Candidate]:
        """The events, by position in ``fresh``, that campaigns decide on."""
        return {
            position: Candidate(
                item.event,
                item.shopper.shopper_id,
                visits[position].id,
                visits[position].state.started_at,
            )
            for position, item in enumerate(fresh)
            if item.may_get_offer and item.shopper is not None
        }


def _lock_keys(batch: Sequence[Resolved]) -> set[int]:
    keys = set()
    for item in batch:
        keys.add(lock_key("visit", *item.visit_key))
        if item.may_get_offer and item.shopper is not None:
            keys.add(lock_key("offers", item.shopper.shopper_id))
    return keys


def _opened_by(session: Session, stored: Sequence[PresenceEvent]) -> set[str]:
    if not stored:
        return set()
    refs = sorted({event.subject.ref for event in stored})
    rows = session.execute(
        sa.select(
            VISITS.c.store_id, VISITS.c.subject_type, VISITS.c.subject_ref, VISITS.c.started_at
        ).where(VISITS.c.subject_ref.in_(refs))
    )
    starts = {(r.store_id, r.subject_type, r.subject_ref, _utc(r.started_at)) for r in rows}
    return {
        event.event_id
        for event in stored
        if (
            event.store_id,
            _VALUE[event.subject.type],
            event.subject.ref,
            _utc(min(event.ts - timedelta(seconds=event.dwell_s), event.ts)),
        )
        in starts
    }


def _utc(at: datetime) -> datetime:
    """Naive UTC, whether the database gave it with a time zone or without."""
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


_SQLITE_ID_FLOOR = sa.text(
    "SELECT max(coalesce((SELECT max(id) FROM presence_events), 0), "
    "coalesce((SELECT max(stitched_to) FROM stitch_marks), 0))"
)


class EventRows(NamedTuple):
    """A batch's events as rows of the events table (``event_rows``)."""

    rows: list[dict[str, Any]]
    """One per event id, in event id order: two workers inserting overlapping batches lock the
    unique index entries in the same order, so neither waits for the other in a cycle."""
    first: dict[str, int]
    """Each event id's first position in the batch."""
    size: int
    """How many events the batch had."""


def event_rows(
    batch: Sequence[Resolved], now: datetime, received_by: str | None = None
) -> EventRows:
    """``received_by``: the worker whose stitcher process stitches the events; None when the
    transaction that stores them stitches them."""
    first: dict[str, int] = {}
    for index, item in enumerate(batch):
        first.setdefault(item.event.event_id, index)
    rows = [_event_row(batch[index], now, received_by) for _, index in sorted(first.items())]
    return EventRows(rows, first, len(batch))


def _insert_new_events(session: Session, new: EventRows) -> list[int]:
    """Store the events not stored yet; the positions in the batch of those that were new."""
    rows = new.rows
    if rows and rows[0]["received_by"] is not None and is_sqlite(session):
        # SQLite gives a new row the largest id plus one: after an erasure of the latest events
        # it would hand their ids out again, at or below a stitcher's mark, and the stitcher
        # would never read those events. Above both, then (the write lock is held).
        floor = session.connection().execute(_SQLITE_ID_FLOOR).scalar_one()
        for offset, row in enumerate(rows, 1):
            row["id"] = floor + offset
    inserted = set(
        bulk.insert(session, EVENTS, rows, skip_conflicts_on="event_id", returning="event_id")
    )
    return [index for event_id, index in new.first.items() if event_id in inserted]


def _event_row(item: Resolved, now: datetime, received_by: str | None) -> dict[str, Any]:
    event = item.event
    return {
        "event_id": event.event_id,
        "store_id": event.store_id,
        "gateway_id": event.gateway_id,
        "zone_id": event.zone_id,
        "kind": _VALUE[event.kind],
        "subject_type": _VALUE[event.subject.type],
        "subject_ref": event.subject.ref,
        "shopper_id": item.tracked_id,
        "ts": event.ts,
        "dwell_s": event.dwell_s,
        "rssi": event.rssi,
        "distance_m": event.distance_m,
        "received_at": now,
        "source": item.source,
        "received_by": received_by,
    }


def _state(row: sa.Row[Any]) -> VisitState:
    return VisitState(
        started_at=row.started_at,
        last_seen_at=row.last_seen_at,
        ended_at=row.ended_at,
        zones=tuple(row.zones),
        presence=presence_from_json(row.presence),
    )


def _visit_key(row: sa.Row[Any]) -> VisitKey:
    if row.shopper_id is not None:
        return (row.store_id, "shopper", row.shopper_id)
    return (row.store_id, row.subject_type, row.subject_ref)


# A dwell or exit says since when its subject has been in the zone (see visits.stitch): a visit
# that ended after the earliest presence of the batch began may take its events.
_RECENT = sa.or_(VISITS.c.ended_at.is_(None), VISITS.c.ended_at >= sa.bindparam("since"))
# By ref or by shopper alone, which the indexes lead with and which are nearly unique; the rest
# of the key is checked here (a planner offered store or shopper_id IS NULL as well may prefer
# an index that reads far more rows).
_LATEST_BY_REF = sa.select(VISITS).where(VISITS.c.subject_ref.in_(bulk.json_array("keys")), _RECENT)
_LATEST_BY_SHOPPER = sa.select(VISITS).where(
    VISITS.c.shopper_id.in_(bulk.json_array("keys")), _RECENT
)


def _latest_visits(session: Session, fresh: Sequence[Resolved]) -> dict[VisitKey, _WorkingVisit]:
    """Each subject's latest visit that is open, or ended after the earliest presence began."""
    if not fresh:
        return {}
    wanted = {item.visit_key for item in fresh}
    refs = {ref for _, kind, ref in wanted if kind != "shopper"}
    shoppers = {shopper for _, kind, shopper in wanted if kind == "shopper"}
    since = min(item.event.ts - timedelta(seconds=item.event.dwell_s) for item in fresh)
    queries = [(_LATEST_BY_REF, refs), (_LATEST_BY_SHOPPER, shoppers)]
    connection = session.connection()
    latest: dict[VisitKey, _WorkingVisit] = {}
    for query, keys in queries:
        if not keys:
            continue
        for row in connection.execute(query, {"keys": sorted(keys), "since": since}):
            key = _visit_key(row)
            if key not in wanted:
                continue
            known = latest.get(key)
            if known is None or (row.last_seen_at, row.id) > (known.state.last_seen_at, known.id):
                state = _state(row)
                latest[key] = _WorkingVisit(
                    row.id,
                    row.store_id,
                    row.subject_type,
                    row.subject_ref,
                    row.shopper_id,
                    state,
                    stored=state,
                )
    return latest


def _plan_visits(
    session: Session, fresh: Sequence[Resolved], cached: Mapping[VisitKey, CachedVisit]
) -> tuple[list[_WorkingVisit], list[_WorkingVisit]]:
    """Stitch the new events onto visits, in order, in memory: the visit of each event, and the
    visits to write.

    ``cached``: the subjects' latest visits as far as known already; the others are read.
    """
    latest: dict[VisitKey, _WorkingVisit] = {}
    uncached = []
    for item in fresh:
        known = cached.get(item.visit_key)
        if known is None:
            uncached.append(item)
        elif item.visit_key not in latest:
            latest[item.visit_key] = _WorkingVisit(
                known.id,
                known.store_id,
                known.subject_type,
                known.subject_ref,
                known.shopper_id,
                known.state,
                stored=known.state,
            )
    latest.update(_latest_visits(session, uncached))
    touched: dict[int, _WorkingVisit] = {}
    of_event: list[_WorkingVisit] = []
    for item in fresh:
        event = item.event
        key = item.visit_key
        visit = latest.get(key)
        sighting = Sighting(event.kind, event.zone_id, event.subject.ref, event.ts, event.dwell_s)
        stitched = stitch(visit.state if visit else None, sighting)
        if visit is not None and stitched.abandoned is not None:
            visit.state = stitched.abandoned
            touched[id(visit)] = visit
        if visit is None or stitched.opened:
            visit = _WorkingVisit(
                None,
                event.store_id,
                _VALUE[event.subject.type],
                event.subject.ref,
                item.tracked_id,
                stitched.visit,
                opened_by=event.event_id,
            )
            latest[key] = visit
        visit.state = stitched.visit
        touched[id(visit)] = visit
        of_event.append(visit)
    return of_event, list(touched.values())


def _cached(visit: _WorkingVisit) -> CachedVisit:
    assert visit.id is not None, "written visits have their id"
    return CachedVisit(
        visit.id,
        visit.store_id,
        visit.subject_type,
        visit.subject_ref,
        visit.shopper_id,
        visit.state,
    )


class _VisitJson(NamedTuple):
    """How a visit's JSON columns are written: as JSON text on SQLite, as values on PostgreSQL."""

    presence: Callable[[Presence], Any]
    zones: Callable[[tuple[str, ...]], Any]


_SQLITE_JSON = _VisitJson(
    lambda presence: bulk.JsonText(presence_json_text(presence)),
    lambda zones: bulk.JsonText(zones_json_text(zones)),
)
_POSTGRESQL_JSON = _VisitJson(presence_to_json, list)


def _visit_json(session: Session) -> _VisitJson:
    return _SQLITE_JSON if is_sqlite(session) else _POSTGRESQL_JSON


def _visit_values(visit: _WorkingVisit, encode: _VisitJson) -> dict[str, Any]:
    state = visit.state
    return {
        "started_at": state.started_at,
        "last_seen_at": state.last_seen_at,
        "ended_at": state.ended_at,
        "zones": encode.zones(state.zones),
        "presence": encode.presence(state.presence),
        "dwell_s": state.dwell_s,
    }


def _changed(visit: _WorkingVisit) -> tuple[str, ...]:
    """Which of a stored visit's indexed or rarely changing columns the batch changed: a dwell
    changes none of them, an exit only ``ended_at``, a new zone ``zones``."""
    stored, state = visit.stored, visit.state
    if stored is None:
        return ("started_at", "ended_at", "zones")
    changed = []
    if state.started_at != stored.started_at:
        changed.append("started_at")
    if state.ended_at != stored.ended_at:
        changed.append("ended_at")
    if state.zones != stored.zones:
        changed.append("zones")
    return tuple(changed)


def _stitch_plan(
    session: Session,
    fresh: Sequence[Resolved],
    cached: Mapping[VisitKey, CachedVisit],
    visit_changes: int | None = None,
) -> StitchPlan:
    of_event, touched = _plan_visits(session, fresh, cached)
    writes = _visit_writes(touched, _visit_json(session))
    return StitchPlan(fresh, of_event, writes, visit_changes)


def _visit_writes(touched: Sequence[_WorkingVisit], encode: _VisitJson) -> VisitWrites:
    """The rows ``_write_visits`` writes. Made apart from the writing, so that a stitcher makes
    them before it takes SQLite's write lock: they were a third of its time under the lock."""
    # Updates in id order, so that two transactions never wait for each other's rows in a cycle
    # (and the advisory locks on the visits' keys already keep two batches off the same visit).
    existing = sorted((v for v in touched if v.id is not None), key=lambda v: v.id or 0)
    created = [v for v in touched if v.id is None]
    # Each visit gets only what changed, one UPDATE per combination: most are a dwell (its last
    # sighting only) or an exit (and its end). SQLite rewrites the index entries of every
    # column an UPDATE assigns, changed or not (started_at and ended_at are indexed): assigning
    # only what changed took SQLite's time for the visits' UPDATEs down by 35-50%.
    by_change: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for visit in existing:
        changed = _changed(visit)
        state = visit.state
        row = {
            "id": visit.id,
            "last_seen_at": state.last_seen_at,
            "presence": encode.presence(state.presence),
            "dwell_s": state.dwell_s,
        }
        for name in changed:
            row[name] = encode.zones(state.zones) if name == "zones" else getattr(state, name)
        by_change.setdefault(changed, []).append(row)
    created_rows = [
        {
            "id": None,
            "store_id": visit.store_id,
            "subject_type": visit.subject_type,
            "subject_ref": visit.subject_ref,
            "shopper_id": visit.shopper_id,
            **_visit_values(visit, encode),
        }
        for visit in created
    ]
    return VisitWrites(list(by_change.values()), created, created_rows)


def _write_visits(session: Session, writes: VisitWrites) -> None:
    for rows in writes.updates:
        bulk.update_by_id(session, VISITS, rows)
    ids = bulk.allocate_ids(session, VISITS, len(writes.created))
    for visit, row, visit_id in zip(writes.created, writes.created_rows, ids, strict=True):
        visit.id = row["id"] = visit_id
    bulk.insert(session, VISITS, writes.created_rows)
