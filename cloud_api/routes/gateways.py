"""The gateways' latest reported status."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter

from cloud_api.deps import SessionDep
from cloud_api.models import GatewayStatusRow
from cloud_api.schemas import GatewayStatusOut

router = APIRouter(prefix="/gateways", tags=["gateways"])


@router.get("")
def list_gateways(session: SessionDep, store_id: str | None = None) -> list[GatewayStatusOut]:
    query = sa.select(GatewayStatusRow).order_by(
        GatewayStatusRow.store_id, GatewayStatusRow.gateway_id
    )
    if store_id is not None:
        query = query.where(GatewayStatusRow.store_id == store_id)
    return [GatewayStatusOut.model_validate(row) for row in session.scalars(query)]
