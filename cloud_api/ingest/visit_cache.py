"""Each subject's latest visit as this process last committed it, so that a batch need not read
its subjects' visits back from the database.

Reading them back (a SELECT by ref, every row's datetimes and JSON decoded) was the largest
single cost of the ingest after the commit. The cache answers instead, but only for as long as
it can tell that nobody else changed those visits. Only the ingest writes visits, and it only
ever stitches onto a subject's latest one (the visit it opened last: see ``visits``), so a
cached visit nobody else touched is the one a SELECT would find.

- **SQLite**: triggers count every change to a visit, by anyone (another worker, the HTTP
  API, an erasure, a hand-written UPDATE), in ``visit_versions`` (migration 0011). The batch
  reads the count inside its write transaction; if it is not what this process's last commit
  left, the cache is emptied. It used to go by ``PRAGMA data_version``, which any commit to
  any table changes: a stitcher process (``stitcher``) lost its cache to every commit of the
  worker beside it, which stores events and never touches a visit.
- **PostgreSQL**, where several workers commit the same subjects: an open cached visit is
  valid while its row is the version this worker wrote (``xmin``, the writing transaction):
  whoever stitched an event of that subject since updated it, even to open a new visit (which
  closes the open one for idleness), and an erasure deleted it. An ended visit may have a
  successor that changed nothing in its row, so ended ones are read back. One SELECT of ids
  and row versions, under the batch's advisory locks on those subjects.

Entries are added only once their transaction has committed: a rolled-back batch leaves the
cache as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping, Sequence
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from cloud_api.ingest import bulk
from cloud_api.ingest.visits import VisitState
from cloud_api.store.db import is_sqlite
from cloud_api.store.models import VISITS, VisitVersion

# store, "shopper" or the subject type, shopper id or subject ref
VisitKey = tuple[str, str, str]
# Past this, the ended visits are dropped (an open one is the likeliest to get the next event).
MAX_ENTRIES = 50_000
# xmin is a 32-bit transaction id; txid_current() counts the wraparounds above it.
_XID = sa.text("SELECT txid_current() % 4294967296")
# The row versions of cached visits, checked before each batch on PostgreSQL (built once).
_VERSIONS = sa.select(VISITS.c.id, sa.literal_column("xmin::text")).where(
    VISITS.c.id.in_(bulk.json_array("ids", sa.BigInteger()))
)
# SQLite: the count of changes to visits (built once).
_VISITS_CHANGED = sa.select(VisitVersion.n).where(VisitVersion.id == 1)


class CachedVisit(NamedTuple):
    id: int
    store_id: str
    subject_type: str
    subject_ref: str
    shopper_id: str | None
    state: VisitState
    # PostgreSQL: the row version (xmin) this worker's commit left; "" on SQLite.
    version: str = ""


class VisitCache:
    """Thread-safe; one per ``PresenceService``."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._visits: dict[VisitKey, CachedVisit] = {}
        # SQLite: the count of changes to visits that this process's last commit left.
        self._changes: int | None = None

    def current(
        self, session: Session, changes: int | None = None
    ) -> Mapping[VisitKey, CachedVisit]:
        """The cached visits; call it in ``session``'s write transaction (``db.begin_write``)
        before the transaction writes anything, then ``usable`` and ``commit_later``.

        On SQLite, empty when they may be stale; on PostgreSQL ``usable`` checks them.
        ``changes``: what ``seen`` just read in this session, so as not to read it again.
        """
        if not is_sqlite(session):
            session.info[self] = None
            with self._lock:
                return self._visits
        if changes is None:
            changes = _visit_changes(session)
        with self._lock:
            if self._changes != changes:
                self._visits, self._changes = {}, None
            visits = self._visits
        session.info[self] = visits
        return visits

    def seen(self, session: Session) -> int | None:
        """SQLite: the count of changes to visits as ``session`` sees it, which tells whether
        what was worked out from the visits is still right later; None on PostgreSQL."""
        return _visit_changes(session) if is_sqlite(session) else None

    def usable(
        self,
        session: Session,
        cached: Mapping[VisitKey, CachedVisit],
        keys: Collection[VisitKey],
    ) -> dict[VisitKey, CachedVisit]:
        """The cached visits of ``keys`` that are as cached; on PostgreSQL, call it while the
        transaction holds the advisory locks on ``keys`` (``presence_service._lock_keys``)."""
        found = {key: cached[key] for key in keys if key in cached}
        if is_sqlite(session) or not found:
            return found
        open_visits = {visit.id: visit for visit in found.values() if visit.state.ended_at is None}
        if not open_visits:
            return {}
        rows = session.connection().execute(_VERSIONS, {"ids": sorted(open_visits)})
        unchanged = {row_id for row_id, version in rows if open_visits[row_id].version == version}
        return {key: visit for key, visit in found.items() if visit.id in unchanged}

    def commit_later(self, session: Session, visits: Sequence[CachedVisit]) -> None:
        """Cache ``visits`` (keyed as ``key_of`` says) once ``session`` commits."""
        if self not in session.info:
            return
        taken = session.info.pop(self)
        if taken is None:
            version = str(session.connection().execute(_XID).scalar_one())
            entries = {key_of(visit): visit._replace(version=version) for visit in visits}

            def committed(_: Session) -> None:
                with self._lock:
                    self._visits.update(entries)
                    self._evict()

        else:
            base = taken
            entries = {key_of(visit): visit for visit in visits}
            # What this transaction leaves: it holds the write lock, nobody else changes it.
            changes = _visit_changes(session)

            def committed(_: Session) -> None:
                with self._lock:
                    if self._visits is not base:
                        return  # another transaction emptied the cache meanwhile: its count rules
                    base.update(entries)
                    self._evict()
                    self._changes = changes

        event.listen(session, "after_commit", committed, once=True)

    def _evict(self) -> None:
        if len(self._visits) > self._max_entries:
            self._visits = {k: v for k, v in self._visits.items() if v.state.ended_at is None}
            if len(self._visits) > self._max_entries // 2:
                self._visits = {}


def key_of(visit: CachedVisit) -> VisitKey:
    """The key a visit is cached and looked up by (``presence_service.Resolved.visit_key``)."""
    if visit.shopper_id is not None:
        return (visit.store_id, "shopper", visit.shopper_id)
    return (visit.store_id, visit.subject_type, visit.subject_ref)


def _visit_changes(session: Session) -> int:
    return int(session.connection().execute(_VISITS_CHANGED).scalar_one())
