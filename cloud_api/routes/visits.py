"""Visits to a store, stitched from presence events."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter

from cloud_api.api.pagination import Cursor, PageLimit, paginate
from cloud_api.api.schemas import VisitOut
from cloud_api.auth.auth import StoreStaffDep
from cloud_api.deps import SessionDep
from cloud_api.fleet.store_schemas import Page
from cloud_api.store.models import Visit

router = APIRouter(prefix="/visits", tags=["visits"])


@router.get("")
def list_visits(
    store_id: str,
    _caller: StoreStaffDep,
    session: SessionDep,
    limit: PageLimit = 100,
    cursor: Cursor = None,
) -> Page[VisitOut]:
    """The store's visits, newest first."""
    visits, next_cursor = paginate(
        session,
        sa.select(Visit).where(Visit.store_id == store_id),
        [(Visit.started_at, "desc"), (Visit.id, "desc")],
        limit,
        cursor,
    )
    return Page[VisitOut](
        items=[VisitOut.model_validate(visit) for visit in visits], next_cursor=next_cursor
    )
