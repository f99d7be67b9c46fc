"""Visits to a store, stitched from presence events."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter

from cloud_api.deps import Limit, SessionDep
from cloud_api.models import Visit
from cloud_api.schemas import VisitOut

router = APIRouter(prefix="/visits", tags=["visits"])


@router.get("")
def list_visits(store_id: str, session: SessionDep, limit: Limit = 100) -> list[VisitOut]:
    visits = session.scalars(
        sa.select(Visit)
        .where(Visit.store_id == store_id)
        .order_by(Visit.started_at.desc(), Visit.id.desc())
        .limit(limit)
    )
    return [VisitOut.model_validate(visit) for visit in visits]
