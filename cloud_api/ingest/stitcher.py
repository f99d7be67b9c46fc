"""The stitcher: visits, offers and time-series points of the events a receiving worker stored.

One ingest worker is one Python process, and Python runs one thread at a time: at about 18,000
events/s a worker that stores and stitches in one transaction fills one core while the other
stands idle (docs/scaling.md). With ``ingest_stitcher = "process"`` the work is split in two
along the transaction. The worker validates, stores and acknowledges the events
(``PresenceService.record``, each tagged with the worker's MQTT client id), and the stitcher,
a process of its own beside it (``stitcher_process``), reads them back and does the rest
(``PresenceService.stitch``). With ``ingest_stitcher = "external"`` the worker starts none, and
``storelink cloud stitch`` runs the same process wherever there are cores for it.

- **In id order, from the events table.** One worker's transactions follow each other, so its
  events' ids grow from one commit to the next, and whatever has an id above the stitcher's
  mark is not stitched yet. Starting, restarting after a crash and keeping up are one loop: read
  the next events above the mark, stitch them, commit the new mark with the visits.
- **Exactly once.** The mark (``stitch_marks.stitched_to``) is read in the stitching
  transaction, under SQLite's write lock or, on PostgreSQL, locked with ``FOR UPDATE``: a
  second stitcher of the same worker (the old one still finishing while a new one starts) waits
  and then finds those events stitched.
- **Time-series points** go to the stitcher's own writer, which reports when they are written
  or in its disk buffer; the next transaction records that as ``points_to``. A stitcher that
  died in between derives the points of the events between the two marks again when it starts
  (a point written twice overwrites itself).
- **Offers** are committed with their outbox rows as in line; the worker's outbox sender, which
  looks every half second, sends them.
- Events stored by a worker stitching in line carry no worker and are never read here. A worker
  that goes back to stitching in line should first let its stitcher catch up (the
  ``storelink_stitch_lag_events`` gauge): nothing else stitches what it left.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.config import CloudSettings
from cloud_api.ingest import bulk
from cloud_api.ingest.consumer import CommittedBatch
from cloud_api.ingest.presence_service import (
    PresenceOutcome,
    PresenceService,
    Resolved,
    StitchPlan,
)
from cloud_api.ingest.retry import until_committed
from cloud_api.store.db import begin_write, normalised_url
from cloud_api.store.models import STITCH_MARKS
from storelink.wire import PresenceEvent, PresenceKind, Subject, SubjectType, utc_now

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

# After an unexpected failure, before the same events are tried again.
FAILURE_PAUSE_S = 1.0

_COLUMNS = (
    "id, event_id, store_id, gateway_id, zone_id, kind, subject_type, subject_ref, ts, dwell_s, "
    "rssi, distance_m, source"
)
# Raw rows, not the ORM's: the stitcher reads every event once more, and SQLAlchemy's rows and
# its text-to-datetime conversion cost more per event than the INSERT did.
_STORED = sa.text(
    f"SELECT {_COLUMNS} FROM presence_events "  # noqa: S608 (constant columns)
    "WHERE id > :after AND id <= :until AND received_by = :worker ORDER BY id LIMIT :limit"
)
_ANY_STORED = sa.text(
    "SELECT id FROM presence_events WHERE id > :after AND received_by = :worker LIMIT 1"
)
_UNSTITCHED = sa.text(
    "SELECT count(*) FROM presence_events WHERE id > :after AND received_by = :worker"
)
_MARKS = sa.select(STITCH_MARKS.c.stitched_to, STITCH_MARKS.c.points_to).where(
    STITCH_MARKS.c.worker == sa.bindparam("worker")
)
# In the stitching transaction: a second stitcher of the same worker waits for the commit.
_MARK = _MARKS.with_for_update()
_MOVE_MARK = (
    sa.update(STITCH_MARKS)
    .where(STITCH_MARKS.c.worker == sa.bindparam("of_worker"))
    .values(
        stitched_to=sa.bindparam("new_stitched_to"),
        points_to=sa.bindparam("new_points_to"),
        updated_at=sa.bindparam("at"),
    )
)
_NO_LIMIT = 2**62
_KINDS = {member.value: member for member in PresenceKind}
_SUBJECT_TYPES = {member.value: member for member in SubjectType}


# Most events in one stitching transaction, unless configured. Larger batches cost the stitcher
# less per event when it is behind; on SQLite its worker waits for the lock meanwhile, and with
# the stitcher's lower CPU priority batches of 1,000 kept the worker's p99 at 20,000 events/s
# at 97-114 ms where 3,000 gave 140-203 (docs/scaling.md, ninth round). On PostgreSQL nobody
# waits for them: there 3,000 kept up with 10,000 events/s, and 1,000 did not.
SQLITE_STITCH_BATCH_SIZE = 1000
POSTGRESQL_STITCH_BATCH_SIZE = 3000


def stitch_batch_size(settings: CloudSettings) -> int:
    if settings.ingest_stitch_batch_size is not None:
        return settings.ingest_stitch_batch_size
    if normalised_url(settings.database_url).get_backend_name() == "sqlite":
        return SQLITE_STITCH_BATCH_SIZE
    return POSTGRESQL_STITCH_BATCH_SIZE


@dataclass
class StitchCounters:
    """Since this process started. Only the stitching thread writes them."""

    events: int = 0
    batches: int = 0
    # Batches worked out before the write lock and worked out again under it: a visit changed
    # meanwhile (another stitcher, an erasure, a check-in from the app).
    replanned: int = 0
    database_retries: int = 0
    processing_errors: int = 0


class StoredEvent(NamedTuple):
    """A tuple rather than a frozen dataclass, three times as fast to build: one per event."""

    id: int
    event: PresenceEvent
    source: str


def _utc(value: datetime | str) -> datetime:
    """A stored time as an aware UTC datetime: SQLite gives text without an offset (see
    ``models.UtcDateTime``). Read with one, not given one after: 0.15 against 0.85 us."""
    if isinstance(value, str):
        return datetime.fromisoformat(value + "+00:00")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


_EVENT_FIELDS = frozenset(PresenceEvent.model_fields)
_SUBJECT_FIELDS = frozenset(Subject.model_fields)


_new = object.__new__
_set = object.__setattr__


def _trusted(model: type[M], fields: frozenset[str], values: dict[str, Any]) -> M:
    """``model`` holding ``values`` (all its fields), not validated.

    What ``model_construct`` makes, in a quarter of its time (0.9 against 3.9 µs for an event
    and its subject): the stitcher rebuilds every event it reads, and the values come from a
    row that was validated against the wire contract when it was received.
    """
    instance = _new(model)
    _set(instance, "__dict__", values)
    _set(instance, "__pydantic_fields_set__", fields)
    _set(instance, "__pydantic_extra__", None)
    _set(instance, "__pydantic_private__", None)
    return instance


def _stored(row: Any, subjects: dict[tuple[str, str], Subject]) -> StoredEvent:
    """``subjects``: those of the batch so far, shared by its events (a subject is frozen), as
    a person's enter, dwells and exit mostly come in one batch."""
    (
        row_id,
        event_id,
        store,
        gateway,
        zone,
        kind,
        subject_type,
        ref,
        ts,
        dwell_s,
        rssi,
        distance_m,
        source,
    ) = row
    subject = subjects.get((subject_type, ref))
    if subject is None:
        subject = subjects[subject_type, ref] = _trusted(
            Subject, _SUBJECT_FIELDS, {"type": _SUBJECT_TYPES[subject_type], "ref": ref}
        )
    event = _trusted(
        PresenceEvent,
        _EVENT_FIELDS,
        {
            "event_id": event_id,
            "store_id": store,
            "gateway_id": gateway,
            "zone_id": zone,
            "kind": _KINDS[kind],
            "subject": subject,
            "ts": _utc(ts),
            "dwell_s": dwell_s,
            "rssi": rssi,
            "distance_m": distance_m,
        },
    )
    return StoredEvent(row_id, event, source)


