"""Liveness for load balancers and orchestrators."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from fastapi import APIRouter, Response, status

from cloud_api.deps import ConsumerDep, SessionDep
from cloud_api.schemas import Health

router = APIRouter(tags=["health"])
logger = logging.getLogger(__name__)


@router.get("/healthz")
def healthz(session: SessionDep, consumer: ConsumerDep, response: Response) -> Health:
    """503 when the database does not answer; a broker outage is reported, not fatal."""
    mqtt = "disabled" if consumer is None else "connected" if consumer.connected else "disconnected"
    try:
        session.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as error:
        logger.warning("health check: database unavailable: %s", error)
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="unavailable", database=type(error).__name__, mqtt=mqtt)
    return Health(status="ok", database="ok", mqtt=mqtt)
