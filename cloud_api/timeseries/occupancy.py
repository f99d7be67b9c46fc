"""Occupancy snapshots from the visits table: who is in each store and zone now."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloud_api.ingest.visits import VISIT_IDLE_TIMEOUT_S, presence_from_json
from cloud_api.stats import footfall
from cloud_api.stats.footfall import VisitFact
from cloud_api.store.models import Visit
from cloud_api.timeseries.points import OccupancySnapshot


def _fact(row: Visit) -> VisitFact:
    subject, identified = footfall.subject_key(row.subject_type, row.subject_ref, row.shopper_id)
    present = {
        key.split("/", 1)[0] for key, (_, here) in presence_from_json(row.presence).items() if here
    }
    return VisitFact(
        subject=subject,
        identified=identified,
        started_at=row.started_at,
        last_seen_at=row.last_seen_at,
        ended_at=row.ended_at,
        present_zones=frozenset(present),
    )


def snapshot_occupancy(
    session: Session, now: datetime, known_zones: Mapping[str, Iterable[str]]
) -> list[OccupancySnapshot]:
    """Every store with open visits, and every store of ``known_zones``, at ``now``.

    The zones of ``known_zones`` are reported at 0 when empty, so a zone emptying shows.
    """
    since = now - timedelta(seconds=VISIT_IDLE_TIMEOUT_S)
    rows = session.scalars(
        sa.select(Visit).where(Visit.ended_at.is_(None), Visit.last_seen_at >= since)
    )
    per_store: dict[str, list[VisitFact]] = defaultdict(list)
    for row in rows:
        per_store[row.store_id].append(_fact(row))
    snapshots = []
    for store_id in sorted(set(per_store) | set(known_zones)):
        result = footfall.occupancy(
            per_store.get(store_id, []), now, VISIT_IDLE_TIMEOUT_S, known_zones.get(store_id, ())
        )
        snapshots.append(OccupancySnapshot(store_id, now, result.in_store, result.zones))
    return snapshots