def read_stored(
    session: Session, worker: str, after: int, limit: int, until: int = _NO_LIMIT
) -> list[StoredEvent]:
    """``worker``'s events with ids in (``after``, ``until``], in id order, at most ``limit``."""
    rows = session.connection().execute(
        _STORED, {"after": after, "until": until, "worker": worker, "limit": limit}
    )
    subjects: dict[tuple[str, str], Subject] = {}
    return [_stored(row, subjects) for row in rows]


def stitch_lag(session: Session, worker: str) -> int:
    """Events ``worker`` stored that its stitcher has not stitched yet (it reads them by id
    from its mark on, so this costs as much as the lag is long)."""
    connection = session.connection()
    marks = connection.execute(_MARKS, {"worker": worker}).first()
    after = marks.stitched_to if marks is not None else 0
    return int(connection.execute(_UNSTITCHED, {"after": after, "worker": worker}).scalar_one())


def worker_known(session: Session, worker: str) -> bool:
    """Whether ``worker`` has stored an event for a stitcher, or a stitcher has stitched one."""
    connection = session.connection()
    if connection.execute(_MARKS, {"worker": worker}).first() is not None:
        return True
    return connection.execute(_ANY_STORED, {"after": 0, "worker": worker}).first() is not None


class Stitcher:
    """Stitches what ``worker``'s receiving process stored; see the module's description."""

    def __init__(
        self,
        settings: CloudSettings,
        service: PresenceService,
        sessions: sessionmaker[Session],
        worker: str,
        *,
        on_commit: Callable[[CommittedBatch], None] | None = None,
    ) -> None:
        """``on_commit``: gets each committed batch, with ``acknowledge`` to call once its
        time-series points are safe (``TimeSeriesWriter.committed`` does)."""
        self.counters = StitchCounters()
        self.worker = worker
        self._service = service
        self._sessions = sessions
        self._on_commit = on_commit
        self._batch_size = stitch_batch_size(settings)
        # SQLite has one writer at a time: the work that needs no lock is done before it.
        self._plan_first = sessions.kw["bind"].dialect.name == "sqlite"
        self._poll_s = settings.ingest_stitch_poll_s
        self._closing = threading.Event()
        self._draining = threading.Event()
        self._thread: threading.Thread | None = None
        # As this stitcher last committed them.
        self._stitched_to = 0
        self._points_to = 0
        # The highest id whose points the writer reported safe (it reports from its thread).
        self._points_safe = 0
        self._points_lock = threading.Lock()
        self._resumed = False
        # The last batch was full: more are stored, no need to look before the next.
        self._behind = False

    @property
    def stitched_to(self) -> int:
        return self._stitched_to

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"stitch-{self.worker}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stitch what is stored (for at most ``timeout_s``), then stop."""
        self._draining.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def run(self) -> None:
        """Until ``stop``: stitch what is stored, then wait for more."""
        while not self._closing.is_set():
            try:
                if not self._resumed:
                    self._resume()
                stitched = self.step()
            except Exception:
                # A bug or a broken row: nothing is committed, and the same events come again.
                self.counters.processing_errors += 1
                logger.exception("stitching failed; trying again in %.0fs", FAILURE_PAUSE_S)
                self._closing.wait(FAILURE_PAUSE_S)
                continue
            if stitched:
                continue
            if self._draining.is_set():
                break
            self._closing.wait(self._poll_s)

    def step(self) -> int:
        """Stitch the next batch of stored events, if any; how many were stitched."""
        if not self._behind and not self._anything_stored():
            if self._points_safe_to() > self._points_to:
                until_committed(self._move_points_mark, self._closing, self._count_retry)
            return 0
        batch = until_committed(self._transaction, self._closing, self._count_retry)
        self._behind = batch is not None and len(batch.events) == self._batch_size
        if batch is None or not batch.events:
            return 0
        self.counters.events += len(batch.events)
        self.counters.batches += 1
        if self._on_commit is not None:
            self._on_commit(batch)
        return len(batch.events)

    # --- the transaction --------------------------------------------------------------------

    def _anything_stored(self) -> bool:
        """Whether an event awaits, read without the write lock (a look costs the receiving
        process nothing)."""
        with self._sessions() as session:
            found = session.connection().execute(
                _ANY_STORED, {"after": self._stitched_to, "worker": self.worker}
            )
            return found.first() is not None

    def _transaction(self) -> CommittedBatch:
        started = time.perf_counter()
        now = utc_now()
        planned = self._plan() if self._plan_first else None
        with self._sessions.begin() as session:
            begin_write(session)
            stitched_to, points_to = self._take_mark(session)
            outcomes: list[PresenceOutcome] | None = None
            if planned is not None and planned[0] == stitched_to:
                stored, plan = planned[1], planned[2]
                outcomes = self._service.apply_plan(session, plan, now)
            if outcomes is None:
                self.counters.replanned += planned is not None
                stored = read_stored(session, self.worker, stitched_to, self._batch_size)
                outcomes = self._service.stitch(session, self._resolve(session, stored), now)
            if stored:
                stitched_to = stored[-1].id
            points_to = max(points_to, self._points_safe_to())
            self._move_mark(session, stitched_to, points_to, now)
        self._stitched_to, self._points_to = stitched_to, points_to
        return CommittedBatch(
            tuple(item.event for item in stored),
            len(stored),
            time.time(),
            tuple(outcomes),
            commit_s=time.perf_counter() - started,
            acknowledge=partial(self._points_safe_up_to, stitched_to),
        )

    def _plan(self) -> tuple[int, list[StoredEvent], StitchPlan]:
        """SQLite: the next events, read, resolved and stitched in memory before the write lock
        is taken, so that the worker beside it waits for the writes alone; with the mark they
        start after."""
        with self._sessions() as session:
            marks = session.connection().execute(_MARKS, {"worker": self.worker}).first()
            after = int(marks.stitched_to) if marks is not None else 0
            stored = read_stored(session, self.worker, after, self._batch_size)
            plan = self._service.plan(session, self._resolve(session, stored))
        return after, stored, plan

    def _resolve(self, session: Session, stored: Sequence[StoredEvent]) -> list[Resolved]:
        resolved: list[Resolved] = []
        for source, items in itertools.groupby(stored, key=lambda item: item.source):
            events = [item.event for item in items]
            resolved.extend(self._service.resolve(events, source, session=session))
        return resolved

    def _take_mark(self, session: Session) -> tuple[int, int]:
        """The worker's marks, locked until the commit (created at 0 the first time)."""
        row = session.connection().execute(_MARK, {"worker": self.worker}).first()
        if row is None:
            initial = {"worker": self.worker, "stitched_to": 0, "points_to": 0}
            bulk.insert(
                session,
                STITCH_MARKS,
                [{**initial, "updated_at": utc_now()}],
                skip_conflicts_on="worker",
            )
            row = session.connection().execute(_MARK, {"worker": self.worker}).one()
        return int(row.stitched_to), int(row.points_to)

    def _move_mark(self, session: Session, stitched_to: int, points_to: int, now: datetime) -> None:
        session.connection().execute(
            _MOVE_MARK,
            {
                "of_worker": self.worker,
                "new_stitched_to": stitched_to,
                "new_points_to": points_to,
                "at": now,
            },
        )

    def _move_points_mark(self) -> None:
        with self._sessions.begin() as session:
            begin_write(session)
            stitched_to, points_to = self._take_mark(session)
            points_to = max(points_to, self._points_safe_to())
            self._move_mark(session, stitched_to, points_to, utc_now())
        self._stitched_to, self._points_to = stitched_to, points_to

    # --- time-series points -----------------------------------------------------------------

    def _points_safe_up_to(self, event_id: int) -> None:
        with self._points_lock:
            self._points_safe = max(self._points_safe, event_id)

    def _points_safe_to(self) -> int:
        with self._points_lock:
            return self._points_safe

    def _resume(self) -> None:
        """Derive again the points of the events stitched before a crash whose points were
        not reported safe, then go on from the mark."""
        with self._sessions() as session:
            row = session.connection().execute(_MARKS, {"worker": self.worker}).first()
            stitched_to, points_to = (int(row[0]), int(row[1])) if row else (0, 0)
            after = points_to
            while after < stitched_to:
                stored = read_stored(session, self.worker, after, self._batch_size, stitched_to)
                if not stored:
                    break
                events = [item.event for item in stored]
                opened = self._service.opened_visits(session, events)
                after = stored[-1].id
                if self._on_commit is not None:
                    self._on_commit(
                        CommittedBatch(
                            (),
                            0,
                            time.time(),
                            redelivered=tuple((e, e.event_id in opened) for e in events),
                            acknowledge=partial(self._points_safe_up_to, after),
                        )
                    )
            session.rollback()
        if stitched_to > points_to:
            logger.info(
                "stitcher %s resumed: points of events %d to %d derived again",
                self.worker,
                points_to + 1,
                stitched_to,
            )
        self._stitched_to, self._points_to = stitched_to, points_to
        self._resumed = True

    def _count_retry(self) -> None:
        self.counters.database_retries += 1
