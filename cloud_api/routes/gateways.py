"""The gateways' latest reported status."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter

from cloud_api.api.schemas import GatewayStatusOut
from cloud_api.auth.auth import StaffDep, check_store
from cloud_api.deps import SessionDep
from cloud_api.store.models import GatewayStatusRow

router = APIRouter(prefix="/gateways", tags=["gateways"])


@router.get("")
def list_gateways(
    caller: StaffDep, session: SessionDep, store_id: str | None = None
) -> list[GatewayStatusOut]:
    """The latest status of every gateway in the caller's stores (or in ``store_id``)."""
    query = sa.select(GatewayStatusRow).order_by(
        GatewayStatusRow.store_id, GatewayStatusRow.gateway_id
    )
    if store_id is not None:
        check_store(caller, store_id)
        query = query.where(GatewayStatusRow.store_id == store_id)
    elif caller.store_ids is not None:
        query = query.where(GatewayStatusRow.store_id.in_(caller.store_ids))
    return [GatewayStatusOut.model_validate(row) for row in session.scalars(query)]
